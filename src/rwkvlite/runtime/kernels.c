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
#include <stdint.h>

typedef _Float16 f16;

static inline uint32_t code_at(const uint8_t *row, int64_t j, int bits) {
    int64_t bit = j * bits;
    const uint8_t *p = row + (bit >> 3);
    int shift = bit & 7, need = (shift + bits + 7) >> 3;  /* never reads past the code's last byte */
    uint32_t word = p[0];
    for (int b = 1; b < need; b++) word |= (uint32_t)p[b] << (8 * b);
    return (word >> shift) & ((1u << bits) - 1);
}

/* one row of sq codes dotted with x; xsum[g] = sum of x over group g */
static float sq_dot(const uint8_t *q, const f16 *scale, const uint8_t *zero, int bits, int64_t group,
                    int64_t cols, const float *x, const float *xsum) {
    float total = 0.f;
    int64_t ngroups = (cols + group - 1) / group;
    for (int64_t g = 0; g < ngroups; g++) {
        int64_t c0 = g * group, c1 = c0 + group < cols ? c0 + group : cols;
        float acc = 0.f;
        if (bits == 8) {
            for (int64_t c = c0; c < c1; c++) acc += (float)q[c] * x[c];
        } else if (bits == 4) {
            for (int64_t c = c0; c < c1; c++) acc += (float)((q[c >> 1] >> ((c & 1) * 4)) & 15) * x[c];
        } else {
            for (int64_t c = c0; c < c1; c++) acc += (float)code_at(q, c, bits) * x[c];
        }
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
        for (int64_t c = 0; c < cols; c++) acc += (float)w[c] * x[c];
        y[i] = acc;
    }
}

void axpy_f16(const f16 *W, int64_t cols, const float *a, float *y, const int32_t *rows, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const f16 *w = W + (int64_t)(rows ? rows[i] : i) * cols;
        float ai = a[i];
        for (int64_t c = 0; c < cols; c++) y[c] += ai * (float)w[c];
    }
}

void mv_sq(const uint8_t *Q, int64_t qstride, const f16 *S, const uint8_t *Z, int64_t zstride, int bits,
           int64_t group, int64_t cols, const float *x, float *xsum, float *y, const int32_t *rows, int64_t n) {
    int64_t ngroups = (cols + group - 1) / group;
    group_sums(x, cols, group, xsum);
    for (int64_t i = 0; i < n; i++) {
        int64_t r = rows ? rows[i] : i;
        y[i] = sq_dot(Q + r * qstride, S + r * ngroups, Z + r * zstride, bits, group, cols, x, xsum);
    }
}

void axpy_sq(const uint8_t *Q, int64_t qstride, const f16 *S, const uint8_t *Z, int64_t zstride, int bits,
             int64_t group, int64_t cols, const float *a, float *y, const int32_t *rows, int64_t n) {
    int64_t ngroups = (cols + group - 1) / group;
    for (int64_t i = 0; i < n; i++) {
        int64_t r = rows ? rows[i] : i;
        const uint8_t *q = Q + r * qstride, *z = Z + r * zstride;
        for (int64_t g = 0; g < ngroups; g++) {
            float s = a[i] * (float)S[r * ngroups + g], zero = (float)code_at(z, g, bits);
            for (int64_t c = g * group; c < cols && c < (g + 1) * group; c++)
                y[c] += s * ((float)(bits == 8 ? q[c] : code_at(q, c, bits)) - zero);
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
            if (dim == 2) {
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
