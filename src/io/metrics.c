/* PSNR, SSIM (scikit-image's structural_similarity with the Wang et al. settings) and
 * temporal consistency. The Gaussian filtering follows scipy.ndimage.correlate1d:
 * 'reflect' borders (d c b a | a b c d | d c b a), the symmetric-kernel summation order
 * (centre tap first, then pairs from the outermost in), axis 0 (rows) before axis 1. */
#include "io/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"

#define SSIM_RADIUS 5 /* int(3.5 * 1.5 + 0.5): skimage's truncate = 3.5 */
#define SSIM_WIN (2 * SSIM_RADIUS + 1)

double stem_psnr(const float *a, const float *b, int c, int h, int w) {
    size_t n = (size_t)c * (size_t)h * (size_t)w;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        sum += d * d;
    }
    double mse = sum / (double)n;
    return 10.0 * log10(1.0 / mse); /* mse == 0: +inf */
}

/* scipy's _gaussian_kernel1d(sigma=1.5, order=0, radius=5). */
static void gaussian_kernel(double k[SSIM_WIN]) {
    double sigma2 = 1.5 * 1.5, sum = 0.0;
    for (int i = 0; i < SSIM_WIN; i++) {
        int x = i - SSIM_RADIUS;
        k[i] = exp(-0.5 / sigma2 * (double)(x * x));
        sum += k[i];
    }
    for (int i = 0; i < SSIM_WIN; i++) k[i] /= sum;
}

static inline int reflect_index(int i, int n) {
    if (i < 0) return -i - 1;
    if (i >= n) return 2 * n - i - 1;
    return i; /* n >= 11 > radius: one reflection always suffices */
}

/* out = gaussian(in) over an h x w plane; tmp has h*w room. */
static void gaussian_filter(const double *in, double *out, double *tmp, int h, int w, const double k[SSIM_WIN]) {
    const double *kc = k + SSIM_RADIUS; /* centre tap; kc[-j] == kc[j] */
    /* axis 0: down the columns */
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            double s = in[(size_t)y * w + x] * kc[0];
            for (int j = SSIM_RADIUS; j >= 1; j--)
                s += (in[(size_t)reflect_index(y - j, h) * w + x] + in[(size_t)reflect_index(y + j, h) * w + x]) * kc[-j];
            tmp[(size_t)y * w + x] = s;
        }
    }
    /* axis 1: along the rows */
    for (int y = 0; y < h; y++) {
        const double *row = tmp + (size_t)y * w;
        for (int x = 0; x < w; x++) {
            double s = row[x] * kc[0];
            for (int j = SSIM_RADIUS; j >= 1; j--) s += (row[reflect_index(x - j, w)] + row[reflect_index(x + j, w)]) * kc[-j];
            out[(size_t)y * w + x] = s;
        }
    }
}

stem_status stem_ssim(const float *a, const float *b, int c, int h, int w, double *out) {
    *out = NAN;
    if (c < 1 || h < SSIM_WIN || w < SSIM_WIN)
        return stem_fail(STEM_E_ARG, "SSIM: images of %dx%d (x%d channels) are smaller than the %dx%d window", w, h, c,
                         SSIM_WIN, SSIM_WIN);
    size_t n = (size_t)h * (size_t)w;
    double *mem = malloc(sizeof *mem * n * 8);
    if (!mem) return stem_fail(STEM_E_NOMEM, "SSIM: out of memory for %dx%d images", w, h);
    double *prod = mem, *tmp = mem + n, *ux = mem + 2 * n, *uy = mem + 3 * n, *uxx = mem + 4 * n, *uyy = mem + 5 * n,
           *uxy = mem + 6 * n, *bx = mem + 7 * n;
    double k[SSIM_WIN];
    gaussian_kernel(k);
    const double C1 = (0.01 * 1.0) * (0.01 * 1.0), C2 = (0.03 * 1.0) * (0.03 * 1.0);
    double total = 0.0;
    for (int ch = 0; ch < c; ch++) {
        const float *pa = a + (size_t)ch * n, *pb = b + (size_t)ch * n;
        for (size_t i = 0; i < n; i++) prod[i] = pa[i];
        gaussian_filter(prod, ux, tmp, h, w, k);
        for (size_t i = 0; i < n; i++) bx[i] = pb[i];
        gaussian_filter(bx, uy, tmp, h, w, k);
        for (size_t i = 0; i < n; i++) prod[i] = (double)pa[i] * (double)pa[i];
        gaussian_filter(prod, uxx, tmp, h, w, k);
        for (size_t i = 0; i < n; i++) prod[i] = (double)pb[i] * (double)pb[i];
        gaussian_filter(prod, uyy, tmp, h, w, k);
        for (size_t i = 0; i < n; i++) prod[i] = (double)pa[i] * (double)pb[i];
        gaussian_filter(prod, uxy, tmp, h, w, k);
        double sum = 0.0;
        for (int y = SSIM_RADIUS; y < h - SSIM_RADIUS; y++) {
            double row_sum = 0.0;
            for (int x = SSIM_RADIUS; x < w - SSIM_RADIUS; x++) {
                size_t i = (size_t)y * w + x;
                double vx = uxx[i] - ux[i] * ux[i];
                double vy = uyy[i] - uy[i] * uy[i];
                double vxy = uxy[i] - ux[i] * uy[i];
                double A1 = 2 * ux[i] * uy[i] + C1, A2 = 2 * vxy + C2;
                double B1 = ux[i] * ux[i] + uy[i] * uy[i] + C1, B2 = vx + vy + C2;
                row_sum += (A1 * A2) / (B1 * B2);
            }
            sum += row_sum;
        }
        total += sum / ((double)(h - 2 * SSIM_RADIUS) * (double)(w - 2 * SSIM_RADIUS));
    }
    free(mem);
    *out = total / c;
    return STEM_OK;
}

