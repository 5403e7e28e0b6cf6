/* float16 matrices: y = W[rows] x (mv_f16) and y += a W[rows] (axpy_f16), the weights
 * converted to float as they are read. */
#include "internal.h"

void mv_f16(const settings_t *s, const f16 *W, int64_t cols, const float *x, float *y, const int32_t *rows, int64_t n) {
#pragma omp parallel for schedule(static) if (n * cols >= s->parallel_min) num_threads(team(s))
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

/* y[c..c + L k) += sum_i a_i W[row_i][c..c + L k), k <= 8, for L = 16 (AVX-512) or 8 (AVX2)
 * columns a vector: the k vectors of y held in registers while the rows stream past, two
 * instructions per vector of weights */
#ifdef HAVE_PERMW
#define F16_LANES 16
static ALWAYS_INLINE void f16_block(const f16 *W, int64_t cols, const float *a, float *y,
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
static ALWAYS_INLINE void f16_block(const f16 *W, int64_t cols, const float *a, float *y,
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

void axpy_f16(const settings_t *s, const f16 *W, int64_t cols, const float *a, float *y, const int32_t *rows,
              int64_t n) {
    if (cols <= 256) {  /* many short rows (LoRA factors [in, r]): on one thread, a fork would cost more */
        axpy_f16_cols(W, cols, a, y, rows, n, 0, cols);
        return;
    }
#pragma omp parallel num_threads(share_threads(s, n * cols))
    {   /* threads split the columns (in whole 16-column chunks) */
        int64_t c0, c1;
        column_share(cols, 16, THREAD_ID, NUM_THREADS, &c0, &c1);
        axpy_f16_cols(W, cols, a, y, rows, n, c0, c1);
    }
}
