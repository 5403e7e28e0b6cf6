/* One RWKV-5 or RWKV-6 token's WKV, group norm and gate, in C (runtime/model.py's Block5 and
 * Block6 do the rest in numpy; its time_mix6 in numpy is the fallback and the tests' oracle). */
#include "kernels.h"

/* Per head h (N channels), S: [N (key)][N (value)]:
 *   y = r (S + diag(u) k^T v),   S' = diag(w) S + k^T v
 *   out = group_norm(y) * ln_w + ln_b, times g
 * (model/rwkv5.py and rwkv6.py, TimeMix.forward, with w the per-step decay exp(-exp(.))). S' goes to T,
 * which may be S; threads split the heads. */
void rwkv6_time_mix(const float *S, float *T, const float *r, const float *k, const float *v, const float *w,
                    const float *u, const float *ln_w, const float *ln_b, const float *g, int64_t H, int64_t N,
                    float eps, float *out) {
#pragma omp parallel for schedule(static) if (3 * H * N * N >= parallel_min)  /* ~3 multiply-adds per state entry */
    for (int64_t h = 0; h < H; h++) {
        float y[N];  /* N: the head size, 64 */
        const int64_t o = h * N;
        for (int64_t j = 0; j < N; j++) y[j] = 0.f;
        for (int64_t i = 0; i < N; i++) {  /* row i of S: key channel i */
            const float *s = S + (o + i) * N;
            float *t = T + (o + i) * N;
            const float ri = r[o + i], ki = k[o + i], wi = w[o + i], rku = ri * ki * u[o + i];
            for (int64_t j = 0; j < N; j++) {
                const float kv = ki * v[o + j];
                y[j] += ri * s[j] + rku * v[o + j];
                t[j] = wi * s[j] + kv;
            }
        }
        head_norm(y, N, eps);
        for (int64_t j = 0; j < N; j++) out[o + j] = (y[j] * ln_w[o + j] + ln_b[o + j]) * g[o + j];
    }
}
