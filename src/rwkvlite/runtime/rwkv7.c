/* One RWKV-7 token through one block, in C: runtime/model.py's Block step (which does the
 * same in numpy, as the fallback and the tests' oracle) in one foreign call per block instead
 * of ~30 numpy operations and kernel calls (~2.5 ms per token at 0.1B shapes). Matrices are
 * multiplied as the file stores them, by the kernels in kernels.c. The structs below are
 * mirrored by ctypes in runtime/kernels.py; every field is 8 bytes wide. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels.h"
#ifdef _OPENMP
#include <omp.h>
#endif

enum { MAT_F16 = 1, MAT_SQ = 2, MAT_VQ = 3, MAT_F32 = 4 };

/* A matrix as stored (runtime/matrix.py, weights_args) */
typedef struct {
    int64_t kind, rows, cols, stride, qbytes, zstride, bits, dim, group;
    const void *q, *scale, *zero;  /* f16/f32: q is W; vq: zero holds the codebooks */
    const int32_t *perm;           /* act-order: stored column j multiplies x[perm[j]] */
    float *tmp;                    /* cols floats when perm is set */
} mat_t;

static void mv_f32(const float *W, int64_t cols, const float *x, float *y, const int32_t *rows, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float *w = W + (rows ? rows[i] : i) * cols;
        float s = 0.f;
        for (int64_t c = 0; c < cols; c++) s += w[c] * x[c];
        y[i] = s;
    }
}

static void axpy_f32(const float *W, int64_t cols, const float *a, float *y, const int32_t *rows, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float *w = W + (rows ? rows[i] : i) * cols;
        for (int64_t c = 0; c < cols; c++) y[c] += a[i] * w[c];
    }
}

/* mv_<kind> or axpy_<kind> (the two take the same arguments) on matrix m */
static void mat_kernel(const mat_t *m, int axpy, const float *in, float *out, const int32_t *rows, int64_t n) {
    switch (m->kind) {
    case MAT_F16: (axpy ? axpy_f16 : mv_f16)(m->q, m->cols, in, out, rows, n); break;
    case MAT_F32: (axpy ? axpy_f32 : mv_f32)(m->q, m->cols, in, out, rows, n); break;
    case MAT_SQ:
        (axpy ? axpy_sq : mv_sq)(m->q, m->stride, m->qbytes, m->scale, m->zero, m->zstride, (int)m->bits, m->group,
                                 m->cols, in, out, rows, n);
        break;
    case MAT_VQ:
        (axpy ? axpy_vq : mv_vq)(m->q, m->stride, m->qbytes, m->zero, m->scale, (int)m->bits, (int)m->dim, m->group,
                                 m->cols, in, out, rows, n);
        break;
    }
}

/* y = W[rows] x */
static void mat_mv(const mat_t *m, const float *x, float *y, const int32_t *rows, int64_t n) {
    if (m->perm) {
        for (int64_t c = 0; c < m->cols; c++) m->tmp[c] = x[m->perm[c]];
        x = m->tmp;
    }
    mat_kernel(m, 0, x, y, rows, n);
}

/* y = sum_i a[i] W[row_i]  (y overwritten; LoRA factors stored [in, r], transposed FFN values) */
static void mat_rmv(const mat_t *m, const float *a, float *y, const int32_t *rows, int64_t n) {
    float *out = m->perm ? m->tmp : y;
    memset(out, 0, m->cols * sizeof *out);
    mat_kernel(m, 1, a, out, rows, n);
    if (m->perm)
        for (int64_t c = 0; c < m->cols; c++) y[m->perm[c]] = out[c];
}

/* A projection: W x, or low-rank w2 (w1 x) / w2 relu(w1 x)^2 + diag * x (passes/lowrank.py) */
typedef struct {
    mat_t W, w1, w2;
    int64_t lowrank;    /* 0: plain W, 1: "linear", 2: "relu" */
    const float *diag;  /* or NULL */
} linear_t;

static void linear(const linear_t *l, const float *x, float *y, float *h) {
    if (!l->lowrank) {
        mat_mv(&l->W, x, y, NULL, l->W.rows);
        return;
    }
    mat_mv(&l->w1, x, h, NULL, l->w1.rows);
    if (l->lowrank == 2)
        for (int64_t i = 0; i < l->w1.rows; i++) h[i] = h[i] > 0.f ? h[i] * h[i] : 0.f;
    mat_mv(&l->w2, h, y, NULL, l->w2.rows);
    if (l->diag)
        for (int64_t i = 0; i < l->w2.rows; i++) y[i] += x[i] * l->diag[i];
}

