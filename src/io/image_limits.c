/* Decoded-size limits from the header and the file's own size (see image_limits.h). */
#include "io/image_limits.h"

#include <errno.h>
#include <stdlib.h>

static int64_t g_max_pixels; /* 0: not set by the program */

void stem_image_set_max_pixels(int64_t max_pixels) { g_max_pixels = max_pixels > 0 ? max_pixels : 0; }

int64_t stem_image_max_pixels(void) {
    if (g_max_pixels > 0) return g_max_pixels;
    const char *env = getenv("STEM_MAX_IMAGE_PIXELS");
    if (env && *env) {
        char *end;
        errno = 0;
        long long v = strtoll(env, &end, 10);
        if (errno == 0 && *end == '\0' && v > 0) return (int64_t)v;
    }
    return STEM_IMAGE_MAX_PIXELS;
}

stem_status stem_image_check_pixels(const char *path, const char *what, int64_t width, int64_t height) {
    int64_t max = stem_image_max_pixels();
    if (width * height > max) /* both are at most 2^32 here: no overflow */
        return stem_fail(STEM_E_ARG,
                         "%s: %s is %lldx%lld = %lld pixels, over the limit of %lld (set STEM_MAX_IMAGE_PIXELS to "
                         "allow more)",
                         path, what, (long long)width, (long long)height, (long long)(width * height), (long long)max);
    return STEM_OK;
}

stem_status stem_png_check_file_size(const char *path, int64_t file_size, int64_t width, int64_t height,
                                     int channels, int bit_depth) {
    int64_t rowbytes = 1 + (width * channels * bit_depth + 7) / 8; /* the filter byte and the packed samples */
    int64_t inflated = rowbytes * height;
    if (file_size < 0 || inflated / STEM_PNG_MAX_DEFLATE_RATIO > file_size)
        return stem_fail(STEM_E_FORMAT,
                         "%s: PNG declares %lldx%lld, which needs %lld bytes of image data, more than a %lld-byte "
                         "file can hold (deflate expands at most %d:1): corrupt or truncated",
                         path, (long long)width, (long long)height, (long long)inflated, (long long)file_size,
                         STEM_PNG_MAX_DEFLATE_RATIO);
    return STEM_OK;
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

stem_status stem_jpeg_check_file_size(const char *path, int64_t file_size, int64_t width, int64_t height,
                                      const stem_jpeg_sampling *comp, int n_comp, bool arithmetic) {
    if (arithmetic || n_comp < 1) return STEM_OK;
    int hmax = 1, vmax = 1;
    for (int c = 0; c < n_comp; c++) {
        if (comp[c].h > hmax) hmax = comp[c].h;
        if (comp[c].v > vmax) vmax = comp[c].v;
    }
    int64_t min_blocks = INT64_MAX;
    for (int c = 0; c < n_comp; c++) {
        int64_t bw = ceil_div(ceil_div(width * (comp[c].h > 0 ? comp[c].h : 1), hmax), 8);
        int64_t bh = ceil_div(ceil_div(height * (comp[c].v > 0 ? comp[c].v : 1), vmax), 8);
        if (bw * bh < min_blocks) min_blocks = bw * bh;
    }
    if (file_size < 0 || min_blocks / 8 > file_size)
        return stem_fail(STEM_E_FORMAT,
                         "%s: JPEG declares %lldx%lld, which needs at least %lld coded blocks (>= 1 bit each), more "
                         "than a %lld-byte file can hold: corrupt or truncated",
                         path, (long long)width, (long long)height, (long long)min_blocks, (long long)file_size);
    return STEM_OK;
}
