/* Matrix-vector kernels on packed weights, for the lean runtime (runtime/kernels.py builds
 * this with gcc -O3 -march=native -fopenmp on first use and calls it through ctypes).
 *
 * Layouts are the file's (format/encodings.py): codes are a little-endian bit stream per
 * row, each row starting on a byte boundary; scales and codebook scales are float16.
 *   sq: w[r][c] = scale[r][c/g] * (q[r][c] - zero[r][c/g])
 *   vq: w[r][c..c+d) = cscale[c/g] * codebook[c/g][q[r][c/d]][0..d)
 * Every kernel takes an optional row list (rows == NULL: all rows), so the runtime reads
 * only the rows it needs (predicted-active FFN neurons, chosen head clusters, ...).
 *   mv_*    y[i] = W[row_i] . x                 (threads split the rows)
 *   axpy_*  y   += sum_i a[i] W[row_i]          (rows of a transposed matrix; threads split y)
 * Accumulation is float32, or int32 within a group on the int16-x paths (mv_sq, mv_bits).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "kernels.h"
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__F16C__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define HAVE_AVX2 1  /* gcc converts _Float16 one value at a time otherwise */
#if defined(__AVX512BW__) && defined(__AVX512F__) && defined(__AVX512VL__)
#define HAVE_PERMW 1  /* AVX-512: 64-entry int16 table lookups (VQ centroids), 32-code rows, masked loads */
#endif
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define DOT16(acc, a, b) _mm256_dpwssd_epi32(acc, a, b)  /* acc += pairwise int16 products, one instruction */
#else
#define DOT16(acc, a, b) _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
#endif
#ifdef HAVE_PERMW
#ifdef __AVX512VNNI__
#define DOT16X(acc, a, b) _mm512_dpwssd_epi32(acc, a, b)
#else
#define DOT16X(acc, a, b) _mm512_add_epi32(acc, _mm512_madd_epi16(a, b))
#endif
#endif
#endif


#ifdef _OPENMP
/* A kernel called inside a parallel region (rwkv7.c's projection tasks) runs on its caller's
 * thread alone, whatever OMP_NESTED or OMP_MAX_ACTIVE_LEVELS say */
__attribute__((constructor)) static void one_level(void) { omp_set_max_active_levels(1); }
#endif

int64_t parallel_min = 65536;

/* The version of this C interface, read by bench/runtime_ab.py before it runs two builds
 * under one Python: raised whenever a struct's layout (kernels.h, rwkv7.c, rwkv6.c, rwkv4.c,
 * mirrored in runtime/kernels.py) or an exported function's arguments change. 1: builds up to
 * 0c54227, which lack this symbol; 2 changed the clustered head's calls (b623e85; the builds
 * from there to efacf62 lack the symbol too, and read as 1); 3 made the blocks return two FFN
 * counts (FFN_COUNTS); 4 dropped block7_t's unread F; 5 added rwkv4.c's block. */
const int64_t rwkvlite_abi = 5;

int threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void set_threads(int n) {
#ifdef _OPENMP
    if (n > 0) omp_set_num_threads(n);
#else
    (void)n;
#endif
}

static inline uint32_t code_at(const uint8_t *row, int64_t j, int bits) {
    int64_t bit = j * bits;
    const uint8_t *p = row + (bit >> 3);
    int shift = bit & 7, need = (shift + bits + 7) >> 3;  /* never reads past the code's last byte */
    uint32_t word = p[0];
    for (int b = 1; b < need; b++) word |= (uint32_t)p[b] << (8 * b);
    return (word >> shift) & ((1u << bits) - 1);
}

#ifdef HAVE_AVX2
/* Unpacking 16 codes of 1-8 bits (2*bits bytes) into 16-bit lanes: a byte shuffle puts the
 * two bytes holding code j into lane j, a multiply by 2^(16-bits-s) moves the code's top bit
 * to bit 15 (s: its offset in the pair) and a shift by 16-bits brings it down. */
typedef struct { __m256i shuffle, shuffle2, mul; int bits; } unpacker;

/* the shuffle (two source bytes per 16-bit lane) and multiplier of codes 0..n-1, all read
 * from one 16-byte load (n * bits <= 128, or only the first 16 codes used) */
static void unpack_tables(int bits, int n, uint8_t *sh, int16_t *mul) {
    for (int j = 0; j < n; j++) {
        int bit = j * bits, b = bit >> 3, s = bit & 7;
        sh[2 * j] = (uint8_t)b;
        sh[2 * j + 1] = s + bits > 8 ? (uint8_t)(b + 1) : 0x80;  /* 0x80: a zero byte */
        mul[j] = (int16_t)(1u << (16 - bits - s));
    }
}

static unpacker make_unpacker(int bits) {  /* 1 <= bits <= 8 (wider codes: scalar paths) */
    if (bits > 8) bits = 8;
    uint8_t sh[32], sh2[32];  /* sh2: the next 16 codes, 2*bits bytes on (bits <= 4) */
    int16_t mul[16];
    unpack_tables(bits, 16, sh, mul);
    for (int j = 0; j < 32; j++) sh2[j] = bits <= 4 && sh[j] != 0x80 ? sh[j] + 2 * bits : 0x80;
    unpacker u = {_mm256_loadu_si256((const __m256i *)sh), _mm256_loadu_si256((const __m256i *)sh2),
                  _mm256_loadu_si256((const __m256i *)mul), bits};
    return u;
}

static inline __m256i unpack_with(__m256i raw2, __m256i shuffle, const unpacker *u) {
    return _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(raw2, shuffle), u->mul), 16 - u->bits);
}

static inline __m256i unpack_raw(__m128i raw, const unpacker *u) {
    return unpack_with(_mm256_broadcastsi128_si256(raw), u->shuffle, u);
}

/* codes c..c+16 from a row at q (c a multiple of 16) as uint16 lanes. The load reads 16
 * bytes; `avail` is how many bytes from q on may be read (the rest of the matrix and what
 * follows it in memory), so only near the very end are the 2*bits bytes copied out first. */
static inline __m256i unpack16(const uint8_t *q, int64_t c, int64_t avail, const unpacker *u) {
    int64_t at = c / 8 * u->bits;
    if (u->bits == 8) return _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(q + at)));
    if (at + 16 <= avail) return unpack_raw(_mm_loadu_si128((const __m128i *)(q + at)), u);
    uint8_t tail[16] = {0};
    memcpy(tail, q + at, 2 * u->bits);
    return unpack_raw(_mm_loadu_si128((const __m128i *)tail), u);
}

#ifdef HAVE_PERMW
/* sum over bits c0..c1 (c0 a multiple of 8, whole 32-bit chunks) of bit * xq, in 16 int32
 * lanes: 32 bits are a mask making a 0/1 int16 vector for one multiply-add with x (1-bit sq
 * codes in int_dot; the predictors' sign copies in mv_bits) */
static inline __m512i bits_dot(const uint8_t *q, const int16_t *xq, int64_t c, int64_t end) {
    const __m512i one = _mm512_set1_epi16(1);
    __m512i a = _mm512_setzero_si512(), b = a, a2 = a, b2 = a;
    uint32_t m0, m1, m2, m3;
    for (; c + 128 <= end; c += 128) {  /* four chains: a multiply-add's latency is ~4 of its issue intervals */
        memcpy(&m0, q + c / 8, 4), memcpy(&m1, q + c / 8 + 4, 4), memcpy(&m2, q + c / 8 + 8, 4), memcpy(&m3, q + c / 8 + 12, 4);
        a = DOT16X(a, _mm512_maskz_mov_epi16(_cvtu32_mask32(m0), one), _mm512_loadu_si512(xq + c));
        b = DOT16X(b, _mm512_maskz_mov_epi16(_cvtu32_mask32(m1), one), _mm512_loadu_si512(xq + c + 32));
        a2 = DOT16X(a2, _mm512_maskz_mov_epi16(_cvtu32_mask32(m2), one), _mm512_loadu_si512(xq + c + 64));
        b2 = DOT16X(b2, _mm512_maskz_mov_epi16(_cvtu32_mask32(m3), one), _mm512_loadu_si512(xq + c + 96));
    }
    a = _mm512_add_epi32(a, a2), b = _mm512_add_epi32(b, b2);
    for (; c + 64 <= end; c += 64) {
        memcpy(&m0, q + c / 8, 4), memcpy(&m1, q + c / 8 + 4, 4);
        a = DOT16X(a, _mm512_maskz_mov_epi16(_cvtu32_mask32(m0), one), _mm512_loadu_si512(xq + c));
        b = DOT16X(b, _mm512_maskz_mov_epi16(_cvtu32_mask32(m1), one), _mm512_loadu_si512(xq + c + 32));
    }
    if (c < end) {
        memcpy(&m0, q + c / 8, 4);
        a = DOT16X(a, _mm512_maskz_mov_epi16(_cvtu32_mask32(m0), one), _mm512_loadu_si512(xq + c));
    }
    return _mm512_add_epi32(a, b);
}
#endif

/* sum over codes c0..c1 (whole 16-code chunks) of code * xq, in 8 int32 lanes: the general
 * case (1-bit codes, a matrix's last rows, partial groups); row_int below is the fast one */
static inline __m256i int_dot(const uint8_t *q, int64_t c0, int64_t c1, int64_t avail, const unpacker *u,
                              const int16_t *xq) {
    __m256i acc = _mm256_setzero_si256();
    int64_t c = c0;
#define MADD(acc, codes, at) acc = DOT16(acc, codes, _mm256_loadu_si256((const __m256i *)(xq + (at))))
#ifdef HAVE_PERMW
    if (u->bits == 1) {  /* 1-bit codes: bits_dot over the whole 32-bit chunks */
        const int64_t end = c0 + (c1 - c0) / 32 * 32;
        const __m512i wide = bits_dot(q, xq, c0, end);
        acc = _mm256_add_epi32(_mm512_castsi512_si256(wide), _mm512_extracti64x4_epi64(wide, 1));
        c = end;
    }
#endif
    for (; c < c1; c += 16) MADD(acc, unpack16(q, c, avail, u), c);
#undef MADD
    return acc;
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 16 uint16 lanes as two vectors of 8 floats */
static inline void to_float(__m256i codes, __m256 *lo, __m256 *hi) {
    *lo = _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(codes)));
    *hi = _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(codes, 1)));
}
#endif

/* ---------------------------------------------------------------- float16 */

void mv_f16(const f16 *W, int64_t cols, const float *x, float *y, const int32_t *rows, int64_t n) {
#pragma omp parallel for schedule(static) if (n * cols >= parallel_min)
    for (int64_t i = 0; i < n; i++) {
        const f16 *w = W + (int64_t)(rows ? rows[i] : i) * cols;
        float acc = 0.f;
        int64_t c = 0;
        if (i + 4 < n) {  /* fetch four rows ahead */
            const f16 *next = W + (int64_t)(rows ? rows[i + 4] : i + 4) * cols;
            for (int64_t o = 0; o < cols; o += 32) __builtin_prefetch(next + o);
        }
#ifdef HAVE_PERMW
        __m512 u = _mm512_setzero_ps(), u1 = u, u2 = u, u3 = u;  /* 64 weights a step, 4 chains */
#define F16X16(o) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + c + (o))))
        for (; c + 64 <= cols; c += 64) {
            u = _mm512_fmadd_ps(F16X16(0), _mm512_loadu_ps(x + c), u);
            u1 = _mm512_fmadd_ps(F16X16(16), _mm512_loadu_ps(x + c + 16), u1);
            u2 = _mm512_fmadd_ps(F16X16(32), _mm512_loadu_ps(x + c + 32), u2);
            u3 = _mm512_fmadd_ps(F16X16(48), _mm512_loadu_ps(x + c + 48), u3);
        }
#undef F16X16
        acc = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(u, u1), _mm512_add_ps(u2, u3)));
