/* The fast mode's int8 tier for 5-7-bit scalar codes: y[i] = W[row_i] . x with x rounded to integers
 * per block of 32 columns (x ~ xs_b xq, xs_b = max|x_b| / 32512, ties to even) and split into
 * two int8 planes, xq = 256 hi + lo, so that integer dot products of bytes, four products to an
 * int32 lane (`vpdpbusd`: unsigned codes times signed bytes), multiply the codes with x as
 * precisely as int16 would: one plane alone (int8 x, as llama.cpp's Q8_0) moved RWKV-4 and
 * RWKV-5 models by a mean KL of up to 1e-2 per token, the contract allows 1e-4
 * (tests/runtime/test_fast_contract.py). 64 codes of b bits are 8b bytes; one byte
 * permutation gives qword k the bytes of codes 8k..8k+7 and one `vpmultishiftqb` moves each code to its own byte, so any
 * width of 1-8 bits unpacks in two instructions and a mask. A row is
 *   sum_chunks (coef . dot64) - sum_g scale_g zero_g X_g,
 * coef the chunk's scales times its two x scales (lanes 0-7: the first 32 columns, 8-15: the
 * next), X_g the rounded x summed over group g: the result is exactly W times the rounded x,
 * which the evaluation path reproduces. Needs AVX-512 VBMI and VNNI; other builds, widths
 * (measured: docs/kernels.md) and groups that are neither 32 nor a multiple of 64 keep mv_sq's
 * tiers. */
#include "internal.h"

#ifdef HAVE_Q8
#define AHEAD 4  /* rows fetched ahead of the one multiplied, as mv_sq */
#define Q8_MIN_BITS 5  /* the widths this tier takes (runtime/fast.py, rounds_x) */
#define Q8_MAX_BITS 7
#define Q8_LEVELS 32512.f  /* the largest |xq|: 127 * 256 (runtime/fast.py, LEVELS) */

typedef struct {
    const uint8_t *Q, *Z;
    const f16 *S;
    const int32_t *rows;
    int64_t qstride, qbytes, zstride, group, cols, ngroups, chunks;
    int bits;
    int8_t *hi, *lo; /* chunks * 64 bytes each: x rounded, xq = 256 hi + lo; zeros past cols */
    __m512 *xs;      /* per chunk: lanes 0-7 the scale of its first 32 columns, 8-15 of the next */
    float *ones, *xg; /* per group: 1, and the rounded x summed (zero_term16's xs and xqsum) */
    unpacker u;
    __m512i perm, shift;
} q8_t;

/* x rounded in blocks of 32 and split into its two planes (16 lanes at a time; cvtps rounds to
 * nearest, ties to even, as lrintf), each chunk's pair of scales, and each group's sum of the
 * rounded x. |xq| <= 32512 = 127 * 256 keeps hi = (xq + 128) >> 8 within int8, lo in -128..127. */
static void q8_setup(q8_t *k, const float *x) {
    const int64_t cols = k->cols;
    float xs32[2 * k->chunks], sum32[2 * k->chunks];
    for (int64_t b = 0; b < 2 * k->chunks; b++) {
        const int64_t c0 = 32 * b, n = MAX(0, MIN(32, cols - c0));
        const __mmask16 m0 = (__mmask16)((1u << MIN(16, n)) - 1), m1 = (__mmask16)((1u << MAX(0, n - 16)) - 1);
        const __m512 v[2] = {_mm512_maskz_loadu_ps(m0, x + c0), _mm512_maskz_loadu_ps(m1, x + c0 + 16)};
        const float m = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1])));
        const __m512 inv = _mm512_set1_ps(m > 0 ? Q8_LEVELS / m : 0.f);
        __m512i total = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(v[h], inv));
            const __m512i high = _mm512_srai_epi32(_mm512_add_epi32(q, _mm512_set1_epi32(128)), 8);
            _mm_storeu_si128((__m128i *)(k->hi + c0 + 16 * h), _mm512_cvtepi32_epi8(high));
            _mm_storeu_si128((__m128i *)(k->lo + c0 + 16 * h), _mm512_cvtepi32_epi8(_mm512_sub_epi32(q, _mm512_slli_epi32(high, 8))));
            total = _mm512_add_epi32(total, q);
        }
        xs32[b] = m / Q8_LEVELS;
        sum32[b] = (float)_mm512_reduce_add_epi32(total);
    }
    for (int64_t ch = 0; ch < k->chunks; ch++)
        k->xs[ch] = _mm512_insertf32x8(_mm512_set1_ps(xs32[2 * ch]), _mm256_set1_ps(xs32[2 * ch + 1]), 1);
    for (int64_t g = 0; g < k->ngroups; g++) {  /* groups of 32 or of whole chunks: whole blocks each */
        float t = 0.f;
        for (int64_t b = g * k->group / 32; b < MIN(2 * k->chunks, (g + 1) * k->group / 32); b++) t += xs32[b] * sum32[b];
        k->ones[g] = 1.f, k->xg[g] = t;
    }
}

