/* The x86 tiers' tables and set-up shared by several kernels: the masked layouts of 2-4-bit
 * codes (x86.h, masked_t) and x rounded to int16 per group. */
#include "internal.h"

#ifdef HAVE_AVX2
/* x rounded to int16 per group of columns: xq[c] = round(x[c] / xs[g]), xs[g] = max |x| / 32767 */
HIDDEN void quantize_x(const float *x, int64_t cols, int64_t group, int16_t *xq, float *xs) {
    for (int64_t g = 0; g * group < cols; g++) {
        int64_t c0 = g * group, c1 = MIN(cols, c0 + group);
        float m = 0.f;
        for (int64_t c = c0; c < c1; c++) m = fmaxf(m, fabsf(x[c]));
        float inv = m > 0 ? 32767.f / m : 0.f;
        xs[g] = m / 32767.f;
        int64_t c = c0;
#ifdef __AVX512F__  /* rounded as lrintf rounds (to nearest, ties to even): bit-identical, 16 at a time */
        for (const __m512 vinv = _mm512_set1_ps(inv); c + 16 <= c1; c += 16)
            _mm256_storeu_si256((__m256i *)(xq + c),
                                _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + c), vinv))));
#endif
        for (; c < c1; c++) xq[c] = (int16_t)lrintf(x[c] * inv);
    }
}

#ifdef HAVE_PERMW
static masked_t make_masked(int bits) {
    masked_t m;
    uint8_t sh[64];
    int16_t mask[32];
    float scale[32];  /* 2^-o of lane j */
    int j = 0;
    for (int o = 0; o < 8; o++)
        for (int k = 0; k < 32; k++) {
            const int bit = k * bits, b = bit >> 3;
            if ((bit & 7) != o) continue;
            sh[2 * j] = (uint8_t)b;
            sh[2 * j + 1] = b + 1 < 4 * bits ? (uint8_t)(b + 1) : 0x80;  /* 0x80: a zero byte */
            mask[j] = (int16_t)(((1 << bits) - 1) << o);
            scale[j] = 1.f / (float)(1 << o);
            m.perm[j++] = (uint8_t)k;
        }
    float pairs[16];
    for (int i = 0; i < 16; i++) pairs[i] = scale[2 * i];
    m.shuffle = _mm512_loadu_si512(sh), m.mask = _mm512_loadu_si512(mask), m.lane_scale = _mm512_loadu_ps(pairs);
    /* pair_block512's acc lane 4L+i holds lane 8L+i of the codes (acc[2h], unpacklo: store lanes
     * 0..15) or lane 8L+4+i (acc[2h+1]: store lanes 16..31); column perm[j] is code lane j's */
    int32_t idx[32];
    float sc[32];
    for (j = 0; j < 32; j++) {
        const int L = j / 8, i = j % 8, lane = i < 4 ? 4 * L + i : 16 + 4 * L + i - 4;
        idx[m.perm[j]] = lane, sc[lane] = scale[j];
    }
    for (int h = 0; h < 2; h++)
        m.store_idx[h] = _mm512_loadu_si512(idx + 16 * h), m.store_scale[h] = _mm512_loadu_ps(sc + 16 * h);
    return m;
}

HIDDEN masked_t masked_2_4[3];

__attribute__((constructor)) static void make_masked_tables(void) {
    for (int bits = 2; bits <= 4; bits++) masked_2_4[bits - 2] = make_masked(bits);
}
#endif
#endif
