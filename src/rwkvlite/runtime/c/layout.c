/* The size of every struct in kernels.h and the offset of each of its fields, by name, so
 * runtime/native.py's ctypes mirror can be checked against what this compiler laid out
 * (tests/runtime/test_native.py). */
#include <stddef.h>
#include <string.h>
#include "internal.h"

typedef struct {
    const char *type, *field;  /* field NULL: the struct's own size */
    int64_t value;
} layout_t;

#define SIZE(T) {#T, NULL, sizeof(T)}
#define FIELD(T, f) {#T, #f, offsetof(T, f)}

static const layout_t LAYOUT[] = {
    SIZE(settings_t),
    FIELD(settings_t, threads), FIELD(settings_t, exact), FIELD(settings_t, parallel_min),
    SIZE(mat_t),
    FIELD(mat_t, kind), FIELD(mat_t, rows), FIELD(mat_t, cols), FIELD(mat_t, stride), FIELD(mat_t, qbytes),
    FIELD(mat_t, zstride), FIELD(mat_t, bits), FIELD(mat_t, dim), FIELD(mat_t, group), FIELD(mat_t, q),
    FIELD(mat_t, scale), FIELD(mat_t, zero), FIELD(mat_t, perm), FIELD(mat_t, tmp),
    SIZE(linear_t),
    FIELD(linear_t, W), FIELD(linear_t, w1), FIELD(linear_t, w2), FIELD(linear_t, lowrank), FIELD(linear_t, diag),
    SIZE(predictor_t),
    FIELD(predictor_t, m1), FIELD(predictor_t, m2), FIELD(predictor_t, copy), FIELD(predictor_t, b1),
    FIELD(predictor_t, cut), FIELD(predictor_t, scale), FIELD(predictor_t, keep),
    SIZE(ffn_t),
    FIELD(ffn_t, fk), FIELD(ffn_t, fv), FIELD(ffn_t, fv_transposed), FIELD(ffn_t, predicted), FIELD(ffn_t, pred),
    SIZE(block7_t),
    FIELD(block7_t, C), FIELD(block7_t, H), FIELD(block7_t, N), FIELD(block7_t, first), FIELD(block7_t, hidden),
    FIELD(block7_t, eps), FIELD(block7_t, ln1w), FIELD(block7_t, ln1b), FIELD(block7_t, ln2w), FIELD(block7_t, ln2b),
    FIELD(block7_t, mix), FIELD(block7_t, w0), FIELD(block7_t, a0), FIELD(block7_t, k_k), FIELD(block7_t, k_a),
    FIELD(block7_t, r_k), FIELD(block7_t, v0), FIELD(block7_t, lnxw), FIELD(block7_t, lnxb), FIELD(block7_t, x_k),
    FIELD(block7_t, r), FIELD(block7_t, k), FIELD(block7_t, v), FIELD(block7_t, o), FIELD(block7_t, w1),
    FIELD(block7_t, w2), FIELD(block7_t, a1), FIELD(block7_t, a2), FIELD(block7_t, g1), FIELD(block7_t, g2),
    FIELD(block7_t, v1), FIELD(block7_t, v2), FIELD(block7_t, ffn),
    SIZE(block6_t),
    FIELD(block6_t, C), FIELD(block6_t, A), FIELD(block6_t, H), FIELD(block6_t, N), FIELD(block6_t, D),
    FIELD(block6_t, hidden), FIELD(block6_t, dynamic), FIELD(block6_t, gated), FIELD(block6_t, eps),
    FIELD(block6_t, ln1w), FIELD(block6_t, ln1b), FIELD(block6_t, ln2w), FIELD(block6_t, ln2b),
    FIELD(block6_t, shift), FIELD(block6_t, maa_x), FIELD(block6_t, up_rows), FIELD(block6_t, decay),
    FIELD(block6_t, u), FIELD(block6_t, lnxw), FIELD(block6_t, lnxb), FIELD(block6_t, ffn_shift), FIELD(block6_t, r),
    FIELD(block6_t, k), FIELD(block6_t, v), FIELD(block6_t, g), FIELD(block6_t, o), FIELD(block6_t, fr),
    FIELD(block6_t, maa_w1), FIELD(block6_t, maa_w2), FIELD(block6_t, decay_w1), FIELD(block6_t, decay_w2),
    FIELD(block6_t, ffn),
    SIZE(block4_t),
    FIELD(block4_t, C), FIELD(block4_t, A), FIELD(block4_t, hidden), FIELD(block4_t, ln1w), FIELD(block4_t, ln1b),
    FIELD(block4_t, ln2w), FIELD(block4_t, ln2b), FIELD(block4_t, shift), FIELD(block4_t, ffn_shift),
    FIELD(block4_t, w), FIELD(block4_t, u), FIELD(block4_t, r), FIELD(block4_t, k), FIELD(block4_t, v),
    FIELD(block4_t, o), FIELD(block4_t, fr), FIELD(block4_t, ffn),
};

static int64_t lookup(const char *type, const char *field) {
    for (size_t i = 0; i < sizeof LAYOUT / sizeof *LAYOUT; i++)
        if (!strcmp(LAYOUT[i].type, type) && (field ? LAYOUT[i].field && !strcmp(LAYOUT[i].field, field) : !LAYOUT[i].field))
            return LAYOUT[i].value;
    return -1;
}

int64_t rwkvlite_sizeof(const char *type) { return lookup(type, NULL); }

int64_t rwkvlite_offsetof(const char *type, const char *field) { return field ? lookup(type, field) : -1; }