/* codes of one 64-code chunk (the bytes of `bytes` at p; the rest of the register zero) times
 * xq = 256 hi + lo: lanes of at most 4 * 255 * 127 * 257, far below 2^31 */
static ALWAYS_INLINE __m512i dot64(const uint8_t *p, __mmask64 bytes, const int8_t *hi, const int8_t *lo,
                                   __m512i perm, __m512i shift, __m512i mask) {
    const __m512i codes = _mm512_and_si512(
        _mm512_multishift_epi64_epi8(shift, _mm512_permutexvar_epi8(perm, _mm512_maskz_loadu_epi8(bytes, p))), mask);
    const __m512i h = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes, _mm512_loadu_si512(hi));
    return _mm512_add_epi32(_mm512_slli_epi32(h, 8), _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes, _mm512_loadu_si512(lo)));
}

static inline __mmask64 first_bytes(int64_t n) { return n >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << n) - 1; }

/* the scales of chunk ch's two halves of 32 columns: PER chunks a group (1: groups of 64, 2:
 * of 128), 0: groups of 32, -1: any multiple of 64 (coef then holds one scale per chunk) */
static ALWAYS_INLINE __m512 chunk_scale(const float *coef, int64_t ch, int64_t ngroups, const int PER) {
    if (PER == 0)
        return _mm512_insertf32x8(_mm512_set1_ps(coef[2 * ch]),
                                  _mm256_set1_ps(2 * ch + 1 < ngroups ? coef[2 * ch + 1] : 0.f), 1);
    return _mm512_set1_ps(coef[PER == 2 ? ch >> 1 : ch]);
}

/* one row as 16 lanes still to be summed; coef: max(ngroups, chunks) floats of scratch */
static ALWAYS_INLINE __m512 q8_row(const q8_t *k, int64_t r, float *coef, const int PER) {
    const int bits = k->bits;
    const int64_t chunks = k->chunks, full = k->cols / 64, ngroups = k->ngroups, step = 8 * bits;
    const uint8_t *q = k->Q + r * k->qstride;
    const int8_t *hi = k->hi, *lo = k->lo;
    const __m512 *xs = k->xs;
    const __m512i perm = k->perm, shift = k->shift, mask = _mm512_set1_epi8((char)((1 << bits) - 1));
    const __mmask64 all = first_bytes(step);
    __m512 even = zero_term16(k->S + r * ngroups, k->Z + r * k->zstride, k->ones, k->xg, ngroups, bits, &k->u, coef),
           odd = _mm512_setzero_ps();
    if (PER < 0)  /* one scale per chunk, from the group's */
        for (int64_t g = ngroups - 1, per = k->group / 64; g >= 0; g--)
            for (int64_t j = per - 1; j >= 0; j--)
                if (g * per + j < chunks) coef[g * per + j] = coef[g];
    int64_t ch = 0;
    for (; ch + 2 <= full; ch += 2) {  /* two chains */
        const __m512i a = dot64(q + step * ch, all, hi + 64 * ch, lo + 64 * ch, perm, shift, mask),
                      b = dot64(q + step * (ch + 1), all, hi + 64 * (ch + 1), lo + 64 * (ch + 1), perm, shift, mask);
        even = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), _mm512_mul_ps(chunk_scale(coef, ch, ngroups, PER), xs[ch]), even);
        odd = _mm512_fmadd_ps(_mm512_cvtepi32_ps(b), _mm512_mul_ps(chunk_scale(coef, ch + 1, ngroups, PER), xs[ch + 1]), odd);
    }
    for (; ch < chunks; ch++) {  /* the last whole chunk, and a partial one (bytes past the row's codes not read) */
        const __mmask64 m = ch < full ? all : first_bytes(((k->cols - 64 * ch) * bits + 7) / 8);
        const __m512i a = dot64(q + step * ch, m, hi + 64 * ch, lo + 64 * ch, perm, shift, mask);
        even = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), _mm512_mul_ps(chunk_scale(coef, ch, ngroups, PER), xs[ch]), even);
    }
    return _mm512_add_ps(even, odd);
}

