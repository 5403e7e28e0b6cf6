/* The SIMD helpers of the architecture this build targets, one header per architecture; the
 * kernels test the tiers these define (HAVE_AVX2, HAVE_PERMW) and keep a plain C loop for what
 * no tier covers, so a build for another target runs those loops. */
#ifndef RWKVLITE_SIMD_H
#define RWKVLITE_SIMD_H
#if defined(__x86_64__) || defined(__i386__)
#include "x86.h"
#endif
#endif
