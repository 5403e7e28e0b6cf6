/* Matrix-vector kernels on packed weights, for the lean runtime (runtime/kernels.py builds
 * this with gcc -O3 -march=native on first use and calls it through ctypes).
 *
 * Layouts are the file's (format/encodings.py): codes are a little-endian bit stream per
 * row, each row starting on a byte boundary; scales and codebook scales are float16.
 *   sq: w[r][c] = scale[r][c/g] * (q[r][c] - zero[r][c/g])
 *   vq: w[r][c..c+d) = cscale[c/g] * codebook[c/g][q[r][c/d]][0..d)
 * Every kernel takes an optional row list (rows == NULL: all rows), so the runtime reads
 * only the rows it needs (predicted-active FFN neurons, chosen head clusters, ...).
 *   mv_*    y[i] = W[row_i] . x
 *   axpy_*  y   += sum_i a[i] W[row_i]          (rows of a transposed matrix)
 * Accumulation is float32.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#if defined(__F16C__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define HAVE_F16C 1  /* gcc converts _Float16 one value at a time otherwise */
#endif

typedef _Float16 f16;

static inline uint32_t code_at(const uint8_t *row, int64_t j, int bits) {
    int64_t bit = j * bits;
    const uint8_t *p = row + (bit >> 3);
    int shift = bit & 7, need = (shift + bits + 7) >> 3;  /* never reads past the code's last byte */
    uint32_t word = p[0];
    for (int b = 1; b < need; b++) word |= (uint32_t)p[b] << (8 * b);
    return (word >> shift) & ((1u << bits) - 1);
}

#ifdef HAVE_F16C
/* codes c..c+8 of a row (c a multiple of 8) as floats; bits 1-4 or 8 */
static inline __m256 sq_codes8(const uint8_t *q, int64_t c, int bits, __m256i shifts, __m256i mask) {
    const uint8_t *p = q + (c >> 3) * bits;
    if (bits == 8) return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)));
    uint32_t w = p[0];  /* 8 codes of 1-4 bits: exactly `bits` bytes */
    for (int b = 1; b < bits; b++) w |= (uint32_t)p[b] << (8 * b);
    return _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)w), shifts), mask));
}
#endif

#ifdef HAVE_F16C
/* 8- and 4-bit codes times x quantised to int16 per group (x ~ xs[g] * xq, relative error
 * 2^-15): 16 codes per madd instead of 8 per float FMA. Sums of 8 products of at most
 * 255 * 32767 per int32 lane stay far below 2^31 for groups up to 2048. */
static inline float int_dot(const uint8_t *q, int64_t c0, int64_t c1, int bits, const int16_t *xq) {
    __m256i acc = _mm256_setzero_si256(), acc1 = acc;
    const __m128i nib = _mm_set1_epi8(15);
    for (int64_t c = c0; c < c1; c += 32) {
        __m128i b0, b1;
        if (bits == 8) {
            b0 = _mm_loadu_si128((const __m128i *)(q + c));
            b1 = _mm_loadu_si128((const __m128i *)(q + c + 16));
        } else {
            __m128i raw = _mm_loadu_si128((const __m128i *)(q + c / 2));  /* 16 bytes = 32 codes */
            __m128i lo = _mm_and_si128(raw, nib), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), nib);
            b0 = _mm_unpacklo_epi8(lo, hi);  /* codes c..c+16 in order */
            b1 = _mm_unpackhi_epi8(lo, hi);
        }
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_cvtepu8_epi16(b0), _mm256_loadu_si256((const __m256i *)(xq + c))));
        acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(_mm256_cvtepu8_epi16(b1),
                                                        _mm256_loadu_si256((const __m256i *)(xq + c + 16))));
    }
    acc = _mm256_add_epi32(acc, acc1);
    int32_t lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, acc);
    int64_t total = 0;
    for (int j = 0; j < 8; j++) total += lanes[j];
    return (float)total;
}
#endif

/* one row of sq codes dotted with x; xsum[g] = sum of x over group g; xq/xs: x as int16 per
 * group (NULL: float path only) */
