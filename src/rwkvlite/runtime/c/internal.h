/* What the kernel sources share and do not export: threading under a settings_t, the code
 * reader every path falls back to, the SIMD helpers of this build's architecture (simd.h), and
 * the parts of a block that rwkv7.c, rwkv6.c and rwkv4.c take from blocks.c. */
#ifndef RWKVLITE_INTERNAL_H
#define RWKVLITE_INTERNAL_H
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "kernels.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
/* helpers whose arguments must be constants where they are called (a code width, a block
 * width), so each call site gets its own loop */
#define ALWAYS_INLINE inline __attribute__((always_inline))
#define HIDDEN __attribute__((visibility("hidden")))  /* shared between the sources, not exported */
#define MAY_BE_UNUSED __attribute__((unused))         /* a header's helper that some sources do not call */

#ifdef _OPENMP
#define THREAD_ID omp_get_thread_num()
#define NUM_THREADS omp_get_num_threads()
#else
#define THREAD_ID 0
#define NUM_THREADS 1
#endif

/* the team of a parallel region under s (a num_threads clause) */
static inline int team(const settings_t *s) { return s->threads > 0 ? (int)s->threads : default_threads(); }

/* the threads a region of `work` multiply-adds gets: one when small or already inside a
 * parallel region (a kernel called from a block's projection task runs on its caller's thread) */
static inline int share_threads(const settings_t *s, int64_t work) {
#ifdef _OPENMP
    return work >= s->parallel_min && !omp_in_parallel() ? team(s) : 1;
#else
    (void)s, (void)work;
    return 1;
#endif
}

/* the range [c0, c1) of thread t of nt over `cols` items, in whole multiples of `align` */
static inline void column_share(int64_t cols, int64_t align, int t, int nt, int64_t *c0, int64_t *c1) {
    int64_t units = (cols + align - 1) / align;
    *c0 = MIN(cols, units * t / nt * align);
    *c1 = MIN(cols, units * (t + 1) / nt * align);
}

/* code j of a row of `bits`-bit codes (a little-endian bit stream) */
static inline uint32_t code_at(const uint8_t *row, int64_t j, int bits) {
    int64_t bit = j * bits;
    const uint8_t *p = row + (bit >> 3);
    int shift = bit & 7, need = (shift + bits + 7) >> 3;  /* never reads past the code's last byte */
    uint32_t word = p[0];
    for (int b = 1; b < need; b++) word |= (uint32_t)p[b] << (8 * b);
    return (word >> shift) & ((1u << bits) - 1);
}

#include "simd.h"

/* ---------------------------------------------------------------- block parts (blocks.c) */
enum { PLAIN, TANH, SIGMOID };

static inline float sigmoidf(float x) { return 1.f / (1.f + expf(-x)); }

/* one head's N outputs normalised in place, y <- (y - mean) / sqrt(var + eps): GroupNorm of
 * one group, before its weight and bias (rwkv7.c, rwkv6.c) */
static inline void head_norm(float *y, int64_t N, float eps) {
    float mean = 0.f, var = 0.f;
    for (int64_t j = 0; j < N; j++) mean += y[j];
    mean /= N;
    for (int64_t j = 0; j < N; j++) var += (y[j] - mean) * (y[j] - mean);
    const float inv = 1.f / sqrtf(var / N + eps);
    for (int64_t j = 0; j < N; j++) y[j] = (y[j] - mean) * inv;
}

/* the channel mix's two counts in one return value (channel_mix, and the blocks that return
 * its result): key rows computed, and 2^32 times the value rows read (runtime/layers.py,
 * SparseFfn.count) */
#define FFN_COUNTS(keys, values) ((int64_t)(keys) | (int64_t)(values) << 32)

HIDDEN void mat_mv(const settings_t *s, const mat_t *m, const float *x, float *y, const int32_t *rows, int64_t n);
HIDDEN void mat_rmv(const settings_t *s, const mat_t *m, const float *a, float *y, const int32_t *rows, int64_t n);
HIDDEN void linear(const settings_t *s, const linear_t *l, const float *x, float *y, float *h);
HIDDEN void lora(const settings_t *s, const mat_t *A, const mat_t *B, const float *x, float *y, float *h, int f);
HIDDEN void layer_norm(const float *x, const float *w, const float *b, int64_t n, float eps, float *out);
HIDDEN int64_t channel_mix_floats(const ffn_t *f);
HIDDEN int64_t channel_mix(const settings_t *s, const ffn_t *f, int64_t C, const float *x, float *u, int32_t *rows,
                           float *work);
HIDDEN int64_t gated_channel_mix_floats(const ffn_t *f, int64_t C);
HIDDEN int64_t gated_channel_mix(const settings_t *s, const ffn_t *f, const linear_t *fr, const float *ln2w,
                                 const float *ln2b, const float *shift, int64_t C, float *x, const float *ffn,
                                 float *ffn_out, float *work, float *h, int32_t *rows);

/* mv_sq's int8-x tier (q8.c): false, computing nothing, where it does not apply (exact mode,
 * a build without AVX-512 VBMI and VNNI, groups neither 32 nor a multiple of 64) */
HIDDEN int mv_sq_q8(const settings_t *s, const uint8_t *Q, int64_t qstride, int64_t qbytes, const f16 *S,
                    const uint8_t *Z, int64_t zstride, int bits, int64_t group, int64_t cols, const float *x, float *y,
                    const int32_t *rows, int64_t n);

/* Defence in depth: the format layer validates every file before a kernel runs, but a kernel
 * still never divides by, shifts by or sizes a table from an argument outside what it was
 * written for. Such a call computes nothing: mv leaves y as zeros, axpy leaves y as it was. */
static inline int sq_args_ok(int bits, int64_t group, int64_t cols, int64_t n) {
    return bits >= 1 && bits <= 8 && group >= 1 && cols >= 0 && n >= 0;
}
static inline int vq_args_ok(int bits, int dim, int64_t group, int64_t cols, int64_t n) {
    return bits >= 1 && bits <= 16 && (dim == 1 || dim == 2) && group >= dim && group % dim == 0 && cols >= 0 &&
           cols % dim == 0 && n >= 0;
}
static inline void zero_rows(float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = 0.f;
}

#endif
