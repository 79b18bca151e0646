/* Row softmax of scale * x: subtract the row maximum, exponentiate, normalise. */
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/simd.h"

void stem_cpu_softmax_f32(const stem_softmax_params *p) {
    const stem_simd *s = stem_simd_get();
    const int64_t rows = p->rows, cols = p->cols;
    const float *x = p->x;
    float *y = p->y;
    if (cols <= 0) return;
#pragma omp parallel for schedule(static) if (rows > 1 && rows * cols >= STEM_PAR_MIN_ELEMS / 4)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        float m = s->max_scaled(xr, cols, p->scale);
        float sum = s->exp_sum(yr, xr, cols, p->scale, m);
        s->scale(yr, yr, cols, 1.0f / sum);
    }
}
