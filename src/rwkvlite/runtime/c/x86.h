/* The x86 tiers of the kernels and the SIMD helpers they share (included by simd.h through
 * internal.h). Why these instructions: docs/kernels.md. */
#ifndef RWKVLITE_X86_H
#define RWKVLITE_X86_H
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
#if defined(HAVE_PERMW) && defined(__AVX512VBMI__) && defined(__AVX512VNNI__)
#define HAVE_Q8 1  /* the fast mode's int8 tier (q8.c): vpermb and vpmultishiftqb unpack codes, vpdpbusd multiplies */
#endif
#endif  /* the tiers */

#ifdef HAVE_AVX2
/* Unpacking 16 codes of 1-8 bits (2*bits bytes) into 16-bit lanes: a byte shuffle puts the
 * two bytes holding code j into lane j, a multiply by 2^(16-bits-s) moves the code's top bit
 * to bit 15 (s: its offset in the pair) and a shift by 16-bits brings it down. */
typedef struct { __m256i shuffle, shuffle2, mul; int bits; } unpacker;

/* the shuffle (two source bytes per 16-bit lane) and multiplier of codes 0..n-1, all read
 * from one 16-byte load (n * bits <= 128, or only the first 16 codes used) */
MAY_BE_UNUSED static void unpack_tables(int bits, int n, uint8_t *sh, int16_t *mul) {
    for (int j = 0; j < n; j++) {
        int bit = j * bits, b = bit >> 3, s = bit & 7;
        sh[2 * j] = (uint8_t)b;
        sh[2 * j + 1] = s + bits > 8 ? (uint8_t)(b + 1) : 0x80;  /* 0x80: a zero byte */
        mul[j] = (int16_t)(1u << (16 - bits - s));
    }
}

MAY_BE_UNUSED static unpacker make_unpacker(int bits) {  /* 1 <= bits <= 8 (wider codes: scalar paths) */
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

/* unpack16 with `bits` a compile-time constant at the call site and the load known to be safe */
static ALWAYS_INLINE __m256i unpack_fast(const uint8_t *q, int64_t c, const int bits,
                                         __m256i shuffle, __m256i mul) {
    if (bits == 8) return _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(q + c)));
    __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(q + c / 8 * bits)));
    return _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(raw, shuffle), mul), 16 - bits);
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

/* x rounded to int16 per group of columns: xq[c] = round(x[c] / xs[g]), xs[g] = max |x| / 32767
 * (x86.c) */
HIDDEN void quantize_x(const float *x, int64_t cols, int64_t group, int16_t *xq, float *xs);

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

/* The AVX-512 row kernel, for 2-4- and 8-bit codes in groups of whole 32-code chunks. 32
 * codes of b <= 4 bits (4b <= 16 bytes) come from one 16-byte load broadcast to the four
 * 128-bit lanes, lane L unpacking codes 8L..8L+7 with the shuffle-multiply-shift of unpack16;
 * 8-bit codes are widened. A row is
 *   sum_g coef_g (q_g . xq_g) - sum_g coef_g zero_g xqsum_g,   coef_g = scale_g xs_g,
 * the second sum 16 groups per vector (zero_term16), so a group costs its dot products and
 * one multiply-add. */
MAY_BE_UNUSED static __m512i shuffle512(int bits, __m512i *mul) {
    uint8_t sh[64];
    int16_t m[32];
    unpack_tables(bits, 32, sh, m);
    *mul = _mm512_loadu_si512(m);
    return _mm512_loadu_si512(sh);
}

static ALWAYS_INLINE __m512i codes32(const uint8_t *q, int64_t c, const int bits,
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

extern HIDDEN masked_t masked_2_4[3];  /* the layouts of 2, 3 and 4 bits, made when the library loads (x86.c) */

static ALWAYS_INLINE __m512i codes32m(const uint8_t *q, int64_t c, const int bits,
                                      __m512i shuffle, __m512i mask) {
    __m512i raw = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(q + (uint64_t)c / 8 * bits)));
    return _mm512_and_si512(_mm512_shuffle_epi8(raw, shuffle), mask);
}

/* codes32m (masked: shuffle and mul are masked_t's shuffle and mask) or codes32 */
static ALWAYS_INLINE __m512i codes32_as(const uint8_t *q, int64_t c, const int bits,
                                        __m512i shuffle, __m512i mul, const int masked) {
    return masked ? codes32m(q, c, bits, shuffle, mul) : codes32(q, c, bits, shuffle, mul);
}

/* the zero codes of groups g0..g0+k (k <= 16) of one row as 16 floats; the masked load reads
 * no byte past them (16 groups' zeros start on a byte boundary: 2 bits bytes per 16) */
static inline __m512 zeros16(const uint8_t *z, int64_t g0, int64_t k, int bits, const unpacker *u) {
    __m128i raw = _mm_maskz_loadu_epi8((__mmask16)((1u << ((k * bits + 7) / 8)) - 1), z + g0 / 8 * bits);
    __m256i z16 = bits == 8 ? _mm256_cvtepu8_epi16(raw) : unpack_raw(raw, u);
    return _mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(z16));
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
/* one row's coef_g = scale_g xs_g (into coef) and minus its zero term, -sum_g coef_g zero_g
 * xqsum_g, as 16 lanes still to be summed (row_int512 adds them to its products' lanes),
 * 16 groups per vector; masked loads read nothing past the row's scales and zeros (the zeros
 * of 16 groups span 2 bits bytes) */
MAY_BE_UNUSED static inline __m512 zero_term16(const f16 *scale, const uint8_t *z, const float *xs, const float *xqsum, int64_t ngroups,
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

/* y[at[r]] = the sum of v[r]'s lanes, r < k <= 16 (v[k..16) are overwritten): one transposing
 * sum for 16 rows instead of a reduction each */
MAY_BE_UNUSED static inline void sum_rows16(__m512 v[16], const int64_t *at, int k, float *y) {
    float s[16];
    for (int r = k; r < 16; r++) v[r] = _mm512_setzero_ps();
    _mm512_storeu_ps(s, sum16x16_ps(v));
    for (int r = 0; r < k; r++) y[at[r]] = s[r];
}

#endif  /* HAVE_PERMW */
#endif  /* HAVE_AVX2 */
#endif
