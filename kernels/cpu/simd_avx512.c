/* The simd.h table for AVX-512 F/BW/VL/DQ (16 lanes); built into libstem_avx512.a
 * with -mavx512f -mavx512bw -mavx512vl -mavx512dq. The code is simd_impl.h. */
#include "config.h"

#define STEM_SIMD_AVX512 1
#include "kernels/cpu/simd_impl.h"
