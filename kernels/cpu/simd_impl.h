/* The vector implementation of simd.h, written once over a small set of vector
 * macros and compiled twice: simd_avx2.c (8 lanes, -mavx2 -mfma) and simd_avx512.c
 * (16 lanes, -mavx512f...). Include after defining STEM_SIMD_AVX2 or STEM_SIMD_AVX512.
 *
 * Accuracy: exp is range-reduced with a two-part ln 2 (Cody-Waite) and Cephes'
 * polynomial 1 + r + r^2 P5(r), max 1.4 ulp over the float range (subnormal results
 * included);
 * erfc uses the Numerical Recipes Chebyshev fit (relative error < 1.2e-7) with the
 * exp(-z^2) factor computed from the exact hi/lo split of z^2. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/simd.h"

#if defined(STEM_SIMD_AVX512)

#define VL 16
#define SFX(name) name##_avx512
typedef __m512 vf;
typedef __mmask16 vm;
static inline __mmask16 tail_mask(int64_t n) { return (__mmask16)((1u << n) - 1u); } /* n < 16 */
#define vload(p) _mm512_loadu_ps(p)
#define vstore(p, v) _mm512_storeu_ps(p, v)
#define vload_n(p, n) _mm512_maskz_loadu_ps(tail_mask(n), p)
#define vstore_n(p, v, n) _mm512_mask_storeu_ps(p, tail_mask(n), v)
#define vfill_tail(v, n, fill) _mm512_mask_blend_ps(tail_mask(n), _mm512_set1_ps(fill), v)
#define vset1(x) _mm512_set1_ps(x)
#define vzero() _mm512_setzero_ps()
#define vadd(a, b) _mm512_add_ps(a, b)
#define vsub(a, b) _mm512_sub_ps(a, b)
#define vmul(a, b) _mm512_mul_ps(a, b)
#define vdiv(a, b) _mm512_div_ps(a, b)
#define vmax(a, b) _mm512_max_ps(a, b)
#define vmin(a, b) _mm512_min_ps(a, b)
#define vabs(a) _mm512_abs_ps(a)
#define vfmadd(a, b, c) _mm512_fmadd_ps(a, b, c)   /* a*b + c */
#define vfnmadd(a, b, c) _mm512_fnmadd_ps(a, b, c) /* c - a*b */
#define vfmsub(a, b, c) _mm512_fmsub_ps(a, b, c)   /* a*b - c */
#define vround(x) _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define vhsum(v) _mm512_reduce_add_ps(v)
#define vhmax(v) _mm512_reduce_max_ps(v)
#define vcmp_lt(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
#define vcmp_gt(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define visnan(a) _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q)
#define vm_none() ((__mmask16)0)
#define vm_or(a, b) ((__mmask16)((a) | (b)))
#define vm_any(m) ((m) != 0)
#define vblend(m, a, b) _mm512_mask_blend_ps(m, a, b) /* m ? b : a */
/* p * 2^n for integral float n in [-152, 129]: scalef handles subnormals and overflow. */
static inline vf vldexp(vf p, vf n) { return _mm512_scalef_ps(p, n); }
static inline vf viota(void) {
    return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

#elif defined(STEM_SIMD_AVX2)

#define VL 8
#define SFX(name) name##_avx2
typedef __m256 vf;
typedef __m256 vm;
static inline __m256i tail_imask(int64_t n) { /* lanes < n set, n < 8 */
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#define vload(p) _mm256_loadu_ps(p)
#define vstore(p, v) _mm256_storeu_ps(p, v)
#define vload_n(p, n) _mm256_maskload_ps(p, tail_imask(n))
#define vstore_n(p, v, n) _mm256_maskstore_ps(p, tail_imask(n), v)
#define vfill_tail(v, n, fill) \
    _mm256_blendv_ps(_mm256_set1_ps(fill), v, _mm256_castsi256_ps(tail_imask(n)))
#define vset1(x) _mm256_set1_ps(x)
#define vzero() _mm256_setzero_ps()
#define vadd(a, b) _mm256_add_ps(a, b)
#define vsub(a, b) _mm256_sub_ps(a, b)
#define vmul(a, b) _mm256_mul_ps(a, b)
#define vdiv(a, b) _mm256_div_ps(a, b)
#define vmax(a, b) _mm256_max_ps(a, b)
#define vmin(a, b) _mm256_min_ps(a, b)
#define vabs(a) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a)
#define vfmadd(a, b, c) _mm256_fmadd_ps(a, b, c)
#define vfnmadd(a, b, c) _mm256_fnmadd_ps(a, b, c)
#define vfmsub(a, b, c) _mm256_fmsub_ps(a, b, c)
#define vround(x) _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
static inline float vhsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline float vhmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#define vcmp_lt(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define vcmp_gt(a, b) _mm256_cmp_ps(a, b, _CMP_GT_OQ)
#define visnan(a) _mm256_cmp_ps(a, a, _CMP_UNORD_Q)
#define vm_none() _mm256_setzero_ps()
#define vm_or(a, b) _mm256_or_ps(a, b)
#define vm_any(m) (_mm256_movemask_ps(m) != 0)
#define vblend(m, a, b) _mm256_blendv_ps(a, b, m)
/* p * 2^n for integral float n in [-152, 129], in two steps so that both factors are
 * normal floats (subnormal and overflowing results come out right). */
static inline vf vldexp(vf p, vf n) {
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    __m256i bias = _mm256_set1_epi32(127);
    vf f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    vf f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, f1), f2);
}
static inline vf viota(void) { return _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7); }