#endif
#ifdef HAVE_AVX2
        __m256 v = _mm256_setzero_ps(), v1 = v, v2 = v, v3 = v;  /* 4 chains hide the FMA latency */
#define F16X8(o) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + c + (o))))
        for (; c + 32 <= cols; c += 32) {
            v = _mm256_fmadd_ps(F16X8(0), _mm256_loadu_ps(x + c), v);
            v1 = _mm256_fmadd_ps(F16X8(8), _mm256_loadu_ps(x + c + 8), v1);
            v2 = _mm256_fmadd_ps(F16X8(16), _mm256_loadu_ps(x + c + 16), v2);
            v3 = _mm256_fmadd_ps(F16X8(24), _mm256_loadu_ps(x + c + 24), v3);
        }
        for (; c + 8 <= cols; c += 8) v = _mm256_fmadd_ps(F16X8(0), _mm256_loadu_ps(x + c), v);
        acc += hsum(_mm256_add_ps(_mm256_add_ps(v, v1), _mm256_add_ps(v2, v3)));
#endif
        for (; c < cols; c++) acc += (float)w[c] * x[c];
        y[i] = acc;
    }
}

/* the column range [c0, c1) of thread t of nt, in whole multiples of `align` */
static void column_share(int64_t cols, int64_t align, int t, int nt, int64_t *c0, int64_t *c1) {
    int64_t units = (cols + align - 1) / align;
    *c0 = MIN(cols, units * t / nt * align);
    *c1 = MIN(cols, units * (t + 1) / nt * align);
}

static int share_threads(int64_t work) {
#ifdef _OPENMP
    return work >= parallel_min && !omp_in_parallel() ? omp_get_max_threads() : 1;
#else
    (void)work;
    return 1;
#endif
}

#ifdef _OPENMP
#define THREAD_ID omp_get_thread_num()
#define NUM_THREADS omp_get_num_threads()
#else
#define THREAD_ID 0
#define NUM_THREADS 1
#endif

/* y[c..c + L k) += sum_i a_i W[row_i][c..c + L k), k <= 8, for L = 16 (AVX-512) or 8 (AVX2)
 * columns a vector: the k vectors of y held in registers while the rows stream past, two
 * instructions per vector of weights */
#ifdef HAVE_PERMW
#define F16_LANES 16
static inline __attribute__((always_inline)) void f16_block(const f16 *W, int64_t cols, const float *a, float *y,
                                                            const int32_t *rows, int64_t n, int64_t c, const int k) {
    __m512 acc[8];
    for (int j = 0; j < k; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i++) {
        const f16 *w = W + (int64_t)(rows ? rows[i] : i) * cols + c;
        const __m512 va = _mm512_set1_ps(a[i]);
        for (int j = 0; j < k; j++)
            acc[j] = _mm512_fmadd_ps(va, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + 16 * j))), acc[j]);
    }
    for (int j = 0; j < k; j++) _mm512_storeu_ps(y + c + 16 * j, _mm512_add_ps(_mm512_loadu_ps(y + c + 16 * j), acc[j]));
}
#elif defined(HAVE_AVX2)
#define F16_LANES 8
static inline __attribute__((always_inline)) void f16_block(const f16 *W, int64_t cols, const float *a, float *y,
                                                            const int32_t *rows, int64_t n, int64_t c, const int k) {
    __m256 acc[8];
    for (int j = 0; j < k; j++) acc[j] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i++) {
        const f16 *w = W + (int64_t)(rows ? rows[i] : i) * cols + c;
        const __m256 va = _mm256_set1_ps(a[i]);
        for (int j = 0; j < k; j++)
            acc[j] = _mm256_fmadd_ps(va, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 8 * j))), acc[j]);
    }
    for (int j = 0; j < k; j++) _mm256_storeu_ps(y + c + 8 * j, _mm256_add_ps(_mm256_loadu_ps(y + c + 8 * j), acc[j]));
}
#endif

/* y[c0..c1) += sum_i a_i W[row_i][c0..c1): in blocks of 8 vectors of columns kept in registers
 * over all the rows (f16_block), the columns left over row by row */
static void axpy_f16_cols(const f16 *W, int64_t cols, const float *a, float *y, const int32_t *rows, int64_t n,
                          int64_t c0, int64_t c1) {
    int64_t c = c0;
#ifdef F16_LANES
    for (; c + 8 * F16_LANES <= c1; c += 8 * F16_LANES) f16_block(W, cols, a, y, rows, n, c, 8);
    if (c + F16_LANES <= c1) {
        const int k = (int)((c1 - c) / F16_LANES);
        f16_block(W, cols, a, y, rows, n, c, k);
        c += F16_LANES * k;
    }
#endif
    for (int64_t i = 0; c < c1 && i < n; i++) {
        const f16 *w = W + (int64_t)(rows ? rows[i] : i) * cols;
        for (int64_t d = c; d < c1; d++) y[d] += a[i] * (float)w[d];
    }
}

void axpy_f16(const f16 *W, int64_t cols, const float *a, float *y, const int32_t *rows, int64_t n) {
    if (cols <= 256) {  /* many short rows (LoRA factors [in, r]): on one thread, a fork would cost more */
        axpy_f16_cols(W, cols, a, y, rows, n, 0, cols);
        return;
    }
#pragma omp parallel num_threads(share_threads(n * cols))
    {   /* threads split the columns (in whole 16-column chunks) */
        int64_t c0, c1;
        column_share(cols, 16, THREAD_ID, NUM_THREADS, &c0, &c1);
        axpy_f16_cols(W, cols, a, y, rows, n, c0, c1);
    }
}

/* ---------------------------------------------------------------- scalar quantization */

/* 1: x is rounded to int16 per group (2^-15 of the group's largest |x|) and multiplied with
 * the integer codes (16 per madd); 0: float x throughout (RWKVLITE_EXACT=1) */
int int16_x = 1;

#ifdef HAVE_AVX2
/* x rounded to int16 per group of columns: xq[c] = round(x[c] / xs[g]), xs[g] = max |x| / 32767 */
static void quantize_x(const float *x, int64_t cols, int64_t group, int16_t *xq, float *xs) {
    for (int64_t g = 0; g * group < cols; g++) {
        int64_t c0 = g * group, c1 = MIN(cols, c0 + group);
        float m = 0.f;
        for (int64_t c = c0; c < c1; c++) m = fmaxf(m, fabsf(x[c]));
        float inv = m > 0 ? 32767.f / m : 0.f;
        xs[g] = m / 32767.f;
        int64_t c = c0;
#ifdef __AVX512F__  /* rounded as lrintf rounds (to nearest, ties to even): bit-identical, 16 at a time */
        for (const __m512 vinv = _mm512_set1_ps(inv); c + 16 <= c1; c += 16)
            _mm256_storeu_si256((__m256i *)(xq + c),
                                _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + c), vinv))));
#endif
        for (; c < c1; c++) xq[c] = (int16_t)lrintf(x[c] * inv);
    }
}
#endif

/* sum over the codes of one row and group times float x */
static float sq_group_float(const uint8_t *q, int64_t avail, int64_t c0, int64_t c1, int bits, const float *x,
                            const void *u_) {
    float acc = 0.f;
    int64_t c = c0;
#ifdef HAVE_AVX2
    const unpacker *u = u_;
    if ((c0 & 15) == 0) {
        __m256 v = _mm256_setzero_ps(), v1 = v;
        for (; c + 16 <= c1; c += 16) {
            __m256 lo, hi;
            to_float(unpack16(q, c, avail, u), &lo, &hi);
            v = _mm256_fmadd_ps(lo, _mm256_loadu_ps(x + c), v);
            v1 = _mm256_fmadd_ps(hi, _mm256_loadu_ps(x + c + 8), v1);
        }
        acc = hsum(_mm256_add_ps(v, v1));
    }
#else
    (void)avail, (void)u_;
#endif
    for (; c < c1; c++) acc += (float)code_at(q, c, bits) * x[c];
    return acc;
}

#ifdef HAVE_AVX2
/* unpack16 with `bits` a compile-time constant at the call site and the load known to be safe */
static inline __attribute__((always_inline)) __m256i unpack_fast(const uint8_t *q, int64_t c, const int bits,
                                                                 __m256i shuffle, __m256i mul) {
    if (bits == 8) return _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(q + c)));
    __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(q + c / 8 * bits)));
    return _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(raw, shuffle), mul), 16 - bits);
}

/* one row of codes (all groups whole, loads known safe) times int16 x: sum_g scale_g xs_g (q . xq)_g
 * in 8 float lanes */
static inline __attribute__((always_inline)) __m256 row_int(const uint8_t *q, const f16 *scale, const int16_t *xq,
                                                            const float *xs, int64_t ngroups, int64_t group,
                                                            const int bits, const unpacker *u) {
    const __m256i shuffle = u->shuffle, shuffle2 = u->shuffle2, mul = u->mul;
    __m256 vt = _mm256_setzero_ps();
    for (int64_t g = 0; g < ngroups; g++) {
        __m256i acc = _mm256_setzero_si256(), acc1 = acc;
        int64_t c = g * group, c1 = c + group;
        for (; c + 32 <= c1; c += 32) {
            __m256i k0, k1;
            if (bits < 4) {  /* 32 codes in one 16-byte load */
                __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(q + c / 8 * bits)));
                k0 = _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(raw, shuffle), mul), 16 - bits);
                k1 = _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(raw, shuffle2), mul), 16 - bits);
            } else {
                k0 = unpack_fast(q, c, bits, shuffle, mul);
                k1 = unpack_fast(q, c + 16, bits, shuffle, mul);
            }
            acc = DOT16(acc, k0, _mm256_loadu_si256((const __m256i *)(xq + c)));
            acc1 = DOT16(acc1, k1, _mm256_loadu_si256((const __m256i *)(xq + c + 16)));
        }
        if (c < c1) acc = DOT16(acc, unpack_fast(q, c, bits, shuffle, mul), _mm256_loadu_si256((const __m256i *)(xq + c)));
        vt = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(acc, acc1)), _mm256_set1_ps((float)scale[g] * xs[g]), vt);
    }
    return vt;
}

#ifdef HAVE_PERMW
/* The AVX-512 row kernel, for 2-4- and 8-bit codes in groups of whole 32-code chunks. 32
 * codes of b <= 4 bits (4b <= 16 bytes) come from one 16-byte load broadcast to the four
 * 128-bit lanes, lane L unpacking codes 8L..8L+7 with the shuffle-multiply-shift of unpack16;
 * 8-bit codes are widened. A row is
 *   sum_g coef_g (q_g . xq_g) - sum_g coef_g zero_g xqsum_g,   coef_g = scale_g xs_g,
 * the second sum 16 groups per vector (zero_term16), so a group costs its dot products and
 * one multiply-add. */
