/* Frames to model pixels and back.
 *
 * Resize: exactly PIL's Image.resize((width, height), Image.LANCZOS) on an RGB image
 * (Pillow's src/libImaging/Resample.c, 8-bit path), which is how the original prepares
 * frames. Aspect ratio is not preserved. Separable Lanczos-3, horizontal pass first
 * (skipped when the width is unchanged), then vertical (skipped when the height is
 * unchanged); the filter support is 3 source pixels when upscaling and 3 x (in/out)
 * when downscaling; coefficients are normalised to sum 1 in double, then rounded to
 * 22-bit fixed point; each pass accumulates in 32-bit integers with a rounding
 * offset and clips to 0..255, so the intermediate image is 8-bit like PIL's.
 * Tested byte-exact against Pillow 12.3.0 (refdata/golden/io, 27 up/down/odd-ratio
 * cases). Pillow 13 (python-pillow/Pillow#9549) runs the vertical pass first when the
 * height shrinks much more than the width; in those cases its results differ from
 * this (and from every earlier Pillow, which the original ran on) by a few levels,
 * up to ~20 on pure noise. The goldens pin 12.3.0, the last release with the order
 * stem reproduces.
 *
 * Pixels: p in 0..255 -> float x = (p / 255) * 2 - 1, both operations in float32
 * (torchvision ToTensor, then 2x - 1), laid out planar [3, H, W].
 * Back: v = clamp(x / 2 + 0.5, 0, 1), then 8-bit by rounding to nearest (stem's
 * default) or by truncation, (uint8)(v * 255) in float32 (the original's
 * ToPILImage()/(x * 255).to(uint8)). NaN maps to 0. */
#ifndef STEM_IO_RESIZE_H
#define STEM_IO_RESIZE_H

#include "core/error.h"
#include "io/image.h"

/* Resizes `src` to exactly width x height into a new image `dst`. STEM_E_ARG for sizes
 * outside 1..STEM_IMAGE_MAX_DIM. Same size: a copy. */
stem_status stem_image_resize(const stem_image *src, int width, int height, stem_image *dst);

/* img (H x W RGB) -> chw[3][H][W] in [-1, 1]. */
void stem_image_to_pixels(const stem_image *img, float *chw);

typedef enum stem_quantize {
    STEM_QUANTIZE_ROUND = 0, /* stem: round(v * 255) */
    STEM_QUANTIZE_TRUNCATE,  /* the original: floor(v * 255) */
} stem_quantize;

/* chw[3][H][W] in [-1, 1] -> img, which must already be H x W (stem_image_new). */
void stem_pixels_to_image(const float *chw, stem_quantize q, stem_image *img);

/* One value: x in [-1, 1] -> 0..255. */
uint8_t stem_pixel_to_u8(float x, stem_quantize q);

/* "round" / "truncate" -> the enum; STEM_E_ARG naming the flag value otherwise. */
stem_status stem_quantize_parse(const char *s, stem_quantize *out);

#endif
