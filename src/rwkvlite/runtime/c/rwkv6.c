/* One RWKV-5 or RWKV-6 token through one block, in C: runtime/rwkv6.py's Rwkv5Block and Rwkv6Block
 * step (which do the same in numpy, as the fallback and the tests' oracle) in one foreign call
 * per block. The parts other generations' blocks share are in blocks.c; block6_t: kernels.h. */
#include "internal.h"

/* Per head h (N channels), S: [N (key)][N (value)]:
 *   y = r (S + diag(u) k^T v),   S' = diag(w) S + k^T v
 *   out = group_norm(y) * ln_w + ln_b, times g
 * (model/rwkv5.py and rwkv6.py, TimeMix.forward, with w the per-step decay exp(-exp(.))). S' goes to T,
 * which may be S; threads split the heads. */
void rwkv6_time_mix(const settings_t *s, const float *S, float *T, const float *r, const float *k, const float *v,
                    const float *w, const float *u, const float *ln_w, const float *ln_b, const float *g, int64_t H,
                    int64_t N, float eps, float *out) {
/* ~3 multiply-adds per state entry */
#pragma omp parallel for schedule(static) if (3 * H * N * N >= s->parallel_min) num_threads(team(s))
    for (int64_t h = 0; h < H; h++) {
        float y[N];  /* N: the head size, 64 */
        const int64_t o = h * N;
        for (int64_t j = 0; j < N; j++) y[j] = 0.f;
        for (int64_t i = 0; i < N; i++) {  /* row i of S: key channel i */
            const float *si = S + (o + i) * N;
            float *t = T + (o + i) * N;
            const float ri = r[o + i], ki = k[o + i], wi = w[o + i], rku = ri * ki * u[o + i];
            for (int64_t j = 0; j < N; j++) {
                const float kv = ki * v[o + j];
                y[j] += ri * si[j] + rku * v[o + j];
                t[j] = wi * si[j] + kv;
            }
        }
        head_norm(y, N, eps);
        for (int64_t j = 0; j < N; j++) out[o + j] = (y[j] * ln_w[o + j] + ln_b[o + j]) * g[o + j];
    }
}

/* floats of workspace rwkv6_block needs */
int64_t rwkv6_block_floats(const block6_t *b) {
    const int64_t time_mix = 9 * b->C + 6 * b->A + 5 * b->D + 5 * b->hidden, channel = gated_channel_mix_floats(&b->ffn, b->C);
    return MAX(time_mix, channel + 5 * b->hidden);
}

/* x + dx shift per mix (shift [5][C]) into mixed [5][C]; RWKV-6 adds to each shift its LoRA
 * term, tanh(LoRA input W_1)_i W_2[i] (m: 5 D floats), the five up-projections a task each */
static void token_shift6(const settings_t *s, const block6_t *b, const float *x, const float *prev, float *mixed, float *m) {
    const int64_t C = b->C, D = b->D;
    if (b->dynamic) {
        float *xx = mixed + 5 * C;  /* C floats of scratch after the five */
        for (int64_t c = 0; c < C; c++) xx[c] = x[c] + (prev[c] - x[c]) * b->maa_x[c];
        mat_rmv(s, &b->maa_w1, xx, m, NULL, C);
        for (int64_t j = 0; j < 5 * D; j++) m[j] = tanhf(m[j]);
        /* (one matrix from several threads: it is dense, so mat_rmv uses no scratch of its own) */
#pragma omp parallel for schedule(static) if (5 * D * C >= s->parallel_min) num_threads(team(s))
        for (int64_t i = 0; i < 5; i++) mat_rmv(s, &b->maa_w2, m + i * D, mixed + i * C, b->up_rows + i * D, D);
    } else {
        memset(mixed, 0, 5 * C * sizeof *mixed);
    }
    for (int64_t i = 0; i < 5; i++)
        for (int64_t c = 0; c < C; c++)
            mixed[i * C + c] = x[c] + (prev[c] - x[c]) * (b->shift[i * C + c] + mixed[i * C + c]);
}

/* r, k, v, the gate and (RWKV-6) the decay's LoRA from the mixes (mixed [5][C]: w k v r g),
 * into out [5][A] in the order r k v g w, each a task for one thread as in rwkv7.c's
 * projections. h: 5 hidden floats. */
static void projections6(const settings_t *s, const block6_t *b, const float *mixed, float *out, float *h) {
    const int64_t C = b->C, A = b->A;
#pragma omp parallel for schedule(dynamic, 1) if (6 * C * A >= s->parallel_min) num_threads(team(s))
    for (int64_t t = 0; t < 5; t++) {
        float *y = out + t * A, *ht = h + t * b->hidden;
        switch (t) {
        case 0: linear(s, &b->r, mixed + 3 * C, y, ht); break;
        case 1: linear(s, &b->k, mixed + 1 * C, y, ht); break;
        case 2: linear(s, &b->v, mixed + 2 * C, y, ht); break;
        case 3:
            if (b->gated) linear(s, &b->g, mixed + 4 * C, y, ht);
            break;
        case 4:
            if (b->dynamic) lora(s, &b->decay_w1, &b->decay_w2, mixed, y, ht, TANH);
            break;
        }
    }
}

/* One token through block b: x [C] is updated in place; the block's state (att, ffn [C],
 * S [H][N][N]) is read and its successor written to att_out, ffn_out, T (which may alias
 * the inputs). work: rwkv6_block_floats(b) floats; rows: F ints. Returns channel_mix's
 * FFN_COUNTS. */
int64_t rwkv6_block(const settings_t *s, const block6_t *b, float *x, const float *att, float *att_out,
                    const float *ffn, float *ffn_out, const float *S, float *T, float *work, int32_t *rows) {
    const int64_t C = b->C, A = b->A;
    float *xa = work, *mixed = xa + C, *out = mixed + 6 * C, *r = out + 2 * C, *k = r + A, *v = k + A, *g = v + A,
          *w = g + A, *y = w + A, *m = y + A, *h = m + 5 * b->D;
    /* time mix: token shift, projections, decay and gate, WKV */
    layer_norm(x, b->ln1w, b->ln1b, C, 1e-5f, xa);
    token_shift6(s, b, xa, att, mixed, m);
    memcpy(att_out, xa, C * sizeof *xa);
    projections6(s, b, mixed, r, h);  /* r k v g w, consecutive */
    for (int64_t c = 0; c < A; c++) {
        w[c] = b->dynamic ? expf(-expf(b->decay[c] + w[c])) : b->decay[c];
        g[c] = b->gated ? g[c] * sigmoidf(g[c]) : 1.f;  /* silu */
    }
    rwkv6_time_mix(s, S, T, r, k, v, w, b->u, b->lnxw, b->lnxb, g, b->H, b->N, (float)b->eps, y);
    linear(s, &b->o, y, out, h);
    for (int64_t c = 0; c < C; c++) x[c] += out[c];

    /* channel mix (its workspace from the start: the time mix's is no longer needed; h after it) */
    float *hc = work + gated_channel_mix_floats(&b->ffn, C);
    return gated_channel_mix(s, &b->ffn, &b->fr, b->ln2w, b->ln2b, b->ffn_shift, C, x, ffn, ffn_out, work, hc, rows);
}