static __m512i shuffle512(int bits, __m512i *mul) {
    uint8_t sh[64];
    int16_t m[32];
    unpack_tables(bits, 32, sh, m);
    *mul = _mm512_loadu_si512(m);
    return _mm512_loadu_si512(sh);
}

static inline __attribute__((always_inline)) __m512i codes32(const uint8_t *q, int64_t c, const int bits,
                                                             __m512i shuffle, __m512i mul) {
    if (bits == 8) return _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(q + c)));
    __m512i raw = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(q + (uint64_t)c / 8 * bits)));
    return _mm512_srli_epi16(_mm512_mullo_epi16(_mm512_shuffle_epi8(raw, shuffle), mul), 16 - bits);
}

/* The masked layout of 32 codes of 2-4 bits (mv_sq's row loop, axpy_sq_int): codes32 spends
 * two instructions (multiply, shift) per 32 codes to bring each code down to bit 0. Left at
 * its offset o in its byte (0..7), a code needs only a mask: lane j holds code perm[j] times
 * 2^o_j. Codes are placed in order of o, so the two lanes of every int32 pair share one o
 * (each o occurs for an even number of the 32 codes); a dot product with x permuted the same
 * way (x[perm[j]] in lane j) gives int32 lanes that are the plain sums times 2^o, undone
 * exactly by one multiply with lane_scale (2^-o per int32 lane) after the sums are in float. A
 * product is at most 7*2^7 * 32767 (3 bits; 15*2^4, 3*2^6 for 4 and 2 bits), so an int32 lane
 * holds up to 64 products: groups of at most 1024 codes. */
typedef struct {
    __m512i shuffle, mask;
    __m512 lane_scale;
    __m512i store_idx[2];  /* axpy_sq_int: store_block512's column order and scales in this layout */
    __m512 store_scale[2];
    uint8_t perm[32];
} masked_t;

static masked_t make_masked(int bits) {
    masked_t m;
    uint8_t sh[64];
    int16_t mask[32];
    float scale[32];  /* 2^-o of lane j */
    int j = 0;
    for (int o = 0; o < 8; o++)
        for (int k = 0; k < 32; k++) {
            const int bit = k * bits, b = bit >> 3;
            if ((bit & 7) != o) continue;
            sh[2 * j] = (uint8_t)b;
            sh[2 * j + 1] = b + 1 < 4 * bits ? (uint8_t)(b + 1) : 0x80;  /* 0x80: a zero byte */
            mask[j] = (int16_t)(((1 << bits) - 1) << o);
            scale[j] = 1.f / (float)(1 << o);
            m.perm[j++] = (uint8_t)k;
        }
    float pairs[16];
    for (int i = 0; i < 16; i++) pairs[i] = scale[2 * i];
    m.shuffle = _mm512_loadu_si512(sh), m.mask = _mm512_loadu_si512(mask), m.lane_scale = _mm512_loadu_ps(pairs);
    /* pair_block512's acc lane 4L+i holds lane 8L+i of the codes (acc[2h], unpacklo: store lanes
     * 0..15) or lane 8L+4+i (acc[2h+1]: store lanes 16..31); column perm[j] is code lane j's */
    int32_t idx[32];
    float sc[32];
    for (j = 0; j < 32; j++) {
        const int L = j / 8, i = j % 8, lane = i < 4 ? 4 * L + i : 16 + 4 * L + i - 4;
        idx[m.perm[j]] = lane, sc[lane] = scale[j];
    }
    for (int h = 0; h < 2; h++)
        m.store_idx[h] = _mm512_loadu_si512(idx + 16 * h), m.store_scale[h] = _mm512_loadu_ps(sc + 16 * h);
    return m;
}

static masked_t masked_2_4[3];  /* the layouts of 2, 3 and 4 bits, made when the library loads */

__attribute__((constructor)) static void make_masked_tables(void) {
    for (int bits = 2; bits <= 4; bits++) masked_2_4[bits - 2] = make_masked(bits);
}

/* x in the masked layout: each 32-value chunk permuted as the codes are */
static void masked_x(const int16_t *xq, int64_t cols, const uint8_t *perm, int16_t *xm) {
    for (int64_t c = 0; c < cols; c += 32)
        for (int j = 0; j < 32; j++) xm[c + j] = xq[c + perm[j]];
}

static inline __attribute__((always_inline)) __m512i codes32m(const uint8_t *q, int64_t c, const int bits,
                                                              __m512i shuffle, __m512i mask) {
    __m512i raw = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(q + (uint64_t)c / 8 * bits)));
    return _mm512_and_si512(_mm512_shuffle_epi8(raw, shuffle), mask);
}

/* codes32m (masked: shuffle and mul are masked_t's shuffle and mask) or codes32 */
static inline __attribute__((always_inline)) __m512i codes32_as(const uint8_t *q, int64_t c, const int bits,
                                                                __m512i shuffle, __m512i mul, const int masked) {
    return masked ? codes32m(q, c, bits, shuffle, mul) : codes32(q, c, bits, shuffle, mul);
}

/* q . xq over the codes c..end of a group (whole 32-code chunks), as 16 int32 lanes; two
 * chains of products. Each lane sums at most group/16 products of 255 * 32767 (masked: of
 * 896 * 32767, make_masked), below 2^31 for the groups up to 1024 that mv_sq sends here.
 * masked: codes and x in the masked layout (shuffle and mul: masked_t's shuffle and mask),
 * lanes scaled by 2^o. */
static inline __attribute__((always_inline)) __m512i group_dot(const uint8_t *q, const int16_t *xq, int64_t c,
                                                               int64_t end, const int bits, __m512i shuffle, __m512i mul,
                                                               const int masked) {
#define CODES(at) codes32_as(p, at, bits, shuffle, mul, masked)
    const uint8_t *p = q + (uint64_t)c / 8 * bits;  /* two chunks a step: 8 bits bytes of codes, 64 of x */
    const int16_t *xp = xq + c;
    int64_t k = (end - c) / 32;
    if (k <= 2) {  /* short groups (64 codes: the usual) in one chain, begun without an accumulator */
        __m512i a = _mm512_madd_epi16(CODES(0), _mm512_loadu_si512(xp));
        return k == 2 ? DOT16X(a, CODES(32), _mm512_loadu_si512(xp + 32)) : a;
    }
    __m512i a = _mm512_madd_epi16(CODES(0), _mm512_loadu_si512(xp)), b = _mm512_madd_epi16(CODES(32), _mm512_loadu_si512(xp + 32));
    for (k -= 2, p += 8 * bits, xp += 64; k >= 2; k -= 2, p += 8 * bits, xp += 64) {
        a = DOT16X(a, CODES(0), _mm512_loadu_si512(xp));
        b = DOT16X(b, CODES(32), _mm512_loadu_si512(xp + 32));
    }
    if (k) a = DOT16X(a, CODES(0), _mm512_loadu_si512(xp));
#undef CODES
    return _mm512_add_epi32(a, b);
}

/* the zero codes of groups g0..g0+k (k <= 16) of one row as 16 floats; the masked load reads
 * no byte past them (16 groups' zeros start on a byte boundary: 2 bits bytes per 16) */
static inline __m512 zeros16(const uint8_t *z, int64_t g0, int64_t k, int bits, const unpacker *u) {
    __m128i raw = _mm_maskz_loadu_epi8((__mmask16)((1u << ((k * bits + 7) / 8)) - 1), z + g0 / 8 * bits);
    __m256i z16 = bits == 8 ? _mm256_cvtepu8_epi16(raw) : unpack_raw(raw, u);
    return _mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(z16));
}

/* one row's coef_g = scale_g xs_g (into coef) and minus its zero term, -sum_g coef_g zero_g
 * xqsum_g, as 16 lanes still to be summed (row_int512 adds them to its products' lanes),
 * 16 groups per vector; masked loads read nothing past the row's scales and zeros (the zeros
 * of 16 groups span 2 bits bytes) */
static inline __m512 zero_term16(const f16 *scale, const uint8_t *z, const float *xs, const float *xqsum, int64_t ngroups,
                                int bits, const unpacker *u, float *coef) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t g0 = 0; g0 < ngroups; g0 += 16) {
        const int64_t k = MIN(16, ngroups - g0);
        const __mmask16 gm = (__mmask16)((1u << k) - 1);
        __m512 c = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(gm, scale + g0)), _mm512_maskz_loadu_ps(gm, xs + g0));
        acc = _mm512_fnmadd_ps(_mm512_mul_ps(c, zeros16(z, g0, k, bits, u)), _mm512_maskz_loadu_ps(gm, xqsum + g0), acc);
        _mm512_mask_storeu_ps(coef + g0, gm, c);
    }
    return acc;
}

/* sum_g coef_g (q_g . xq_g) over one row, plus the lanes of `start`, as 16 lanes still to be
 * summed (mv_sq sums 16 rows' at once); the last group may be shorter (cols: whole chunks).
 * 2-4-bit codes in the masked layout (m; xq permuted). */
static inline __attribute__((always_inline)) __m512 row_int512(const uint8_t *q, const float *coef, const int16_t *xq,
                                                              int64_t ngroups, int64_t group, int64_t cols,
                                                              const int bits, __m512i shuffle, __m512i mul,
                                                              const masked_t *m, __m512 start) {
    const int masked = bits <= 4;
    if (masked) shuffle = m->shuffle, mul = m->mask;
    __m512 even = masked ? _mm512_setzero_ps() : start, odd = _mm512_setzero_ps();
    int64_t g = 0;
    /* the usual groups (64 codes; RWKVQuant's 128): a loop of their own over pairs of groups, the
     * group size a constant and the pointers stepped (128-code groups in the general loop below
     * took 1.4x the time of 64-code ones) */
#define PAIRS_OF(G)                                                                                       \
    for (const uint8_t *p = q; g + 2 <= ngroups && (g + 2) * (G) <= cols; g += 2, p += (G) / 4 * bits) { \
        const int16_t *xp = xq + g * (G);                                                                 \
        const __m512i a = group_dot(p, xp, 0, G, bits, shuffle, mul, masked),                            \
                      b = group_dot(p, xp, G, 2 * (G), bits, shuffle, mul, masked);                        \
        even = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), _mm512_set1_ps(coef[g]), even);                    \
        odd = _mm512_fmadd_ps(_mm512_cvtepi32_ps(b), _mm512_set1_ps(coef[g + 1]), odd);                  \
    }
    if (group == 64)
        PAIRS_OF(64)
    else if (group == 128)
        PAIRS_OF(128)
#undef PAIRS_OF
    for (; g + 2 <= ngroups; g += 2) {  /* two groups at a time: independent chains */
        const int64_t c = g * group;
        __m512i a, b;
        a = group_dot(q, xq, c, MIN(cols, c + group), bits, shuffle, mul, masked);
        b = group_dot(q, xq, c + group, MIN(cols, c + 2 * group), bits, shuffle, mul, masked);
        even = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), _mm512_set1_ps(coef[g]), even);
        odd = _mm512_fmadd_ps(_mm512_cvtepi32_ps(b), _mm512_set1_ps(coef[g + 1]), odd);
    }
    if (g < ngroups)
        even = _mm512_fmadd_ps(_mm512_cvtepi32_ps(group_dot(q, xq, g * group, cols, bits, shuffle, mul, masked)),
                               _mm512_set1_ps(coef[g]), even);
    even = _mm512_add_ps(even, odd);
    return masked ? _mm512_fmadd_ps(even, m->lane_scale, start) : even;
}

