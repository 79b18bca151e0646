/* 8-bit RGB images: PNG and JPEG in, PNG out.
 *
 * Reading converts every input to RGB exactly as PIL's Image.open(path).convert("RGB")
 * does (the original STEM/TokenFlow code loads frames that way), so that resized
 * frames match PIL byte for byte:
 *   - the format comes from the file's first bytes, not its name;
 *   - gray (1/2/4/8-bit) is replicated to R=G=B (1/2/4-bit scaled to 0..255 by bit
 *     replication: 1 -> 255, 2-bit 1 -> 85, 4-bit 1 -> 17);
 *   - palette images are looked up in their palette;
 *   - alpha (gray+alpha, RGBA, palette or colour-key tRNS) is DROPPED, not composited
 *     onto any background;
 *   - 16-bit RGB/RGBA/gray+alpha keep the high byte (v >> 8);
 *   - 16-bit gray is CLIPPED, min(v, 255) (PIL opens it as mode "I;16" and its
 *     I;16 -> RGB conversion clips; a typical 16-bit frame therefore turns white;
 *     info.clipped16 says when that happened);
 *   - gAMA/sRGB/iCCP chunks, JPEG ICC profiles and EXIF orientation are ignored;
 *   - JPEG: libjpeg's default decoder (ISLOW IDCT, fancy upsampling), gray replicated,
 *     CMYK/YCCK inverted as Adobe writes them and converted with PIL's cmyk2rgb.
 * A truncated or corrupt file is an error (STEM_E_FORMAT naming the file), never a
 * partly gray picture: libjpeg's warnings about missing or corrupt scan data (premature
 * end of data segment, bad Huffman code, ...) are errors here, though PIL ignores them.
 * A declared size over the pixel count limit or over what the file's bytes can encode is
 * rejected before anything is allocated (io/image_limits.h). */
#ifndef STEM_IO_IMAGE_H
#define STEM_IO_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Largest width or height read, resized or written (16K video is 15360 wide). */
#define STEM_IMAGE_MAX_DIM 16384

typedef struct stem_image {
    int width, height;
    uint8_t *rgb; /* height rows of width pixels, R G B interleaved; owned */
} stem_image;

typedef enum stem_image_format { STEM_IMAGE_UNKNOWN = 0, STEM_IMAGE_PNG, STEM_IMAGE_JPEG } stem_image_format;

typedef struct stem_image_info {
    stem_image_format format;
    const char *mode; /* what PIL would call the file's mode: "1", "L", "LA", "P", "RGB", "RGBA", "I;16", "CMYK" */
    int bit_depth;    /* per sample in the file */
    bool had_alpha;   /* an alpha channel or tRNS was dropped */
    bool clipped16;   /* 16-bit gray with values above 255 (clipped to 255) */
} stem_image_info;

/* A zero-filled width x height image. STEM_E_ARG for sizes outside 1..STEM_IMAGE_MAX_DIM. */
stem_status stem_image_new(int width, int height, stem_image *out);
void stem_image_free(stem_image *img);

/* Which format the first bytes of a file say it is (STEM_IMAGE_UNKNOWN if neither). */
stem_image_format stem_image_sniff(const uint8_t *head, size_t len);

/* Reads a PNG or JPEG file into RGB (see above). `info` may be NULL. Errors name the
 * file: STEM_E_IO (cannot open/read), STEM_E_FORMAT (not PNG/JPEG, corrupt, truncated),
 * STEM_E_UNSUPPORTED (e.g. 12-bit JPEG), STEM_E_ARG (larger than STEM_IMAGE_MAX_DIM). */
stem_status stem_image_read(const char *path, stem_image *out, stem_image_info *info);

/* Writes an 8-bit RGB PNG atomically (temp + fsync + rename; nothing is left under
 * `path` on failure). */
stem_status stem_image_write_png(const char *path, const stem_image *img);

#endif
