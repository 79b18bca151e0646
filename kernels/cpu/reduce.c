/* Mean and unbiased standard deviation along the middle axis of x[outer, n, inner],
 * two-pass (mean, then squared deviations from it), accumulated in double.
 * n == 1 gives std 0 (torch: nan; see doc/algorithm.md §5). n == 0 gives nan.
 *
 * Work is split over (outer, block of COLS columns) when there are enough such
 * blocks; otherwise (the usual case for EM statistics: one [tokens, channels]
 * matrix) the rows of each block are split over threads, whose partial sums are
 * combined. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/simd.h"

#define COLS 512 /* columns per block: the double accumulators live on the stack */

static float std_of(double sq, int64_t n) { return n > 1 ? (float)sqrt(fmax(sq, 0.0) / (double)(n - 1)) : 0.0f; }

/* One block, one thread: x points at column c0 of row 0 (row stride inner). */
static void block_serial(const stem_simd *s, const float *x, int64_t n, int64_t inner, int64_t nc, float *mean,
                         float *std) {
    double acc[COLS], mu[COLS];
    memset(acc, 0, (size_t)nc * sizeof(double));
    for (int64_t r = 0; r < n; r++) s->acc_add(acc, x + r * inner, nc);
    for (int64_t j = 0; j < nc; j++) {
        mu[j] = acc[j] / (double)n;
        mean[j] = (float)mu[j];
    }
    if (!std) return;
    memset(acc, 0, (size_t)nc * sizeof(double));
    for (int64_t r = 0; r < n; r++) s->acc_sqdev(acc, x + r * inner, mu, nc);
    for (int64_t j = 0; j < nc; j++) std[j] = std_of(acc[j], n);
}

/* One block, rows split over the threads of the enclosing parallel region;
 * sum and mu are shared. */
static void block_shared(const stem_simd *s, const float *x, int64_t n, int64_t inner, int64_t nc, float *mean,
                         float *std, double *sum, double *mu) {
    double part[COLS];
#pragma omp single
    memset(sum, 0, (size_t)nc * sizeof(double));
    memset(part, 0, (size_t)nc * sizeof(double));
#pragma omp for schedule(static) nowait
    for (int64_t r = 0; r < n; r++) s->acc_add(part, x + r * inner, nc);
#pragma omp critical(stem_mean_std)
    for (int64_t j = 0; j < nc; j++) sum[j] += part[j];
#pragma omp barrier
#pragma omp single
    for (int64_t j = 0; j < nc; j++) {
        mu[j] = sum[j] / (double)n;
        mean[j] = (float)mu[j];
        sum[j] = 0.0;
    }
    if (!std) return;
    memset(part, 0, (size_t)nc * sizeof(double));
#pragma omp for schedule(static) nowait
    for (int64_t r = 0; r < n; r++) s->acc_sqdev(part, x + r * inner, mu, nc);
#pragma omp critical(stem_mean_std)
    for (int64_t j = 0; j < nc; j++) sum[j] += part[j];
#pragma omp barrier
#pragma omp single
    for (int64_t j = 0; j < nc; j++) std[j] = std_of(sum[j], n);
}

/* Contiguous rows (inner == 1): one row per work item when there are enough rows,
 * else each row in chunks over the threads. Deviations are taken from the float
 * mean and corrected exactly for its offset from the double one. */
#define ROW_CHUNK ((int64_t)1 << 14)

static void rows_contiguous(const stem_simd *s, const stem_mean_std_params *p) {
    const int64_t outer = p->outer, n = p->n;
    const float *x = p->x;
    if (outer >= 2 * omp_get_max_threads() || n < 4 * ROW_CHUNK) {
#pragma omp parallel for schedule(static) if (outer > 1 && outer * n >= STEM_PAR_MIN_ELEMS)
        for (int64_t o = 0; o < outer; o++) {
            const float *xo = x + o * n;
            double m = s->sum(xo, n) / (double)n;
            float mf = (float)m;
            ((float *)p->mean)[o] = mf;
            if (p->std) ((float *)p->std)[o] = std_of(s->sumsq_dev(xo, n, mf) - (double)n * (m - mf) * (m - mf), n);
        }
        return;
    }
    const int64_t chunks = stem_ceil_div(n, ROW_CHUNK);
    for (int64_t o = 0; o < outer; o++) {
        const float *xo = x + o * n;
        double total = 0.0, dev = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total)
        for (int64_t c = 0; c < chunks; c++) total += s->sum(xo + c * ROW_CHUNK, stem_imin(ROW_CHUNK, n - c * ROW_CHUNK));
        double m = total / (double)n;
        float mf = (float)m;
        ((float *)p->mean)[o] = mf;
        if (!p->std) continue;
#pragma omp parallel for schedule(static) reduction(+ : dev)
        for (int64_t c = 0; c < chunks; c++)
            dev += s->sumsq_dev(xo + c * ROW_CHUNK, stem_imin(ROW_CHUNK, n - c * ROW_CHUNK), mf);
        ((float *)p->std)[o] = std_of(dev - (double)n * (m - mf) * (m - mf), n);
    }
}

void stem_cpu_mean_std_f32(const stem_mean_std_params *p) {
    const stem_simd *s = stem_simd_get();
    const int64_t outer = p->outer, n = p->n, inner = p->inner;
    const float *x = p->x;
    float *mean = p->mean, *std = p->std;
    if (outer <= 0 || inner <= 0) return;
    if (n <= 0) {
        for (int64_t i = 0; i < outer * inner; i++) {
            mean[i] = NAN;
            if (std) std[i] = NAN;
        }
        return;
    }
    if (inner == 1) {
        rows_contiguous(s, p);
        return;
    }
    const int64_t cblocks = stem_ceil_div(inner, COLS), items = outer * cblocks;
    const int threads = omp_get_max_threads();
    if (items >= 4 * threads || threads == 1 || n * stem_imin(inner, COLS) < STEM_PAR_MIN_ELEMS) {
#pragma omp parallel for schedule(static) if (items > 1 && outer * n * inner >= STEM_PAR_MIN_ELEMS)
        for (int64_t it = 0; it < items; it++) {
            const int64_t o = it / cblocks, c0 = (it % cblocks) * COLS, nc = stem_imin(COLS, inner - c0);
            block_serial(s, x + o * n * inner + c0, n, inner, nc, mean + o * inner + c0, std ? std + o * inner + c0 : NULL);
        }
        return;
    }
    double sum[COLS], mu[COLS];
#pragma omp parallel
    for (int64_t it = 0; it < items; it++) {
        const int64_t o = it / cblocks, c0 = (it % cblocks) * COLS, nc = stem_imin(COLS, inner - c0);
        block_shared(s, x + o * n * inner + c0, n, inner, nc, mean + o * inner + c0, std ? std + o * inner + c0 : NULL,
                     sum, mu);
    }
}
