/* The hot inner loops of the CPU kernels, behind one table of function pointers.
 * dispatch.c holds the portable scalar table (the readable reference) and picks
 * the AVX2 or AVX-512 table (simd_impl.h compiled by simd_avx2.c / simd_avx512.c)
 * once, from stem_cpu_isa_level(). Every entry works on contiguous f32 runs; the
 * kernel files in kernels/cpu do the looping, blocking and threading around them.
 *
 * Accuracy contract (checked by the tests against double precision):
 * exp, sigmoid-based activations and gelu are within a few ulp (relative ~1e-6);
 * sums are accumulated in float over short blocks and in double across blocks. */
#ifndef STEM_KERNELS_CPU_SIMD_H
#define STEM_KERNELS_CPU_SIMD_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "core/backend.h"

typedef struct stem_simd {
    const char *name; /* "portable", "avx2", "avx512" */

    /* max_i fl(scale * x[i]) (-inf for n == 0). */
    float (*max_scaled)(const float *x, int64_t n, float scale);
    /* y[i] = exp(fl(scale * x[i]) - shift); returns the sum of the y[i]. y may equal x. */
    float (*exp_sum)(float *y, const float *x, int64_t n, float scale, float shift);
    /* y[i] = s * x[i]; y may equal x. */
    void (*scale)(float *y, const float *x, int64_t n, float s);

    /* y = act(x), y may equal x. */
    void (*unary)(stem_unary_kind kind, float *y, const float *x, int64_t n);
    /* y[i] = h[i] * gelu(g[i]) (exact erf gelu). */
    void (*geglu)(float *y, const float *h, const float *g, int64_t n);

    /* Sum, sum of squares and sum of squared deviations, returned in double. */
    double (*sum)(const float *x, int64_t n);
    double (*sumsq)(const float *x, int64_t n);
    double (*sumsq_dev)(const float *x, int64_t n, float mean);
    /* Column accumulators in double: acc[j] += x[j], and acc[j] += (x[j] - mu[j])^2. */
    void (*acc_add)(double *acc, const float *x, int64_t n);
    void (*acc_sqdev)(double *acc, const float *x, const double *mu, int64_t n);
    /* y = (x - mean) * a + b, then SiLU if `silu` (group norm, one channel). */
    void (*norm_apply)(float *y, const float *x, int64_t n, float mean, float a, float b, bool silu);
    /* y[i] = (x[i] - mean) * rstd * gamma[i] + beta[i]; gamma/beta may be NULL (layer norm). */
    void (*norm_apply_vec)(float *y, const float *x, int64_t n, float mean, float rstd,
                           const float *gamma, const float *beta);

    /* y[i] = a[i*sa] OP b[i*sb], any element strides (0 broadcasts); y may equal a. */
    void (*binary)(stem_binary_kind op, float *y, const float *a, int64_t sa, const float *b,
                   int64_t sb, int64_t n);
    /* y = alpha * x + beta (multiply, then add: two roundings, like torch). */
    void (*affine)(float *y, const float *x, int64_t n, float alpha, float beta);

    /* y[2i] = y[2i+1] = x[i], i < n (2x nearest upsampling of a row). */
    void (*dup2)(float *y, const float *x, int64_t n);
    /* dst[j*ld_dst + i] = src[i*ld_src + j], i < rows, j < cols. */
    void (*transpose)(float *dst, int64_t ld_dst, const float *src, int64_t ld_src, int64_t rows,
                      int64_t cols);
    /* First index of the maximum (NaN counts as the maximum, like torch.argmax);
     * *best gets the value. n >= 1. */
    int64_t (*argmax)(const float *x, int64_t n, float *best);

    /* Fused-attention micro-kernels, queries on the vector lanes (NULL in the portable
     * table: attention then runs on sgemm). All three work on nq columns, nq a
     * multiple of attn_cols, with row stride ld:
     * attn_qk:  S[j][i] = sum_l k[j*krs + l] * qt[l*ld + i] (j < nk, l < d),
     *           colmax[i] = max_j S[j][i];
     * attn_exp: S[j][i] = exp(S[j][i] - m[i]), lsum[i] = sum_j S[j][i];
     * attn_pv:  O[c][i] += sum_j v[j*vrs + c] * P[j][i] (c < dv, j < nk). */
    int attn_cols;
    void (*attn_qk)(float *S, float *colmax, const float *qt, int64_t ld, const float *k, int64_t krs,
                    int64_t nk, int64_t d, int64_t nq);
    void (*attn_exp)(float *S, int64_t ld, int64_t nk, const float *m, float *lsum, int64_t nq);
    void (*attn_pv)(float *O, const float *P, int64_t ld, const float *v, int64_t vrs, int64_t nk,
                    int64_t dv, int64_t nq);
} stem_simd;

extern const stem_simd stem_simd_portable;
#ifdef STEM_HAVE_AVX2
extern const stem_simd stem_simd_avx2;
#endif
#ifdef STEM_HAVE_AVX512
extern const stem_simd stem_simd_avx512;
#endif

/* The table for stem_cpu_isa_level(), chosen once. */
const stem_simd *stem_simd_get(void);

#endif
