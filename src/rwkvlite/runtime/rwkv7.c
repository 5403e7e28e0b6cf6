/* One RWKV-7 token through one block, in C: runtime/model.py's Block step (which does the
 * same in numpy, as the fallback and the tests' oracle) in one foreign call per block instead
 * of ~30 numpy operations and kernel calls (~2.5 ms per token at 0.1B shapes). Matrices are
 * multiplied as the file stores them, by the kernels in kernels.c; the parts RWKV-5/6's block
 * shares are in blocks.c. The struct below is mirrored by ctypes in runtime/kernels.py; every
 * field is 8 bytes wide. */
#include <math.h>
#include <string.h>
#include "kernels.h"
#ifdef __AVX512F__
#include <immintrin.h>
#endif

typedef struct {
    int64_t C, H, N, first, hidden;  /* hidden: the widest inner dimension (LoRA, low rank) */
    double eps;                         /* ln_x */
    const float *ln1w, *ln1b, *ln2w, *ln2b, *mix /* [6][C]: r w k v a g */, *w0, *a0, *k_k, *k_a, *r_k, *v0, *lnxw,
        *lnxb, *x_k;
    linear_t r, k, v, o;
    mat_t w1, w2, a1, a2, g1, g2, v1, v2;
    ffn_t ffn;
} block7_t;

/* floats of workspace rwkv7_block needs */
int64_t rwkv7_block_floats(const block7_t *b) { return 15 * b->C + 7 * b->hidden + channel_mix_floats(&b->ffn); }

/* The time mix's projections of the six mixes (mixed [6][C]: r w k v a g): receptance, key,
 * value, the LoRAs of g, w and a, and (after the first block) that of v's residual mix, into
 * out [7][C] in that order. They are independent, so each is a task for one thread (the
 * kernels inside run unsplit), the larger first: one fork and join instead of one per matrix,
 * and the LoRAs' narrow first factors, which the kernels leave on one thread, run beside the
 * others. h: 7 hidden floats. */
static void projections(const block7_t *b, const float *mixed, float *out, float *h) {
    const int64_t C = b->C, n = b->first ? 6 : 7;
    const float *xr = mixed, *xw = mixed + C, *xk = mixed + 2 * C, *xv = mixed + 3 * C, *xa = mixed + 4 * C,
                *xg = mixed + 5 * C;
#pragma omp parallel for schedule(dynamic, 1) if (8 * C * b->hidden >= parallel_min)
    for (int64_t t = 0; t < n; t++) {
        float *y = out + t * C, *ht = h + t * b->hidden;
        switch (t) {
        case 0: linear(&b->r, xr, y, ht); break;
        case 1: linear(&b->k, xk, y, ht); break;
        case 2: linear(&b->v, xv, y, ht); break;
        case 3: lora(&b->g1, &b->g2, xg, y, ht, SIGMOID); break;
        case 4: lora(&b->w1, &b->w2, xw, y, ht, TANH); break;
        case 5: lora(&b->a1, &b->a2, xa, y, ht, PLAIN); break;
        case 6: lora(&b->v1, &b->v2, xv, y, ht, PLAIN); break;
        }
    }
}

/* One token of RWKV-7's time mix after its projections, per head h (N channels):
 *   w = exp(-e^-0.5 sigmoid(w_raw)),  a = sigmoid(a_raw),  kk = normalize(k * k_k),
 *   k' = k (1 + (a - 1) k_a)
 *   S' = S diag(w) + (S (-kk)) (kk a)^T + v k'^T          (S: [N (value)][N (key)])
 *   y  = group_norm(S' r) * ln_w + ln_b + (sum_j r k' r_k) v,   out = y * g
 * (model/rwkv7.py, TimeMix.forward). S' goes to T, which may be S; threads split the heads. */