#else
#error "define STEM_SIMD_AVX2 or STEM_SIMD_AVX512 before including simd_impl.h"
#endif

/* ---- transcendental building blocks ---------------------------------------------- */

/* exp(a + b) with |b| small (b = 0 for a plain exp). The reduction r = a - n ln2 is
 * exact for the high part of ln 2, so a low-order correction b keeps its accuracy. */
static inline vf vexp2p(vf a, vf b) {
    /* max/min with x second propagate NaN */
    a = vmin(vset1(89.0f), vmax(vset1(-104.0f), a));
    vf n = vround(vmul(vadd(a, b), vset1(1.44269504088896341f)));
    vf r = vfnmadd(n, vset1(0.693359375f), a);
    r = vfnmadd(n, vset1(-2.12194440e-4f), r);
    r = vadd(r, b);
    vf p = vset1(1.9875691500e-4f);
    p = vfmadd(p, r, vset1(1.3981999507e-3f));
    p = vfmadd(p, r, vset1(8.3334519073e-3f));
    p = vfmadd(p, r, vset1(4.1665795894e-2f));
    p = vfmadd(p, r, vset1(1.6666665459e-1f));
    p = vfmadd(p, r, vset1(5.0000001201e-1f));
    p = vfmadd(p, vmul(r, r), r);
    p = vadd(p, vset1(1.0f));
    return vldexp(p, n);
}
static inline vf vexp(vf x) { return vexp2p(x, vzero()); }

/* x * sigmoid(k x) = x / (1 + exp(-k x)) */
static inline vf vxsigmoid(vf x, float k) {
    vf e = vexp(vmul(x, vset1(-k)));
    return vdiv(x, vadd(vset1(1.0f), e));
}
static inline vf vsilu(vf x) { return vxsigmoid(x, 1.0f); }
static inline vf vquick_gelu(vf x) { return vxsigmoid(x, 1.702f); }

/* 0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): the
 * sigmoid form has no cancellation for negative x. */
static inline vf vgelu_tanh(vf x) {
    vf x3 = vmul(vmul(x, x), x);
    vf u = vmul(vset1(0.7978845608028654f), vfmadd(vset1(0.044715f), x3, x));
    vf e = vexp(vmul(u, vset1(-2.0f)));
    return vdiv(x, vadd(vset1(1.0f), e));
}

/* erfc(z) for z >= 0 given z and z^2 = z2 + z2lo exactly, relative error ~2e-7
 * (Numerical Recipes' erfcc; its exp(-z^2) factor is evaluated from the exact z^2). */
