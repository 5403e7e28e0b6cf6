/* Scalar-quantized matrices times a vector: y[i] = W[row_i] . x with
 *   w[r][c] = scale[r][c/g] * (q[r][c] - zero[r][c/g])
 * computed per row as sum_g scale_g (q_g . x_g - zero_g sum_g x). Paths, fastest first: 16
 * short rows at once (AVX-512), the AVX-512 row kernel, the AVX2 row kernel per code width,
 * and per group (float x, partial groups, a matrix's last rows). Why: docs/kernels.md. */
#include "internal.h"

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


/* one row of codes (all groups whole, loads known safe) times int16 x: sum_g scale_g xs_g (q . xq)_g
 * in 8 float lanes */
static ALWAYS_INLINE __m256 row_int(const uint8_t *q, const f16 *scale, const int16_t *xq,
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
/* x in the masked layout: each 32-value chunk permuted as the codes are */
static void masked_x(const int16_t *xq, int64_t cols, const uint8_t *perm, int16_t *xm) {
    for (int64_t c = 0; c < cols; c += 32)
        for (int j = 0; j < 32; j++) xm[c + j] = xq[c + perm[j]];
}

/* q . xq over the codes c..end of a group (whole 32-code chunks), as 16 int32 lanes; two
 * chains of products. Each lane sums at most group/16 products of 255 * 32767 (masked: of
 * 896 * 32767, make_masked), below 2^31 for the groups up to 1024 that mv_sq sends here.
 * masked: codes and x in the masked layout (shuffle and mul: masked_t's shuffle and mask),
 * lanes scaled by 2^o. */
static ALWAYS_INLINE __m512i group_dot(const uint8_t *q, const int16_t *xq, int64_t c,
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

/* sum_g coef_g (q_g . xq_g) over one row, plus the lanes of `start`, as 16 lanes still to be
 * summed (mv_sq sums 16 rows' at once); the last group may be shorter (cols: whole chunks).
 * 2-4-bit codes in the masked layout (m; xq permuted). */
static ALWAYS_INLINE __m512 row_int512(const uint8_t *q, const float *coef, const int16_t *xq,
                                       int64_t ngroups, int64_t group, int64_t cols,
                                       const int bits, __m512i shuffle, __m512i mul,
                                       const masked_t *m, __m512 start) {
    const int masked = bits <= 4;
    if (masked) shuffle = m->shuffle, mul = m->mask;
    __m512 even = masked ? _mm512_setzero_ps() : start, odd = _mm512_setzero_ps();
    int64_t g = 0;
    /* the usual groups (64 codes; RWKVQuant's 128): a loop of their own over pairs of groups, the
     * group size a constant and the pointers stepped (docs/kernels.md) */
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

/* 16 short rows (a few groups: LoRA-like and predictor factors, low-rank w2) at once: a row
 * of one or two groups would otherwise spend more on its own reductions than on its codes.
 * y[r] = sum_g scale_g xs_g ((q . xq)_g - zero_g xqsum_g); q[r]: the rows' codes (loads safe).
 * packed: 16 consecutive rows of one or two groups, zeros a byte a row (the predictors' MLP
 * output layers, low-rank w2): their scales and zeros are read 16 at a time, not one by one. */
static ALWAYS_INLINE void rows16_int512(const uint8_t *q[16], const f16 *scale[16],
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
#endif  /* HAVE_PERMW */
#endif  /* HAVE_AVX2 */

#define AHEAD 4  /* rows fetched ahead of the one multiplied (a row list's or the next ones) */

/* What mv_sq's paths read: the matrix, x in the forms they take, and their tables */
typedef struct {
    const uint8_t *Q, *Z;
    const f16 *S;
    int64_t qstride, qbytes, zstride, group, cols, ngroups;
    int bits;
    const float *x;
    const int32_t *rows;
    float *y;
    float *xsum;  /* x summed per group */
    float *xs;    /* the int path's scale of x per group */
    int16_t *xq;  /* x rounded to int16 per group (the int path), or NULL: float x */
#ifdef HAVE_AVX2
    unpacker u;
#endif
#ifdef HAVE_PERMW
    __m512i shuffle, mul512;
    int wide;            /* the AVX-512 row kernel: 2-4- and 8-bit codes in whole 32-code chunks */
    float *xqsum;        /* the int16 x summed per group */
    const masked_t *m;   /* the row loop's 2-4-bit codes: the masked layout, x permuted to match (xm) */
    int16_t *xm;
#endif
} sq_mv_t;

/* x's sums per group and, on the int path, x rounded to int16 per group */
static void sq_mv_setup(sq_mv_t *k, const settings_t *s) {
    const int64_t ngroups = k->ngroups, group = k->group, cols = k->cols;
    const int bits = k->bits;
    const float *x = k->x;
    float *xsum = malloc(ngroups * sizeof *xsum), *xs = NULL;
    int16_t *xq = NULL;
    for (int64_t g = 0; g < ngroups; g++) {
        float t = 0.f;
        for (int64_t c = g * group; c < MIN(cols, (g + 1) * group); c++) t += x[c];
        xsum[g] = t;
    }
#ifdef HAVE_AVX2
    k->u = make_unpacker(bits);
    /* int path: groups of whole 16-code chunks; each int32 lane sums group/8 products of at
     * most 255 * 32767, below 2^31 for groups up to 1024 */
    if (!s->exact && bits <= 8 && group % 16 == 0 && group <= 1024 && (xq = malloc(cols * sizeof *xq)) &&
        (xs = malloc(ngroups * sizeof *xs)))
        quantize_x(x, cols, group, xq, xs);
    else
        free(xq), xq = NULL;
#else
    (void)s, (void)bits;
#endif
    k->xsum = xsum, k->xs = xs, k->xq = xq;
#ifdef HAVE_PERMW
    k->shuffle = shuffle512(bits <= 4 ? bits : 1, &k->mul512);
    k->wide = xq && bits > 1 && (bits <= 4 || bits == 8) && group % 32 == 0 && cols % 32 == 0;
    for (int64_t g = 0; k->wide && g < ngroups; g++) {
        int32_t t = 0;
        for (int64_t c = g * group; c < MIN(cols, (g + 1) * group); c++) t += xq[c];
        k->xqsum[g] = (float)t;
    }
#endif
}

/* How many blocks of 16 short rows go to rows16_int512, and the masked layout's x for the rows
 * the blocks leave to the row loop (their padded copies cover rows of up to 128 bytes) */
static int64_t sq_mv_short(sq_mv_t *k, int64_t n) {
    int64_t blocks = 0;
#ifdef HAVE_PERMW
    if (k->wide && k->cols <= 128) blocks = n / 16;  /* sum16x16 adds up to cols x 255 x 32767 per lane: < 2^31 */
    k->m = NULL, k->xm = NULL;
    if (k->wide && k->bits <= 4 && n > 16 * blocks) {
        if ((k->xm = malloc(k->cols * sizeof *k->xm))) {
            k->m = &masked_2_4[k->bits - 2];
            masked_x(k->xq, k->cols, k->m->perm, k->xm);
        } else
            k->wide = 0;
    }
#else
    (void)k, (void)n;
#endif
    return blocks;
}

#ifdef HAVE_PERMW
/* block b of 16 short rows by rows16_int512; false (the row loop's then) where a row lies too
 * near the end of the codes for 16-byte loads and is too long (over 128 bytes) to copy out */
static ALWAYS_INLINE uint8_t sq_block16(const sq_mv_t *k, int64_t b) {
    const uint8_t *Q = k->Q, *Z = k->Z;
    const f16 *S = k->S;
    const int32_t *rows = k->rows;
    const int64_t qstride = k->qstride, qbytes = k->qbytes, zstride = k->zstride, ngroups = k->ngroups;
    const uint8_t *q[16], *z[16];
    const f16 *sc[16];
    int safe = 1;
    for (int j = 0; j < 16; j++) {
        const int64_t r = rows ? rows[16 * b + j] : 16 * b + j;
        q[j] = Q + r * qstride, z[j] = Z + r * zstride, sc[j] = S + r * ngroups;
        safe &= qbytes - r * qstride >= qstride + 16;
    }
    uint8_t pad[16 * 128 + 16];
    if (!safe && qstride <= 128) {  /* the block's codes copied out, 16 zero bytes after them */
        for (int j = 0; j < 16; j++) q[j] = memcpy(pad + j * qstride, q[j], qstride);
        memset(pad + 16 * qstride, 0, 16);
        safe = 1;
    }
    const int packed = !rows && ngroups <= 2 && zstride == 1;
    if (safe) switch (k->bits) {
#define CASE(B) case B: rows16_int512(q, sc, z, k->xq, k->xs, k->xqsum, ngroups, k->group, k->cols, B, k->shuffle, \
                                      k->mul512, packed, k->y + 16 * b); break;
            CASE(2) CASE(3) CASE(4) CASE(8)
#undef CASE
        }
    return (uint8_t)safe;
}

static void sq_mv_blocks(const settings_t *s, const sq_mv_t *k, int64_t n, int64_t blocks, uint8_t *done) {
#pragma omp parallel for schedule(static) if (blocks && n * k->cols >= s->parallel_min) num_threads(team(s))
    for (int64_t b = 0; b < blocks; b++) done[b] = sq_block16(k, b);
}

/* row r by the AVX-512 row kernel, as 16 lanes still to be summed; coef: ngroups floats */
static ALWAYS_INLINE __m512 sq_row512(const sq_mv_t *k, int64_t r, float *coef) {
    const f16 *scale = k->S + r * k->ngroups;
    const uint8_t *q = k->Q + r * k->qstride, *z = k->Z + r * k->zstride;
    const __m512 zt = zero_term16(scale, z, k->xs, k->xqsum, k->ngroups, k->bits, &k->u, coef);
    switch (k->bits) {
#define CASE(B) case B: return row_int512(q, coef, B <= 4 ? k->xm : k->xq, k->ngroups, k->group, k->cols, B, \
                                          k->shuffle, k->mul512, k->m, zt);
        CASE(2) CASE(3) CASE(4) CASE(8)
#undef CASE
    }
    return zt;  /* not reached: the wide path takes 2-4- and 8-bit codes */
}
#endif

/* row r on the AVX2 int path (a loop per code width), else group by group: float x, partial
 * groups, 1-bit codes, a matrix's last rows */
static ALWAYS_INLINE float sq_row(const sq_mv_t *k, int64_t r) {
    const int bits = k->bits;
    const int64_t ngroups = k->ngroups, group = k->group, cols = k->cols, qstride = k->qstride;
    const uint8_t *q = k->Q + r * qstride, *z = k->Z + r * k->zstride;
    const int64_t avail = k->qbytes - r * qstride;
    const f16 *scale = k->S + r * ngroups;
    const float *x = k->x, *xsum = k->xsum;
    float total = 0.f, zeros = 0.f;
#ifdef HAVE_AVX2
    const int16_t *xq = k->xq;
    const float *xs = k->xs;
    const unpacker *u = &k->u;
    __m256 vt = _mm256_setzero_ps();
    if (xq && bits > 1 && cols % group == 0 && avail >= qstride + 16) {  /* the common case: a loop per code width */
        switch (bits) {
#define CASE(B) case B: vt = row_int(q, scale, xq, xs, ngroups, group, B, u); break;
            CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
#undef CASE
        }
        for (int64_t g = 0; g < ngroups; g++) zeros += (float)scale[g] * (float)code_at(z, g, bits) * xsum[g];
        return hsum(vt) - zeros;
    }
#endif
    for (int64_t g = 0; g < ngroups; g++) {
        int64_t c0 = g * group, c1 = MIN(cols, c0 + group);
        float sg = (float)scale[g];
        zeros += sg * (float)code_at(z, g, bits) * xsum[g];
#ifdef HAVE_AVX2
        if (xq && c1 - c0 == group) {
            vt = _mm256_fmadd_ps(_mm256_cvtepi32_ps(int_dot(q, c0, c1, avail, u, xq)), _mm256_set1_ps(sg * xs[g]), vt);
            continue;
        }
        total += sg * sq_group_float(q, avail, c0, c1, bits, x, u);
#else
        total += sg * sq_group_float(q, avail, c0, c1, bits, x, NULL);
#endif
    }
#ifdef HAVE_AVX2
    total += hsum(vt);
#endif
    return total - zeros;
}

/* rows first..n not done by the blocks, one at a time; the AVX-512 kernel's rows leave 16
 * lanes each, summed 16 rows at a time (sum_rows16) */
static void sq_mv_rows(const settings_t *s, const sq_mv_t *k, int64_t n, int64_t first, int64_t blocks,
                       const uint8_t *done) {
    const uint8_t *Q = k->Q, *Z = k->Z;
    const f16 *S = k->S;
    const int32_t *rows = k->rows;
    const int64_t qstride = k->qstride, zstride = k->zstride, ngroups = k->ngroups;
#pragma omp parallel if ((n - first) * k->cols >= s->parallel_min) num_threads(team(s))
    {
#ifdef HAVE_PERMW
    __m512 pend[16];  /* rows whose 16 lanes are still to be summed, and their i */
    int64_t at[16];
    int npend = 0;
    float coef[k->wide ? ngroups : 1];
#endif
#pragma omp for schedule(static) nowait
    for (int64_t i = first; i < n; i++) {  /* from first: a long loop of skips costs time of its own */
        if (i < 16 * blocks && done[i / 16]) continue;
        const int64_t r = rows ? rows[i] : i;
        if (i + AHEAD < n) {  /* fetch ahead: scattered rows (FFN neurons, head clusters) and whole matrices */
            const int64_t next = rows ? rows[i + AHEAD] : i + AHEAD;
            for (int64_t o = 0; o < qstride; o += 64) __builtin_prefetch(Q + next * qstride + o);
            __builtin_prefetch(S + next * ngroups);
            __builtin_prefetch(Z + next * zstride);
        }
#ifdef HAVE_PERMW
        if (k->wide && k->qbytes - r * qstride >= qstride + 16) {
            pend[npend] = sq_row512(k, r, coef);
            at[npend] = i;
            if (++npend == 16) sum_rows16(pend, at, npend, k->y), npend = 0;
            continue;
        }
#endif
        k->y[i] = sq_row(k, r);
    }
#ifdef HAVE_PERMW
    if (npend) sum_rows16(pend, at, npend, k->y);
#endif
    }
}

void mv_sq(const settings_t *s, const uint8_t *Q, int64_t qstride, int64_t qbytes, const f16 *S, const uint8_t *Z,
           int64_t zstride, int bits, int64_t group, int64_t cols, const float *x, float *y, const int32_t *rows,
           int64_t n) {
    if (!sq_args_ok(bits, group, cols, n)) {
        zero_rows(y, n);
        return;
    }
    if (mv_sq_q8(s, Q, qstride, qbytes, S, Z, zstride, bits, group, cols, x, y, rows, n)) return;
    const int64_t ngroups = (cols + group - 1) / group;
    sq_mv_t k = {.Q = Q, .Z = Z, .S = S, .qstride = qstride, .qbytes = qbytes, .zstride = zstride, .group = group,
                 .cols = cols, .ngroups = ngroups, .bits = bits, .x = x, .rows = rows, .y = y};
#ifdef HAVE_PERMW
    float xqsum[ngroups];
    k.xqsum = xqsum;
#endif
    sq_mv_setup(&k, s);
    const int64_t blocks = sq_mv_short(&k, n);
    uint8_t done[blocks + 1];
#ifdef HAVE_PERMW
    sq_mv_blocks(s, &k, n, blocks, done);
#endif
    int64_t first = 0;  /* the rows from which the row loop has work: after the blocks done (as a rule, all) */
    while (first < 16 * blocks && done[first / 16]) first += 16;
    sq_mv_rows(s, &k, n, first, blocks, done);
    free(k.xsum);
    free(k.xq);
    free(k.xs);
#ifdef HAVE_PERMW
    free(k.xm);
#endif
}
