/* The simd.h table for AVX2 + FMA (8 lanes); built into libstem_avx2.a with
 * -mavx2 -mfma -mf16c. The code is simd_impl.h. */
#include "config.h"

#define STEM_SIMD_AVX2 1
#include "kernels/cpu/simd_impl.h"
