/* One RWKV-4 token through one block, in C: runtime/rwkv4.py's Rwkv4Block step (which does the
 * same in numpy, as the fallback and the tests' oracle) in one foreign call per block. The
 * channel mix and the projections are blocks.c's; block4_t: kernels.h. */
#include "internal.h"

int64_t rwkv4_block_floats(const block4_t *b) {
    return MAX(5 * b->C + 4 * b->A, gated_channel_mix_floats(&b->ffn, b->C)) + 3 * b->hidden;
}

/* Per channel c, with the state (aa, bb, pp) in S's rows 0, 1, 2 ([3][A]):
 *   p = max(pp, u + k):  y = sigmoid(r) (e^(pp-p) aa + e^(u+k-p) v) / (e^(pp-p) bb + e^(u+k-p))
 *   q = max(pp + w, k):  aa, bb, pp <- e^(pp+w-q) aa + e^(k-q) v,  e^(pp+w-q) bb + e^(k-q),  q
 * (model/wkv.py, wkv4_step); the new state goes to T, which may be S. */
static void wkv4(const float *S, float *T, const float *r, const float *k, const float *v, const float *w,
                 const float *u, int64_t A, float *y) {
    for (int64_t c = 0; c < A; c++) {
        const float aa = S[c], bb = S[A + c], pp = S[2 * A + c];
        float ww = u[c] + k[c], p = fmaxf(pp, ww), e1 = expf(pp - p), e2 = expf(ww - p);
        y[c] = sigmoidf(r[c]) * (e1 * aa + e2 * v[c]) / (e1 * bb + e2);
        ww = pp + w[c], p = fmaxf(ww, k[c]), e1 = expf(ww - p), e2 = expf(k[c] - p);
        T[c] = e1 * aa + e2 * v[c], T[A + c] = e1 * bb + e2, T[2 * A + c] = p;
    }
}

/* One token through block b: x [C] is updated in place; the block's state (att, ffn [C],
 * S [3][A]) is read and its successor written to att_out, ffn_out, T (which may alias the
 * inputs). work: rwkv4_block_floats(b) floats; rows: F ints. Returns channel_mix's FFN_COUNTS. */
int64_t rwkv4_block(const settings_t *s, const block4_t *b, float *x, const float *att, float *att_out,
                    const float *ffn, float *ffn_out, const float *S, float *T, float *work, int32_t *rows) {
    const int64_t C = b->C, A = b->A;
    float *xa = work, *mixed = xa + C, *out = mixed + 3 * C, *r = out + C, *k = r + A, *v = k + A, *y = v + A,
          *h = work + rwkv4_block_floats(b) - 3 * b->hidden;  /* h last: the channel mix's workspace starts at work */
    /* time mix: token shift, r k v (a task each, as in rwkv7.c's projections), WKV, output */
    layer_norm(x, b->ln1w, b->ln1b, C, 1e-5f, xa);
    for (int64_t j = 0; j < 3; j++)
        for (int64_t c = 0; c < C; c++) mixed[j * C + c] = xa[c] + (att[c] - xa[c]) * b->shift[j * C + c];
    memcpy(att_out, xa, C * sizeof *xa);
#pragma omp parallel for schedule(dynamic, 1) if (3 * C * A >= s->parallel_min) num_threads(team(s))
    for (int64_t t = 0; t < 3; t++) {
        const linear_t *l = t == 0 ? &b->r : t == 1 ? &b->k : &b->v;
        linear(s, l, mixed + t * C, r + t * A, h + t * b->hidden);
    }
    wkv4(S, T, r, k, v, b->w, b->u, A, y);
    linear(s, &b->o, y, out, h);
    for (int64_t c = 0; c < C; c++) x[c] += out[c];

    return gated_channel_mix(s, &b->ffn, &b->fr, b->ln2w, b->ln2b, b->ffn_shift, C, x, ffn, ffn_out, work, h, rows);
}
