/* Row gather, and the argmax of cosine similarity used by TokenFlow's nearest-
 * neighbour field: idx[b, i] = argmax_j <a_i/|a_i|, r_j/|r_j|>. Rows are normalised
 * like torch (x / x.norm(), no epsilon), similarities come from sgemm on blocks of
 * (query rows x reference rows), and each row's running best keeps the lowest index
 * on ties; no n x m matrix is formed. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/simd.h"

void stem_cpu_gather_rows_f32(const stem_gather_params *p) {
    const int64_t cols = p->cols;
    const float *src = p->src;
    float *y = p->y;
#pragma omp parallel for schedule(static) if (p->n_idx * cols >= STEM_PAR_MIN_ELEMS)
    for (int64_t i = 0; i < p->n_idx; i++)
        memcpy(y + i * cols, src + (int64_t)p->idx[i] * cols, (size_t)cols * sizeof(float));
}

#define BQ 64  /* query rows per work item */
#define BK 512 /* reference rows per similarity block */

static size_t per_thread_floats(const stem_argmax_cos_params *p) {
    return stem_round64((size_t)(BQ * p->c + BQ * BK) * sizeof(float)) / sizeof(float);
}

size_t stem_cpu_argmax_cos_scratch(const stem_argmax_cos_params *p) {
    size_t ref = stem_round64((size_t)(p->m * p->c) * sizeof(float));
    return ref + per_thread_floats(p) * sizeof(float) * (size_t)omp_get_max_threads();
}

static void normalize_rows(const stem_simd *s, float *dst, const float *src, int64_t rows, int64_t c) {
    for (int64_t r = 0; r < rows; r++) {
        float norm = (float)sqrt(s->sumsq(src + r * c, c));
        for (int64_t k = 0; k < c; k++) dst[r * c + k] = src[r * c + k] / norm;
    }
}

void stem_cpu_argmax_cos_f32(const stem_argmax_cos_params *p, void *scratch) {
    const stem_simd *s = stem_simd_get();
    const int64_t n = p->n, m = p->m, c = p->c;
    if (n <= 0) return;
    float *ref_hat = scratch;
    float *thread_base = (float *)((char *)scratch + stem_round64((size_t)(m * c) * sizeof(float)));
    const size_t per = per_thread_floats(p);
    const int64_t qblocks = stem_ceil_div(n, BQ);
    for (int64_t b = 0; b < p->batch; b++) {
        const float *a = (const float *)p->a + b * n * c, *ref = (const float *)p->ref + b * m * c;
        int32_t *idx = p->idx + b * n;
        if (m <= 0) { /* nothing to compare with (the front end rejects this): index 0 */
            for (int64_t i = 0; i < n; i++) idx[i] = 0;
            continue;
        }
#pragma omp parallel for schedule(static) if (m * c >= STEM_PAR_MIN_ELEMS)
        for (int64_t r = 0; r < m; r++) normalize_rows(s, ref_hat + r * c, ref + r * c, 1, c);
#pragma omp parallel for schedule(dynamic, 1) if (qblocks > 1)
        for (int64_t qb = 0; qb < qblocks; qb++) {
            float *a_hat = thread_base + per * (size_t)omp_get_thread_num();
            float *sim = a_hat + BQ * c;
            const int64_t i0 = qb * BQ, nq = stem_imin(BQ, n - i0);
            float best[BQ];
            int64_t best_j[BQ];
            normalize_rows(s, a_hat, a + i0 * c, nq, c);
            for (int64_t j0 = 0; j0 < m; j0 += BK) {
                const int64_t nk = stem_imin(BK, m - j0);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)nq, (blasint)nk, (blasint)c, 1.0f,
                            a_hat, (blasint)stem_imax(c, 1), ref_hat + j0 * c, (blasint)stem_imax(c, 1), 0.0f, sim,
                            (blasint)BK);
                for (int64_t i = 0; i < nq; i++) {
                    float v;
                    int64_t j = s->argmax(sim + i * BK, nk, &v);
                    if (j0 == 0 || v > best[i] || (isnan(v) && !isnan(best[i]))) {
                        best[i] = v;
                        best_j[i] = j0 + j;
                    }
                }
            }
            for (int64_t i = 0; i < nq; i++) idx[i0 + i] = (int32_t)best_j[i];
        }
    }
}