/* lane r of the result: the 16 int32 lanes of v[r] summed (16 rows' dot products at once:
 * pairs, then quads, then 128-bit lanes combined; ~45 instructions for 16 rows) */
static inline __m512i sum16x16(__m512i v[16]) {
    __m512i u[8], w[4];
    for (int i = 0; i < 8; i++)  /* per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3] */
        u[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
    for (int i = 0; i < 4; i++)  /* per 128-bit lane: rows 4i..4i+3 */
        w[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(u[2 * i], u[2 * i + 1]), _mm512_unpackhi_epi64(u[2 * i], u[2 * i + 1]));
    __m512i x0 = _mm512_add_epi32(_mm512_shuffle_i32x4(w[0], w[1], 0x88), _mm512_shuffle_i32x4(w[0], w[1], 0xdd));
    __m512i x1 = _mm512_add_epi32(_mm512_shuffle_i32x4(w[2], w[3], 0x88), _mm512_shuffle_i32x4(w[2], w[3], 0xdd));
    return _mm512_add_epi32(_mm512_shuffle_i32x4(x0, x1, 0x88), _mm512_shuffle_i32x4(x0, x1, 0xdd));
}

/* the same for floats: lane r of the result is the sum of v[r]'s 16 lanes */
static inline __m512 sum16x16_ps(const __m512 v[16]) {
    __m512 u[8], w[4];
    for (int i = 0; i < 8; i++)
        u[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
    for (int i = 0; i < 4; i++)
        w[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(u[2 * i]), _mm512_castps_pd(u[2 * i + 1]))),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(u[2 * i]), _mm512_castps_pd(u[2 * i + 1]))));
    __m512 x0 = _mm512_add_ps(_mm512_shuffle_f32x4(w[0], w[1], 0x88), _mm512_shuffle_f32x4(w[0], w[1], 0xdd));
    __m512 x1 = _mm512_add_ps(_mm512_shuffle_f32x4(w[2], w[3], 0x88), _mm512_shuffle_f32x4(w[2], w[3], 0xdd));
    return _mm512_add_ps(_mm512_shuffle_f32x4(x0, x1, 0x88), _mm512_shuffle_f32x4(x0, x1, 0xdd));
}

/* y[at[r]] = the sum of v[r]'s lanes, r < k <= 16 (v[k..16) are overwritten): one transposing
 * sum for 16 rows instead of a reduction each (which took a sixth of mv_sq's row loop) */
static inline void sum_rows16(__m512 v[16], const int64_t *at, int k, float *y) {
    float s[16];
    for (int r = k; r < 16; r++) v[r] = _mm512_setzero_ps();
    _mm512_storeu_ps(s, sum16x16_ps(v));
    for (int r = 0; r < k; r++) y[at[r]] = s[r];
}

/* 16 short rows (a few groups: LoRA-like and predictor factors, low-rank w2) at once: a row
 * of one or two groups would otherwise spend more on its own reductions than on its codes.
 * y[r] = sum_g scale_g xs_g ((q . xq)_g - zero_g xqsum_g); q[r]: the rows' codes (loads safe).
 * packed: 16 consecutive rows of one or two groups, zeros a byte a row (the predictors' MLP
 * output layers, low-rank w2): their scales and zeros are read 16 at a time, not one by one. */
static inline __attribute__((always_inline)) void rows16_int512(const uint8_t *q[16], const f16 *scale[16],
                                                                const uint8_t *z[16], const int16_t *xq, const float *xs,
                                                                const float *xqsum, int64_t ngroups, int64_t group,
                                                                int64_t cols, const int bits, __m512i shuffle,
                                                                __m512i mul, int packed, float *y) {
    __m512 total = _mm512_setzero_ps();
    for (int64_t g = 0; g < ngroups; g++) {
        const int64_t c0 = g * group, c1 = MIN(cols, c0 + group);
        __m512i dots[16];
        for (int r = 0; r < 16; r++) dots[r] = group_dot(q[r], xq, c0, c1, bits, shuffle, mul, 0);
        __m512 sc, zr;
        if (packed) {  /* scale g of 16 rows: every ngroups-th of 16 ngroups halves; zero g: bits g bits on in a byte */
            __m256i s16 = _mm256_loadu_si256((const __m256i *)scale[0]);
            if (ngroups == 2) {
                static const int16_t even[32] = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
                const __m512i pick = _mm512_add_epi16(_mm512_loadu_si512(even), _mm512_set1_epi16((short)g));
                s16 = _mm512_castsi512_si256(_mm512_permutexvar_epi16(pick, _mm512_loadu_si512(scale[0])));
            }
            sc = _mm512_cvtph_ps(s16);
            const __m512i zb = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)z[0]));
            zr = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(zb, (unsigned)(g * bits)),
                                                     _mm512_set1_epi32((1 << bits) - 1)));
        } else {
            float s16[16], z16[16];
            for (int r = 0; r < 16; r++) s16[r] = (float)scale[r][g], z16[r] = (float)code_at(z[r], g, bits);
            sc = _mm512_loadu_ps(s16), zr = _mm512_loadu_ps(z16);
        }
        __m512 d = _mm512_cvtepi32_ps(sum16x16(dots));
        d = _mm512_fnmadd_ps(zr, _mm512_set1_ps(xqsum[g]), d);
        total = _mm512_fmadd_ps(_mm512_mul_ps(sc, _mm512_set1_ps(xs[g])), d, total);
    }
    _mm512_storeu_ps(y, total);
}
#endif
#endif

#define AHEAD 4  /* rows fetched ahead of the one multiplied (a row list's or the next ones) */

void mv_sq(const uint8_t *Q, int64_t qstride, int64_t qbytes, const f16 *S, const uint8_t *Z, int64_t zstride, int bits,
           int64_t group, int64_t cols, const float *x, float *y, const int32_t *rows, int64_t n) {
    int64_t ngroups = (cols + group - 1) / group;
    float *xsum = malloc(ngroups * sizeof *xsum), *xs = NULL;
    int16_t *xq = NULL;
    for (int64_t g = 0; g < ngroups; g++) {
        float s = 0.f;
        for (int64_t c = g * group; c < MIN(cols, (g + 1) * group); c++) s += x[c];
        xsum[g] = s;
    }
#ifdef HAVE_AVX2
    unpacker u = make_unpacker(bits);
    /* int path: groups of whole 16-code chunks; each int32 lane sums group/8 products of at
     * most 255 * 32767, below 2^31 for groups up to 1024 */
    if (int16_x && bits <= 8 && group % 16 == 0 && group <= 1024 && (xq = malloc(cols * sizeof *xq)) &&
        (xs = malloc(ngroups * sizeof *xs)))
        quantize_x(x, cols, group, xq, xs);
    else
        free(xq), xq = NULL;
#else
    void *u = NULL;
#endif
#ifdef HAVE_PERMW
    __m512i mul512, shuffle = shuffle512(bits <= 4 ? bits : 1, &mul512);
    int wide = xq && bits > 1 && (bits <= 4 || bits == 8) && group % 32 == 0 && cols % 32 == 0;
    float xqsum[ngroups];  /* the int16 x summed per group */
    for (int64_t g = 0; wide && g < ngroups; g++) {
        int32_t t = 0;
        for (int64_t c = g * group; c < MIN(cols, (g + 1) * group); c++) t += xq[c];
        xqsum[g] = (float)t;
    }
#endif
    /* short rows, 16 at a time; a block with a row too near the end of the codes for 16-byte
     * loads (the matrix's last rows) is multiplied from a padded copy of its codes (rows of up
     * to 128 bytes; the row loop below took a fifth of a 768x96 product for its last 16 rows) */
    int64_t blocks = 0;
#ifdef HAVE_PERMW
    if (wide && cols <= 128) blocks = n / 16;  /* sum16x16 adds up to cols x 255 x 32767 per lane: < 2^31 */
    /* the row loop's 2-4-bit codes (every row the blocks leave: their padded copies cover rows of
     * up to 128 bytes): the masked layout, x permuted to match */
    const masked_t *m = NULL;
    int16_t *xm = NULL;
    if (wide && bits <= 4 && n > 16 * blocks) {
        if ((xm = malloc(cols * sizeof *xm))) {
            m = &masked_2_4[bits - 2];
            masked_x(xq, cols, m->perm, xm);
        } else
            wide = 0;
    }
#endif
    uint8_t done[blocks + 1];
#ifdef HAVE_PERMW
#pragma omp parallel for schedule(static) if (blocks && n * cols >= parallel_min)
    for (int64_t b = 0; b < blocks; b++) {
        const uint8_t *q[16], *z[16];
        const f16 *sc[16];
        int safe = 1;
        for (int k = 0; k < 16; k++) {
            const int64_t r = rows ? rows[16 * b + k] : 16 * b + k;
            q[k] = Q + r * qstride, z[k] = Z + r * zstride, sc[k] = S + r * ngroups;
            safe &= qbytes - r * qstride >= qstride + 16;
        }
        uint8_t pad[16 * 128 + 16];
        if (!safe && qstride <= 128) {  /* the block's codes copied out, 16 zero bytes after them */
            for (int k = 0; k < 16; k++) q[k] = memcpy(pad + k * qstride, q[k], qstride);
            memset(pad + 16 * qstride, 0, 16);
            safe = 1;
        }
        const int packed = !rows && ngroups <= 2 && zstride == 1;
        if ((done[b] = (uint8_t)safe)) switch (bits) {
#define CASE(B) case B: rows16_int512(q, sc, z, xq, xs, xqsum, ngroups, group, cols, B, shuffle, mul512, packed, y + 16 * b); break;
                CASE(2) CASE(3) CASE(4) CASE(8)
#undef CASE
            }
    }
#endif
    int64_t first = 0;  /* the rows from which the row loop has work: after the blocks done (as a rule, all) */
    while (first < 16 * blocks && done[first / 16]) first += 16;
#pragma omp parallel if ((n - first) * cols >= parallel_min)
    {
#ifdef HAVE_PERMW
    __m512 pend[16];  /* rows whose 16 lanes are still to be summed (16 at a time: sum16x16_ps), and their i */
    int64_t at[16];
    int npend = 0;
#endif
#pragma omp for schedule(static) nowait
    for (int64_t i = first; i < n; i++) {  /* from first: a 3072-row loop of skips alone cost ~2 us */
        if (i < 16 * blocks && done[i / 16]) continue;
        int64_t r = rows ? rows[i] : i;
        const uint8_t *q = Q + r * qstride, *z = Z + r * zstride;
        const int64_t avail = qbytes - r * qstride;
        const f16 *scale = S + r * ngroups;
        if (i + AHEAD < n) {  /* fetch ahead (scattered rows: FFN neurons, head clusters; and whole matrices,
                                 which this makes faster too: int8 0.1B 1.2x the time per token without it) */
            const int64_t next = rows ? rows[i + AHEAD] : i + AHEAD;
            for (int64_t o = 0; o < qstride; o += 64) __builtin_prefetch(Q + next * qstride + o);
            __builtin_prefetch(S + next * ngroups);
            __builtin_prefetch(Z + next * zstride);
        }
        float total = 0.f, zeros = 0.f;
#ifdef HAVE_PERMW
        if (wide && avail >= qstride + 16) {
            float coef[ngroups];
            const __m512 zt = zero_term16(scale, z, xs, xqsum, ngroups, bits, &u, coef);
            switch (bits) {
#define CASE(B) case B: pend[npend] = row_int512(q, coef, B <= 4 ? xm : xq, ngroups, group, cols, B, shuffle, mul512, m, zt); break;
                CASE(2) CASE(3) CASE(4) CASE(8)
#undef CASE
            }
            at[npend] = i;
            if (++npend == 16) sum_rows16(pend, at, npend, y), npend = 0;
            continue;
        }
#endif
#ifdef HAVE_AVX2
        __m256 vt = _mm256_setzero_ps();
        if (xq && bits > 1 && cols % group == 0 && avail >= qstride + 16) {  /* the common case: a loop per code width */
            switch (bits) {
#define CASE(B) case B: vt = row_int(q, scale, xq, xs, ngroups, group, B, &u); break;
                CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
#undef CASE
            }
            for (int64_t g = 0; g < ngroups; g++) zeros += (float)scale[g] * (float)code_at(z, g, bits) * xsum[g];
            y[i] = hsum(vt) - zeros;
            continue;
        }
#endif
        for (int64_t g = 0; g < ngroups; g++) {
            int64_t c0 = g * group, c1 = MIN(cols, c0 + group);
            float sg = (float)scale[g];
            zeros += sg * (float)code_at(z, g, bits) * xsum[g];
#ifdef HAVE_AVX2
            if (xq && c1 - c0 == group) {
                vt = _mm256_fmadd_ps(_mm256_cvtepi32_ps(int_dot(q, c0, c1, avail, &u, xq)), _mm256_set1_ps(sg * xs[g]), vt);
                continue;
            }
            total += sg * sq_group_float(q, avail, c0, c1, bits, x, &u);
#else
            total += sg * sq_group_float(q, avail, c0, c1, bits, x, u);
#endif
        }
#ifdef HAVE_AVX2
        total += hsum(vt);
#endif
        y[i] = total - zeros;
    }
#ifdef HAVE_PERMW
    if (npend) sum_rows16(pend, at, npend, y);
#endif
    }
    free(xsum);
    free(xq);
    free(xs);
#ifdef HAVE_PERMW
    free(xm);
#endif
}

