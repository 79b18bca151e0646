/* How large a decoded image may be, decided from the header before anything is allocated.
 *
 * Two limits, both checked before the pixel buffer (or libjpeg's coefficient buffers) exist:
 *   - a stated maximum pixel count: STEM_IMAGE_MAX_PIXELS by default (2^27, so a 16K
 *     15360x8640 frame fits and a 16384x16384 one does not), overridable with the
 *     environment variable STEM_MAX_IMAGE_PIXELS or stem_image_set_max_pixels();
 *   - what the file can hold: a header may declare any size, but the entropy-coded data
 *     has a hard maximum expansion, so a size the file's bytes cannot encode is rejected
 *     (a 166-byte JPEG declaring 16384x16384 was decoded to 805 MB of gray before).
 *       PNG: deflate expands at most 1032:1, and the inflated stream holds every row
 *            (a filter byte + the packed samples), so rows * rowbytes <= 1032 * file size.
 *       JPEG (Huffman): every 8x8 block of the component read in the first scan costs at
 *            least one bit (a DC code of >= 1 bit), so the least-sampled component's block
 *            count <= 8 * file size. Arithmetic-coded JPEGs have no such bound (a likely
 *            symbol costs far under a bit) and get only the pixel count limit. */
#ifndef STEM_IO_IMAGE_LIMITS_H
#define STEM_IO_IMAGE_LIMITS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"

#define STEM_IMAGE_MAX_PIXELS ((int64_t)1 << 27)
#define STEM_PNG_MAX_DEFLATE_RATIO 1032

/* The pixel count limit in force: stem_image_set_max_pixels's value, else
 * STEM_MAX_IMAGE_PIXELS from the environment (a positive integer), else the default. */
int64_t stem_image_max_pixels(void);
/* 0 goes back to the environment / default. */
void stem_image_set_max_pixels(int64_t max_pixels);

/* STEM_E_ARG naming `path` when width x height exceeds the pixel count limit. */
stem_status stem_image_check_pixels(const char *path, const char *what, int64_t width, int64_t height);

/* STEM_E_FORMAT naming `path` when a PNG of `file_size` bytes cannot hold `height` rows of
 * `width` pixels of `channels` samples of `bit_depth` bits (before any interlacing). */
stem_status stem_png_check_file_size(const char *path, int64_t file_size, int64_t width, int64_t height,
                                     int channels, int bit_depth);

/* One JPEG component's sampling factors. */
typedef struct stem_jpeg_sampling {
    int h, v;
} stem_jpeg_sampling;

/* STEM_E_FORMAT naming `path` when a Huffman-coded JPEG of `file_size` bytes cannot code
 * every block of its least-sampled component (`arithmetic`: no bound, STEM_OK). */
stem_status stem_jpeg_check_file_size(const char *path, int64_t file_size, int64_t width, int64_t height,
                                      const stem_jpeg_sampling *comp, int n_comp, bool arithmetic);

#endif
