/* Scalar-quantized matrices: y += sum_i a[i] W[row_i] (axpy_sq; rows of a stored-transposed
 * matrix: FFN values of the active neurons, LoRA factors [in, r]). Paths: narrow matrices
 * with their columns in registers, the int path on row pairs, and a float loop with threads
 * splitting the columns. Why: docs/kernels.md. */
#include "internal.h"

#ifdef HAVE_AVX2
#ifdef HAVE_PERMW
/* codes32 where the 16-byte (8-bit codes: 32-byte) load could pass the end of the codes:
 * a masked load reads only the row's own bytes from c on (at least the 32 codes') */
static ALWAYS_INLINE __m512i codes32_masked(const uint8_t *q, int64_t c, int64_t avail,
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
static ALWAYS_INLINE void narrow_block512(const uint8_t *Q, int64_t qstride, int64_t qbytes,
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
 * blocks of 64 columns (the last may be 32), the sums in registers (in a loop of variable
 * width they would live in memory, every row waiting on a store and a load) */
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
static ALWAYS_INLINE void pair_block(const uint8_t *Q, int64_t qstride, int64_t qbytes,
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
static ALWAYS_INLINE void pair_block512(const uint8_t *Q, int64_t qstride, int64_t qbytes,
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

/* rows in chunks of PAIRS pairs (a few KB: they stay in L1 while every column block of a
 * thread reads them); int32 sums of one chunk cannot overflow */
#define PAIRS 16

/* What axpy_sq_int's threads read: the matrix, the int16 coefficient pairs [pair][group], and
 * the unpacking tables (AVX-512: 2-4-bit codes in the masked layout m) */
typedef struct {
    const uint8_t *Q;
    int64_t qstride, qbytes, n, group, cols, ngroups;
    const int32_t *rows, *coef;
    int bits;
    const unpacker *u;
#ifdef HAVE_PERMW
    __m512i shuffle, mul;
    int wide;
    const masked_t *m;
#endif
} pairs_t;

/* f[0..cols) += the products of row pairs p_lo..p_hi (one thread's share), PAIRS pairs at a
 * time over every 64-column block, with a loop specialised for each code width */
static ALWAYS_INLINE void pair_rows(const pairs_t *k, int64_t p_lo, int64_t p_hi, float *f) {
    const uint8_t *Q = k->Q;
    const int32_t *rows = k->rows;
    const int64_t qstride = k->qstride, qbytes = k->qbytes, n = k->n, group = k->group, cols = k->cols,
                  ngroups = k->ngroups;
    for (int64_t p0 = p_lo; p0 < p_hi; p0 += PAIRS) {
        int64_t p1 = MIN(p_hi, p0 + PAIRS);
        for (int64_t i = 2 * p1; i < MIN(n, 2 * MIN(p_hi, p1 + PAIRS)); i++)  /* the next chunk's rows */
            for (int64_t o = 0; o < qstride; o += 64) __builtin_prefetch(Q + (rows ? rows[i] : i) * qstride + o);
        for (int64_t c0 = 0; c0 < cols; c0 += 64) {
            const int32_t *cf = k->coef + c0 / group;
#ifdef HAVE_PERMW
            if (k->wide) {
                __m512i acc[4];
                for (int j = 0; j < 4; j++) acc[j] = _mm512_setzero_si512();
                switch (k->bits) {
#define CASE(B) case B: pair_block512(Q, qstride, qbytes, rows, n, p0, p1, c0, cf, ngroups, acc, B, k->shuffle, k->mul); break;
                    CASE(2) CASE(3) CASE(4) CASE(8)
#undef CASE
                }
                store_block512(f + c0, acc, k->m);
                continue;
            }
#endif
            __m256i acc[8];
            for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_si256();
            switch (k->bits) {
#define CASE(B) case B: pair_block(Q, qstride, qbytes, rows, n, p0, p1, c0, cf, ngroups, acc, B, k->u); break;
                CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
#undef CASE
            }
            store_block(f + c0, acc);
        }
    }
}

/* axpy on integer codes (FFN value columns of the active neurons, LoRA up-projections): per
 * group g the row coefficients b_ig = a_i scale_ig are rounded to int16 on one scale B_g; rows
 * go in pairs, their codes interleaved, so one instruction adds b_i q_ic + b_i' q_i'c per column.
 *   y_c += B_g sum_i bq_ig q_ic - sum_i b_ig zero_ig
 * Threads split the row pairs and their partial sums are added at the end. False: out of memory. */
static int axpy_sq_int(const settings_t *s, const uint8_t *Q, int64_t qstride, int64_t qbytes, const f16 *S,
                       const uint8_t *Z, int64_t zstride, int bits, int64_t group, int64_t cols, int64_t ngroups,
                       const float *a, float *y, const int32_t *rows, int64_t n, const unpacker *u) {
    const int64_t npair = (n + 1) / 2;
    const int nt = share_threads(s, n * cols);
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
    pairs_t k = {.Q = Q, .qstride = qstride, .qbytes = qbytes, .n = n, .group = group, .cols = cols,
                 .ngroups = ngroups, .rows = rows, .coef = coef, .bits = bits, .u = u};
#ifdef HAVE_PERMW
    k.shuffle = shuffle512(bits <= 4 ? bits : 1, &k.mul);
    k.wide = bits > 1 && (bits <= 4 || bits == 8);
    k.m = k.wide && bits <= 4 ? &masked_2_4[bits - 2] : NULL;  /* 2-4-bit codes: the masked layout */
    if (k.m) k.shuffle = k.m->shuffle, k.mul = k.m->mask;
#endif
#pragma omp parallel num_threads(nt)
    {   /* threads split the rows (each streams its own rows through its cache), not the columns */
        int64_t p_lo, p_hi;
        column_share(npair, PAIRS, THREAD_ID, NUM_THREADS, &p_lo, &p_hi);
        pair_rows(&k, p_lo, p_hi, part + (int64_t)THREAD_ID * cols);
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
#endif  /* HAVE_AVX2 */

/* y[c0..c1) += sum_i a_i W[row_i][c0..c1) in float, row by row (any code width and group) */
static void axpy_sq_float(const uint8_t *Q, int64_t qstride, int64_t qbytes, const f16 *S, const uint8_t *Z,
                          int64_t zstride, int bits, int64_t group, int64_t ngroups, const float *a, float *y,
                          const int32_t *rows, int64_t n, int64_t c0, int64_t c1, const void *u_) {
#ifdef HAVE_AVX2
    const unpacker *u = u_;
#else
    (void)qbytes, (void)u_;
#endif
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
                    to_float(unpack16(q, c, qbytes - r * qstride, u), &lo, &hi);
                    _mm256_storeu_ps(y + c, _mm256_add_ps(_mm256_fmsub_ps(vs, lo, vz), _mm256_loadu_ps(y + c)));
                    _mm256_storeu_ps(y + c + 8, _mm256_add_ps(_mm256_fmsub_ps(vs, hi, vz), _mm256_loadu_ps(y + c + 8)));
                }
            }
#endif
            for (; c < end; c++) y[c] += s * (float)code_at(q, c, bits) - sz;
        }
    }
}

void axpy_sq(const settings_t *s, const uint8_t *Q, int64_t qstride, int64_t qbytes, const f16 *S, const uint8_t *Z,
             int64_t zstride, int bits, int64_t group, int64_t cols, const float *a, float *y, const int32_t *rows,
             int64_t n) {
    if (!sq_args_ok(bits, group, cols, n)) return;
    int64_t ngroups = (cols + group - 1) / group;
    const void *up = NULL;
#ifdef HAVE_AVX2
    unpacker u = make_unpacker(bits);
    up = &u;
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
    if (!s->exact && n > 1 && bits <= 8 && group % 64 == 0 && cols % 64 == 0 &&
        axpy_sq_int(s, Q, qstride, qbytes, S, Z, zstride, bits, group, cols, ngroups, a, y, rows, n, &u))
        return;
#endif
#pragma omp parallel num_threads(share_threads(s, n * cols))
    {   /* threads split the columns, in whole groups where those are whole 16-code chunks */
        int64_t c0, c1;
        column_share(cols, group % 16 == 0 ? group : cols, THREAD_ID, NUM_THREADS, &c0, &c1);
        axpy_sq_float(Q, qstride, qbytes, S, Z, zstride, bits, group, ngroups, a, y, rows, n, c0, c1, up);
    }
}
