/* PIL-exact Lanczos resize (8-bit RGB) and the pixel <-> float mappings.
 *
 * The arithmetic follows Pillow's Resample.c step for step (precompute_coeffs,
 * normalize_coeffs_8bpc, ImagingResampleHorizontal/Vertical_8bpc,
 * ImagingResampleInner); any reordering of it changes results by one level somewhere,
 * which the golden tests catch. */
#include "io/resize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2) /* Pillow: 22 fractional bits, room for overshoot */
#define LANCZOS_SUPPORT 3.0

static double sinc_filter(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double lanczos_filter(double x) {
    if (-3.0 <= x && x < 3.0) return sinc_filter(x) * sinc_filter(x / 3);
    return 0.0;
}

typedef struct coeffs {
    int ksize;    /* coefficients per output pixel (some trailing ones are 0) */
    int *bounds;  /* [out][2]: first input index, count */
    int32_t *k;   /* [out][ksize], 22-bit fixed point */
} coeffs;

static void coeffs_free(coeffs *c) {
    free(c->bounds);
    free(c->k);
    c->bounds = NULL;
    c->k = NULL;
}

/* Pillow's precompute_coeffs for the box [0, in_size) and normalize_coeffs_8bpc. */
static stem_status precompute_coeffs(int in_size, int out_size, coeffs *c) {
    const float in0 = 0.0f, in1 = (float)in_size; /* Pillow's box is float */
    double scale = (double)(in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = LANCZOS_SUPPORT * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    c->ksize = ksize;
    c->bounds = malloc(sizeof *c->bounds * 2 * (size_t)out_size);
    c->k = malloc(sizeof *c->k * (size_t)ksize * (size_t)out_size);
    double *pre = malloc(sizeof *pre * (size_t)ksize);
    if (!c->bounds || !c->k || !pre) {
        free(pre);
        coeffs_free(c);
        return stem_fail(STEM_E_NOMEM, "resize: out of memory for %d x %d coefficients", out_size, ksize);
    }
    double inv_filterscale = 1.0 / filterscale;
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        int x;
        for (x = 0; x < xmax; x++) {
            double w = lanczos_filter((x + xmin - center + 0.5) * inv_filterscale);
            pre[x] = w;
            ww += w;
        }
        if (ww != 0.0)
            for (x = 0; x < xmax; x++) pre[x] /= ww;
        for (; x < ksize; x++) pre[x] = 0;
        int32_t *k = c->k + (size_t)xx * (size_t)ksize;
        for (x = 0; x < ksize; x++)
            k[x] = pre[x] < 0 ? (int32_t)(-0.5 + pre[x] * (1 << PRECISION_BITS))
                              : (int32_t)(0.5 + pre[x] * (1 << PRECISION_BITS));
        c->bounds[2 * xx + 0] = xmin;
        c->bounds[2 * xx + 1] = xmax;
    }
    free(pre);
    return STEM_OK;
}

static inline uint8_t clip8(int32_t ss) {
    if (ss < 0) return 0; /* Pillow: table lookup at ss >> 22, all negatives map to 0 */
    int32_t v = ss >> PRECISION_BITS;
    return v > 255 ? 255 : (uint8_t)v;
}

/* Rows [offset, offset + out_h) of `in` (in_w wide) -> out (out_w wide, out_h rows). */
static void resample_horizontal(const uint8_t *in, int in_w, int offset, uint8_t *out, int out_w, int out_h,
                                const coeffs *c) {
    for (int yy = 0; yy < out_h; yy++) {
        const uint8_t *row = in + (size_t)(yy + offset) * (size_t)in_w * 3;
        uint8_t *dst = out + (size_t)yy * (size_t)out_w * 3;
        for (int xx = 0; xx < out_w; xx++) {
            int xmin = c->bounds[2 * xx], xmax = c->bounds[2 * xx + 1];
            const int32_t *k = c->k + (size_t)xx * (size_t)c->ksize;
            int32_t ss0 = 1 << (PRECISION_BITS - 1), ss1 = ss0, ss2 = ss0;
            for (int x = 0; x < xmax; x++) {
                const uint8_t *p = row + (size_t)(x + xmin) * 3;
                ss0 += p[0] * k[x];
                ss1 += p[1] * k[x];
                ss2 += p[2] * k[x];
            }
            dst[3 * xx + 0] = clip8(ss0);
            dst[3 * xx + 1] = clip8(ss1);
            dst[3 * xx + 2] = clip8(ss2);
        }
    }
}

/* acc: one output row of int32 scratch. Integer sums, so accumulating a whole row
 * tap by tap gives exactly Pillow's per-pixel results. */
static void resample_vertical(const uint8_t *in, int w, uint8_t *out, int out_h, const coeffs *c, int32_t *acc) {
    size_t stride = (size_t)w * 3;
    for (int yy = 0; yy < out_h; yy++) {
        int ymin = c->bounds[2 * yy], ymax = c->bounds[2 * yy + 1];
        const int32_t *k = c->k + (size_t)yy * (size_t)c->ksize;
        for (size_t i = 0; i < stride; i++) acc[i] = 1 << (PRECISION_BITS - 1);
        for (int y = 0; y < ymax; y++) {
            const uint8_t *row = in + (size_t)(y + ymin) * stride;
            int32_t ky = k[y];
            for (size_t i = 0; i < stride; i++) acc[i] += row[i] * ky;
        }
        uint8_t *dst = out + (size_t)yy * stride;
        for (size_t i = 0; i < stride; i++) dst[i] = clip8(acc[i]);
    }
}

stem_status stem_image_resize(const stem_image *src, int width, int height, stem_image *dst) {
    dst->width = dst->height = 0;
    dst->rgb = NULL;
    if (!src || !src->rgb || src->width < 1 || src->height < 1)
        return stem_fail(STEM_E_ARG, "resize: empty source image");
    if (width < 1 || height < 1 || width > STEM_IMAGE_MAX_DIM || height > STEM_IMAGE_MAX_DIM)
        return stem_fail(STEM_E_ARG, "resize: target size %dx%d is outside 1x1..%dx%d", width, height,
                         STEM_IMAGE_MAX_DIM, STEM_IMAGE_MAX_DIM);
    bool need_h = width != src->width, need_v = height != src->height;
    STEM_TRY(stem_image_new(width, height, dst));
    if (!need_h && !need_v) {
        memcpy(dst->rgb, src->rgb, (size_t)width * (size_t)height * 3);
        return STEM_OK;
    }
    coeffs cv = {0}, ch = {0};
    stem_status s = precompute_coeffs(src->height, height, &cv);
    if (s != STEM_OK) {
        stem_image_free(dst);
        return s;
    }
    const uint8_t *vin = src->rgb; /* what the vertical pass reads */
    uint8_t *tmp = NULL;
    if (need_h) {
        /* Only the source rows the vertical pass will read. */
        int first = cv.bounds[0];
        int last = cv.bounds[2 * height - 2] + cv.bounds[2 * height - 1];
        int rows = last - first;
        uint8_t *hout = need_v ? (tmp = malloc((size_t)width * (size_t)rows * 3)) : dst->rgb;
        s = hout ? precompute_coeffs(src->width, width, &ch)
                 : stem_fail(STEM_E_NOMEM, "resize: out of memory for a %dx%d intermediate", width, rows);
        if (s == STEM_OK) {
            /* Without a vertical pass the heights agree and the rows are all of them. */
            resample_horizontal(src->rgb, src->width, need_v ? first : 0, hout, width, need_v ? rows : height, &ch);
            for (int i = 0; i < height; i++) cv.bounds[2 * i] -= first;
        }
        coeffs_free(&ch);
        vin = hout;
    }
    if (s == STEM_OK && need_v) {
        int32_t *acc = malloc(sizeof *acc * (size_t)width * 3);
        if (acc)
            resample_vertical(vin, width, dst->rgb, height, &cv, acc);
        else
            s = stem_fail(STEM_E_NOMEM, "resize: out of memory for a %d-pixel row", width);
        free(acc);
    }
    coeffs_free(&cv);
    free(tmp);
    if (s != STEM_OK) stem_image_free(dst);
    return s;
}

/* ---- pixels ---------------------------------------------------------------------- */

void stem_image_to_pixels(const stem_image *img, float *chw) {
    size_t n = (size_t)img->width * (size_t)img->height;
    for (int c = 0; c < 3; c++) {
        float *plane = chw + (size_t)c * n;
        for (size_t i = 0; i < n; i++) {
            float v = (float)img->rgb[3 * i + (size_t)c] / 255.0f;
            plane[i] = v * 2.0f - 1.0f;
        }
    }
}

uint8_t stem_pixel_to_u8(float x, stem_quantize q) {
    float v = x / 2.0f + 0.5f;
    if (!(v > 0.0f)) return 0; /* also NaN */
    if (v > 1.0f) v = 1.0f;
    float s = v * 255.0f;
    return (uint8_t)(q == STEM_QUANTIZE_TRUNCATE ? s : roundf(s));
}

void stem_pixels_to_image(const float *chw, stem_quantize q, stem_image *img) {
    size_t n = (size_t)img->width * (size_t)img->height;
    for (int c = 0; c < 3; c++) {
        const float *plane = chw + (size_t)c * n;
        for (size_t i = 0; i < n; i++) img->rgb[3 * i + (size_t)c] = stem_pixel_to_u8(plane[i], q);
    }
}

stem_status stem_quantize_parse(const char *s, stem_quantize *out) {
    if (s && strcmp(s, "round") == 0) {
        *out = STEM_QUANTIZE_ROUND;
        return STEM_OK;
    }
    if (s && (strcmp(s, "truncate") == 0 || strcmp(s, "trunc") == 0)) {
        *out = STEM_QUANTIZE_TRUNCATE;
        return STEM_OK;
    }
    return stem_fail(STEM_E_ARG, "8-bit output mode '%s': expected 'round' or 'truncate'", s ? s : "(null)");
}
