/* The portable scalar table of simd.h — the readable reference every vector
 * version is tested against — and the one-time choice of table from
 * stem_cpu_isa_level(). Formulas are written as in PyTorch; transcendental
 * functions come from libm (activations are evaluated in double). */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stddef.h>

#include "core/cpu_info.h"
#include "kernels/cpu/simd.h"

static float p_max_scaled(const float *x, int64_t n, float scale) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        float s = scale * x[i];
        if (s > m || isnan(s)) m = s;
        if (isnan(m)) break;
    }
    return m;
}

static float p_exp_sum(float *y, const float *x, int64_t n, float scale, float shift) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float s = scale * x[i];
        y[i] = expf(s - shift);
        sum += y[i];
    }
    return (float)sum;
}

static void p_scale(float *y, const float *x, int64_t n, float s) {
    for (int64_t i = 0; i < n; i++) y[i] = s * x[i];
}

/* The activations, in double, rounded once. */
static float silu1(float x) { return (float)((double)x / (1.0 + exp(-(double)x))); }
static float gelu1(float x) { /* 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2) */
    return (float)(0.5 * x * erfc(-(double)x * M_SQRT1_2));
}
static float gelu_tanh1(float x) { /* 0.5 x (1 + tanh u) = x sigmoid(2u), no cancellation */
    double u = sqrt(2.0 / M_PI) * ((double)x + 0.044715 * (double)x * x * x);
    return (float)((double)x / (1.0 + exp(-2.0 * u)));
}
static float quick_gelu1(float x) { /* torch: x * sigmoid(1.702 * x), the product in float */
    float kx = 1.702f * x;
    return (float)((double)x / (1.0 + exp(-(double)kx)));
}

static void p_unary(stem_unary_kind kind, float *y, const float *x, int64_t n) {
    switch (kind) {
    case STEM_UNARY_SILU: for (int64_t i = 0; i < n; i++) y[i] = silu1(x[i]); break;
    case STEM_UNARY_GELU: for (int64_t i = 0; i < n; i++) y[i] = gelu1(x[i]); break;
    case STEM_UNARY_GELU_TANH: for (int64_t i = 0; i < n; i++) y[i] = gelu_tanh1(x[i]); break;
    case STEM_UNARY_QUICK_GELU: for (int64_t i = 0; i < n; i++) y[i] = quick_gelu1(x[i]); break;
    }
}

static void p_geglu(float *y, const float *h, const float *g, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = h[i] * gelu1(g[i]);
}

static double p_sum(const float *x, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return s;
}

static double p_sumsq(const float *x, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

static double p_sumsq_dev(const float *x, int64_t n, float mean) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)x[i] - mean;
        s += d * d;
    }
    return s;
}

static void p_acc_add(double *acc, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) acc[i] += x[i];
}

static void p_acc_sqdev(double *acc, const float *x, const double *mu, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double d = x[i] - mu[i];
        acc[i] += d * d;
    }
}

static void p_norm_apply(float *y, const float *x, int64_t n, float mean, float a, float b, bool silu) {
    for (int64_t i = 0; i < n; i++) {
        float v = (x[i] - mean) * a + b;
        y[i] = silu ? silu1(v) : v;
    }
}

static void p_norm_apply_vec(float *y, const float *x, int64_t n, float mean, float rstd,
                             const float *gamma, const float *beta) {
    for (int64_t i = 0; i < n; i++) {
        float v = (x[i] - mean) * rstd;
        if (gamma) v *= gamma[i];
        if (beta) v += beta[i];
        y[i] = v;
    }
}

static void p_binary(stem_binary_kind op, float *y, const float *a, int64_t sa, const float *b,
                     int64_t sb, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float u = a[i * sa], v = b[i * sb];
        switch (op) {
        case STEM_BINARY_ADD: y[i] = u + v; break;
        case STEM_BINARY_SUB: y[i] = u - v; break;
        case STEM_BINARY_MUL: y[i] = u * v; break;
        case STEM_BINARY_DIV: y[i] = u / v; break;
        }
    }
}

static void p_affine(float *y, const float *x, int64_t n, float alpha, float beta) {
    for (int64_t i = 0; i < n; i++) {
        float t = alpha * x[i];
        __asm__("" : "+x"(t)); /* two roundings, like torch: no FMA contraction */
        y[i] = t + beta;
    }
}

static void p_dup2(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[2 * i] = y[2 * i + 1] = x[i];
}

static void p_transpose(float *dst, int64_t ld_dst, const float *src, int64_t ld_src, int64_t rows,
                        int64_t cols) {
    enum { T = 16 }; /* tiles keep both sides in cache */
    for (int64_t i0 = 0; i0 < rows; i0 += T)
        for (int64_t j0 = 0; j0 < cols; j0 += T) {
            int64_t i1 = i0 + T < rows ? i0 + T : rows, j1 = j0 + T < cols ? j0 + T : cols;
            for (int64_t j = j0; j < j1; j++)
                for (int64_t i = i0; i < i1; i++) dst[j * ld_dst + i] = src[i * ld_src + j];
        }
}

static int64_t p_argmax(const float *x, int64_t n, float *best) {
    int64_t bi = 0;
    float bv = x[0];
    for (int64_t i = 1; i < n && !isnan(bv); i++)
        if (x[i] > bv || isnan(x[i])) { bv = x[i]; bi = i; }
    *best = bv;
    return bi;
}

const stem_simd stem_simd_portable = {
    .name = "portable",
    .max_scaled = p_max_scaled,
    .exp_sum = p_exp_sum,
    .scale = p_scale,
    .unary = p_unary,
    .geglu = p_geglu,
    .sum = p_sum,
    .sumsq = p_sumsq,
    .sumsq_dev = p_sumsq_dev,
    .acc_add = p_acc_add,
    .acc_sqdev = p_acc_sqdev,
    .norm_apply = p_norm_apply,
    .norm_apply_vec = p_norm_apply_vec,
    .binary = p_binary,
    .affine = p_affine,
    .dup2 = p_dup2,
    .transpose = p_transpose,
    .argmax = p_argmax,
};

static const stem_simd *chosen = &stem_simd_portable;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

static void choose(void) {
    int level = stem_cpu_isa_level();
    (void)level;
#ifdef STEM_HAVE_AVX512
    if (level >= 2) { chosen = &stem_simd_avx512; return; }
#endif
#ifdef STEM_HAVE_AVX2
    if (level >= 1) { chosen = &stem_simd_avx2; return; }
#endif
    chosen = &stem_simd_portable;
}

const stem_simd *stem_simd_get(void) {
    pthread_once(&chosen_once, choose);
    return chosen;
}