#ifdef HAVE_AVX2
#ifdef HAVE_PERMW
/* codes32 where the 16-byte (8-bit codes: 32-byte) load could pass the end of the codes:
 * a masked load reads only the row's own bytes from c on (at least the 32 codes') */
static inline __attribute__((always_inline)) __m512i codes32_masked(const uint8_t *q, int64_t c, int64_t avail,
                                                                    const int bits, __m512i shuffle, __m512i mul) {
    const int64_t at = (uint64_t)c / 8 * bits, left = MIN(32, avail - at);  /* >= 4 bits: the 32 codes' bytes */
    const uint32_t bytes = left >= 32 ? ~0u : (1u << left) - 1;
    if (bits == 8) return _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(bytes, q + at));  /* whole rows: not reached */
    __m512i raw = _mm512_broadcast_i32x4(_mm_maskz_loadu_epi8((__mmask16)(bytes & 0xffffu), q + at));
    return _mm512_srli_epi16(_mm512_mullo_epi16(_mm512_shuffle_epi8(raw, shuffle), mul), 16 - bits);
}

/* y[c0..c0+32 halves) += sum_i a_i W[row_i] for a block of 32 or 64 columns in one group,
 * the AVX-512 form of axpy_sq_narrow's: 32 codes a load (codes32), the sums in named
 * registers, the same float operations per column in the same order (bit-identical) */
static inline __attribute__((always_inline)) void narrow_block512(const uint8_t *Q, int64_t qstride, int64_t qbytes,
                                                                  const f16 *S, const uint8_t *Z, int64_t zstride,
                                                                  int64_t ngroups, int64_t c0, const float *a, float *y,
                                                                  const int32_t *rows, int64_t n, const int bits,
                                                                  const int halves, __m512i shuffle, __m512i mul,
                                                                  int64_t group) {
    const int64_t g = c0 / group;  /* bytes from a row's start the loads reach: */
    const int64_t need = bits == 8 ? c0 + 32 * halves : (c0 + 32 * (halves - 1)) / 8 * bits + 16;
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    float zsum = 0.f;
    for (int64_t i = 0; i < n; i++) {
        const int64_t r = rows ? rows[i] : i, avail = qbytes - r * qstride;
        const uint8_t *q = Q + r * qstride;
        const float s = a[i] * (float)S[r * ngroups + g];
        zsum += s * (float)code_at(Z + r * zstride, g, bits);
        const __m512 vs = _mm512_set1_ps(s);
        for (int h = 0; h < halves; h++) {
            const int64_t c = c0 + 32 * h;
            const __m512i k = avail >= need ? codes32(q, c, bits, shuffle, mul) : codes32_masked(q, c, avail, bits, shuffle, mul);
            const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(k)));
            const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(k, 1)));
            if (h == 0) s0 = _mm512_fmadd_ps(vs, lo, s0), s1 = _mm512_fmadd_ps(vs, hi, s1);
            else s2 = _mm512_fmadd_ps(vs, lo, s2), s3 = _mm512_fmadd_ps(vs, hi, s3);
        }
    }
    const __m512 vz = _mm512_set1_ps(zsum), sums[4] = {s0, s1, s2, s3};
    for (int j = 0; j < 2 * halves; j++)
        _mm512_storeu_ps(y + c0 + 16 * j, _mm512_add_ps(_mm512_loadu_ps(y + c0 + 16 * j), _mm512_sub_ps(sums[j], vz)));
}

/* axpy_sq_narrow with AVX-512, for 2-4- and 8-bit codes and widths of whole 32-column halves:
 * blocks of 64 columns (the last may be 32); the variable-width loop kept its sums in memory,
 * every row waiting on a store and a load */
static void axpy_sq_narrow512(const uint8_t *Q, int64_t qstride, int64_t qbytes, const f16 *S, const uint8_t *Z,
                              int64_t zstride, int bits, int64_t group, int64_t cols, int64_t ngroups, const float *a,
                              float *y, const int32_t *rows, int64_t n) {
    __m512i mul, shuffle = shuffle512(bits <= 4 ? bits : 1, &mul);
    for (int64_t c0 = 0; c0 < cols; c0 += 64) {
        const int halves = cols - c0 >= 64 ? 2 : 1;
        switch (bits * 2 + halves - 1) {
#define CASE(B, H) case B * 2 + H - 1: \
            narrow_block512(Q, qstride, qbytes, S, Z, zstride, ngroups, c0, a, y, rows, n, B, H, shuffle, mul, group); break;
            CASE(2, 1) CASE(2, 2) CASE(3, 1) CASE(3, 2) CASE(4, 1) CASE(4, 2) CASE(8, 1) CASE(8, 2)
#undef CASE
        }
    }
}
#endif

/* axpy over many short rows (LoRA factors stored [in, r]): up to 64 columns of y stay in
 * registers while every row is read; each block of 64 columns must lie in one group */
static void axpy_sq_narrow(const uint8_t *Q, int64_t qstride, int64_t qbytes, const f16 *S, const uint8_t *Z, int64_t zstride,
                           int64_t group, int64_t cols, int64_t ngroups, const float *a, float *y, const int32_t *rows,
                           int64_t n, const unpacker *u) {
    for (int64_t c0 = 0; c0 < cols; c0 += 64) {
        const int chunks = (int)(MIN(64, cols - c0) / 16);
        __m256 acc[8];
        for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
        float zsum = 0.f;
        int64_t g = c0 / group;
        for (int64_t i = 0; i < n; i++) {
            int64_t r = rows ? rows[i] : i;
            const uint8_t *q = Q + r * qstride;
            float s = a[i] * (float)S[r * ngroups + g];
            zsum += s * (float)code_at(Z + r * zstride, g, u->bits);
            __m256 vs = _mm256_set1_ps(s);
            for (int j = 0; j < chunks; j++) {
                __m256 lo, hi;
                to_float(unpack16(q, c0 + 16 * j, qbytes - r * qstride, u), &lo, &hi);
                acc[2 * j] = _mm256_fmadd_ps(vs, lo, acc[2 * j]);
                acc[2 * j + 1] = _mm256_fmadd_ps(vs, hi, acc[2 * j + 1]);
            }
        }
        __m256 vz = _mm256_set1_ps(zsum);
        for (int j = 0; j < 2 * chunks; j++)
            _mm256_storeu_ps(y + c0 + 8 * j, _mm256_add_ps(_mm256_loadu_ps(y + c0 + 8 * j), _mm256_sub_ps(acc[j], vz)));
    }
}
#endif

#ifdef HAVE_AVX2
#ifndef HAVE_PERMW
/* the zero codes of one row (ngroups codes of `bits` bits, packed) as floats */
static inline void row_zeros(const uint8_t *z, int64_t ngroups, int bits, float *out) {
    if (ngroups * bits <= 56) {  /* one little-endian word, built in a register */
        uint64_t w = 0;
        for (int64_t b = 0; b < (ngroups * bits + 7) / 8; b++) w |= (uint64_t)z[b] << (8 * b);
        for (int64_t g = 0; g < ngroups; g++) out[g] = (float)((w >> (g * bits)) & ((1u << bits) - 1));
    } else {
        for (int64_t g = 0; g < ngroups; g++) out[g] = (float)code_at(z, g, bits);
    }
}

#endif

/* acc += the pairs p0..p1 of rows (codes interleaved) times their int16 coefficient pairs
 * cf[p * cstride], for the 64 columns from c0; acc in the interleaved order (store_block) */
static inline __attribute__((always_inline)) void pair_block(const uint8_t *Q, int64_t qstride, int64_t qbytes,
                                                             const int32_t *rows, int64_t n, int64_t p0, int64_t p1,
                                                             int64_t c0, const int32_t *cf, int64_t cstride, __m256i *acc,
                                                             const int bits, const unpacker *u) {
    const __m256i shuffle = u->shuffle, mul = u->mul;
    const int64_t need = (c0 + 64) / 8 * bits + 16;  /* bytes from a row's start the loads may touch */
    __m256i a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], a4 = acc[4], a5 = acc[5], a6 = acc[6], a7 = acc[7];
    for (int64_t p = p0; p < p1; p++) {
        int64_t r0 = rows ? rows[2 * p] : 2 * p, r1 = 2 * p + 1 < n ? (rows ? rows[2 * p + 1] : 2 * p + 1) : r0;
        const uint8_t *q0 = Q + r0 * qstride, *q1 = Q + r1 * qstride;
        const __m256i cp = _mm256_set1_epi32(cf[p * cstride]);
        __m256i u0[4], u1[4];
        if (__builtin_expect(qbytes - (r0 > r1 ? r0 : r1) * qstride >= need, 1)) {
            for (int j = 0; j < 4; j++) {
                u0[j] = unpack_fast(q0, c0 + 16 * j, bits, shuffle, mul);
                u1[j] = unpack_fast(q1, c0 + 16 * j, bits, shuffle, mul);
            }
        } else {  /* the matrix's last rows */
            for (int j = 0; j < 4; j++) {
                u0[j] = unpack16(q0, c0 + 16 * j, qbytes - r0 * qstride, u);
                u1[j] = unpack16(q1, c0 + 16 * j, qbytes - r1 * qstride, u);
            }
        }
        a0 = DOT16(a0, _mm256_unpacklo_epi16(u0[0], u1[0]), cp);
        a1 = DOT16(a1, _mm256_unpackhi_epi16(u0[0], u1[0]), cp);
        a2 = DOT16(a2, _mm256_unpacklo_epi16(u0[1], u1[1]), cp);
        a3 = DOT16(a3, _mm256_unpackhi_epi16(u0[1], u1[1]), cp);
        a4 = DOT16(a4, _mm256_unpacklo_epi16(u0[2], u1[2]), cp);
        a5 = DOT16(a5, _mm256_unpackhi_epi16(u0[2], u1[2]), cp);
        a6 = DOT16(a6, _mm256_unpacklo_epi16(u0[3], u1[3]), cp);
        a7 = DOT16(a7, _mm256_unpackhi_epi16(u0[3], u1[3]), cp);
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3, acc[4] = a4, acc[5] = a5, acc[6] = a6, acc[7] = a7;
}