static inline vf verfc_pos(vf z, vf z2, vf z2lo) {
    vf t = vdiv(vset1(1.0f), vfmadd(vset1(0.5f), z, vset1(1.0f)));
    vf p = vset1(0.17087277f);
    p = vfmadd(p, t, vset1(-0.82215223f));
    p = vfmadd(p, t, vset1(1.48851587f));
    p = vfmadd(p, t, vset1(-1.13520398f));
    p = vfmadd(p, t, vset1(0.27886807f));
    p = vfmadd(p, t, vset1(-0.18628806f));
    p = vfmadd(p, t, vset1(0.09678418f));
    p = vfmadd(p, t, vset1(0.37409196f));
    p = vfmadd(p, t, vset1(1.00002368f));
    p = vfmadd(p, t, vset1(-1.26551223f));
    return vmul(t, vexp2p(vsub(vzero(), z2), vsub(p, z2lo)));
}

/* gelu(x) = 0.5 x (1 + erf(x/sqrt2)) = 0.5 x * (x < 0 ? erfc(|z|) : 2 - erfc(|z|)). */
static inline vf vgelu(vf x) {
    vf z = vmul(vabs(x), vset1(0.70710678118654752f));
    /* z^2 = x^2 / 2 from the exact split of x^2 (rounding z first would cost ~z^2 ulp) */
    vf x2 = vmul(x, x), x2lo = vfmsub(x, x, x2);
    vf e = verfc_pos(z, vmul(x2, vset1(0.5f)), vmul(x2lo, vset1(0.5f)));
    vf f = vblend(vcmp_lt(x, vzero()), vsub(vset1(2.0f), e), e);
    return vmul(vmul(vset1(0.5f), x), f);
}

/* ---- softmax rows ------------------------------------------------------------------ */

static float SFX(max_scaled)(const float *x, int64_t n, float scale) {
    vf vs = vset1(scale), acc = vset1(-INFINITY);
    vm nan = vm_none();
    int64_t i = 0;
    for (; i + VL <= n; i += VL) {
        vf s = vmul(vload(x + i), vs);
        nan = vm_or(nan, visnan(s));
        acc = vmax(acc, s);
    }
    if (i < n) {
        vf s = vfill_tail(vmul(vload_n(x + i, n - i), vs), n - i, -INFINITY);
        nan = vm_or(nan, visnan(s));
        acc = vmax(acc, s);
    }
    return vm_any(nan) ? NAN : vhmax(acc);
}

static float SFX(exp_sum)(float *y, const float *x, int64_t n, float scale, float shift) {
    vf vs = vset1(scale), vsh = vset1(shift), acc0 = vzero(), acc1 = vzero();
    int64_t i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        vf e0 = vexp(vsub(vmul(vload(x + i), vs), vsh));
        vf e1 = vexp(vsub(vmul(vload(x + i + VL), vs), vsh));
        vstore(y + i, e0);
        vstore(y + i + VL, e1);
        acc0 = vadd(acc0, e0);
        acc1 = vadd(acc1, e1);
    }
    for (; i + VL <= n; i += VL) {
        vf e = vexp(vsub(vmul(vload(x + i), vs), vsh));
        vstore(y + i, e);
        acc0 = vadd(acc0, e);
    }
    if (i < n) {
        vf e = vfill_tail(vexp(vsub(vmul(vload_n(x + i, n - i), vs), vsh)), n - i, 0.0f);
        vstore_n(y + i, e, n - i);
        acc1 = vadd(acc1, e);
    }
    return vhsum(vadd(acc0, acc1));
}

static void SFX(scale)(float *y, const float *x, int64_t n, float s) {
    vf vs = vset1(s);
    int64_t i = 0;
    for (; i + VL <= n; i += VL) vstore(y + i, vmul(vload(x + i), vs));
    if (i < n) vstore_n(y + i, vmul(vload_n(x + i, n - i), vs), n - i);
}

/* ---- activations --------------------------------------------------------------------- */

#define UNARY_LOOP(F)                                                        \
    do {                                                                     \
        int64_t i = 0;                                                       \
        for (; i + VL <= n; i += VL) vstore(y + i, F(vload(x + i)));         \
        if (i < n) vstore_n(y + i, F(vload_n(x + i, n - i)), n - i);         \
    } while (0)

