/* One RWKV-7 token through one block, in C: runtime/rwkv7.py's Rwkv7Block step (which does the
 * same in numpy, as the fallback and the tests' oracle) in one foreign call per block instead
 * of ~30 numpy operations and kernel calls. Matrices are multiplied as the file stores them;
 * the parts other generations' blocks share are in blocks.c. block7_t: kernels.h. */
#include "internal.h"

/* floats of workspace rwkv7_block needs */
int64_t rwkv7_block_floats(const block7_t *b) { return 15 * b->C + 7 * b->hidden + channel_mix_floats(&b->ffn); }

/* The time mix's projections of the six mixes (mixed [6][C]: r w k v a g): receptance, key,
 * value, the LoRAs of g, w and a, and (after the first block) that of v's residual mix, into
 * out [7][C] in that order. They are independent, so each is a task for one thread (the
 * kernels inside run unsplit), the larger first: one fork and join instead of one per matrix,
 * and the LoRAs' narrow first factors, which the kernels leave on one thread, run beside the
 * others. h: 7 hidden floats. */
static void projections(const settings_t *s, const block7_t *b, const float *mixed, float *out, float *h) {
    const int64_t C = b->C, n = b->first ? 6 : 7;
    const float *xr = mixed, *xw = mixed + C, *xk = mixed + 2 * C, *xv = mixed + 3 * C, *xa = mixed + 4 * C,
                *xg = mixed + 5 * C;
#pragma omp parallel for schedule(dynamic, 1) if (8 * C * b->hidden >= s->parallel_min) num_threads(team(s))
    for (int64_t t = 0; t < n; t++) {
        float *y = out + t * C, *ht = h + t * b->hidden;
        switch (t) {
        case 0: linear(s, &b->r, xr, y, ht); break;
        case 1: linear(s, &b->k, xk, y, ht); break;
        case 2: linear(s, &b->v, xv, y, ht); break;
        case 3: lora(s, &b->g1, &b->g2, xg, y, ht, SIGMOID); break;
        case 4: lora(s, &b->w1, &b->w2, xw, y, ht, TANH); break;
        case 5: lora(s, &b->a1, &b->a2, xa, y, ht, PLAIN); break;
        case 6: lora(s, &b->v1, &b->v2, xv, y, ht, PLAIN); break;
        }
    }
}

/* One token of RWKV-7's time mix after its projections, per head h (N channels):
 *   w = exp(-e^-0.5 sigmoid(w_raw)),  a = sigmoid(a_raw),  kk = normalize(k * k_k),
 *   k' = k (1 + (a - 1) k_a)
 *   S' = S diag(w) + (S (-kk)) (kk a)^T + v k'^T          (S: [N (value)][N (key)])
 *   y  = group_norm(S' r) * ln_w + ln_b + (sum_j r k' r_k) v,   out = y * g
 * (model/rwkv7.py, TimeMix.forward). S' goes to T, which may be S; threads split the heads. */
void rwkv7_time_mix(const settings_t *s, const float *S, float *T, const float *r, const float *w_raw, const float *k,
                    const float *v, const float *a_raw, const float *k_k, const float *k_a, const float *r_k,
                    const float *ln_w, const float *ln_b, const float *g, int64_t H, int64_t N, float eps, float *out) {
/* ~4 multiply-adds per state entry */
#pragma omp parallel for schedule(static) if (4 * H * N * N >= s->parallel_min) num_threads(team(s))
    for (int64_t h = 0; h < H; h++) {
        float w[N], a[N], kk[N], kp[N], y[N];  /* N: the head size, 64 */
        const int64_t o = h * N;
        float norm = 0.f, bonus = 0.f;
        for (int64_t j = 0; j < N; j++) {
            w[j] = expf(-0.60653066f / (1.f + expf(-w_raw[o + j])));
            a[j] = 1.f / (1.f + expf(-a_raw[o + j]));
            kk[j] = k[o + j] * k_k[o + j];
            norm += kk[j] * kk[j];
            kp[j] = k[o + j] * (1.f + (a[j] - 1.f) * k_a[o + j]);
            bonus += r[o + j] * kp[j] * r_k[o + j];
        }
        norm = 1.f / fmaxf(sqrtf(norm), 1e-12f);
        for (int64_t j = 0; j < N; j++) kk[j] *= norm;
        for (int64_t i = 0; i < N; i++) {
            const float *si = S + (o + i) * N;
            float *t = T + (o + i) * N;
            float sa = 0.f, acc = 0.f, vi = v[o + i];
            for (int64_t j = 0; j < N; j++) sa -= si[j] * kk[j];
            for (int64_t j = 0; j < N; j++) {
                t[j] = si[j] * w[j] + sa * kk[j] * a[j] + vi * kp[j];
                acc += t[j] * r[o + j];
            }
            y[i] = acc;
        }
        head_norm(y, N, eps);
        for (int64_t i = 0; i < N; i++) out[o + i] = (y[i] * ln_w[o + i] + ln_b[o + i] + bonus * v[o + i]) * g[o + i];
    }
}

/* One token through block b: x [C] is updated in place; the block's state (att, ffn [C],
 * S [H][N][N]) is read and its successor written to att_out, ffn_out, T (which may alias
 * the inputs); v_first [C] is written by the first block and read by the others. work:
 * rwkv7_block_floats(b) floats; rows: one int per FFN neuron. Returns channel_mix's FFN_COUNTS. */
int64_t rwkv7_block(const settings_t *s, const block7_t *b, float *x, const float *att, float *att_out,
                    const float *ffn, float *ffn_out, const float *S, float *T, float *v_first, float *work,
                    int32_t *rows) {
    const int64_t C = b->C;
    float *xa = work, *mixed = xa + C, *r = mixed + 6 * C, *k = r + C, *v = k + C, *g = v + C, *w = g + C, *a = w + C,
          *u = a + C, *y = u + C, *h = y + C, *rest = h + 7 * b->hidden;
    /* time mix: token shift, six interpolations, projections */
    layer_norm(x, b->ln1w, b->ln1b, C, 1e-5f, xa);
    for (int64_t j = 0; j < 6; j++)
        for (int64_t c = 0; c < C; c++) mixed[j * C + c] = xa[c] + (att[c] - xa[c]) * b->mix[j * C + c];
    memcpy(att_out, xa, C * sizeof *xa);
    projections(s, b, mixed, r, h);  /* r k v g w a u, consecutive */
    for (int64_t c = 0; c < C; c++) w[c] += b->w0[c], a[c] += b->a0[c];
    if (b->first)
        memcpy(v_first, v, C * sizeof *v);
    else
        for (int64_t c = 0; c < C; c++) v[c] += (v_first[c] - v[c]) * sigmoidf(b->v0[c] + u[c]);
    rwkv7_time_mix(s, S, T, r, w, k, v, a, b->k_k, b->k_a, b->r_k, b->lnxw, b->lnxb, g, b->H, b->N, (float)b->eps, y);
    linear(s, &b->o, y, u, h);
    for (int64_t c = 0; c < C; c++) x[c] += u[c];

    /* channel mix: token shift, key rows of the active neurons, their value columns */
    float *xf = xa, *xkf = mixed;
    layer_norm(x, b->ln2w, b->ln2b, C, 1e-5f, xf);
    for (int64_t c = 0; c < C; c++) xkf[c] = xf[c] + (ffn[c] - xf[c]) * b->x_k[c];
    memcpy(ffn_out, xf, C * sizeof *xf);
    const int64_t n = channel_mix(s, &b->ffn, C, xkf, u, rows, rest);
    for (int64_t c = 0; c < C; c++) x[c] += u[c];
    return n;
}