void rwkv7_time_mix(const float *S, float *T, const float *r, const float *w_raw, const float *k, const float *v,
                    const float *a_raw, const float *k_k, const float *k_a, const float *r_k, const float *ln_w,
                    const float *ln_b, const float *g, int64_t H, int64_t N, float eps, float *out) {
#pragma omp parallel for schedule(static) if (4 * H * N * N >= parallel_min)  /* ~4 multiply-adds per state entry */
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
            const float *s = S + (o + i) * N;
            float *t = T + (o + i) * N;
            float sa = 0.f, acc = 0.f, vi = v[o + i];
            for (int64_t j = 0; j < N; j++) sa -= s[j] * kk[j];
            for (int64_t j = 0; j < N; j++) {
                t[j] = s[j] * w[j] + sa * kk[j] * a[j] + vi * kp[j];
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
int64_t rwkv7_block(const block7_t *b, float *x, const float *att, float *att_out, const float *ffn, float *ffn_out,
                    const float *S, float *T, float *v_first, float *work, int32_t *rows) {
    const int64_t C = b->C;
    float *xa = work, *mixed = xa + C, *r = mixed + 6 * C, *k = r + C, *v = k + C, *g = v + C, *w = g + C, *a = w + C,
          *u = a + C, *y = u + C, *h = y + C, *rest = h + 7 * b->hidden;
    /* time mix: token shift, six interpolations, projections */
    layer_norm(x, b->ln1w, b->ln1b, C, 1e-5f, xa);
    for (int64_t j = 0; j < 6; j++)
        for (int64_t c = 0; c < C; c++) mixed[j * C + c] = xa[c] + (att[c] - xa[c]) * b->mix[j * C + c];
    memcpy(att_out, xa, C * sizeof *xa);
    projections(b, mixed, r, h);  /* r k v g w a u, consecutive */
    for (int64_t c = 0; c < C; c++) w[c] += b->w0[c], a[c] += b->a0[c];
    if (b->first)
        memcpy(v_first, v, C * sizeof *v);
    else
        for (int64_t c = 0; c < C; c++) v[c] += (v_first[c] - v[c]) * sigmoidf(b->v0[c] + u[c]);
    rwkv7_time_mix(S, T, r, w, k, v, a, b->k_k, b->k_a, b->r_k, b->lnxw, b->lnxb, g, b->H, b->N, (float)b->eps, y);
    linear(&b->o, y, u, h);
    for (int64_t c = 0; c < C; c++) x[c] += u[c];

    /* channel mix: token shift, key rows of the active neurons, their value columns */
    float *xf = xa, *xkf = mixed;
    layer_norm(x, b->ln2w, b->ln2b, C, 1e-5f, xf);
    for (int64_t c = 0; c < C; c++) xkf[c] = xf[c] + (ffn[c] - xf[c]) * b->x_k[c];
    memcpy(ffn_out, xf, C * sizeof *xf);
    const int64_t n = channel_mix(&b->ffn, C, xkf, u, rows, rest);
    for (int64_t c = 0; c < C; c++) x[c] += u[c];
    return n;
}

/* The clustered head (runtime/model.py, Head): the rows of the chosen clusters, ascending
 * (a forward scan of the head); how many. picked: one int per cluster, nonzero if chosen;
 * rows: room for V. With AVX-512, 16 tokens a step: their clusters' flags gathered, the
 * chosen tokens' indices compress-stored (the scalar loop below alone: 48-91 us at 64K tokens,
 * by the machine's spell; this 25-41) */
int64_t head_rows(const int32_t *picked, const int32_t *cluster, int64_t V, int32_t *rows) {
    int64_t n = 0, t = 0;
#ifdef __AVX512F__
    const __m512i step = _mm512_set1_epi32(16);
    __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (; t + 16 <= V; t += 16, idx = _mm512_add_epi32(idx, step)) {
        const __m512i flag = _mm512_i32gather_epi32(_mm512_loadu_si512(cluster + t), picked, 4);
        const __mmask16 m = _mm512_test_epi32_mask(flag, flag);
        _mm512_mask_compressstoreu_epi32(rows + n, m, idx);
        n += __builtin_popcount(m);
    }
#endif
    for (; t < V; t++) {  /* branch-free: about half the tokens are taken, unpredictably */
        rows[n] = (int32_t)t;
        n += picked[cluster[t]] != 0;
    }
    return n;
}

/* ...and the log-probabilities, in one pass over the vocabulary: a chosen token's logit
 * (logits: the n chosen rows' in head_rows' order), log-softmaxed among the chosen rows, plus
 * log(mass of the chosen clusters); any other token its cluster's base, log(s_k / n_k). With
 * AVX-512, 16 tokens a step: the bases gathered, the chosen tokens' logits expand-loaded
 * into their lanes. */
void head_logprobs(const float *logits, int64_t n, const int32_t *picked, const int32_t *cluster, const float *base,
                   int64_t V, double log_mass, float *out) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = fmaxf(m, logits[i]);
    float sum = 0.f;  /* float exponentials, which vectorise: ~1e-7 relative to the float64 ones */
    for (int64_t i = 0; i < n; i++) sum += expf(logits[i] - m);
    const float offset = (float)(-(double)m - log((double)sum) + log_mass);
    int64_t t = 0, j = 0;
#ifdef __AVX512F__
    const __m512 off = _mm512_set1_ps(offset);
    for (; t + 16 <= V; t += 16) {
        const __m512i cl = _mm512_loadu_si512(cluster + t), flag = _mm512_i32gather_epi32(cl, picked, 4);
        const __mmask16 chosen = _mm512_test_epi32_mask(flag, flag);
        const __m512 v = _mm512_mask_expandloadu_ps(_mm512_i32gather_ps(cl, base, 4), chosen, logits + j);
        _mm512_storeu_ps(out + t, _mm512_mask_add_ps(v, chosen, v, off));
        j += __builtin_popcount(chosen);
    }
#endif
    for (; t < V; t++)
        out[t] = picked[cluster[t]] ? logits[j++] + offset : base[cluster[t]];
}