static void SFX(unary)(stem_unary_kind kind, float *y, const float *x, int64_t n) {
    switch (kind) {
    case STEM_UNARY_SILU: UNARY_LOOP(vsilu); break;
    case STEM_UNARY_GELU: UNARY_LOOP(vgelu); break;
    case STEM_UNARY_GELU_TANH: UNARY_LOOP(vgelu_tanh); break;
    case STEM_UNARY_QUICK_GELU: UNARY_LOOP(vquick_gelu); break;
    }
}

static void SFX(geglu)(float *y, const float *h, const float *g, int64_t n) {
    int64_t i = 0;
    for (; i + VL <= n; i += VL) vstore(y + i, vmul(vload(h + i), vgelu(vload(g + i))));
    if (i < n) vstore_n(y + i, vmul(vload_n(h + i, n - i), vgelu(vload_n(g + i, n - i))), n - i);
}

/* ---- reductions for norms ---------------------------------------------------------- */

/* Float lanes accumulate at most SUM_BLOCK elements each call of the block
 * reducers; the blocks are added in double. */
#define SUM_BLOCK 1024

#define BLOCKED_SUM(EXPR_V)                                                  \
    double total = 0.0;                                                      \
    for (int64_t b0 = 0; b0 < n; b0 += SUM_BLOCK) {                          \
        int64_t b1 = b0 + SUM_BLOCK < n ? b0 + SUM_BLOCK : n, i = b0;        \
        vf acc0 = vzero(), acc1 = vzero();                                   \
        for (; i + 2 * VL <= b1; i += 2 * VL) {                              \
            vf v = vload(x + i);                                             \
            acc0 = EXPR_V(v, acc0);                                          \
            v = vload(x + i + VL);                                           \
            acc1 = EXPR_V(v, acc1);                                          \
        }                                                                    \
        for (; i + VL <= b1; i += VL) {                                      \
            vf v = vload(x + i);                                             \
            acc0 = EXPR_V(v, acc0);                                          \
        }                                                                    \
        if (i < b1) {                                                        \
            vf v = vload_n(x + i, b1 - i);                                   \
            vf a = EXPR_V(v, vzero());                                       \
            acc1 = vadd(acc1, vfill_tail(a, b1 - i, 0.0f));                  \
        }                                                                    \
        total += (double)vhsum(vadd(acc0, acc1));                            \
    }                                                                        \
    return total

#define ACC_SUM(v, acc) vadd(acc, v)
#define ACC_SQ(v, acc) vfmadd(v, v, acc)
#define ACC_DEV(v, acc) vfmadd(vsub(v, vmean), vsub(v, vmean), acc)

static double SFX(sum)(const float *x, int64_t n) { BLOCKED_SUM(ACC_SUM); }
static double SFX(sumsq)(const float *x, int64_t n) { BLOCKED_SUM(ACC_SQ); }
static double SFX(sumsq_dev)(const float *x, int64_t n, float mean) {
    vf vmean = vset1(mean);
    BLOCKED_SUM(ACC_DEV);
}

/* Column accumulators in double: 8 (AVX-512) or 4 (AVX2) doubles per step. */
#if defined(STEM_SIMD_AVX512)
#define DL 8
typedef __m512d vd;
#define vd_cvt(p) _mm512_cvtps_pd(_mm256_loadu_ps(p))
#define vd_load(p) _mm512_loadu_pd(p)
#define vd_store(p, v) _mm512_storeu_pd(p, v)
#define vd_add(a, b) _mm512_add_pd(a, b)
#define vd_sub(a, b) _mm512_sub_pd(a, b)
#define vd_fmadd(a, b, c) _mm512_fmadd_pd(a, b, c)
#else
#define DL 4
typedef __m256d vd;
#define vd_cvt(p) _mm256_cvtps_pd(_mm_loadu_ps(p))
#define vd_load(p) _mm256_loadu_pd(p)
#define vd_store(p, v) _mm256_storeu_pd(p, v)
#define vd_add(a, b) _mm256_add_pd(a, b)
#define vd_sub(a, b) _mm256_sub_pd(a, b)
#define vd_fmadd(a, b, c) _mm256_fmadd_pd(a, b, c)
#endif