/* The FFN's predicted-active neurons (passes/ffn_predictor.py): MLP OR the top `keep` share
 * of a 1-bit (or decoded n-bit) copy of the key */
typedef struct {
    mat_t m1, m2, copy;  /* copy: sign bits (mv_bits: q and stride; then scale: row scales), or f32 */
    const float *b1, *cut, *scale;
    double keep;
} predictor_t;

/* the k-th smallest of a[0..len) (k from 0), by radix selection on order-preserving integer
 * keys, 8 bits at a time: each pass keeps the elements whose next digit is the k-th one's.
 * keys: len ints of workspace. Branch-free passes, unlike a quickselect on unpredictable data. */
static float kth_smallest(const float *a, int64_t len, int64_t k, uint32_t *keys) {
    for (int64_t i = 0; i < len; i++) {
        uint32_t u;
        memcpy(&u, a + i, 4);
        keys[i] = u & 0x80000000u ? ~u : u | 0x80000000u;  /* negative floats reversed, below the positive */
    }
    int64_t n = len;
    for (int shift = 24; shift >= 0; shift -= 8) {
        int64_t count[256] = {0};
        for (int64_t i = 0; i < n; i++) count[keys[i] >> shift & 255]++;
        uint32_t d = 0;
        while (k >= count[d]) k -= count[d++];
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++) {  /* keep digit d, in place (m <= i) */
            keys[m] = keys[i];
            m += (keys[i] >> shift & 255) == d;
        }
        n = m;
    }
    uint32_t u = keys[0] & 0x80000000u ? keys[0] & 0x7fffffffu : ~keys[0];
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* rows (ascending) of the neurons to compute; how many. work: m1.rows + 3 F floats. The MLP
 * and the copy are independent: the MLP is one task for a thread, the sign copy's rows four
 * more (an n-bit copy one: its kernel permutes x in the matrix's own buffer). */
static int64_t active(const predictor_t *p, const float *x, int64_t C, int64_t F, int32_t *rows, float *work) {
    float *h = work, *z = h + p->m1.rows, *s = z + F, *t = s + F;
    const int64_t copies = p->scale ? 4 : 1;
#pragma omp parallel for schedule(dynamic, 1) if (C * F >= 8 * parallel_min)  /* 1-bit products: ~8 a multiply-add */
    for (int64_t task = 0; task <= copies; task++) {
        if (task == 0) {
            mat_mv(&p->m1, x, h, NULL, p->m1.rows);
            for (int64_t i = 0; i < p->m1.rows; i++) h[i] = fmaxf(h[i] + p->b1[i], 0.f);
            mat_mv(&p->m2, h, z, NULL, F);  /* sigmoid(z + b2) > threshold  <=>  z > cut */
        } else if (p->scale) {  /* sign copy: W x = scale (2 bits.x - sum x), its rows r0..r1 here */
            const int64_t r0 = F * (task - 1) / copies, r1 = F * task / copies;
            mv_bits((const uint8_t *)p->copy.q + r0 * p->copy.stride, p->copy.stride, C, x, s + r0, r1 - r0);
        } else {
            mat_mv(&p->copy, x, s, NULL, F);
        }
    }
    if (p->scale) {
        float sum = 0.f;
        for (int64_t c = 0; c < C; c++) sum += x[c];
        for (int64_t i = 0; i < F; i++) s[i] = p->scale[i] * (2.f * s[i] - sum);
    }
    int64_t n = MAX(1, (int64_t)nearbyint(p->keep * (double)F));
    float cutoff = kth_smallest(s, F, F - n, (uint32_t *)t);
    int64_t m = 0;
    for (int64_t i = 0; i < F; i++) {  /* branch-free: about half are taken, unpredictably */
        rows[m] = (int32_t)i;
        m += (z[i] > p->cut[i]) | (s[i] >= cutoff);
    }
    return m;
}

typedef struct {
    int64_t C, H, N, F, first, hidden;  /* hidden: the widest inner dimension (LoRA, low rank, predictor MLP) */
    double eps;                         /* ln_x */
    const float *ln1w, *ln1b, *ln2w, *ln2b, *mix /* [6][C]: r w k v a g */, *w0, *a0, *k_k, *k_a, *r_k, *v0, *lnxw,
        *lnxb, *x_k;
    linear_t r, k, v, o;
    mat_t w1, w2, a1, a2, g1, g2, v1, v2, fk, fv;
    int64_t fv_transposed, predicted;
    predictor_t pred;
} block7_t;

/* floats of workspace rwkv7_block needs */
int64_t rwkv7_block_floats(const block7_t *b) { return 15 * b->C + 4 * b->F + 8 * b->hidden; }

static void layer_norm(const float *x, const float *w, const float *b, int64_t n, float eps, float *out) {
    double mean = 0., var = 0.;
    for (int64_t i = 0; i < n; i++) mean += x[i];
    mean /= n;
    for (int64_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    float m = (float)mean, inv = (float)(1. / sqrt(var / n + eps));
    for (int64_t i = 0; i < n; i++) out[i] = (x[i] - m) * inv * w[i] + b[i];
}

static inline float sigmoidf(float x) { return 1.f / (1.f + expf(-x)); }

enum { PLAIN, TANH, SIGMOID };

/* y = B f(A x), a LoRA stored as A [in, r] and B [r, out]; h: r floats */
static void lora(const mat_t *A, const mat_t *B, const float *x, float *y, float *h, int f) {
    mat_rmv(A, x, h, NULL, A->rows);
    for (int64_t i = 0; i < A->cols; i++) h[i] = f == TANH ? tanhf(h[i]) : f == SIGMOID ? sigmoidf(h[i]) : h[i];
    mat_rmv(B, h, y, NULL, A->cols);
}

/* The time mix's projections of the six mixes (mixed [6][C]: r w k v a g): receptance, key,
 * value, the LoRAs of g, w and a, and (after the first block) that of v's residual mix, into
 * out [7][C] in that order. They are independent, so each is a task for one thread (the
 * kernels inside run unsplit), the larger first: one fork and join instead of one per matrix,
 * and the LoRAs' narrow first factors, which the kernels leave on one thread, run beside the
 * others. h: 7 hidden floats. */
static void projections(const block7_t *b, const float *mixed, float *out, float *h) {
    const int64_t C = b->C, n = b->first ? 6 : 7;
    const float *xr = mixed, *xw = mixed + C, *xk = mixed + 2 * C, *xv = mixed + 3 * C, *xa = mixed + 4 * C,
                *xg = mixed + 5 * C;
#pragma omp parallel for schedule(dynamic, 1) if (8 * C * b->hidden >= parallel_min)
    for (int64_t t = 0; t < n; t++) {
        float *y = out + t * C, *ht = h + t * b->hidden;
        switch (t) {
        case 0: linear(&b->r, xr, y, ht); break;
        case 1: linear(&b->k, xk, y, ht); break;
        case 2: linear(&b->v, xv, y, ht); break;
        case 3: lora(&b->g1, &b->g2, xg, y, ht, SIGMOID); break;
        case 4: lora(&b->w1, &b->w2, xw, y, ht, TANH); break;
        case 5: lora(&b->a1, &b->a2, xa, y, ht, PLAIN); break;
        case 6: lora(&b->v1, &b->v2, xv, y, ht, PLAIN); break;
        }
    }
}

/* One token of RWKV-7's time mix after its projections, per head h (N channels):
 *   w = exp(-e^-0.5 sigmoid(w_raw)),  a = sigmoid(a_raw),  kk = normalize(k * k_k),
 *   k' = k (1 + (a - 1) k_a)
 *   S' = S diag(w) + (S (-kk)) (kk a)^T + v k'^T          (S: [N (value)][N (key)])
 *   y  = group_norm(S' r) * ln_w + ln_b + (sum_j r k' r_k) v,   out = y * g
 * (model/rwkv7.py, TimeMix.forward). S' goes to T, which may be S; threads split the heads. */
void rwkv7_time_mix(const float *S, float *T, const float *r, const float *w_raw, const float *k, const float *v,
                    const float *a_raw, const float *k_k, const float *k_a, const float *r_k, const float *ln_w,
                    const float *ln_b, const float *g, int64_t H, int64_t N, float eps, float *out) {
#pragma omp parallel for schedule(static) if (4 * H * N * N >= parallel_min)  /* ~4 multiply-adds per state entry */
    for (int64_t h = 0; h < H; h++) {
        float w[N], a[N], kk[N], kp[N], y[N];  /* N: the head size, 64 */
        const int64_t o = h * N;
        float norm = 0.f, bonus = 0.f;
        for (int64_t j = 0; j < N; j++) {
            w[j] = expf(-0.60653066f / (1.f + expf(-w_raw[o + j])));
            a[j] = 1.f / (1.f + expf(-a_raw[o + j]));
            kk[j] = k[o + j] * k_k[o + j];
            norm += kk[j] * kk[j];
            kp[j] = k[o + j] * (1.f + (a[j] - 1.f) * k_a[o + j]);
            bonus += r[o + j] * kp[j] * r_k[o + j];
        }
        norm = 1.f / fmaxf(sqrtf(norm), 1e-12f);
        for (int64_t j = 0; j < N; j++) kk[j] *= norm;
        for (int64_t i = 0; i < N; i++) {
            const float *s = S + (o + i) * N;
            float *t = T + (o + i) * N;
            float sa = 0.f, acc = 0.f, vi = v[o + i];
            for (int64_t j = 0; j < N; j++) sa -= s[j] * kk[j];
            for (int64_t j = 0; j < N; j++) {
                t[j] = s[j] * w[j] + sa * kk[j] * a[j] + vi * kp[j];
                acc += t[j] * r[o + j];
            }
            y[i] = acc;
        }
        head_norm(y, N, eps);
        for (int64_t i = 0; i < N; i++) out[o + i] = (y[i] * ln_w[o + i] + ln_b[o + i] + bonus * v[o + i]) * g[o + i];
    }
}

/* The channel mix's products: u = fv^T relu(fk[sel] x)^2 over the n neurons in sel (ascending)
 * with the value matrix stored transposed, [F, C]. Threads split the neurons: each multiplies
 * its neurons' key rows, then adds their value rows into a sum of its own, and the sums are
 * added at the end; one fork and join for both products, and the value kernel's serial set-up
 * (its int16 coefficients) split as well. h: n floats; x is read as the key matrix's columns
 * are stored (act-order), u written in the model's order. */
static void ffn_transposed(const block7_t *b, const float *x, const int32_t *sel, int64_t n, float *h, float *u) {
    const int64_t C = b->C;
    const mat_t *fk = &b->fk, *fv = &b->fv;
    int nt = 1;
#ifdef _OPENMP
    if (2 * n * C >= parallel_min) nt = omp_get_max_threads();
#endif
    float *parts = malloc((size_t)nt * C * sizeof *parts);
    int used = 1;  /* the team's size: OpenMP may start fewer threads than asked (OMP_DYNAMIC, thread limits) */
    if (!parts) {  /* out of memory: the two products one after the other */
        mat_mv(fk, x, h, sel, n);
        for (int64_t i = 0; i < n; i++) h[i] = h[i] > 0.f ? h[i] * h[i] : 0.f;
        mat_rmv(fv, h, u, sel, n);
        return;
    }
    if (fk->perm) {  /* once, not by every thread in the key matrix's own buffer */
        for (int64_t c = 0; c < C; c++) fk->tmp[c] = x[fk->perm[c]];
        x = fk->tmp;
    }
#pragma omp parallel num_threads(nt)
    {
        int t = 0, k = 1;
#ifdef _OPENMP
        t = omp_get_thread_num(), k = omp_get_num_threads();
#endif
        if (t == 0) used = k;
        const int64_t i0 = n * t / k, i1 = n * (t + 1) / k;
        float *part = parts + t * C;
        mat_kernel(fk, 0, x, h + i0, sel + i0, i1 - i0);
        for (int64_t i = i0; i < i1; i++) h[i] = h[i] > 0.f ? h[i] * h[i] : 0.f;
        memset(part, 0, C * sizeof *part);
        mat_kernel(fv, 1, h + i0, part, sel + i0, i1 - i0);
    }
    for (int t = 1; t < used; t++)
        for (int64_t c = 0; c < C; c++) parts[c] += parts[t * C + c];
    if (fv->perm)
        for (int64_t c = 0; c < C; c++) u[fv->perm[c]] = parts[c];
    else
        memcpy(u, parts, C * sizeof *u);
    free(parts);
}

/* One token through block b: x [C] is updated in place; the block's state (att, ffn [C],
 * S [H][N][N]) is read and its successor written to att_out, ffn_out, T (which may alias
 * the inputs); v_first [C] is written by the first block and read by the others. work:
 * rwkv7_block_floats(b) floats; rows: F ints. Returns how many FFN neurons were computed. */
int64_t rwkv7_block(const block7_t *b, float *x, const float *att, float *att_out, const float *ffn, float *ffn_out,
                    const float *S, float *T, float *v_first, float *work, int32_t *rows) {
    const int64_t C = b->C, F = b->F;
    float *xa = work, *mixed = xa + C, *r = mixed + 6 * C, *k = r + C, *v = k + C, *g = v + C, *w = g + C, *a = w + C,
          *u = a + C, *y = u + C, *h = y + C, *rest = h + 7 * b->hidden;
    /* time mix: token shift, six interpolations, projections */
    layer_norm(x, b->ln1w, b->ln1b, C, 1e-5f, xa);
    for (int64_t j = 0; j < 6; j++)
        for (int64_t c = 0; c < C; c++) mixed[j * C + c] = xa[c] + (att[c] - xa[c]) * b->mix[j * C + c];
    memcpy(att_out, xa, C * sizeof *xa);
    projections(b, mixed, r, h);  /* r k v g w a u, consecutive */
    for (int64_t c = 0; c < C; c++) w[c] += b->w0[c], a[c] += b->a0[c];
    if (b->first)
        memcpy(v_first, v, C * sizeof *v);
    else
        for (int64_t c = 0; c < C; c++) v[c] += (v_first[c] - v[c]) * sigmoidf(b->v0[c] + u[c]);
    rwkv7_time_mix(S, T, r, w, k, v, a, b->k_k, b->k_a, b->r_k, b->lnxw, b->lnxb, g, b->H, b->N, (float)b->eps, y);
    linear(&b->o, y, u, h);
    for (int64_t c = 0; c < C; c++) x[c] += u[c];

    /* channel mix: token shift, key rows of the active neurons, their value columns */
    float *xf = xa, *xkf = mixed, *hf = rest, *full = rest + F;
    layer_norm(x, b->ln2w, b->ln2b, C, 1e-5f, xf);
    for (int64_t c = 0; c < C; c++) xkf[c] = xf[c] + (ffn[c] - xf[c]) * b->x_k[c];
    memcpy(ffn_out, xf, C * sizeof *xf);
    int64_t n = F;
    if (b->predicted)
        n = active(&b->pred, xkf, C, F, rows, full);
    if (b->fv_transposed) {
        if (!b->predicted)
            for (int64_t i = 0; i < F; i++) rows[i] = (int32_t)i;
        ffn_transposed(b, xkf, rows, n, hf, u);
    } else {  /* a value matrix stored [C, F]: every row is read */
        mat_mv(&b->fk, xkf, hf, b->predicted ? rows : NULL, n);
        for (int64_t i = 0; i < n; i++) hf[i] = hf[i] > 0.f ? hf[i] * hf[i] : 0.f;
        if (b->predicted) {  /* inactive neurons weigh 0 */
            memset(full, 0, F * sizeof *full);
            for (int64_t i = 0; i < n; i++) full[rows[i]] = hf[i];
        }
        mat_mv(&b->fv, b->predicted ? full : hf, u, NULL, C);
    }
    for (int64_t c = 0; c < C; c++) x[c] += u[c];
    return n;
}

/* The clustered head (runtime/model.py, Head): the rows of the chosen clusters, ascending
 * (a forward scan of the head); how many. rows: room for V */
int64_t head_rows(const uint8_t *picked, const int32_t *cluster, int64_t V, int32_t *rows) {
    int64_t n = 0;
    for (int64_t t = 0; t < V; t++) {  /* branch-free: about half the tokens are taken, unpredictably */
        rows[n] = (int32_t)t;
        n += picked[cluster[t]] != 0;
    }
    return n;
}

/* ...and the log-probabilities: a chosen token's logit, log-softmaxed among the chosen rows,
 * plus log(mass of the chosen clusters); any other token its cluster's base, log(s_k / n_k) */
void head_logprobs(const float *logits, const int32_t *rows, int64_t n, const int32_t *cluster, const float *base,
                   int64_t V, double log_mass, float *out) {
    for (int64_t t = 0; t < V; t++) out[t] = base[cluster[t]];
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = fmaxf(m, logits[i]);
    float sum = 0.f;  /* float exponentials, which vectorise: ~1e-7 relative to the float64 ones */
    for (int64_t i = 0; i < n; i++) sum += expf(logits[i] - m);
    const double offset = -(double)m - log((double)sum) + log_mass;
    for (int64_t i = 0; i < n; i++) out[rows[i]] = (float)(logits[i] + offset);
}