/* f[0..64) += pair_block's sums in column order: acc[2j] (unpacklo) holds columns 16j+0-3
 * and 16j+8-11, acc[2j+1] columns 16j+4-7 and 16j+12-15 */
static inline void store_block(float *f, const __m256i *acc) {
    for (int j = 0; j < 4; j++) {
        __m256 lo = _mm256_cvtepi32_ps(acc[2 * j]), hi = _mm256_cvtepi32_ps(acc[2 * j + 1]);
        _mm256_storeu_ps(f + 16 * j, _mm256_add_ps(_mm256_loadu_ps(f + 16 * j), _mm256_permute2f128_ps(lo, hi, 0x20)));
        _mm256_storeu_ps(f + 16 * j + 8, _mm256_add_ps(_mm256_loadu_ps(f + 16 * j + 8), _mm256_permute2f128_ps(lo, hi, 0x31)));
    }
}

#ifdef HAVE_PERMW
/* 32 codes from c of a row with `avail` readable bytes from q (a matrix's last rows) */
static inline __m512i codes32_tail(const uint8_t *q, int64_t c, int64_t avail, const int bits, __m512i shuffle,
                                   __m512i mul, const int masked) {
    uint8_t tail[32] = {0};
    int64_t at = c / 8 * bits;
    memcpy(tail, q + at, (size_t)MIN(avail - at, 4 * bits));
    return codes32_as(tail, 0, bits, shuffle, mul, masked);
}

/* pair_block with 32 codes per unpack (2-4- and 8-bit codes): acc[0..4) in the order of
 * store_block512. 2-4-bit codes in the masked layout (shuffle, mul: masked_t's shuffle and
 * mask): acc lanes are column sums times 2^o; PAIRS pairs of products of at most 896 * 32767
 * stay below 2^31. */
static inline __attribute__((always_inline)) void pair_block512(const uint8_t *Q, int64_t qstride, int64_t qbytes,
                                                                const int32_t *rows, int64_t n, int64_t p0, int64_t p1,
                                                                int64_t c0, const int32_t *cf, int64_t cstride,
                                                                __m512i *acc, const int bits, __m512i shuffle, __m512i mul) {
    const int masked = bits <= 4;
    const int64_t need = bits == 8 ? c0 + 64 : (c0 + 32) / 8 * bits + 16;
    __m512i a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    for (int64_t p = p0; p < p1; p++) {
        int64_t r0 = rows ? rows[2 * p] : 2 * p, r1 = 2 * p + 1 < n ? (rows ? rows[2 * p + 1] : 2 * p + 1) : r0;
        const uint8_t *q0 = Q + r0 * qstride, *q1 = Q + r1 * qstride;
        const __m512i cp = _mm512_set1_epi32(cf[p * cstride]);
        __m512i u00, u01, u10, u11;
        if (__builtin_expect(qbytes - (r0 > r1 ? r0 : r1) * qstride >= need, 1)) {
            u00 = codes32_as(q0, c0, bits, shuffle, mul, masked), u01 = codes32_as(q0, c0 + 32, bits, shuffle, mul, masked);
            u10 = codes32_as(q1, c0, bits, shuffle, mul, masked), u11 = codes32_as(q1, c0 + 32, bits, shuffle, mul, masked);
        } else {  /* the matrix's last rows */
            const int64_t v0 = qbytes - r0 * qstride, v1 = qbytes - r1 * qstride;
            u00 = codes32_tail(q0, c0, v0, bits, shuffle, mul, masked);
            u01 = codes32_tail(q0, c0 + 32, v0, bits, shuffle, mul, masked);
            u10 = codes32_tail(q1, c0, v1, bits, shuffle, mul, masked);
            u11 = codes32_tail(q1, c0 + 32, v1, bits, shuffle, mul, masked);
        }
        a0 = DOT16X(a0, _mm512_unpacklo_epi16(u00, u10), cp);
        a1 = DOT16X(a1, _mm512_unpackhi_epi16(u00, u10), cp);
        a2 = DOT16X(a2, _mm512_unpacklo_epi16(u01, u11), cp);
        a3 = DOT16X(a3, _mm512_unpackhi_epi16(u01, u11), cp);
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}

/* f[0..64) += pair_block512's sums in column order: in 32 columns from 32h, 128-bit lane L
 * of acc[2h] (unpacklo) holds columns 8L+0-3 and that of acc[2h+1] columns 8L+4-7; in the
 * masked layout (m), the columns and scales of make_masked */
static inline void store_block512(float *f, const __m512i *acc, const masked_t *m) {
    const __m512i first = m ? m->store_idx[0] : _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i second = m ? m->store_idx[1] : _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    for (int h = 0; h < 2; h++) {
        __m512 lo = _mm512_cvtepi32_ps(acc[2 * h]), hi = _mm512_cvtepi32_ps(acc[2 * h + 1]);
        if (m) lo = _mm512_mul_ps(lo, m->store_scale[0]), hi = _mm512_mul_ps(hi, m->store_scale[1]);
        float *o = f + 32 * h;
        _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), _mm512_permutex2var_ps(lo, first, hi)));
        _mm512_storeu_ps(o + 16, _mm512_add_ps(_mm512_loadu_ps(o + 16), _mm512_permutex2var_ps(lo, second, hi)));
    }
}
#endif

#ifndef HAVE_PERMW
/* axpy_sq_int's set-up: B_g = max_i |b_ig| (b_ig = a_i scale_ig), zterm_g = sum_i b_ig zero_ig,
 * and coef[p][g] = the int16 pair round(b_ig 32767 / B_g) of rows 2p, 2p+1. zf: ngroups floats */
static void coefficients(const f16 *S, const uint8_t *Z, int64_t zstride, int bits, int64_t ngroups, const float *a,
                         const int32_t *rows, int64_t n, int32_t *coef, float *B, float *zterm, float *zf) {
    for (int64_t i = 0; i < n; i++) {
        const int64_t r = rows ? rows[i] : i;
        const f16 *s = S + r * ngroups;
        row_zeros(Z + r * zstride, ngroups, bits, zf);
        for (int64_t g = 0; g < ngroups; g++) {
            float b = a[i] * (float)s[g];
            B[g] = fmaxf(B[g], fabsf(b));
            zterm[g] += b * zf[g];
        }
    }
    for (int64_t g = 0; g < ngroups; g++) zf[g] = B[g] > 0 ? 32767.f / B[g] : 0.f;
    for (int64_t p = 0; p < (n + 1) / 2; p++) {
        const int64_t i = 2 * p, r0 = rows ? rows[i] : i, r1 = i + 1 < n ? (rows ? rows[i + 1] : i + 1) : r0;
        const f16 *s0 = S + r0 * ngroups, *s1 = S + r1 * ngroups;
        const float a1 = i + 1 < n ? a[i + 1] : 0.f;
        for (int64_t g = 0; g < ngroups; g++) {
            uint32_t lo = (uint16_t)(int16_t)lrintf(a[i] * (float)s0[g] * zf[g]);
            uint32_t hi = (uint16_t)(int16_t)lrintf(a1 * (float)s1[g] * zf[g]);
            coef[p * ngroups + g] = (int32_t)(lo | hi << 16);
        }
    }
}

#else
/* the same, 16 groups per vector (masked loads read no byte past a row's scales and zeros) */
static void coefficients16(const f16 *S, const uint8_t *Z, int64_t zstride, int bits, int64_t ngroups, const float *a,
                           const int32_t *rows, int64_t n, int32_t *coef, float *B, float *zterm, const unpacker *u) {
    for (int64_t g0 = 0; g0 < ngroups; g0 += 16) {
        const int64_t k = MIN(16, ngroups - g0);
        const __mmask16 gm = (__mmask16)((1u << k) - 1);
        __m512 vB = _mm512_setzero_ps(), vz = vB;
        for (int64_t i = 0; i < n; i++) {
            const int64_t r = rows ? rows[i] : i;
            __m512 b = _mm512_mul_ps(_mm512_set1_ps(a[i]), _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(gm, S + r * ngroups + g0)));
            vB = _mm512_max_ps(vB, _mm512_abs_ps(b));
            vz = _mm512_fmadd_ps(b, zeros16(Z + r * zstride, g0, k, bits, u), vz);
        }
        _mm512_mask_storeu_ps(B + g0, gm, vB);
        _mm512_mask_storeu_ps(zterm + g0, gm, vz);
        const __m512 inv = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(vB, _mm512_setzero_ps(), _CMP_GT_OQ),
                                               _mm512_set1_ps(32767.f), vB);
        for (int64_t p = 0; p < (n + 1) / 2; p++) {
            const int64_t i = 2 * p, r0 = rows ? rows[i] : i, r1 = i + 1 < n ? (rows ? rows[i + 1] : i + 1) : r0;
            const float a1 = i + 1 < n ? a[i + 1] : 0.f;
            __m512 b0 = _mm512_mul_ps(_mm512_set1_ps(a[i]), _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(gm, S + r0 * ngroups + g0)));
            __m512 b1 = _mm512_mul_ps(_mm512_set1_ps(a1), _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(gm, S + r1 * ngroups + g0)));
            __m512i lo = _mm512_and_si512(_mm512_cvtps_epi32(_mm512_mul_ps(b0, inv)), _mm512_set1_epi32(0xffff));
            __m512i hi = _mm512_slli_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(b1, inv)), 16);
            _mm512_mask_storeu_epi32(coef + p * ngroups + g0, gm, _mm512_or_si512(lo, hi));
        }
    }
}
#endif

/* axpy on integer codes (FFN value columns of the active neurons, LoRA up-projections): per
 * group g the row coefficients b_ig = a_i scale_ig are rounded to int16 on one scale B_g; rows
 * go in pairs, their codes interleaved, so one instruction adds b_i q_ic + b_i' q_i'c per column.
 *   y_c += B_g sum_i bq_ig q_ic - sum_i b_ig zero_ig
 * Threads split the row pairs and their partial sums are added at the end. */