double stem_temporal_mad(const float *in, const float *out, int f, int c, int h, int w) {
    if (f < 2) return 0.0;
    size_t n = (size_t)c * (size_t)h * (size_t)w;
    double sum = 0.0;
    for (int t = 1; t < f; t++) {
        const float *i0 = in + (size_t)(t - 1) * n, *i1 = in + (size_t)t * n;
        const float *o0 = out + (size_t)(t - 1) * n, *o1 = out + (size_t)t * n;
        double s = 0.0;
        for (size_t i = 0; i < n; i++) s += fabs(((double)o1[i] - (double)o0[i]) - ((double)i1[i] - (double)i0[i]));
        sum += s;
    }
    return sum / ((double)(f - 1) * (double)n);
}

void stem_video_metrics_free(stem_video_metrics *m) {
    if (!m) return;
    free(m->psnr);
    free(m->ssim);
    memset(m, 0, sizeof *m);
}

static stem_status check_clip(const stem_tensor *t, const char *what) {
    if (!t || t->dtype != STEM_F32 || t->ndim != 4 || t->shape[1] != 3 || !t->data || !t->backend ||
        !t->backend->host_memory || t->shape[0] < 1) {
        char b[STEM_SHAPE_STR_LEN];
        return stem_fail(STEM_E_SHAPE, "metrics: %s: expected host f32 pixels [F, 3, H, W], got %s", what,
                         t ? stem_shape_str(t, b, sizeof b) : "nothing");
    }
    return STEM_OK;
}

stem_status stem_video_metrics_compute(const stem_tensor *ref, const stem_tensor *test, stem_video_metrics *out) {
    memset(out, 0, sizeof *out);
    STEM_TRY(check_clip(ref, "reference"));
    STEM_TRY(check_clip(test, "test"));
    if (!stem_same_shape(ref, test)) {
        char a[STEM_SHAPE_STR_LEN], b[STEM_SHAPE_STR_LEN];
        return stem_fail(STEM_E_SHAPE, "metrics: reference %s and test %s differ in shape", stem_shape_str(ref, a, sizeof a),
                         stem_shape_str(test, b, sizeof b));
    }
    int f = (int)ref->shape[0], h = (int)ref->shape[2], w = (int)ref->shape[3];
    size_t n = (size_t)3 * h * w;
    /* one frame at a time (and the previous one, for the temporal term): memory does
     * not grow with the clip length */
    float *buf = malloc(sizeof *buf * n * 4);
    out->psnr = calloc((size_t)f, sizeof *out->psnr);
    out->ssim = calloc((size_t)f, sizeof *out->ssim);
    stem_status s = STEM_OK;
    if (!buf || !out->psnr || !out->ssim) s = stem_fail(STEM_E_NOMEM, "metrics: out of memory for %d frames", f);
    double temporal = 0.0;
    for (int t = 0; s == STEM_OK && t < f; t++) {
        float *a = buf + (t & 1) * 2 * n, *b = a + n;                 /* this frame */
        const float *pa = buf + ((t + 1) & 1) * 2 * n, *pb = pa + n; /* the previous one */
        const float *ra = (const float *)ref->data + n * t, *rb = (const float *)test->data + n * t;
        for (size_t i = 0; i < n; i++) {
            float va = ra[i] / 2.0f + 0.5f, vb = rb[i] / 2.0f + 0.5f;
            a[i] = va > 0.0f ? (va < 1.0f ? va : 1.0f) : 0.0f;
            b[i] = vb > 0.0f ? (vb < 1.0f ? vb : 1.0f) : 0.0f;
        }
        out->psnr[t] = stem_psnr(a, b, 3, h, w);
        s = stem_ssim(a, b, 3, h, w, &out->ssim[t]);
        if (s != STEM_OK) stem_error_context(s, "metrics: frame %d", t);
        out->mean_psnr += out->psnr[t] / f;
        out->mean_ssim += out->ssim[t] / f;
        if (t > 0) {
            double sum = 0.0;
            for (size_t i = 0; i < n; i++)
                sum += fabs(((double)b[i] - (double)pb[i]) - ((double)a[i] - (double)pa[i]));
            temporal += sum;
        }
    }
    if (s == STEM_OK) {
        out->frames = f;
        out->temporal = f > 1 ? temporal / ((double)(f - 1) * (double)n) : 0.0;
    }
    free(buf);
    if (s != STEM_OK) stem_video_metrics_free(out);
    return s;
}
