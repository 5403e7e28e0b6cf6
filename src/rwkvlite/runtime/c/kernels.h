/* The C kernels' interface: the settings every call runs under, the structs that describe
 * matrices and blocks, and the exported functions (called through ctypes by runtime/native.py,
 * which mirrors the structs; rwkvlite_sizeof and rwkvlite_offsetof let a test check that mirror).
 * Every struct field is 8 bytes wide. Layouts of the packed matrices: docs/kernels.md. */
#ifndef RWKVLITE_KERNELS_H
#define RWKVLITE_KERNELS_H
#include <stdint.h>

typedef _Float16 f16;

/* How the kernels run (runtime/native.py, Settings); passed to every call that depends on it */
typedef struct {
    int64_t threads;       /* OpenMP threads of a parallel region; <= 0: default_threads() */
    int64_t exact;         /* 1: float32 x in every kernel; 0: x rounded to integers on the integer paths */
    int64_t parallel_min;  /* a call with fewer multiply-adds runs on one thread (thread start-up costs about as
                              much as ~64K multiply-adds; 0 in the tests, to take the threaded paths) */
} settings_t;

/* ---------------------------------------------------------------- matrices */
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

/* ---------------------------------------------------------------- blocks */
/* RWKV-7 (rwkv7.c) */
typedef struct {
    int64_t C, H, N, first, hidden;  /* hidden: the widest inner dimension (LoRA, low rank) */
    double eps;                      /* ln_x */
    const float *ln1w, *ln1b, *ln2w, *ln2b, *mix /* [6][C]: r w k v a g */, *w0, *a0, *k_k, *k_a, *r_k, *v0, *lnxw,
        *lnxb, *x_k;
    linear_t r, k, v, o;
    mat_t w1, w2, a1, a2, g1, g2, v1, v2;
    ffn_t ffn;
} block7_t;

/* RWKV-5 and RWKV-6 (rwkv6.c) */
typedef struct {
    int64_t C, A, H, N, D, hidden;  /* A: attention width; D: width of each mix's LoRA (RWKV-6); hidden: the widest
                                       inner dimension (low rank, decay LoRA) */
    int64_t dynamic, gated;         /* dynamic: RWKV-6's input-made mixes and decay; gated: all but RWKV-5.0 */
    double eps;                     /* ln_x */
    const float *ln1w, *ln1b, *ln2w, *ln2b;
    const float *shift;      /* [5][C], for w k v r g: x' = x + (x_{t-1} - x) shift (RWKV-5: 1 - time_mix; RWKV-6: maa) */
    const float *maa_x;      /* RWKV-6: [C], the mixes' LoRA input x + dx maa_x */
    const int32_t *up_rows;  /* RWKV-6: 0..5D, rows of maa_w2 (mix i: rows iD..iD+D) */
    const float *decay;      /* RWKV-6: time_decay [A], before exp(-exp(. + LoRA)); RWKV-5: the decay w itself */
    const float *u, *lnxw, *lnxb;
    const float *ffn_shift;  /* [2][C], for k r, as shift */
    linear_t r, k, v, g, o, fr;
    mat_t maa_w1, maa_w2, decay_w1, decay_w2;  /* maa_w2: the mixes' five up-projections as one [5D, C] */
    ffn_t ffn;
} block6_t;

/* RWKV-4 (rwkv4.c) */
typedef struct {
    int64_t C, A, hidden;  /* hidden: the widest low-rank inner dimension (1 if none) */
    const float *ln1w, *ln1b, *ln2w, *ln2b, *shift /* [3][C]: r k v, 1 - time_mix */,
        *ffn_shift /* [2][C]: k r */, *w /* -exp(time_decay) */, *u /* time_first */;
    linear_t r, k, v, o, fr;
    ffn_t ffn;
} block4_t;

/* ---------------------------------------------------------------- the library (threads.c, layout.c) */
/* The version of this interface, read by bench/runtime_ab.py before it runs two builds under
 * one Python: raised whenever a struct's layout or an exported function's arguments change. */
extern const int64_t rwkvlite_abi;
/* The SIMD tiers this build has, as bits (runtime/native.py: Kernels.int8_x). TIER_INT8_X: the fast
 * mode rounds x per 32 columns and multiplies it as two int8 planes, for 5-7-bit scalar codes
 * (q8.c; runtime/fast.py is its reference), where other builds round x to int16 per group. */