static void q8_rows(const settings_t *s, const q8_t *k, float *y, int64_t n) {
    const int32_t *rows = k->rows;
    const int64_t qstride = k->qstride, zstride = k->zstride, ngroups = k->ngroups;
#pragma omp parallel if (n * k->cols >= s->parallel_min) num_threads(team(s))
    {
        __m512 pend[16];  /* rows whose 16 lanes are still to be summed, and their i */
        int64_t at[16];
        int npend = 0;
        float coef[MAX(ngroups, k->chunks)];
        const int per = k->group == 32 ? 0 : k->group == 64 ? 1 : k->group == 128 ? 2 : -1;
#pragma omp for schedule(static) nowait
        for (int64_t i = 0; i < n; i++) {
            const int64_t r = rows ? rows[i] : i;
            if (i + AHEAD < n) {  /* scattered rows (FFN neurons, head clusters) and whole matrices alike */
                const int64_t next = rows ? rows[i + AHEAD] : i + AHEAD;
                for (int64_t o = 0; o < qstride; o += 64) __builtin_prefetch(k->Q + next * qstride + o);
                __builtin_prefetch(k->S + next * ngroups);
                __builtin_prefetch(k->Z + next * zstride);
            }
            switch (per) {
#define CASE(P) case P: pend[npend] = q8_row(k, r, coef, P); break;
                CASE(0) CASE(1) CASE(2) CASE(-1)
#undef CASE
            }
            at[npend] = i;
            if (++npend == 16) sum_rows16(pend, at, npend, y), npend = 0;
        }
        if (npend) sum_rows16(pend, at, npend, y);
    }
}

HIDDEN int mv_sq_q8(const settings_t *s, const uint8_t *Q, int64_t qstride, int64_t qbytes, const f16 *S,
                    const uint8_t *Z, int64_t zstride, int bits, int64_t group, int64_t cols, const float *x, float *y,
                    const int32_t *rows, int64_t n) {
    /* 2-4- and 8-bit codes keep mv_sq's int16 paths and short rows its 16-row blocks: faster
     * for them on whole models (docs/kernels.md) */
    if (s->exact || bits < Q8_MIN_BITS || bits > Q8_MAX_BITS || cols <= 128 || (group != 32 && group % 64) ||
        qstride * 8 < cols * bits || n == 0)
        return 0;
    (void)qbytes;  /* masked loads read no byte past a row's codes */
    q8_t k = {.Q = Q, .Z = Z, .S = S, .rows = rows, .qstride = qstride, .zstride = zstride, .group = group,
              .cols = cols, .ngroups = (cols + group - 1) / group, .chunks = (cols + 63) / 64, .bits = bits,
              .u = make_unpacker(bits)};
    uint8_t perm[64], shift[64];
    for (int j = 0; j < 64; j++) perm[j] = (uint8_t)(j / 8 * bits + j % 8), shift[j] = (uint8_t)(j % 8 * bits);
    k.perm = _mm512_loadu_si512(perm), k.shift = _mm512_loadu_si512(shift);
    int8_t hi[k.chunks * 64] __attribute__((aligned(64))), lo[k.chunks * 64] __attribute__((aligned(64)));
    __m512 xs[k.chunks];
    float ones[k.ngroups], xg[k.ngroups];
    k.hi = hi, k.lo = lo, k.xs = xs, k.ones = ones, k.xg = xg;
    q8_setup(&k, x);
    q8_rows(s, &k, y, n);
    return 1;
}
#else
HIDDEN int mv_sq_q8(const settings_t *s, const uint8_t *Q, int64_t qstride, int64_t qbytes, const f16 *S,
                    const uint8_t *Z, int64_t zstride, int bits, int64_t group, int64_t cols, const float *x, float *y,
                    const int32_t *rows, int64_t n) {
    (void)s, (void)Q, (void)qstride, (void)qbytes, (void)S, (void)Z, (void)zstride, (void)bits, (void)group;
    (void)cols, (void)x, (void)y, (void)rows, (void)n;
    return 0;
}
#endif
