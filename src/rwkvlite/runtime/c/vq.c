/* Vector-quantized matrices: w[r][c..c+d) = cscale[c/g] * codebook[c/g][q[r][c/d]][0..d),
 * times a vector (mv_vq) or as y += a W[rows] (axpy_vq). mv_vq's paths: 64-entry int16 table
 * lookups (AVX-512), gathered centroid pairs (AVX2), and per vector in float. */
#include "internal.h"

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
 * byte permutation and one variable shift (two unpack16 and an insert: seven instructions).
 * The masked load reads only the 4 bits bytes of the 32 indices. */
static inline __m512i idx32(const uint8_t *q, int64_t v, int bits, __m512i pick, __m512i shift) {
    const __m512i raw = _mm512_maskz_loadu_epi8((__mmask64)((1ULL << (4 * bits)) - 1), q + v / 8 * bits);
    return _mm512_srlv_epi16(_mm512_permutexvar_epi8(pick, raw), shift);
}
#endif

/* What mv_vq's paths read: the matrix, x in the forms they take, and their tables */
typedef struct {
    const uint8_t *Q;
    const int8_t *book;
    const f16 *bscale;
    int64_t qstride, qbytes, group, cols, K, nvec, per_group, ngroups;
    int bits, dim;
    const float *x;
    int16_t *xq;     /* x rounded to int16 per group (the int paths), or NULL: float x */
    float *xs;       /* its scale per group */
    int32_t *pairs;  /* the gather path's centroid pairs (pair_table) */
#ifdef HAVE_AVX2
    unpacker u;
#endif
#ifdef HAVE_PERMW
    int16_t *tables, *xeo;  /* the table path's: each group's centroids as two 64-entry int16 tables; x split
                               into each group's even and odd columns (NULL: not that path) */
#ifdef __AVX512VBMI__
    __m512i pick, shift;
#endif
#endif
} vq_mv_t;

#ifdef HAVE_PERMW
/* AVX-512BW: each group's centroids as two 64-entry int16 tables (first and second values)
 * looked up 32 indices at a time by vpermt2w; x split into even and odd columns */
static void vq_tables(vq_mv_t *k) {
    const int64_t ngroups = k->ngroups, group = k->group, K = k->K, nvec = k->nvec, per_group = k->per_group;
    const int8_t *book = k->book;
    const int16_t *xq = k->xq;
    int16_t *tables = NULL, *xeo = NULL;
    if (xq && k->bits <= 6 && per_group % 32 == 0 && nvec % per_group % 32 == 0 &&
        (tables = malloc(ngroups * 128 * sizeof *tables)) && (xeo = malloc(ngroups * group * sizeof *xeo))) {
        for (int64_t g = 0; g < ngroups; g++)
            for (int64_t j = 0; j < 64; j++) {  /* entry j: centroid j mod K (idx32 leaves bits above an index) */
                tables[g * 128 + j] = book[(g * K + j % K) * 2];
                tables[g * 128 + 64 + j] = book[(g * K + j % K) * 2 + 1];
            }
        for (int64_t v = 0; v < nvec; v++) {  /* per group: its even columns, then its odd ones */
            int64_t g = v / per_group, j = v % per_group;
            xeo[g * group + j] = xq[2 * v];
            xeo[g * group + per_group + j] = xq[2 * v + 1];
        }
    }
    k->tables = tables, k->xeo = xeo;
#ifdef __AVX512VBMI__
    if (xeo) idx32_tables(k->bits, &k->pick, &k->shift);
#endif
}
#endif

