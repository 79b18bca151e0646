/* libFuzzer: PNG or JPEG frames (FUZZ_IMAGE_FORMAT 1: PNG, 2: JPEG; other inputs are
 * skipped so each harness stays on its decoder). The pixel cap is lowered so that the
 * largest image a header may declare decodes in milliseconds. */
#include "fuzz_util.h"
#include "io/image.h"
#include "io/image_limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    if (stem_image_sniff(data, n) != (FUZZ_IMAGE_FORMAT == 1 ? STEM_IMAGE_PNG : STEM_IMAGE_JPEG)) return 0;
    stem_image_set_max_pixels(1 << 22);
    char path[600];
    fuzz_write(path, sizeof path, FUZZ_IMAGE_FORMAT == 1 ? "x.png" : "x.jpg", data, n);
    stem_image img;
    stem_image_info info;
    if (stem_image_read(path, &img, &info) == STEM_OK) {
        if ((int64_t)img.width * img.height > (1 << 22)) abort();
        stem_image_free(&img);
    }
    return 0;
}
