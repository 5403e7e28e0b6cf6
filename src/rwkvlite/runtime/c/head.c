/* The clustered head (runtime/head.py, Head): which vocabulary rows to multiply, and the
 * log-probabilities of every token from those rows' logits and the clusters' scores. */
#include "internal.h"
#ifdef __AVX512F__
#include <immintrin.h>
#endif

/* The rows of the chosen clusters, ascending (a forward scan of the head); how many. picked:
 * one int per cluster, nonzero if chosen; rows: room for V. With AVX-512, 16 tokens a step:
 * their clusters' flags gathered, the chosen tokens' indices compress-stored. */
int64_t head_rows(const int32_t *picked, const int32_t *cluster, int64_t V, int32_t *rows) {
    int64_t n = 0, t = 0;
#ifdef __AVX512F__
    const __m512i step = _mm512_set1_epi32(16);
    __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (; t + 16 <= V; t += 16, idx = _mm512_add_epi32(idx, step)) {
        const __m512i flag = _mm512_i32gather_epi32(_mm512_loadu_si512(cluster + t), picked, 4);
        const __mmask16 m = _mm512_test_epi32_mask(flag, flag);
        _mm512_mask_compressstoreu_epi32(rows + n, m, idx);
        n += __builtin_popcount(m);
    }
#endif
    for (; t < V; t++) {  /* branch-free: about half the tokens are taken, unpredictably */
        rows[n] = (int32_t)t;
        n += picked[cluster[t]] != 0;
    }
    return n;
}

/* ...and the log-probabilities, in one pass over the vocabulary: a chosen token's logit
 * (logits: the n chosen rows' in head_rows' order), log-softmaxed among the chosen rows, plus
 * log(mass of the chosen clusters); any other token its cluster's base, log(s_k / n_k). With
 * AVX-512, 16 tokens a step: the bases gathered, the chosen tokens' logits expand-loaded
 * into their lanes. */
void head_logprobs(const float *logits, int64_t n, const int32_t *picked, const int32_t *cluster, const float *base,
                   int64_t V, double log_mass, float *out) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = fmaxf(m, logits[i]);
    float sum = 0.f;  /* float exponentials, which vectorise: ~1e-7 relative to the float64 ones */
    for (int64_t i = 0; i < n; i++) sum += expf(logits[i] - m);
    const float offset = (float)(-(double)m - log((double)sum) + log_mass);
    int64_t t = 0, j = 0;
#ifdef __AVX512F__
    const __m512 off = _mm512_set1_ps(offset);
    for (; t + 16 <= V; t += 16) {
        const __m512i cl = _mm512_loadu_si512(cluster + t), flag = _mm512_i32gather_epi32(cl, picked, 4);
        const __mmask16 chosen = _mm512_test_epi32_mask(flag, flag);
        const __m512 v = _mm512_mask_expandloadu_ps(_mm512_i32gather_ps(cl, base, 4), chosen, logits + j);
        _mm512_storeu_ps(out + t, _mm512_mask_add_ps(v, chosen, v, off));
        j += __builtin_popcount(chosen);
    }
#endif
    for (; t < V; t++)
        out[t] = picked[cluster[t]] ? logits[j++] + offset : base[cluster[t]];
}