enum { TIER_AVX2 = 1, TIER_AVX512 = 2, TIER_INT8_X = 4 };
int64_t rwkvlite_tiers(void);
int64_t rwkvlite_sizeof(const char *type);                     /* -1: no such struct */
int64_t rwkvlite_offsetof(const char *type, const char *field);  /* -1: no such field */
int default_threads(void);                                     /* OpenMP's default team size (1 without it) */
double read_sum(const settings_t *s, const float *p, int64_t n);  /* read bandwidth: the sum of n floats */

/* ---------------------------------------------------------------- matrix-vector kernels
 *   mv_*    y[i] = W[row_i] . x         (rows == NULL: all rows; n results)
 *   axpy_*  y   += sum_i a[i] W[row_i]  (rows of a transposed matrix) */
void mv_f16(const settings_t *s, const f16 *W, int64_t cols, const float *x, float *y, const int32_t *rows, int64_t n);
void axpy_f16(const settings_t *s, const f16 *W, int64_t cols, const float *a, float *y, const int32_t *rows,
              int64_t n);
void mv_sq(const settings_t *s, const uint8_t *Q, int64_t qstride, int64_t qbytes, const f16 *S, const uint8_t *Z,
           int64_t zstride, int bits, int64_t group, int64_t cols, const float *x, float *y, const int32_t *rows,
           int64_t n);
void axpy_sq(const settings_t *s, const uint8_t *Q, int64_t qstride, int64_t qbytes, const f16 *S, const uint8_t *Z,
             int64_t zstride, int bits, int64_t group, int64_t cols, const float *a, float *y, const int32_t *rows,
             int64_t n);
void mv_vq(const settings_t *s, const uint8_t *Q, int64_t qstride, int64_t qbytes, const int8_t *book,
           const f16 *bscale, int bits, int dim, int64_t group, int64_t cols, const float *x, float *y,
           const int32_t *rows, int64_t n);
void axpy_vq(const settings_t *s, const uint8_t *Q, int64_t qstride, int64_t qbytes, const int8_t *book,
             const f16 *bscale, int bits, int dim, int64_t group, int64_t cols, const float *a, float *y,
             const int32_t *rows, int64_t n);
void mv_bits(const settings_t *s, const uint8_t *Q, int64_t qstride, int64_t cols, const float *x, float *y,
             int64_t n);

/* ---------------------------------------------------------------- the clustered head (head.c) */
int64_t head_rows(const int32_t *picked, const int32_t *cluster, int64_t V, int32_t *rows);
void head_logprobs(const float *logits, int64_t n, const int32_t *picked, const int32_t *cluster, const float *base,
                   int64_t V, double log_mass, float *out);

/* ---------------------------------------------------------------- one token through one block
 * x [C] is updated in place; the block's state is read from att, ffn, S and its successor
 * written to att_out, ffn_out, T (which may alias them). work: *_block_floats(b) floats; rows:
 * one int per FFN neuron. They return the channel mix's counts, FFN_COUNTS (internal.h). */
int64_t rwkv7_block_floats(const block7_t *b);
int64_t rwkv7_block(const settings_t *s, const block7_t *b, float *x, const float *att, float *att_out,
                    const float *ffn, float *ffn_out, const float *S, float *T, float *v_first, float *work,
                    int32_t *rows);
void rwkv7_time_mix(const settings_t *s, const float *S, float *T, const float *r, const float *w_raw, const float *k,
                    const float *v, const float *a_raw, const float *k_k, const float *k_a, const float *r_k,
                    const float *ln_w, const float *ln_b, const float *g, int64_t H, int64_t N, float eps, float *out);
int64_t rwkv6_block_floats(const block6_t *b);
int64_t rwkv6_block(const settings_t *s, const block6_t *b, float *x, const float *att, float *att_out,
                    const float *ffn, float *ffn_out, const float *S, float *T, float *work, int32_t *rows);
void rwkv6_time_mix(const settings_t *s, const float *S, float *T, const float *r, const float *k, const float *v,
                    const float *w, const float *u, const float *ln_w, const float *ln_b, const float *g, int64_t H,
                    int64_t N, float eps, float *out);
int64_t rwkv4_block_floats(const block4_t *b);
int64_t rwkv4_block(const settings_t *s, const block4_t *b, float *x, const float *att, float *att_out,
                    const float *ffn, float *ffn_out, const float *S, float *T, float *work, int32_t *rows);
#endif