/* x rounded to int16 where an int path applies, and that path's tables */
static void vq_mv_setup(vq_mv_t *k, const settings_t *s) {
    const int64_t group = k->group, per_group = k->per_group, ngroups = k->ngroups, cols = k->cols;
    int16_t *xq = NULL;
    float *xs = NULL;
#ifdef HAVE_AVX2
    k->u = make_unpacker(k->bits);
    /* int path (dim 2, whole 16-index chunks, in the last group too, which may be shorter: FFN
     * widths such as RWKV-6's 3.5 x 768 = 2688 columns in groups of 256): x as int16 per group,
     * centroid pairs gathered and multiplied 16 columns per madd; |sum| < 2 * 127 * 32767 *
     * group / 16 < 2^31 */
    if (!s->exact && k->dim == 2 && k->bits <= 8 && group == 2 * per_group && per_group % 16 == 0 && group <= 4096 &&
        k->nvec % per_group % 16 == 0 && (xq = malloc(cols * sizeof *xq)) && (xs = malloc(ngroups * sizeof *xs)))
        quantize_x(k->x, cols, group, xq, xs);
    else
        free(xq), xq = NULL;
#else
    (void)s, (void)group, (void)per_group, (void)ngroups, (void)cols;
#endif
    k->xq = xq, k->xs = xs, k->pairs = NULL;
#ifdef HAVE_PERMW
    vq_tables(k);
    const int table_lookup = k->xeo != NULL;
#else
    const int table_lookup = 0;
#endif
#ifdef HAVE_AVX2
    if (k->xq && !table_lookup && !(k->pairs = pair_table(k->book, ngroups, k->K))) {  /* gathers need the pairs */
        free(k->xq);
        k->xq = NULL;
    }
#else
    (void)table_lookup;
#endif
}

#ifdef HAVE_PERMW
/* lanes + the products of group g's vectors v0..v1 of row q by table lookups, in 16 float lanes
 * (added up once per row). A lane of the two chains sums group/16 products of at most
 * 128 * 32767: below 2^31 for groups up to 4096 (their sum over lanes may not be: it is taken
 * in float). */
static ALWAYS_INLINE __m512 vq_group_table(const vq_mv_t *k, const uint8_t *q, int64_t avail, int64_t g, int64_t v0,
                                           int64_t v1, __m512 lanes) {
    const int16_t *t = k->tables + g * 128, *xe = k->xeo + g * k->group, *xo = xe + k->per_group;
    const __m512i t0a = _mm512_loadu_si512(t), t0b = _mm512_loadu_si512(t + 32);
    const __m512i t1a = _mm512_loadu_si512(t + 64), t1b = _mm512_loadu_si512(t + 96);
    __m512i acc = _mm512_setzero_si512(), acc1 = acc;
    for (int64_t v = v0; v < v1; v += 32) {
#ifdef __AVX512VBMI__
        (void)avail;
        const __m512i idx = idx32(q, v, k->bits, k->pick, k->shift);
#else
        const __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(unpack16(q, v, avail, &k->u)),
                                               unpack16(q, v + 16, avail, &k->u), 1);
#endif
        acc = DOT16X(acc, _mm512_permutex2var_epi16(t0a, idx, t0b), _mm512_loadu_si512(xe + (v - v0)));
        acc1 = DOT16X(acc1, _mm512_permutex2var_epi16(t1a, idx, t1b), _mm512_loadu_si512(xo + (v - v0)));
    }
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(acc, acc1)),
                           _mm512_set1_ps((float)k->bscale[g] * k->xs[g]), lanes);
}
#endif

#ifdef HAVE_AVX2
/* the products of group g's vectors v0..v1 of row q with gathered centroid pairs, scaled */
static ALWAYS_INLINE float vq_group_gather(const vq_mv_t *k, const uint8_t *q, int64_t avail, int64_t g, int64_t v0,
                                           int64_t v1) {
    const int32_t *tab = k->pairs + g * k->K;
    const int16_t *xq = k->xq;
    __m256i acc = _mm256_setzero_si256(), acc1 = acc;
    for (int64_t v = v0; v < v1; v += 16) {
        __m256i idx = unpack16(q, v, avail, &k->u);
        __m256i lo = _mm256_i32gather_epi32(tab, _mm256_cvtepu16_epi32(_mm256_castsi256_si128(idx)), 4);
        __m256i hi = _mm256_i32gather_epi32(tab, _mm256_cvtepu16_epi32(_mm256_extracti128_si256(idx, 1)), 4);
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(lo, _mm256_loadu_si256((const __m256i *)(xq + 2 * v))));
        acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(hi, _mm256_loadu_si256((const __m256i *)(xq + 2 * v + 16))));
    }
    int32_t lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, _mm256_add_epi32(acc, acc1));
    int64_t sum = 0;
    for (int j = 0; j < 8; j++) sum += lanes[j];
    return (float)k->bscale[g] * k->xs[g] * (float)sum;
}
#endif

