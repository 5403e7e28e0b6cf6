/* What kernels.c offers rwkv7.c: the packed matrix-vector kernels (layouts in kernels.c). */
#ifndef RWKVLITE_KERNELS_H
#define RWKVLITE_KERNELS_H
#include <math.h>
#include <stdint.h>

typedef _Float16 f16;

/* a kernel call with fewer multiply-adds than this runs on one thread (thread start-up costs
 * about as much as ~64K multiply-adds); 0 in the tests, to take the threaded paths on small models */
extern int64_t parallel_min;
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

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

void mv_f16(const f16 *W, int64_t cols, const float *x, float *y, const int32_t *rows, int64_t n);
void axpy_f16(const f16 *W, int64_t cols, const float *a, float *y, const int32_t *rows, int64_t n);
void mv_sq(const uint8_t *Q, int64_t qstride, int64_t qbytes, const f16 *S, const uint8_t *Z, int64_t zstride, int bits,
           int64_t group, int64_t cols, const float *x, float *y, const int32_t *rows, int64_t n);
void axpy_sq(const uint8_t *Q, int64_t qstride, int64_t qbytes, const f16 *S, const uint8_t *Z, int64_t zstride, int bits,
             int64_t group, int64_t cols, const float *a, float *y, const int32_t *rows, int64_t n);
void mv_vq(const uint8_t *Q, int64_t qstride, int64_t qbytes, const int8_t *book, const f16 *bscale, int bits, int dim,
           int64_t group, int64_t cols, const float *x, float *y, const int32_t *rows, int64_t n);
void axpy_vq(const uint8_t *Q, int64_t qstride, int64_t qbytes, const int8_t *book, const f16 *bscale, int bits, int dim,
             int64_t group, int64_t cols, const float *a, float *y, const int32_t *rows, int64_t n);
void mv_bits(const uint8_t *Q, int64_t qstride, int64_t cols, const float *x, float *y, int64_t n);
#endif
