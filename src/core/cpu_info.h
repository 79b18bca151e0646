/* What the CPU can do and which OpenBLAS kernels run. Debian's OpenBLAS (0.3.21)
 * does not recognise recent CPUs (e.g. AMD Zen 4) and falls back to its slowest
 * "Prescott" kernels unless OPENBLAS_CORETYPE is set before the library initialises,
 * which happens when the program is loaded. stem_blas_ensure_fast_core() therefore
 * re-executes the program once with OPENBLAS_CORETYPE set to the best core this CPU
 * supports (SkylakeX for AVX-512, Haswell for AVX2), unless the user set it. */
#ifndef STEM_CORE_CPU_INFO_H
#define STEM_CORE_CPU_INFO_H

#include <stdbool.h>

typedef struct stem_cpu_features {
    bool avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512dq;
    char vendor[13];  /* cpuid vendor: "GenuineIntel", "AuthenticAMD", ... */
    char model[49];   /* brand string: "AMD EPYC 9B45", "Intel(R) Xeon(R) ..." */
    int family, model_number; /* cpuid display family / model (AMD Zen 3: 25, Zen 5: 26) */
} stem_cpu_features;

const stem_cpu_features *stem_cpu_features_get(void);
/* "avx512" / "avx2" / "portable": the kernel level in use (STEM_ISA env can lower it). */
const char *stem_cpu_isa_name(void);
int stem_cpu_isa_level(void); /* 0 portable, 1 avx2, 2 avx512 */
/* OpenBLAS's own name for the kernels it runs ("SkylakeX", "Prescott", ...). */
const char *stem_blas_core_name(void);
/* Call first thing in main(): may execv() the program with OPENBLAS_CORETYPE set.
 * Returns normally when nothing needs doing or re-exec is impossible. */
void stem_blas_ensure_fast_core(int argc, char **argv);
int stem_num_threads(void);
void stem_set_num_threads(int n);

#endif