static void SFX(acc_add)(double *acc, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + DL <= n; i += DL) vd_store(acc + i, vd_add(vd_load(acc + i), vd_cvt(x + i)));
    for (; i < n; i++) acc[i] += x[i];
}

static void SFX(acc_sqdev)(double *acc, const float *x, const double *mu, int64_t n) {
    int64_t i = 0;
    for (; i + DL <= n; i += DL) {
        vd d = vd_sub(vd_cvt(x + i), vd_load(mu + i));
        vd_store(acc + i, vd_fmadd(d, d, vd_load(acc + i)));
    }
    for (; i < n; i++) {
        double d = x[i] - mu[i];
        acc[i] += d * d;
    }
}

static void SFX(norm_apply)(float *y, const float *x, int64_t n, float mean, float a, float b,
                            bool silu) {
    vf vmean = vset1(mean), va = vset1(a), vb = vset1(b);
    int64_t i = 0;
    if (silu) {
        for (; i + VL <= n; i += VL) vstore(y + i, vsilu(vfmadd(vsub(vload(x + i), vmean), va, vb)));
        if (i < n) vstore_n(y + i, vsilu(vfmadd(vsub(vload_n(x + i, n - i), vmean), va, vb)), n - i);
    } else {
        for (; i + VL <= n; i += VL) vstore(y + i, vfmadd(vsub(vload(x + i), vmean), va, vb));
        if (i < n) vstore_n(y + i, vfmadd(vsub(vload_n(x + i, n - i), vmean), va, vb), n - i);
    }
}

static void SFX(norm_apply_vec)(float *y, const float *x, int64_t n, float mean, float rstd,
                                const float *gamma, const float *beta) {
    vf vmean = vset1(mean), vr = vset1(rstd);
    int64_t i = 0;
    for (; i + VL <= n; i += VL) {
        vf v = vmul(vsub(vload(x + i), vmean), vr);
        if (gamma) v = vmul(v, vload(gamma + i));
        if (beta) v = vadd(v, vload(beta + i));
        vstore(y + i, v);
    }
    if (i < n) {
        int64_t r = n - i;
        vf v = vmul(vsub(vload_n(x + i, r), vmean), vr);
        if (gamma) v = vmul(v, vload_n(gamma + i, r));
        if (beta) v = vadd(v, vload_n(beta + i, r));
        vstore_n(y + i, v, r);
    }
}

/* ---- elementwise ------------------------------------------------------------------- */

#define BINARY_LOOPS(VOP, SOP)                                                           \
    do {                                                                                 \
        int64_t i = 0;                                                                   \
        if (sa == 1 && sb == 1) {                                                        \
            for (; i + VL <= n; i += VL) vstore(y + i, VOP(vload(a + i), vload(b + i))); \
            if (i < n) vstore_n(y + i, VOP(vload_n(a + i, n - i), vload_n(b + i, n - i)), n - i); \
        } else if (sa == 1 && sb == 0) {                                                 \
            vf vb = vset1(b[0]);                                                         \
            for (; i + VL <= n; i += VL) vstore(y + i, VOP(vload(a + i), vb));           \
            if (i < n) vstore_n(y + i, VOP(vload_n(a + i, n - i), vb), n - i);           \
        } else if (sa == 0 && sb == 1) {                                                 \
            vf va = vset1(a[0]);                                                         \
            for (; i + VL <= n; i += VL) vstore(y + i, VOP(va, vload(b + i)));           \
            if (i < n) vstore_n(y + i, VOP(va, vload_n(b + i, n - i)), n - i);           \
        } else {                                                                         \
            for (; i < n; i++) y[i] = a[i * sa] SOP b[i * sb];                           \
        }                                                                                \
    } while (0)

static void SFX(binary)(stem_binary_kind op, float *y, const float *a, int64_t sa, const float *b,
                        int64_t sb, int64_t n) {
    switch (op) {
    case STEM_BINARY_ADD: BINARY_LOOPS(vadd, +); break;
    case STEM_BINARY_SUB: BINARY_LOOPS(vsub, -); break;
    case STEM_BINARY_MUL: BINARY_LOOPS(vmul, *); break;
    case STEM_BINARY_DIV: BINARY_LOOPS(vdiv, /); break;
    }
}