static int axpy_sq_int(const uint8_t *Q, int64_t qstride, int64_t qbytes, const f16 *S, const uint8_t *Z, int64_t zstride, int bits,
                       int64_t group, int64_t cols, int64_t ngroups, const float *a, float *y, const int32_t *rows,
                       int64_t n, const unpacker *u) {
    const int64_t npair = (n + 1) / 2;
    const int nt = share_threads(n * cols);
    int32_t *coef = malloc(npair * ngroups * sizeof *coef);  /* [pair][group] */
    float *B = calloc(3 * ngroups, sizeof *B), *zterm = B + ngroups;  /* and ngroups floats of set-up work */
    float *part = calloc((size_t)nt * cols, sizeof *part);  /* each thread's sums over its rows */
    if (!coef || !B || !part) {
        free(coef), free(B), free(part);
        return 0;
    }
    /* B_g = max_i |b_ig| and the zero sums (one pass over the rows' scales and zeros), then
     * the int16 coefficient pairs: O(n ngroups), serial */
#ifdef HAVE_PERMW
    coefficients16(S, Z, zstride, bits, ngroups, a, rows, n, coef, B, zterm, u);
#else
    coefficients(S, Z, zstride, bits, ngroups, a, rows, n, coef, B, zterm, zterm + ngroups);
#endif
    /* rows in chunks of PAIRS pairs (a few KB: they stay in L1 while every column block of
     * this thread reads them); int32 sums of one chunk cannot overflow */
    enum { PAIRS = 16 };
#ifdef HAVE_PERMW
    __m512i mul512, shuffle512_ = shuffle512(bits <= 4 ? bits : 1, &mul512);
    const int wide = bits > 1 && (bits <= 4 || bits == 8);
    const masked_t *m = wide && bits <= 4 ? &masked_2_4[bits - 2] : NULL;  /* 2-4-bit codes: the masked layout */
    if (m) shuffle512_ = m->shuffle, mul512 = m->mask;
#endif
#pragma omp parallel num_threads(nt)
    {   /* threads split the rows (each streams its own rows through its cache), not the columns */
        int64_t p_lo, p_hi;
        column_share(npair, PAIRS, THREAD_ID, NUM_THREADS, &p_lo, &p_hi);
        float *f = part + (int64_t)THREAD_ID * cols;
        for (int64_t p0 = p_lo; p0 < p_hi; p0 += PAIRS) {
            int64_t p1 = MIN(p_hi, p0 + PAIRS);
            for (int64_t i = 2 * p1; i < MIN(n, 2 * MIN(p_hi, p1 + PAIRS)); i++)  /* the next chunk's rows */
                for (int64_t o = 0; o < qstride; o += 64) __builtin_prefetch(Q + (rows ? rows[i] : i) * qstride + o);
            for (int64_t c0 = 0; c0 < cols; c0 += 64) {
                const int32_t *cf = coef + c0 / group;
#ifdef HAVE_PERMW
                if (wide) {
                    __m512i acc[4];
                    for (int k = 0; k < 4; k++) acc[k] = _mm512_setzero_si512();
                    switch (bits) {  /* a loop specialised for each code width */
#define CASE(B) case B: pair_block512(Q, qstride, qbytes, rows, n, p0, p1, c0, cf, ngroups, acc, B, shuffle512_, mul512); break;
                        CASE(2) CASE(3) CASE(4) CASE(8)
#undef CASE
                    }
                    store_block512(f + c0, acc, m);
                    continue;
                }
#endif
                __m256i acc[8];
                for (int k = 0; k < 8; k++) acc[k] = _mm256_setzero_si256();
                switch (bits) {
#define CASE(B) case B: pair_block(Q, qstride, qbytes, rows, n, p0, p1, c0, cf, ngroups, acc, B, u); break;
                    CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
#undef CASE
                }
                store_block(f + c0, acc);
            }
        }
    }
    for (int64_t t = 1; t < nt; t++)
        for (int64_t c = 0; c < cols; c++) part[c] += part[t * cols + c];
    for (int64_t g = 0; g < ngroups; g++) {
        const float scale = B[g] / 32767.f;
        for (int64_t c = g * group; c < MIN(cols, (g + 1) * group); c++) y[c] += scale * part[c] - zterm[g];
    }
    free(part), free(coef), free(B);
    return 1;
}
#endif

void axpy_sq(const uint8_t *Q, int64_t qstride, int64_t qbytes, const f16 *S, const uint8_t *Z, int64_t zstride, int bits,
             int64_t group, int64_t cols, const float *a, float *y, const int32_t *rows, int64_t n) {
    int64_t ngroups = (cols + group - 1) / group;
#ifdef HAVE_AVX2
    unpacker u = make_unpacker(bits);
#ifdef HAVE_PERMW
    if ((bits == 2 || bits == 3 || bits == 4 || bits == 8) && cols % 32 == 0 && cols <= 256 &&
        (group % 64 == 0 || group >= cols)) {
        axpy_sq_narrow512(Q, qstride, qbytes, S, Z, zstride, bits, group, cols, ngroups, a, y, rows, n);
        return;
    }
#endif
    if (bits <= 8 && cols % 16 == 0 && cols <= 256 && (group % 64 == 0 || group >= cols)) {
        axpy_sq_narrow(Q, qstride, qbytes, S, Z, zstride, group, cols, ngroups, a, y, rows, n, &u);
        return;
    }
    if (int16_x && n > 1 && bits <= 8 && group % 64 == 0 && cols % 64 == 0 &&
        axpy_sq_int(Q, qstride, qbytes, S, Z, zstride, bits, group, cols, ngroups, a, y, rows, n, &u))
        return;
#endif
#pragma omp parallel num_threads(share_threads(n * cols))
    {
        int64_t c0, c1;
        column_share(cols, group % 16 == 0 ? group : cols, THREAD_ID, NUM_THREADS, &c0, &c1);
        for (int64_t i = 0; i < n; i++) {
            int64_t r = rows ? rows[i] : i;
            const uint8_t *q = Q + r * qstride, *z = Z + r * zstride;
            for (int64_t g = c0 / group; g * group < c1; g++) {
                float s = a[i] * (float)S[r * ngroups + g], sz = s * (float)code_at(z, g, bits);
                int64_t c = g * group, end = MIN(c1, (g + 1) * group);
#ifdef HAVE_AVX2
                if ((group & 15) == 0 && bits <= 8) {
                    const __m256 vs = _mm256_set1_ps(s), vz = _mm256_set1_ps(sz);
                    for (; c + 16 <= end; c += 16) {
                        __m256 lo, hi;
                        to_float(unpack16(q, c, qbytes - r * qstride, &u), &lo, &hi);
                        _mm256_storeu_ps(y + c, _mm256_add_ps(_mm256_fmsub_ps(vs, lo, vz), _mm256_loadu_ps(y + c)));
                        _mm256_storeu_ps(y + c + 8, _mm256_add_ps(_mm256_fmsub_ps(vs, hi, vz), _mm256_loadu_ps(y + c + 8)));
                    }
                }
#endif
                for (; c < end; c++) y[c] += s * (float)code_at(q, c, bits) - sz;
            }
        }
    }
}

/* ---------------------------------------------------------------- vector quantization */

#ifdef HAVE_AVX2
/* Each 2-D centroid as one int32 holding its two int8 values as int16s, so one gather
 * fetches the weights of 8 vectors (16 columns) in column order: [groups][K] */
static int32_t *pair_table(const int8_t *book, int64_t groups, int64_t K) {
    int32_t *t = malloc(groups * K * sizeof *t);
    for (int64_t i = 0; t && i < groups * K; i++)
        t[i] = (int32_t)(uint16_t)(int16_t)book[2 * i] | (int32_t)((uint32_t)(uint16_t)(int16_t)book[2 * i + 1] << 16);
    return t;
}
#endif

static float vq_group_float(const uint8_t *q, const int8_t *cb, int bits, int dim, int64_t v0, int64_t v1,
                            const float *x) {
    float acc = 0.f;
    for (int64_t v = v0; v < v1; v++) {
        const int8_t *c = cb + dim * code_at(q, v, bits);
        for (int d = 0; d < dim; d++) acc += (float)c[d] * x[dim * v + d];
    }
    return acc;
}

#if defined(HAVE_PERMW) && defined(__AVX512VBMI__)
/* idx32's byte picks and shifts for `bits`-bit indices: 16-bit lane k takes the two bytes
 * holding bits k bits .. k bits + bits (byte k bits / 8 and the next) and shifts them right by
 * k bits % 8 */
static void idx32_tables(int bits, __m512i *pick, __m512i *shift) {
    uint8_t p[64];
    uint16_t s[32];
    for (int k = 0; k < 32; k++) {
        p[2 * k] = (uint8_t)(k * bits / 8), p[2 * k + 1] = (uint8_t)(k * bits / 8 + 1);
        s[k] = (uint16_t)(k * bits % 8);
    }
    *pick = _mm512_loadu_si512(p), *shift = _mm512_loadu_si512(s);
}

/* indices v..v+32 of a row (v a multiple of 32; bits <= 8) as 16-bit lanes, each index in its
 * lane's low bits with other bits above it (which vpermt2w ignores: it reads the low 6): one
 * byte permutation and one variable shift, where two unpack16 and an insert took seven
 * instructions. The masked load reads only the 4 bits bytes of the 32 indices. */
static inline __m512i idx32(const uint8_t *q, int64_t v, int bits, __m512i pick, __m512i shift) {
    const __m512i raw = _mm512_maskz_loadu_epi8((__mmask64)((1ULL << (4 * bits)) - 1), q + v / 8 * bits);
    return _mm512_srlv_epi16(_mm512_permutexvar_epi8(pick, raw), shift);
}
#endif