static float sq_dot(const uint8_t *q, const f16 *scale, const uint8_t *zero, int bits, int64_t group,
                    int64_t cols, const float *x, const float *xsum, const int16_t *xq, const float *xs) {
    float total = 0.f;
    int64_t ngroups = (cols + group - 1) / group;
    for (int64_t g = 0; g < ngroups; g++) {
        int64_t c0 = g * group, c1 = c0 + group < cols ? c0 + group : cols;
        float acc = 0.f;
        int64_t c = c0;
#ifdef HAVE_F16C
        if (xq && c1 - c0 == group) {
            acc = xs[g] * int_dot(q, c0, c1, bits, xq);
            c = c1;
        }
#endif
        if (c < c1 && (bits == 8 || bits <= 4) && (group & 7) == 0) {  /* 8 codes in every `bits` bytes */
#ifdef HAVE_F16C
            const __m256i shifts = _mm256_setr_epi32(0, bits, 2 * bits, 3 * bits, 4 * bits, 5 * bits, 6 * bits, 7 * bits);
            const __m256i mask = _mm256_set1_epi32((1 << bits) - 1);
            __m256 v = _mm256_setzero_ps(), v1 = v, v2 = v, v3 = v;  /* 4 chains hide the FMA latency */
            for (; c + 32 <= c1; c += 32) {
                v = _mm256_fmadd_ps(sq_codes8(q, c, bits, shifts, mask), _mm256_loadu_ps(x + c), v);
                v1 = _mm256_fmadd_ps(sq_codes8(q, c + 8, bits, shifts, mask), _mm256_loadu_ps(x + c + 8), v1);
                v2 = _mm256_fmadd_ps(sq_codes8(q, c + 16, bits, shifts, mask), _mm256_loadu_ps(x + c + 16), v2);
                v3 = _mm256_fmadd_ps(sq_codes8(q, c + 24, bits, shifts, mask), _mm256_loadu_ps(x + c + 24), v3);
            }
            for (; c + 8 <= c1; c += 8) v = _mm256_fmadd_ps(sq_codes8(q, c, bits, shifts, mask), _mm256_loadu_ps(x + c), v);
            v = _mm256_add_ps(_mm256_add_ps(v, v1), _mm256_add_ps(v2, v3));
            float lanes[8];
            _mm256_storeu_ps(lanes, v);
            for (int j = 0; j < 8; j++) acc += lanes[j];
#endif
        }
        for (; c < c1; c++) acc += (float)code_at(q, c, bits) * x[c];
        total += (float)scale[g] * (acc - (float)code_at(zero, g, bits) * xsum[g]);
    }
    return total;
}

static void group_sums(const float *x, int64_t cols, int64_t group, float *xsum) {
    int64_t ngroups = (cols + group - 1) / group;
    for (int64_t g = 0; g < ngroups; g++) {
        float s = 0.f;
        for (int64_t c = g * group; c < cols && c < (g + 1) * group; c++) s += x[c];
        xsum[g] = s;
    }
}

void mv_f16(const f16 *W, int64_t cols, const float *x, float *y, const int32_t *rows, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const f16 *w = W + (int64_t)(rows ? rows[i] : i) * cols;
        float acc = 0.f;
        int64_t c = 0;
#ifdef HAVE_F16C
        __m256 v = _mm256_setzero_ps(), v1 = v, v2 = v, v3 = v;  /* 4 chains hide the FMA latency */
#define F16X8(o) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + c + (o))))
        for (; c + 32 <= cols; c += 32) {
            v = _mm256_fmadd_ps(F16X8(0), _mm256_loadu_ps(x + c), v);
            v1 = _mm256_fmadd_ps(F16X8(8), _mm256_loadu_ps(x + c + 8), v1);
            v2 = _mm256_fmadd_ps(F16X8(16), _mm256_loadu_ps(x + c + 16), v2);
            v3 = _mm256_fmadd_ps(F16X8(24), _mm256_loadu_ps(x + c + 24), v3);
        }
        for (; c + 8 <= cols; c += 8) v = _mm256_fmadd_ps(F16X8(0), _mm256_loadu_ps(x + c), v);
        v = _mm256_add_ps(_mm256_add_ps(v, v1), _mm256_add_ps(v2, v3));
        float lanes[8];
        _mm256_storeu_ps(lanes, v);
        for (int j = 0; j < 8; j++) acc += lanes[j];
#endif
        for (; c < cols; c++) acc += (float)w[c] * x[c];
        y[i] = acc;
    }
}

void axpy_f16(const f16 *W, int64_t cols, const float *a, float *y, const int32_t *rows, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const f16 *w = W + (int64_t)(rows ? rows[i] : i) * cols;
        float ai = a[i];
        int64_t c = 0;
#ifdef HAVE_F16C
        __m256 va = _mm256_set1_ps(ai);
        for (; c + 8 <= cols; c += 8)
            _mm256_storeu_ps(y + c, _mm256_fmadd_ps(va, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + c))),
                                                    _mm256_loadu_ps(y + c)));
#endif
        for (; c < cols; c++) y[c] += ai * (float)w[c];
    }
}

/* 1: 8/4-bit matrices use the int16-x path (faster; x rounded to 2^-15 of its group's
 * largest value); 0: float x throughout (set by RWKVLITE_EXACT=1) */
int int16_x = 1;

void mv_sq(const uint8_t *Q, int64_t qstride, const f16 *S, const uint8_t *Z, int64_t zstride, int bits,
           int64_t group, int64_t cols, const float *x, float *xsum, float *y, const int32_t *rows, int64_t n) {
    int64_t ngroups = (cols + group - 1) / group;
    group_sums(x, cols, group, xsum);
    int16_t *xq = NULL;
    float *xs = NULL;
    if (int16_x && (bits == 8 || bits == 4) && group % 32 == 0 && group <= 2048 && (xq = malloc(cols * sizeof *xq))) {
        xs = malloc(ngroups * sizeof *xs);
        for (int64_t g = 0; g < ngroups; g++) {
            int64_t c0 = g * group, c1 = c0 + group < cols ? c0 + group : cols;
            float m = 0.f;
            for (int64_t c = c0; c < c1; c++) m = fabsf(x[c]) > m ? fabsf(x[c]) : m;
            float inv = m > 0 ? 32767.f / m : 0.f;
            xs[g] = m > 0 ? m / 32767.f : 0.f;
            for (int64_t c = c0; c < c1; c++) xq[c] = (int16_t)lrintf(x[c] * inv);
        }
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t r = rows ? rows[i] : i;
        y[i] = sq_dot(Q + r * qstride, S + r * ngroups, Z + r * zstride, bits, group, cols, x, xsum, xq, xs);
    }
    free(xq);
    free(xs);
}

