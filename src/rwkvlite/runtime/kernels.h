/* What kernels.c offers rwkv7.c and rwkv6.c (the packed matrix-vector kernels, layouts in
 * kernels.c), and blocks.c the parts of a block they share. */
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

/* ---------------------------------------------------------------- blocks.c
 * The structs are mirrored by ctypes in runtime/kernels.py; every field is 8 bytes wide. */
enum { MAT_F16 = 1, MAT_SQ = 2, MAT_VQ = 3, MAT_F32 = 4 };

/* A matrix as stored (runtime/matrix.py, weights_args) */
typedef struct {
    int64_t kind, rows, cols, stride, qbytes, zstride, bits, dim, group;
    const void *q, *scale, *zero;  /* f16/f32: q is W; vq: zero holds the codebooks */
    const int32_t *perm;           /* act-order: stored column j multiplies x[perm[j]] */
    float *tmp;                    /* cols floats when perm is set */
} mat_t;

/* A projection: W x, or low-rank w2 (w1 x) / w2 relu(w1 x)^2 + diag * x (passes/lowrank.py) */
typedef struct {
    mat_t W, w1, w2;
    int64_t lowrank;    /* 0: plain W, 1: "linear", 2: "relu" */
    const float *diag;  /* or NULL */
} linear_t;

/* The FFN's predicted-active neurons (passes/ffn_predictor.py): MLP OR the top `keep` share
 * of a 1-bit (or decoded n-bit) copy of the key */
typedef struct {
    mat_t m1, m2, copy;  /* copy: sign bits (mv_bits: q and stride; then scale: row scales), or f32 */
    const float *b1, *cut, *scale;
    double keep;
} predictor_t;

/* The channel mix's key and value, W_v relu(W_k x)^2, and which neurons it computes */
typedef struct {
    mat_t fk, fv;
    int64_t fv_transposed, predicted;
    predictor_t pred;
} ffn_t;

enum { PLAIN, TANH, SIGMOID };

static inline float sigmoidf(float x) { return 1.f / (1.f + expf(-x)); }

void mat_mv(const mat_t *m, const float *x, float *y, const int32_t *rows, int64_t n);
void mat_rmv(const mat_t *m, const float *a, float *y, const int32_t *rows, int64_t n);
void linear(const linear_t *l, const float *x, float *y, float *h);
void lora(const mat_t *A, const mat_t *B, const float *x, float *y, float *h, int f);
void layer_norm(const float *x, const float *w, const float *b, int64_t n, float eps, float *out);
int64_t channel_mix_floats(const ffn_t *f);
/* the channel mix's two counts in one return value (channel_mix, and the blocks that return
 * its result): key rows computed, and 2^32 times the value rows read (runtime/model.py,
 * OneCall.count) */
#define FFN_COUNTS(keys, values) ((int64_t)(keys) | (int64_t)(values) << 32)
int64_t channel_mix(const ffn_t *f, int64_t C, const float *x, float *u, int32_t *rows, float *work);
int64_t gated_channel_mix_floats(const ffn_t *f, int64_t C);
int64_t gated_channel_mix(const ffn_t *f, const linear_t *fr, const float *ln2w, const float *ln2b, const float *shift,
                          int64_t C, float *x, const float *ffn, float *ffn_out, float *work, float *h, int32_t *rows);
#endif
