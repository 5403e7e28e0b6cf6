/* The parts of a block that the one-call blocks (rwkv7.c, rwkv6.c, rwkv4.c) share: a stored
 * matrix's product (by the kernels of its encoding), projections plain or low-rank, LoRAs, the
 * layer norm, and the channel mix's key and value over the neurons its predictor marks active.
 * Types in kernels.h. */
#include "internal.h"

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
static void mat_kernel(const settings_t *s, const mat_t *m, int axpy, const float *in, float *out, const int32_t *rows,
                       int64_t n) {
    switch (m->kind) {
    case MAT_F16: (axpy ? axpy_f16 : mv_f16)(s, m->q, m->cols, in, out, rows, n); break;
    case MAT_F32: (axpy ? axpy_f32 : mv_f32)(m->q, m->cols, in, out, rows, n); break;
    case MAT_SQ:
        (axpy ? axpy_sq : mv_sq)(s, m->q, m->stride, m->qbytes, m->scale, m->zero, m->zstride, (int)m->bits, m->group,
                                 m->cols, in, out, rows, n);
        break;
    case MAT_VQ:
        (axpy ? axpy_vq : mv_vq)(s, m->q, m->stride, m->qbytes, m->zero, m->scale, (int)m->bits, (int)m->dim,
                                 m->group, m->cols, in, out, rows, n);
        break;
    }
}

/* y = W[rows] x */
HIDDEN void mat_mv(const settings_t *s, const mat_t *m, const float *x, float *y, const int32_t *rows, int64_t n) {
    if (m->perm) {
        for (int64_t c = 0; c < m->cols; c++) m->tmp[c] = x[m->perm[c]];
        x = m->tmp;
    }
    mat_kernel(s, m, 0, x, y, rows, n);
}

/* y = sum_i a[i] W[row_i]  (y overwritten; LoRA factors stored [in, r], transposed FFN values) */
HIDDEN void mat_rmv(const settings_t *s, const mat_t *m, const float *a, float *y, const int32_t *rows, int64_t n) {
    float *out = m->perm ? m->tmp : y;
    memset(out, 0, m->cols * sizeof *out);
    mat_kernel(s, m, 1, a, out, rows, n);
    if (m->perm)
        for (int64_t c = 0; c < m->cols; c++) y[m->perm[c]] = out[c];
}

HIDDEN void linear(const settings_t *s, const linear_t *l, const float *x, float *y, float *h) {
    if (!l->lowrank) {
        mat_mv(s, &l->W, x, y, NULL, l->W.rows);
        return;
    }
    mat_mv(s, &l->w1, x, h, NULL, l->w1.rows);
    if (l->lowrank == 2)
        for (int64_t i = 0; i < l->w1.rows; i++) h[i] = h[i] > 0.f ? h[i] * h[i] : 0.f;
    mat_mv(s, &l->w2, h, y, NULL, l->w2.rows);
    if (l->diag)
        for (int64_t i = 0; i < l->w2.rows; i++) y[i] += x[i] * l->diag[i];
}

