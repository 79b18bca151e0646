/* CPU features, the kernel ISA level, and OpenBLAS's core selection (see cpu_info.h). */
#include "config.h"

#include "core/cpu_info.h"

#include <cblas.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <stdint.h>
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

#if defined(__x86_64__) || defined(__i386__)
/* Which register states the OS saves on a context switch (XCR0, read by xgetbv). */
static uint64_t os_saved_state(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* Brand strings are padded with spaces on either side. */
static void trim_spaces(char *s) {
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == ' ') s[--n] = '\0';
    size_t lead = strspn(s, " ");
    memmove(s, s + lead, n - lead + 1);
}

/* cpuid directly, the same under gcc and clang (clang 14's __builtin_cpu_supports
 * knows no "f16c"). A feature counts only when the OS also saves its registers:
 * YMM for AVX2/FMA/F16C, opmask + ZMM for AVX-512. */
static void detect_x86(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    const bool osxsave = c & (1u << 27), avx = c & (1u << 28);
    const uint64_t xcr0 = osxsave ? os_saved_state() : 0;
    const bool ymm = avx && (xcr0 & 0x6) == 0x6, zmm = ymm && (xcr0 & 0xe6) == 0xe6;
    features.fma = ymm && (c & (1u << 12));
    features.f16c = ymm && (c & (1u << 29));
    unsigned family = (a >> 8) & 0xf, model = (a >> 4) & 0xf;
    if (family == 0xf) family += (a >> 20) & 0xff;
    if (family >= 6) model |= ((a >> 16) & 0xf) << 4;
    features.family = (int)family;
    features.model_number = (int)model;
    if ((unsigned)__get_cpuid_max(0, NULL) >= 7u) {
        __cpuid_count(7, 0, a, b, c, d);
        features.avx2 = ymm && (b & (1u << 5));
        features.avx512f = zmm && (b & (1u << 16));
        features.avx512dq = zmm && (b & (1u << 17));
        features.avx512bw = zmm && (b & (1u << 30));
        features.avx512vl = zmm && (b & (1u << 31));
    }
    unsigned vendor[3];
    __get_cpuid(0, &a, &vendor[0], &vendor[2], &vendor[1]); /* EBX, EDX, ECX spell it */
    memcpy(features.vendor, vendor, sizeof vendor);
    if ((unsigned)__get_cpuid_max(0x80000000u, NULL) >= 0x80000004u) {
        unsigned brand[12];
        for (unsigned i = 0; i < 3; i++)
            __get_cpuid(0x80000002u + i, &brand[4 * i], &brand[4 * i + 1], &brand[4 * i + 2], &brand[4 * i + 3]);
        memcpy(features.model, brand, sizeof brand);
        trim_spaces(features.model);
    }
}
#endif

static void detect(void) {
    snprintf(features.vendor, sizeof features.vendor, "unknown");
#if defined(__x86_64__) || defined(__i386__)
    detect_x86();
#endif
    if (!features.model[0]) snprintf(features.model, sizeof features.model, "unknown");
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