void mv_vq(const uint8_t *Q, int64_t qstride, int64_t qbytes, const int8_t *book, const f16 *bscale, int bits, int dim,
           int64_t group, int64_t cols, const float *x, float *y, const int32_t *rows, int64_t n) {
    int64_t K = (int64_t)1 << bits, nvec = cols / dim, per_group = group / dim, ngroups = (nvec + per_group - 1) / per_group;
    int16_t *xq = NULL;
    float *xs = NULL;
    int32_t *pairs = NULL;
#ifdef HAVE_AVX2
    unpacker u = make_unpacker(bits);
    /* int path (dim 2, whole 16-index chunks, in the last group too, which may be shorter: FFN
     * widths such as RWKV-6's 3.5 x 768 = 2688 columns in groups of 256): x as int16 per group,
     * centroid pairs gathered and multiplied 16 columns per madd; |sum| < 2 * 127 * 32767 *
     * group / 16 < 2^31 */
    if (int16_x && dim == 2 && bits <= 8 && group == 2 * per_group && per_group % 16 == 0 && group <= 4096 &&
        nvec % per_group % 16 == 0 && (xq = malloc(cols * sizeof *xq)) && (xs = malloc(ngroups * sizeof *xs)))
        quantize_x(x, cols, group, xq, xs);
    else
        free(xq), xq = NULL;
#endif
#ifdef HAVE_PERMW
    /* AVX-512BW: each group's centroids as two 64-entry int16 tables (first and second values)
     * looked up 32 indices at a time by vpermt2w; x split into even and odd columns */
    int16_t *tables = NULL, *xeo = NULL;
    if (xq && bits <= 6 && per_group % 32 == 0 && nvec % per_group % 32 == 0 &&
        (tables = malloc(ngroups * 128 * sizeof *tables)) && (xeo = malloc(ngroups * group * sizeof *xeo))) {
        for (int64_t g = 0; g < ngroups; g++)
            for (int64_t k = 0; k < 64; k++) {  /* entry k: centroid k mod K (idx32 leaves bits above an index) */
                tables[g * 128 + k] = book[(g * K + k % K) * 2];
                tables[g * 128 + 64 + k] = book[(g * K + k % K) * 2 + 1];
            }
        for (int64_t v = 0; v < nvec; v++) {  /* per group: its even columns, then its odd ones */
            int64_t g = v / per_group, j = v % per_group;
            xeo[g * group + j] = xq[2 * v];
            xeo[g * group + per_group + j] = xq[2 * v + 1];
        }
    }
    const int table_lookup = xeo != NULL;
#ifdef __AVX512VBMI__
    __m512i pick, shift;
    if (table_lookup) idx32_tables(bits, &pick, &shift);
#endif
#else
    const int table_lookup = 0;
#endif
#ifdef HAVE_AVX2
    if (xq && !table_lookup && !(pairs = pair_table(book, ngroups, K))) {  /* the gather path needs the pairs */
        free(xq);
        xq = NULL;
    }
#else
    (void)table_lookup;
#endif
#pragma omp parallel for schedule(static) if (n * cols >= parallel_min)
    for (int64_t i = 0; i < n; i++) {
        const int64_t r = rows ? rows[i] : i, avail = qbytes - r * qstride;
        (void)avail;  /* read by the SIMD paths only */
        const uint8_t *q = Q + r * qstride;
        float total = 0.f;
#ifdef HAVE_PERMW
        __m512 lanes = _mm512_setzero_ps();
#endif
        for (int64_t g = 0; g < ngroups; g++) {
            int64_t v0 = g * per_group, v1 = MIN(nvec, v0 + per_group);
#ifdef HAVE_PERMW
            if (xeo) {  /* the groups' sums in 16 float lanes, added up once per row (below) */
                const int16_t *t = tables + g * 128, *xe = xeo + g * group, *xo = xe + per_group;
                const __m512i t0a = _mm512_loadu_si512(t), t0b = _mm512_loadu_si512(t + 32);
                const __m512i t1a = _mm512_loadu_si512(t + 64), t1b = _mm512_loadu_si512(t + 96);
                __m512i acc = _mm512_setzero_si512(), acc1 = acc;
                for (int64_t v = v0; v < v1; v += 32) {
#ifdef __AVX512VBMI__
                    const __m512i idx = idx32(q, v, bits, pick, shift);
#else
                    const __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(unpack16(q, v, avail, &u)),
                                                           unpack16(q, v + 16, avail, &u), 1);
#endif
                    acc = DOT16X(acc, _mm512_permutex2var_epi16(t0a, idx, t0b), _mm512_loadu_si512(xe + (v - v0)));
                    acc1 = DOT16X(acc1, _mm512_permutex2var_epi16(t1a, idx, t1b), _mm512_loadu_si512(xo + (v - v0)));
                }
                /* a lane of the two chains sums group/16 products of at most 128 * 32767: below 2^31 for
                 * groups up to 4096 (their sum over lanes may not be: it is taken in float) */
                lanes = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(acc, acc1)),
                                        _mm512_set1_ps((float)bscale[g] * xs[g]), lanes);
                continue;
            }
#endif
#ifdef HAVE_AVX2
            if (xq) {
                const int32_t *tab = pairs + g * K;
                __m256i acc = _mm256_setzero_si256(), acc1 = acc;
                for (int64_t v = v0; v < v1; v += 16) {
                    __m256i idx = unpack16(q, v, avail, &u);
                    __m256i lo = _mm256_i32gather_epi32(tab, _mm256_cvtepu16_epi32(_mm256_castsi256_si128(idx)), 4);
                    __m256i hi = _mm256_i32gather_epi32(tab, _mm256_cvtepu16_epi32(_mm256_extracti128_si256(idx, 1)), 4);
                    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(lo, _mm256_loadu_si256((const __m256i *)(xq + 2 * v))));
                    acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(hi, _mm256_loadu_si256((const __m256i *)(xq + 2 * v + 16))));
                }
                int32_t lanes[8];
                _mm256_storeu_si256((__m256i *)lanes, _mm256_add_epi32(acc, acc1));
                int64_t sum = 0;
                for (int j = 0; j < 8; j++) sum += lanes[j];
                total += (float)bscale[g] * xs[g] * (float)sum;
                continue;
            }
#endif
            total += (float)bscale[g] * vq_group_float(q, book + g * K * dim, bits, dim, v0, v1, x);
        }
#ifdef HAVE_PERMW
        if (xeo) total += _mm512_reduce_add_ps(lanes);
#endif
        y[i] = total;
    }
#ifdef HAVE_PERMW
    free(tables);
    free(xeo);
#endif
    free(pairs);
    free(xq);
    free(xs);
}

void axpy_vq(const uint8_t *Q, int64_t qstride, int64_t qbytes, const int8_t *book, const f16 *bscale, int bits, int dim,
             int64_t group, int64_t cols, const float *a, float *y, const int32_t *rows, int64_t n) {
    int64_t K = (int64_t)1 << bits, nvec = cols / dim, per_group = group / dim, ngroups = (nvec + per_group - 1) / per_group;
    int32_t *pairs = NULL;
#ifdef HAVE_AVX2
    unpacker u = make_unpacker(bits);
    if (dim == 2 && bits <= 8 && group == 2 * per_group && per_group % 16 == 0) pairs = pair_table(book, ngroups, K);
#else
    (void)ngroups;
#endif
#pragma omp parallel num_threads(share_threads(n * cols))
    {
        int64_t v0, v1;
        column_share(nvec, per_group, THREAD_ID, NUM_THREADS, &v0, &v1);
        for (int64_t i = 0; i < n; i++) {
            const int64_t r = rows ? rows[i] : i, avail = qbytes - r * qstride;
            (void)avail;  /* read by the SIMD paths only */
            const uint8_t *q = Q + r * qstride;
            int64_t v = v0;
#ifdef HAVE_AVX2
            for (; pairs && v + 16 <= v1; v += 16) {  /* 16 vectors of one group: 32 columns */
                int64_t g = v / per_group;
                __m256 s = _mm256_set1_ps(a[i] * (float)bscale[g]);
                __m256i idx = unpack16(q, v, avail, &u);
                for (int half = 0; half < 2; half++) {
                    __m256i w = _mm256_i32gather_epi32(pairs + g * K, _mm256_cvtepu16_epi32(half ? _mm256_extracti128_si256(idx, 1)
                                                                                              : _mm256_castsi256_si128(idx)), 4);
                    /* int16 pairs -> 16 floats in column order */
                    __m256 c0 = _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(w, 16), 16));
                    __m256 c1 = _mm256_cvtepi32_ps(_mm256_srai_epi32(w, 16));
                    __m256 first = _mm256_unpacklo_ps(c0, c1), second = _mm256_unpackhi_ps(c0, c1);
                    __m256 p0 = _mm256_permute2f128_ps(first, second, 0x20), p1 = _mm256_permute2f128_ps(first, second, 0x31);
                    float *yy = y + 2 * (v + 8 * half);
                    _mm256_storeu_ps(yy, _mm256_fmadd_ps(s, p0, _mm256_loadu_ps(yy)));
                    _mm256_storeu_ps(yy + 8, _mm256_fmadd_ps(s, p1, _mm256_loadu_ps(yy + 8)));
                }
            }
#endif
            for (; v < v1; v++) {
                int64_t g = v / per_group;
                float s = a[i] * (float)bscale[g];
                const int8_t *c = book + (g * K + code_at(q, v, bits)) * dim;
                for (int d = 0; d < dim; d++) y[v * dim + d] += s * (float)c[d];
            }
        }
    }
    free(pairs);
}

/* ---------------------------------------------------------------- sign bits */

/* y[i] = sum of x over the set bits of row i (bit c of a row: byte c/8, bit c%8), for the
 * FFN predictors' 1-bit key copies (runtime/model.py, Predictor). With AVX-512 x is rounded
 * to int16 as on mv_sq's int path (one group: the row) and multiplied by bits_dot, without
 * the scale, zero and group book-keeping of mv_sq. */
void mv_bits(const uint8_t *Q, int64_t qstride, int64_t cols, const float *x, float *y, int64_t n) {
#ifdef HAVE_PERMW
    if (int16_x && cols % 32 == 0) {
        int16_t *xq = malloc(cols * sizeof *xq);
        float xs;
        if (xq) {
            quantize_x(x, cols, cols, xq, &xs);
#pragma omp parallel for schedule(static) if (n * cols >= parallel_min)
            for (int64_t b = 0; b < (n + 15) / 16; b++) {  /* 16 rows, their sums added in one sum16x16 */
                const int64_t i0 = 16 * b;
                if (i0 + 16 > n) {
                    for (int64_t i = i0; i < n; i++)
                        y[i] = xs * (float)_mm512_reduce_add_epi32(bits_dot(Q + i * qstride, xq, 0, cols));
                    continue;
                }
                __m512i v[16];
                for (int r = 0; r < 16; r++) v[r] = bits_dot(Q + (i0 + r) * qstride, xq, 0, cols);
                _mm512_storeu_ps(y + i0, _mm512_mul_ps(_mm512_set1_ps(xs), _mm512_cvtepi32_ps(sum16x16(v))));
            }
            free(xq);
            return;
        }
    }
#endif
    /* float x (exact mode, AVX2-only and plain builds): x where the bit is set, else 0 */
#pragma omp parallel for schedule(static) if (n * cols >= parallel_min)
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *q = Q + i * qstride;
        float acc = 0.f;
        int64_t c = 0;
#ifdef HAVE_PERMW
        __m512 v[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (; c + 64 <= cols; c += 64)  /* 16 bits a mask, four chains */
            for (int k = 0; k < 4; k++) {
                uint16_t m;
                memcpy(&m, q + c / 8 + 2 * k, 2);
                v[k] = _mm512_mask_add_ps(v[k], _cvtu32_mask16(m), v[k], _mm512_loadu_ps(x + c + 16 * k));
            }
        acc = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(v[0], v[1]), _mm512_add_ps(v[2], v[3])));
#elif defined(HAVE_AVX2)
        const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        __m256 v[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        for (; c + 32 <= cols; c += 32)  /* a byte's bits as a lane mask, four chains */
            for (int k = 0; k < 4; k++) {
                const __m256i set = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(q[c / 8 + k]), bit), bit);
                v[k] = _mm256_add_ps(v[k], _mm256_and_ps(_mm256_castsi256_ps(set), _mm256_loadu_ps(x + c + 8 * k)));
            }
        acc = hsum(_mm256_add_ps(_mm256_add_ps(v[0], v[1]), _mm256_add_ps(v[2], v[3])));
#endif
        for (; c < cols; c++) acc += (float)(q[c / 8] >> (c % 8) & 1) * x[c];  /* branch-free: random bits */
        y[i] = acc;
    }
}

/* ---------------------------------------------------------------- bandwidth */

/* Read bandwidth with the kernels' threads: the sum of n floats (bench/runtime.py) */
double read_sum(const float *p, int64_t n) {
    double total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total)
    for (int64_t b = 0; b < n; b += 4096) {
        float s = 0.f;
        for (int64_t i = b; i < MIN(n, b + 4096); i++) s += p[i];
        total += s;
    }
    return total;
}
