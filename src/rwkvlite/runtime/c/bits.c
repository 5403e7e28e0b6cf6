/* Sign-bit matrices: y[i] = sum of x over the set bits of row i (bit c of a row: byte c/8, bit
 * c%8), for the FFN predictors' 1-bit key copies (runtime/layers.py, Predictor). */
#include "internal.h"

#ifdef HAVE_PERMW
/* x rounded to int16 as on mv_sq's int path (one group: the row) and multiplied by bits_dot,
 * without the scale, zero and group book-keeping of mv_sq; 16 rows' sums added in one
 * sum16x16. False: out of memory. */
static int mv_bits_int(const settings_t *s, const uint8_t *Q, int64_t qstride, int64_t cols, const float *x, float *y,
                       int64_t n) {
    int16_t *xq = malloc(cols * sizeof *xq);
    float xs;
    if (!xq) return 0;
    quantize_x(x, cols, cols, xq, &xs);
#pragma omp parallel for schedule(static) if (n * cols >= s->parallel_min) num_threads(team(s))
    for (int64_t b = 0; b < (n + 15) / 16; b++) {
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
    return 1;
}
#endif

/* one row in float: x where the bit is set, else 0 */
static ALWAYS_INLINE float bits_row_float(const uint8_t *q, int64_t cols, const float *x) {
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
    return acc;
}

void mv_bits(const settings_t *s, const uint8_t *Q, int64_t qstride, int64_t cols, const float *x, float *y,
             int64_t n) {
    if (cols < 0 || n < 0) {
        zero_rows(y, n);
        return;
    }
#ifdef HAVE_PERMW
    if (!s->exact && cols % 32 == 0 && mv_bits_int(s, Q, qstride, cols, x, y, n)) return;
#endif
    /* float x: exact mode, AVX2-only and plain builds */
#pragma omp parallel for schedule(static) if (n * cols >= s->parallel_min) num_threads(team(s))
    for (int64_t i = 0; i < n; i++) y[i] = bits_row_float(Q + i * qstride, cols, x);
}
