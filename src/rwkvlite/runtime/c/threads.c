/* The library as a whole: its interface version, its threads, and a bandwidth probe. */
#include "internal.h"

/* 6: the settings (threads, exact mode, parallel_min) passed to every kernel as a settings_t
 * instead of library globals; block structs in kernels.h; rwkvlite_sizeof and rwkvlite_offsetof.
 * 7: rwkvlite_tiers; the fast mode's int8 tier (q8.c) */
const int64_t rwkvlite_abi = 7;

int64_t rwkvlite_tiers(void) {
    int64_t t = 0;
#ifdef HAVE_AVX2
    t |= TIER_AVX2;
#endif
#ifdef HAVE_PERMW
    t |= TIER_AVX512;
#endif
#ifdef HAVE_Q8
    t |= TIER_INT8_X;
#endif
    return t;
}

#ifdef _OPENMP
/* A kernel called inside a parallel region (a block's projection tasks) runs on its caller's
 * thread alone, whatever OMP_NESTED or OMP_MAX_ACTIVE_LEVELS say */
__attribute__((constructor)) static void one_level(void) { omp_set_max_active_levels(1); }
#endif

int default_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Read bandwidth with the kernels' threads: the sum of n floats (bench/runtime.py) */
double read_sum(const settings_t *s, const float *p, int64_t n) {
    double total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total) num_threads(team(s))
    for (int64_t b = 0; b < n; b += 4096) {
        float t = 0.f;
        for (int64_t i = b; i < MIN(n, b + 4096); i++) t += p[i];
        total += t;
    }
    return total;
}
