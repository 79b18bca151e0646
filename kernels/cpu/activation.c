/* Activations (SiLU, exact and tanh GELU, quick GELU) and GEGLU, on contiguous runs
 * split over threads; the per-element maths is in simd.h. */
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/simd.h"

#define CHUNK ((int64_t)1 << 14)

void stem_cpu_unary_f32(const stem_unary_params *p) {
    const stem_simd *s = stem_simd_get();
    const int64_t n = p->n, chunks = stem_ceil_div(n, CHUNK);
    const float *x = p->x;
    float *y = p->y;
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t i0 = c * CHUNK;
        s->unary(p->kind, y + i0, x + i0, stem_imin(CHUNK, n - i0));
    }
}

/* x[r] = [hidden | gate] (2 * cols), y[r] = hidden * gelu(gate). */
void stem_cpu_geglu_f32(const stem_geglu_params *p) {
    const stem_simd *s = stem_simd_get();
    const int64_t rows = p->rows, cols = p->cols;
    const float *x = p->x;
    float *y = p->y;
#pragma omp parallel for schedule(static) if (rows > 1 && rows * cols >= STEM_PAR_MIN_ELEMS / 4)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * 2 * cols;
        s->geglu(y + r * cols, xr, xr + cols, cols);
    }
}