/* row r of the matrix times x, group by group on the path set up for this call */
static ALWAYS_INLINE float vq_row(const vq_mv_t *k, int64_t r) {
    const int64_t avail = k->qbytes - r * k->qstride, nvec = k->nvec, per_group = k->per_group;
    (void)avail;  /* read by the SIMD paths only */
    const uint8_t *q = k->Q + r * k->qstride;
    float total = 0.f;
#ifdef HAVE_PERMW
    __m512 lanes = _mm512_setzero_ps();
#endif
    for (int64_t g = 0; g < k->ngroups; g++) {
        int64_t v0 = g * per_group, v1 = MIN(nvec, v0 + per_group);
#ifdef HAVE_PERMW
        if (k->xeo) {
            lanes = vq_group_table(k, q, avail, g, v0, v1, lanes);
            continue;
        }
#endif
#ifdef HAVE_AVX2
        if (k->xq) {
            total += vq_group_gather(k, q, avail, g, v0, v1);
            continue;
        }
#endif
        total += (float)k->bscale[g] * vq_group_float(q, k->book + g * k->K * k->dim, k->bits, k->dim, v0, v1, k->x);
    }
#ifdef HAVE_PERMW
    if (k->xeo) total += _mm512_reduce_add_ps(lanes);
#endif
    return total;
}

void mv_vq(const settings_t *s, const uint8_t *Q, int64_t qstride, int64_t qbytes, const int8_t *book,
           const f16 *bscale, int bits, int dim, int64_t group, int64_t cols, const float *x, float *y,
           const int32_t *rows, int64_t n) {
    if (!vq_args_ok(bits, dim, group, cols, n)) {
        zero_rows(y, n);
        return;
    }
    const int64_t nvec = cols / dim, per_group = group / dim;
    vq_mv_t k = {.Q = Q, .book = book, .bscale = bscale, .qstride = qstride, .qbytes = qbytes, .group = group, .cols = cols,
                 .K = (int64_t)1 << bits, .nvec = nvec, .per_group = per_group,
                 .ngroups = (nvec + per_group - 1) / per_group, .bits = bits, .dim = dim, .x = x};
    vq_mv_setup(&k, s);
#pragma omp parallel for schedule(static) if (n * cols >= s->parallel_min) num_threads(team(s))
    for (int64_t i = 0; i < n; i++) y[i] = vq_row(&k, rows ? rows[i] : i);
#ifdef HAVE_PERMW
    free(k.tables);
    free(k.xeo);
#endif
    free(k.pairs);
    free(k.xq);
    free(k.xs);
}

#ifdef HAVE_AVX2
/* y[2v..2v+32) += s times the 16 vectors of one group from v (gathered centroid pairs) */
static ALWAYS_INLINE void vq_axpy16(const int32_t *tab, __m256i idx, __m256 s, float *y, int64_t v) {
    for (int half = 0; half < 2; half++) {
        __m256i w = _mm256_i32gather_epi32(tab, _mm256_cvtepu16_epi32(half ? _mm256_extracti128_si256(idx, 1)
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

void axpy_vq(const settings_t *s, const uint8_t *Q, int64_t qstride, int64_t qbytes, const int8_t *book,
             const f16 *bscale, int bits, int dim, int64_t group, int64_t cols, const float *a, float *y,
             const int32_t *rows, int64_t n) {
    if (!vq_args_ok(bits, dim, group, cols, n)) return;
    int64_t K = (int64_t)1 << bits, nvec = cols / dim, per_group = group / dim, ngroups = (nvec + per_group - 1) / per_group;
    int32_t *pairs = NULL;
#ifdef HAVE_AVX2
    unpacker u = make_unpacker(bits);
    if (dim == 2 && bits <= 8 && group == 2 * per_group && per_group % 16 == 0) pairs = pair_table(book, ngroups, K);
#else
    (void)ngroups;
#endif
#pragma omp parallel num_threads(share_threads(s, n * cols))
    {   /* threads split the columns, in whole groups */
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
                vq_axpy16(pairs + g * K, unpack16(q, v, avail, &u), _mm256_set1_ps(a[i] * (float)bscale[g]), y, v);
            }
#endif
            for (; v < v1; v++) {
                int64_t g = v / per_group;
                float t = a[i] * (float)bscale[g];
                const int8_t *c = book + (g * K + code_at(q, v, bits)) * dim;
                for (int d = 0; d < dim; d++) y[v * dim + d] += t * (float)c[d];
            }
        }
    }
    free(pairs);
}