/* alpha * x, rounded, then + beta, rounded: the empty asm keeps the compiler from
 * contracting the pair into one FMA (torch rounds twice). */
static inline vf vaffine(vf x, vf va, vf vb) {
    vf t = vmul(x, va);
    __asm__("" : "+v"(t));
    return vadd(t, vb);
}

static void SFX(affine)(float *y, const float *x, int64_t n, float alpha, float beta) {
    vf va = vset1(alpha), vb = vset1(beta);
    int64_t i = 0;
    for (; i + VL <= n; i += VL) vstore(y + i, vaffine(vload(x + i), va, vb));
    if (i < n) vstore_n(y + i, vaffine(vload_n(x + i, n - i), va, vb), n - i);
}

/* ---- layout ------------------------------------------------------------------------ */

static void SFX(dup2)(float *y, const float *x, int64_t n) {
    int64_t i = 0;
#if defined(STEM_SIMD_AVX512)
    const __m512i lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i hi = _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        _mm512_storeu_ps(y + 2 * i, _mm512_permutexvar_ps(lo, v));
        _mm512_storeu_ps(y + 2 * i + 16, _mm512_permutexvar_ps(hi, v));
    }
#endif
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 l = _mm256_unpacklo_ps(v, v), h = _mm256_unpackhi_ps(v, v);
        _mm256_storeu_ps(y + 2 * i, _mm256_permute2f128_ps(l, h, 0x20));
        _mm256_storeu_ps(y + 2 * i + 8, _mm256_permute2f128_ps(l, h, 0x31));
    }
    for (; i < n; i++) y[2 * i] = y[2 * i + 1] = x[i];
}

