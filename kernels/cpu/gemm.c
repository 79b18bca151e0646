/* Batched strided GEMM on OpenBLAS. One large GEMM threads inside OpenBLAS; a batch
 * of small ones is spread over OpenMP threads (OpenBLAS then runs single-threaded in
 * each, as it does whenever it is called inside a parallel region). */
#include <cblas.h>
#include <omp.h>

#include "kernels/cpu/kernels.h"

/* Below ~2^22 multiply-adds a GEMM does not keep two OpenBLAS threads busy. */
#define SMALL_GEMM_MACS ((int64_t)1 << 22)

static void gemm_one(const stem_gemm_params *p, int64_t b) {
    const float *a = (const float *)p->a + b * p->stride_a;
    const float *bm = (const float *)p->b + b * p->stride_b;
    float *c = (float *)p->c + b * p->stride_c;
    /* cblas rejects a leading dimension below 1 even when the matrix is empty */
    int64_t lda = stem_imax(p->lda, 1), ldb = stem_imax(p->ldb, 1), ldc = stem_imax(p->ldc, 1);
    cblas_sgemm(CblasRowMajor, p->trans_a ? CblasTrans : CblasNoTrans,
                p->trans_b ? CblasTrans : CblasNoTrans, (blasint)p->m, (blasint)p->n, (blasint)p->k,
                p->alpha, a, (blasint)lda, bm, (blasint)ldb, p->beta, c, (blasint)ldc);
}

void stem_cpu_gemm_f32(const stem_gemm_params *p) {
    if (p->m <= 0 || p->n <= 0 || p->batch <= 0) return;
    int64_t macs = p->m * p->n * stem_imax(p->k, 1);
    bool spread = p->batch > 1 && p->stride_c != 0 && macs < SMALL_GEMM_MACS &&
                  omp_get_max_threads() > 1;
    if (spread) {
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t b = 0; b < p->batch; b++) gemm_one(p, b);
    } else {
        for (int64_t b = 0; b < p->batch; b++) gemm_one(p, b);
    }
}