HIDDEN void layer_norm(const float *x, const float *w, const float *b, int64_t n, float eps, float *out) {
    double mean = 0., var = 0.;
    for (int64_t i = 0; i < n; i++) mean += x[i];
    mean /= n;
    for (int64_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    float m = (float)mean, inv = (float)(1. / sqrt(var / n + eps));
    for (int64_t i = 0; i < n; i++) out[i] = (x[i] - m) * inv * w[i] + b[i];
}

/* y = B f(A x), a LoRA stored as A [in, r] and B [r, out]; h: r floats */
HIDDEN void lora(const settings_t *s, const mat_t *A, const mat_t *B, const float *x, float *y, float *h, int f) {
    mat_rmv(s, A, x, h, NULL, A->rows);
    for (int64_t i = 0; i < A->cols; i++) h[i] = f == TANH ? tanhf(h[i]) : f == SIGMOID ? sigmoidf(h[i]) : h[i];
    mat_rmv(s, B, h, y, NULL, A->cols);
}

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
static int64_t active(const settings_t *s, const predictor_t *p, const float *x, int64_t C, int64_t F, int32_t *rows, float *work) {
    float *h = work, *z = h + p->m1.rows, *sc = z + F, *t = sc + F;  /* sc: the copy's scores */
    const int64_t copies = p->scale ? 4 : 1;
/* 1-bit products: ~8 a multiply-add */
#pragma omp parallel for schedule(dynamic, 1) if (C * F >= 8 * s->parallel_min) num_threads(team(s))
    for (int64_t task = 0; task <= copies; task++) {
        if (task == 0) {
            mat_mv(s, &p->m1, x, h, NULL, p->m1.rows);
            for (int64_t i = 0; i < p->m1.rows; i++) h[i] = fmaxf(h[i] + p->b1[i], 0.f);
            mat_mv(s, &p->m2, h, z, NULL, F);  /* sigmoid(z + b2) > threshold  <=>  z > cut */
        } else if (p->scale) {  /* sign copy: W x = scale (2 bits.x - sum x), its rows r0..r1 here */
            const int64_t r0 = F * (task - 1) / copies, r1 = F * task / copies;
            mv_bits(s, (const uint8_t *)p->copy.q + r0 * p->copy.stride, p->copy.stride, C, x, sc + r0, r1 - r0);
        } else {
            mat_mv(s, &p->copy, x, sc, NULL, F);
        }
    }
    if (p->scale) {
        float sum = 0.f;
        for (int64_t c = 0; c < C; c++) sum += x[c];
        for (int64_t i = 0; i < F; i++) sc[i] = p->scale[i] * (2.f * sc[i] - sum);
    }
    int64_t n = MAX(1, (int64_t)nearbyint(p->keep * (double)F));
    float cutoff = kth_smallest(sc, F, F - n, (uint32_t *)t);
    int64_t m = 0;
    for (int64_t i = 0; i < F; i++) {  /* branch-free: about half are taken, unpredictably */
        rows[m] = (int32_t)i;
        m += (z[i] > p->cut[i]) | (sc[i] >= cutoff);
    }
    return m;
}

/* The channel mix's products: u = fv^T relu(fk[sel] x)^2 over the n neurons in sel (ascending)
 * with the value matrix stored transposed, [F, C]. Threads split the neurons: each multiplies
 * its neurons' key rows, then adds their value rows into a sum of its own, and the sums are
 * added at the end; one fork and join for both products, and the value kernel's serial set-up
 * (its int16 coefficients) split as well. A neuron whose key product comes out <= 0 weighs 0,
 * so its value row is not read (with random weights a third of the predicted ones; sel is
 * compacted in place). h: n floats; x is read as the key matrix's columns are stored
 * (act-order), u written in the model's order. Returns how many value rows were read. */
static int64_t ffn_transposed(const settings_t *s, const ffn_t *f, int64_t C, const float *x, int32_t *sel, int64_t n,
                              float *h, float *u) {
    const mat_t *fk = &f->fk, *fv = &f->fv;
    const int nt = 2 * n * C >= s->parallel_min ? team(s) : 1;
    float *parts = malloc((size_t)nt * C * sizeof *parts);
    int used = 1;  /* the team's size: OpenMP may start fewer threads than asked (OMP_DYNAMIC, thread limits) */
    int64_t read = 0;  /* value rows */
    if (!parts) {  /* out of memory: the two products one after the other */
        mat_mv(s, fk, x, h, sel, n);
        for (int64_t i = 0; i < n; i++) h[i] = h[i] > 0.f ? h[i] * h[i] : 0.f;
        mat_rmv(s, fv, h, u, sel, n);
        return n;
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
        mat_kernel(s, fk, 0, x, h + i0, sel + i0, i1 - i0);
        int64_t m = i0;  /* the neurons that came out active, in place: a zero weight reads no value row */
        for (int64_t i = i0; i < i1; i++) {
            const float v = h[i];
            h[m] = v * v, sel[m] = sel[i];
            m += v > 0.f;
        }
        memset(part, 0, C * sizeof *part);
        mat_kernel(s, fv, 1, h + i0, part, sel + i0, m - i0);
#pragma omp atomic
        read += m - i0;
    }
    for (int t = 1; t < used; t++)
        for (int64_t c = 0; c < C; c++) parts[c] += parts[t * C + c];
    if (fv->perm)
        for (int64_t c = 0; c < C; c++) u[fv->perm[c]] = parts[c];
    else
        memcpy(u, parts, C * sizeof *u);
    free(parts);
    return read;
}

/* floats of workspace channel_mix needs */
HIDDEN int64_t channel_mix_floats(const ffn_t *f) { return 4 * f->fk.rows + (f->predicted ? f->pred.m1.rows : 0); }

/* u = W_v relu(W_k x)^2 (x [C], the channel mix's shifted input), over the neurons the
 * predictor marks active, if it has one. Returns FFN_COUNTS(key rows computed, value rows
 * read; F for a value matrix stored [C, F], which is read whole). rows: F ints; work:
 * channel_mix_floats(f) floats. */
HIDDEN int64_t channel_mix(const settings_t *s, const ffn_t *f, int64_t C, const float *x, float *u, int32_t *rows, float *work) {
    const int64_t F = f->fk.rows;
    float *h = work, *full = work + F;
    int64_t n = F;
    if (f->predicted)
        n = active(s, &f->pred, x, C, F, rows, full);
    if (f->fv_transposed) {
        if (!f->predicted)
            for (int64_t i = 0; i < F; i++) rows[i] = (int32_t)i;
        return FFN_COUNTS(n, ffn_transposed(s, f, C, x, rows, n, h, u));
    } else {  /* a value matrix stored [C, F]: every row is read */
        mat_mv(s, &f->fk, x, h, f->predicted ? rows : NULL, n);
        for (int64_t i = 0; i < n; i++) h[i] = h[i] > 0.f ? h[i] * h[i] : 0.f;
        if (f->predicted) {  /* inactive neurons weigh 0 */
            memset(full, 0, F * sizeof *full);
            for (int64_t i = 0; i < n; i++) full[rows[i]] = h[i];
        }
        mat_mv(s, &f->fv, f->predicted ? full : h, u, NULL, C);
    }
    return FFN_COUNTS(n, F);
}

/* RWKV-4/5/6's channel mix, x += sigmoid(W_r x'_r) * W_v relu(W_k x'_k)^2, with xf = ln2(x)
 * and x'_* = xf + (ffn - xf) shift_* (shift [2][C]: k r); ffn_out gets xf (may be ffn).
 * work: gated_channel_mix_floats(f, C); h: fr's hidden floats. Returns channel_mix's counts. */
HIDDEN int64_t gated_channel_mix_floats(const ffn_t *f, int64_t C) { return 5 * C + channel_mix_floats(f); }

HIDDEN int64_t gated_channel_mix(const settings_t *s, const ffn_t *f, const linear_t *fr, const float *ln2w,
                                 const float *ln2b, const float *shift, int64_t C, float *x, const float *ffn,
                                 float *ffn_out, float *work, float *h, int32_t *rows) {
    float *xf = work, *xk = xf + C, *xr = xk + C, *r = xr + C, *u = r + C, *rest = u + C;
    layer_norm(x, ln2w, ln2b, C, 1e-5f, xf);
    for (int64_t c = 0; c < C; c++) {
        xk[c] = xf[c] + (ffn[c] - xf[c]) * shift[c];
        xr[c] = xf[c] + (ffn[c] - xf[c]) * shift[C + c];
    }
    memcpy(ffn_out, xf, C * sizeof *xf);
    linear(s, fr, xr, r, h);
    const int64_t n = channel_mix(s, f, C, xk, u, rows, rest);
    for (int64_t c = 0; c < C; c++) x[c] += sigmoidf(r[c]) * u[c];
    return n;
}