void axpy_sq(const uint8_t *Q, int64_t qstride, const f16 *S, const uint8_t *Z, int64_t zstride, int bits,
             int64_t group, int64_t cols, const float *a, float *y, const int32_t *rows, int64_t n) {
    int64_t ngroups = (cols + group - 1) / group;
    for (int64_t i = 0; i < n; i++) {
        int64_t r = rows ? rows[i] : i;
        const uint8_t *q = Q + r * qstride, *z = Z + r * zstride;
        for (int64_t g = 0; g < ngroups; g++) {
            float s = a[i] * (float)S[r * ngroups + g], zero = (float)code_at(z, g, bits);
            int64_t c = g * group, c1 = (g + 1) * group < cols ? (g + 1) * group : cols;
#ifdef HAVE_F16C
            if ((bits == 8 || bits <= 4) && (group & 7) == 0) {
                const __m256i shifts = _mm256_setr_epi32(0, bits, 2 * bits, 3 * bits, 4 * bits, 5 * bits, 6 * bits, 7 * bits);
                const __m256i mask = _mm256_set1_epi32((1 << bits) - 1);
                const __m256 vs = _mm256_set1_ps(s), vz = _mm256_set1_ps(zero);
                for (; c + 8 <= c1; c += 8)
                    _mm256_storeu_ps(y + c, _mm256_fmadd_ps(vs, _mm256_sub_ps(sq_codes8(q, c, bits, shifts, mask), vz),
                                                            _mm256_loadu_ps(y + c)));
            }
#endif
            for (; c < c1; c++) y[c] += s * ((float)code_at(q, c, bits) - zero);
        }
    }
}

void mv_vq(const uint8_t *Q, int64_t qstride, const int8_t *book, const f16 *bscale, int bits, int dim,
           int64_t group, int64_t cols, const float *x, float *y, const int32_t *rows, int64_t n) {
    int64_t K = (int64_t)1 << bits, nvec = cols / dim, per_group = group / dim;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *q = Q + (int64_t)(rows ? rows[i] : i) * qstride;
        float total = 0.f;
        for (int64_t v0 = 0, g = 0; v0 < nvec; v0 += per_group, g++) {
            const int8_t *cb = book + g * K * dim;
            float acc = 0.f;
            int64_t v1 = v0 + per_group < nvec ? v0 + per_group : nvec;
            if (dim == 2 && bits == 6 && (per_group & 3) == 0) {  /* 4 indices in every 3 bytes */
                int64_t v = v0;
                for (; v + 4 <= v1; v += 4) {
                    const uint8_t *p = q + (v >> 2) * 3;
                    uint32_t w = p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16);
                    for (int j = 0; j < 4; j++) {
                        const int8_t *c = cb + 2 * ((w >> (6 * j)) & 63);
                        acc += (float)c[0] * x[2 * (v + j)] + (float)c[1] * x[2 * (v + j) + 1];
                    }
                }
                for (; v < v1; v++) {
                    const int8_t *c = cb + 2 * code_at(q, v, bits);
                    acc += (float)c[0] * x[2 * v] + (float)c[1] * x[2 * v + 1];
                }
            } else if (dim == 2) {
                for (int64_t v = v0; v < v1; v++) {
                    const int8_t *c = cb + 2 * code_at(q, v, bits);
                    acc += (float)c[0] * x[2 * v] + (float)c[1] * x[2 * v + 1];
                }
            } else {
                for (int64_t v = v0; v < v1; v++) acc += (float)cb[code_at(q, v, bits)] * x[v];
            }
            total += (float)bscale[g] * acc;
        }
        y[i] = total;
    }
}

void axpy_vq(const uint8_t *Q, int64_t qstride, const int8_t *book, const f16 *bscale, int bits, int dim,
             int64_t group, int64_t cols, const float *a, float *y, const int32_t *rows, int64_t n) {
    int64_t K = (int64_t)1 << bits, nvec = cols / dim, per_group = group / dim;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *q = Q + (int64_t)(rows ? rows[i] : i) * qstride;
        for (int64_t v = 0; v < nvec; v++) {
            int64_t g = v / per_group;
            float s = a[i] * (float)bscale[g];
            const int8_t *c = book + (g * K + code_at(q, v, bits)) * dim;
            for (int d = 0; d < dim; d++) y[v * dim + d] += s * (float)c[d];
        }
    }
}
