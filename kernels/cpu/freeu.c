/* FreeU's Fourier filter (doc/algorithm.md §7) in O(h·w) per plane, without an FFT.
 *
 * The original (FreeU's Fourier_filter, threshold 1) takes X = fftshift(fft2(x)),
 * multiplies the centre block X[h/2-1 : h/2+1, w/2-1 : w/2+1] (integer division) by s
 * and returns Re(ifft2(ifftshift(X))). fftshift moves frequency 0 to index n/2, so that
 * block holds the frequencies k_y, k_x in {0, -1} (mod h, w); for n = 1 the slice
 * [-1:1] is the one index 0, i.e. -1 and 0 are the same frequency and counted once.
 * Writing the inverse DFT as the sum of its components, the filter is
 *
 *   y = x - (1 - s) * Re( sum_{k in K} c_k ),   c_k(y, x) = X[k]/(h w) * e^{+2 pi i (k_y y/h + k_x x/w)},
 *
 * with X[k] = sum_{y', x'} x[y', x'] e^{-2 pi i (k_y y'/h + k_x x'/w)} and K the distinct
 * pairs of {0, -1}^2. With cy = cos(2 pi y/h), sy = sin(2 pi y/h), cx, sx likewise and
 *   T  = sum x,                         (k = (0, 0))
 *   Ax = sum x cx,  Bx = sum x sx,      (k = (0, -1): X = Ax + i Bx)
 *   Ay = sum x cy,  By = sum x sy,      (k = (-1, 0): X = Ay + i By)
 *   P  = sum x cos(t'), Q = sum x sin(t'),  t' = 2 pi (y'/h + x'/w)  (k = (-1, -1): X = P + i Q)
 * the real parts are
 *   Re c_(0,0)   = T / (h w)
 *   Re c_(0,-1)  = (Ax cx + Bx sx) / (h w)                         (only when w > 1)
 *   Re c_(-1,0)  = (Ay cy + By sy) / (h w)                         (only when h > 1)
 *   Re c_(-1,-1) = (P cos t + Q sin t) / (h w),  t = 2 pi (y/h + x/w)  (only when h, w > 1)
 * (Re((a + i b) e^{-i t}) = a cos t + b sin t). One pass over each row gives its sums
 * Cr = sum_x x cx, Sr = sum_x x sx and r = sum_x x, and then Ax += Cr, Bx += Sr,
 * Ay += r cy, By += r sy, P += cy Cr - sy Sr, Q += sy Cr + cy Sr (angle addition).
 * Sums and twiddles are in double; one rounding to float at the end. */
#include <math.h>
#include <omp.h>

#include "kernels/cpu/kernels.h"

#define TWO_PI 6.283185307179586476925286766559

size_t stem_cpu_freeu_filter_scratch(const stem_freeu_filter_params *p) {
    return stem_round64((size_t)(2 * (p->h + p->w)) * sizeof(double));
}

/* The five low-frequency coefficients of one plane x[h, w]. */
typedef struct low_freq { double t, ax, bx, ay, by, p, q; } low_freq;

static low_freq plane_coefficients(const float *x, int64_t h, int64_t w, const double *cy, const double *sy,
                                   const double *cx, const double *sx) {
    low_freq c = {0};
    for (int64_t i = 0; i < h; i++) {
        const float *row = x + i * w;
        double r = 0.0, cr = 0.0, sr = 0.0;
        for (int64_t j = 0; j < w; j++) {
            r += row[j];
            cr += row[j] * cx[j];
            sr += row[j] * sx[j];
        }
        c.t += r;
        c.ax += cr;
        c.bx += sr;
        c.ay += r * cy[i];
        c.by += r * sy[i];
        c.p += cy[i] * cr - sy[i] * sr;
        c.q += sy[i] * cr + cy[i] * sr;
    }
    return c;
}

static void filter_plane(const float *x, float *y, int64_t h, int64_t w, float s, const double *cy, const double *sy,
                         const double *cx, const double *sx) {
    const low_freq c = plane_coefficients(x, h, w, cy, sy, cx, sx);
    const double k = (1.0 - (double)s) / ((double)h * (double)w);
    const bool fx = w > 1, fy = h > 1; /* -1 is a frequency of its own only when n > 1 */
    for (int64_t i = 0; i < h; i++)
        for (int64_t j = 0; j < w; j++) {
            double low = c.t;
            if (fx) low += c.ax * cx[j] + c.bx * sx[j];
            if (fy) low += c.ay * cy[i] + c.by * sy[i];
            if (fx && fy) {
                const double cos_t = cy[i] * cx[j] - sy[i] * sx[j], sin_t = sy[i] * cx[j] + cy[i] * sx[j];
                low += c.p * cos_t + c.q * sin_t;
            }
            y[i * w + j] = (float)((double)x[i * w + j] - k * low);
        }
}

void stem_cpu_freeu_filter_f32(const stem_freeu_filter_params *p, void *scratch) {
    const int64_t h = p->h, w = p->w, hw = h * w;
    double *cy = scratch, *sy = cy + h, *cx = sy + h, *sx = cx + w;
    for (int64_t i = 0; i < h; i++) {
        cy[i] = cos(TWO_PI * (double)i / (double)h);
        sy[i] = sin(TWO_PI * (double)i / (double)h);
    }
    for (int64_t j = 0; j < w; j++) {
        cx[j] = cos(TWO_PI * (double)j / (double)w);
        sx[j] = sin(TWO_PI * (double)j / (double)w);
    }
    const float *x = p->x;
    float *y = p->y;
#pragma omp parallel for schedule(static) if (p->planes * hw >= STEM_PAR_MIN_ELEMS)
    for (int64_t b = 0; b < p->planes; b++) filter_plane(x + b * hw, y + b * hw, h, w, p->s, cy, sy, cx, sx);
}
