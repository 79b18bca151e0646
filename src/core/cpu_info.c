/* CPU features, the kernel ISA level, and OpenBLAS's core selection (see cpu_info.h). */
#include "config.h"

#include "core/cpu_info.h"

#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static stem_cpu_features features;
static int isa_level;
static pthread_once_t detect_once = PTHREAD_ONCE_INIT;

static void detect(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    /* libgcc also checks (xgetbv) that the OS saves the AVX / AVX-512 state. */
    features.avx2 = __builtin_cpu_supports("avx2");
    features.fma = __builtin_cpu_supports("fma");
    features.f16c = __builtin_cpu_supports("f16c");
    features.avx512f = __builtin_cpu_supports("avx512f");
    features.avx512bw = __builtin_cpu_supports("avx512bw");
    features.avx512vl = __builtin_cpu_supports("avx512vl");
    features.avx512dq = __builtin_cpu_supports("avx512dq");
#endif
    int level = 0;
#ifdef STEM_HAVE_AVX2
    if (features.avx2 && features.fma && features.f16c) level = 1;
#endif
#ifdef STEM_HAVE_AVX512
    if (level == 1 && features.avx512f && features.avx512bw && features.avx512vl && features.avx512dq)
        level = 2;
#endif
    /* STEM_ISA can only lower the level (to compare paths, or to dodge a bad one). */
    const char *env = getenv("STEM_ISA");
    if (env && *env) {
        int want = -1;
        if (strcmp(env, "portable") == 0 || strcmp(env, "scalar") == 0) want = 0;
        else if (strcmp(env, "avx2") == 0) want = 1;
        else if (strcmp(env, "avx512") == 0) want = 2;
        if (want < 0)
            fprintf(stderr, "stem: ignoring STEM_ISA=%s (expected portable, avx2 or avx512)\n", env);
        else if (want < level)
            level = want;
    }
    isa_level = level;
}

const stem_cpu_features *stem_cpu_features_get(void) {
    pthread_once(&detect_once, detect);
    return &features;
}

int stem_cpu_isa_level(void) {
    pthread_once(&detect_once, detect);
    return isa_level;
}

const char *stem_cpu_isa_name(void) {
    static const char *const names[] = {"portable", "avx2", "avx512"};
    return names[stem_cpu_isa_level()];
}

const char *stem_blas_core_name(void) {
#ifdef HAVE_OPENBLAS_GET_CORENAME
    const char *name = openblas_get_corename();
    return name && *name ? name : "unknown";
#else
    return "unknown";
#endif
}

/* OpenBLAS cores that already use AVX-512 (resp. AVX2) sgemm kernels. */
static bool core_is_fast(const char *core, bool avx512) {
    static const char *const fast512[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    static const char *const fast2[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"};
    const char *const *list = avx512 ? fast512 : fast2;
    size_t count = avx512 ? sizeof fast512 / sizeof *fast512 : sizeof fast2 / sizeof *fast2;
    for (size_t i = 0; i < count; i++)
        if (strcasecmp(core, list[i]) == 0) return true;
    return false;
}

void stem_blas_ensure_fast_core(int argc, char **argv) {
    if (argc < 1 || !argv || !argv[0]) return;
    if (getenv("OPENBLAS_CORETYPE") || getenv("STEM_REEXEC")) return; /* the user's choice, or done */
    const stem_cpu_features *f = stem_cpu_features_get();
    const char *want = NULL;
    bool avx512 = f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq;
    if (avx512) want = "SkylakeX";
    else if (f->avx2 && f->fma) want = "Haswell";
    if (!want) return;
    if (core_is_fast(stem_blas_core_name(), avx512)) return; /* OpenBLAS chose well already */
    /* The core is picked when libopenblas is loaded: only a fresh process can change it. */
    if (setenv("OPENBLAS_CORETYPE", want, 1) != 0 || setenv("STEM_REEXEC", "1", 1) != 0) return;
    fflush(NULL);
    execv("/proc/self/exe", argv);
    /* execv failed (no /proc, seccomp, ...): carry on with the slow core. */
    unsetenv("OPENBLAS_CORETYPE");
}

int stem_num_threads(void) { return omp_get_max_threads(); }

void stem_set_num_threads(int n) {
    if (n < 1) n = 1;
    omp_set_num_threads(n);
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    openblas_set_num_threads(n);
#endif
}
