/* Group norm (optionally fused with SiLU) and layer norm. Statistics are two-pass:
 * the mean, then the squared deviations from it, both summed in double (simd.h
 * sums float lanes over short blocks only), biased variance, eps inside the sqrt:
 *   y = (x - mean) / sqrt(var + eps) * gamma + beta. */
#include <math.h>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/simd.h"

/* mean and 1/sqrt(var + eps) of x[0..n). */
static void stats(const stem_simd *s, const float *x, int64_t n, float eps, float *mean, float *rstd) {
    if (n <= 0) { *mean = 0.0f; *rstd = 1.0f / sqrtf(eps); return; }
    double m = s->sum(x, n) / (double)n;
    float mf = (float)m;
    /* deviations are taken from the float mean; remove the (tiny) offset exactly */
    double dev = s->sumsq_dev(x, n, mf) - (double)n * (m - mf) * (m - mf);
    double var = dev > 0.0 ? dev / (double)n : 0.0;
    *mean = mf;
    *rstd = (float)(1.0 / sqrt(var + (double)eps));
}

void stem_cpu_group_norm_f32(const stem_group_norm_params *p) {
    const stem_simd *s = stem_simd_get();
    const int64_t groups = p->groups, cpg = p->c / groups, sp = p->spatial;
    const int64_t items = p->n * groups, per = cpg * sp;
    const float *x = p->x, *gamma = p->gamma, *beta = p->beta;
    float *y = p->y;
#pragma omp parallel for schedule(static) if (items > 1 && items * per >= STEM_PAR_MIN_ELEMS)
    for (int64_t it = 0; it < items; it++) {
        int64_t img = it / groups, g = it % groups;
        const float *xg = x + (img * p->c + g * cpg) * sp;
        float *yg = y + (img * p->c + g * cpg) * sp;
        float mean, rstd;
        stats(s, xg, per, p->eps, &mean, &rstd);
        for (int64_t j = 0; j < cpg; j++) {
            int64_t ch = g * cpg + j;
            float a = gamma ? rstd * gamma[ch] : rstd, b = beta ? beta[ch] : 0.0f;
            s->norm_apply(yg + j * sp, xg + j * sp, sp, mean, a, b, p->silu);
        }
    }
}

void stem_cpu_layer_norm_f32(const stem_layer_norm_params *p) {
    const stem_simd *s = stem_simd_get();
    const int64_t rows = p->rows, cols = p->cols;
    const float *x = p->x, *gamma = p->gamma, *beta = p->beta;
    float *y = p->y;
#pragma omp parallel for schedule(static) if (rows > 1 && rows * cols >= STEM_PAR_MIN_ELEMS)
    for (int64_t r = 0; r < rows; r++) {
        float mean, rstd;
        stats(s, x + r * cols, cols, p->eps, &mean, &rstd);
        s->norm_apply_vec(y + r * cols, x + r * cols, cols, mean, rstd, gamma, beta);
    }
}