/* 8x8 transpose of a tile: d[j][i] = s[i][j]. */
static inline void tr8x8(float *d, int64_t ldd, const float *s, int64_t lds) {
    __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + lds);
    __m256 r2 = _mm256_loadu_ps(s + 2 * lds), r3 = _mm256_loadu_ps(s + 3 * lds);
    __m256 r4 = _mm256_loadu_ps(s + 4 * lds), r5 = _mm256_loadu_ps(s + 5 * lds);
    __m256 r6 = _mm256_loadu_ps(s + 6 * lds), r7 = _mm256_loadu_ps(s + 7 * lds);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(d + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(d + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(d + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(d + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(d + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(d + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(d + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}

static void SFX(transpose)(float *dst, int64_t ld_dst, const float *src, int64_t ld_src, int64_t rows,
                           int64_t cols) {
    enum { T = 64 };
    for (int64_t ib = 0; ib < rows; ib += T)
        for (int64_t jb = 0; jb < cols; jb += T) {
            int64_t ie = ib + T < rows ? ib + T : rows, je = jb + T < cols ? jb + T : cols;
            int64_t i = ib;
            for (; i + 8 <= ie; i += 8) {
                int64_t j = jb;
                for (; j + 8 <= je; j += 8) tr8x8(dst + j * ld_dst + i, ld_dst, src + i * ld_src + j, ld_src);
                for (; j < je; j++)
                    for (int64_t ii = i; ii < i + 8; ii++) dst[j * ld_dst + ii] = src[ii * ld_src + j];
            }
            for (; i < ie; i++)
                for (int64_t j = jb; j < je; j++) dst[j * ld_dst + i] = src[i * ld_src + j];
        }
}

/* ---- argmax -------------------------------------------------------------------------- */

/* Lane-wise running maxima with their first indices (kept as floats: exact below
 * 2^24, so rows are processed in chunks of that length), then the lowest index among
 * the lanes holding the maximum. NaN anywhere falls back to the scalar rule. */
static int64_t SFX(argmax)(const float *x, int64_t n, float *best) {
    const int64_t chunk = (int64_t)1 << 24;
    int64_t bi_all = -1;
    float bv_all = 0.0f;
    for (int64_t c0 = 0; c0 < n; c0 += chunk) {
        int64_t len = n - c0 < chunk ? n - c0 : chunk;
        const float *xc = x + c0;
        vf bv = vset1(-INFINITY), bi = vzero(), idx = viota(), step = vset1((float)VL);
        vm nan = vm_none();
        int64_t i = 0;
        for (; i + VL <= len; i += VL) {
            vf v = vload(xc + i);
            nan = vm_or(nan, visnan(v));
            vm gt = vcmp_gt(v, bv);
            bv = vblend(gt, bv, v);
            bi = vblend(gt, bi, idx);
            idx = vadd(idx, step);
        }
        if (i < len) {
            vf v = vfill_tail(vload_n(xc + i, len - i), len - i, -INFINITY);
            nan = vm_or(nan, visnan(v));
            vm gt = vcmp_gt(v, bv);
            bv = vblend(gt, bv, v);
            bi = vblend(gt, bi, idx);
        }
        int64_t ci;
        float cv;
        if (vm_any(nan)) {
            ci = 0;
            while (!isnan(xc[ci])) ci++;
            cv = xc[ci];
        } else {
            float lv[VL], li[VL];
            vstore(lv, bv);
            vstore(li, bi);
            cv = lv[0];
            float cif = li[0];
            for (int l = 1; l < VL; l++)
                if (lv[l] > cv || (lv[l] == cv && li[l] < cif)) { cv = lv[l]; cif = li[l]; }
            ci = (int64_t)cif;
            if (cv == -INFINITY) { /* all -inf: the first one */
                ci = 0;
            }
        }
        if (bi_all < 0 || cv > bv_all || (isnan(cv) && !isnan(bv_all))) {
            bi_all = c0 + ci;
            bv_all = cv;
        }
        if (isnan(bv_all)) break;
    }
    *best = bv_all;
    return bi_all;
}

/* ---- fused attention micro-kernels ------------------------------------------------ */

/* Register tiles: ATT_RQ keys (qk) or ATT_RV output channels (pv) x 2 vectors of
 * queries, i.e. 2 * R accumulators. For qk, GCC 12 spills the two query vectors
 * once the tile needs more than 16 registers (-> half speed), hence 6 x 2 there;
 * pv keeps 8 x 2 (measured on Zen 4: both ~105-115 GFLOP/s per core). */
#ifndef ATT_RQ
#if defined(STEM_SIMD_AVX512)
#define ATT_RQ 6
#define ATT_RV 8
#else
#define ATT_RQ 4
#define ATT_RV 4
#endif
#endif

static void SFX(attn_qk)(float *S, float *colmax, const float *qt, int64_t ld, const float *k, int64_t krs,
                         int64_t nk, int64_t d, int64_t nq) {
    for (int64_t i0 = 0; i0 < nq; i0 += 2 * VL) {
        const float *qc = qt + i0;
        vf mx0 = vset1(-INFINITY), mx1 = vset1(-INFINITY);
        for (int64_t j = 0; j < nk; j += ATT_RQ) {
            /* a short last tile repeats its last key in the unused rows (not stored) */
            const int64_t rows = stem_imin(ATT_RQ, nk - j);
            const float *kr[ATT_RQ];
#pragma GCC unroll 8
            for (int r = 0; r < ATT_RQ; r++) kr[r] = k + (j + (r < rows ? r : rows - 1)) * krs;
            vf c0[ATT_RQ], c1[ATT_RQ];
#pragma GCC unroll 8
            for (int r = 0; r < ATT_RQ; r++) c0[r] = c1[r] = vzero();
            for (int64_t l = 0; l < d; l++) {
                vf b0 = vload(qc + l * ld), b1 = vload(qc + l * ld + VL);
#pragma GCC unroll 8
                for (int r = 0; r < ATT_RQ; r++) {
                    vf a = vset1(kr[r][l]);
                    c0[r] = vfmadd(a, b0, c0[r]);
                    c1[r] = vfmadd(a, b1, c1[r]);
                }
            }
#pragma GCC unroll 8
            for (int r = 0; r < ATT_RQ; r++) {
                mx0 = vmax(mx0, c0[r]); /* repeated rows do not change the maximum */
                mx1 = vmax(mx1, c1[r]);
                if (r < rows) {
                    vstore(S + (j + r) * ld + i0, c0[r]);
                    vstore(S + (j + r) * ld + i0 + VL, c1[r]);
                }
            }
        }
        vstore(colmax + i0, mx0);
        vstore(colmax + i0 + VL, mx1);
    }
}

static void SFX(attn_exp)(float *S, int64_t ld, int64_t nk, const float *m, float *lsum, int64_t nq) {
    for (int64_t i0 = 0; i0 < nq; i0 += 2 * VL) {
        vf m0 = vload(m + i0), m1 = vload(m + i0 + VL), s0 = vzero(), s1 = vzero();
        for (int64_t j = 0; j < nk; j++) {
            float *row = S + j * ld + i0;
            vf e0 = vexp(vsub(vload(row), m0)), e1 = vexp(vsub(vload(row + VL), m1));
            vstore(row, e0);
            vstore(row + VL, e1);
            s0 = vadd(s0, e0);
            s1 = vadd(s1, e1);
        }
        vstore(lsum + i0, s0);
        vstore(lsum + i0 + VL, s1);
    }
}

static void SFX(attn_pv)(float *O, const float *P, int64_t ld, const float *v, int64_t vrs, int64_t nk,
                         int64_t dv, int64_t nq) {
    int64_t c = 0;
    for (; c + ATT_RV <= dv; c += ATT_RV)
        for (int64_t i0 = 0; i0 < nq; i0 += 2 * VL) {
            vf o0[ATT_RV], o1[ATT_RV];
#pragma GCC unroll 8
            for (int r = 0; r < ATT_RV; r++) {
                o0[r] = vload(O + (c + r) * ld + i0);
                o1[r] = vload(O + (c + r) * ld + i0 + VL);
            }
            const float *vc = v + c;
            for (int64_t j = 0; j < nk; j++) {
                vf p0 = vload(P + j * ld + i0), p1 = vload(P + j * ld + i0 + VL);
#pragma GCC unroll 8
                for (int r = 0; r < ATT_RV; r++) {
                    vf a = vset1(vc[j * vrs + r]);
                    o0[r] = vfmadd(a, p0, o0[r]);
                    o1[r] = vfmadd(a, p1, o1[r]);
                }
            }
#pragma GCC unroll 8
            for (int r = 0; r < ATT_RV; r++) {
                vstore(O + (c + r) * ld + i0, o0[r]);
                vstore(O + (c + r) * ld + i0 + VL, o1[r]);
            }
        }
    for (; c < dv; c++)
        for (int64_t i0 = 0; i0 < nq; i0 += 2 * VL) {
            vf o0 = vload(O + c * ld + i0), o1 = vload(O + c * ld + i0 + VL);
            for (int64_t j = 0; j < nk; j++) {
                vf a = vset1(v[j * vrs + c]);
                o0 = vfmadd(a, vload(P + j * ld + i0), o0);
                o1 = vfmadd(a, vload(P + j * ld + i0 + VL), o1);
            }
            vstore(O + c * ld + i0, o0);
            vstore(O + c * ld + i0 + VL, o1);
        }
}

const stem_simd SFX(stem_simd) = {
#if defined(STEM_SIMD_AVX512)
    .name = "avx512",
#else
    .name = "avx2",
#endif
    .max_scaled = SFX(max_scaled),
    .exp_sum = SFX(exp_sum),
    .scale = SFX(scale),
    .unary = SFX(unary),
    .geglu = SFX(geglu),
    .sum = SFX(sum),
    .sumsq = SFX(sumsq),
    .sumsq_dev = SFX(sumsq_dev),
    .acc_add = SFX(acc_add),
    .acc_sqdev = SFX(acc_sqdev),
    .norm_apply = SFX(norm_apply),
    .norm_apply_vec = SFX(norm_apply_vec),
    .binary = SFX(binary),
    .affine = SFX(affine),
    .dup2 = SFX(dup2),
    .transpose = SFX(transpose),
    .argmax = SFX(argmax),
    .attn_cols = 2 * VL,
    .attn_qk = SFX(attn_qk),
    .attn_exp = SFX(attn_exp),
    .attn_pv = SFX(attn_pv),
};
