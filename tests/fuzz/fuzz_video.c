/* libFuzzer: a video file through FFmpeg's demuxers and decoders (stem_frame_source), up
 * to 4 frames. */
#include "config.h"
#include "fuzz_util.h"
#include "io/frames.h"
#include "io/image_limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    stem_image_set_max_pixels(1 << 22);
    char path[600];
    fuzz_write(path, sizeof path, "x.mp4", data, n);
    stem_frame_source *src;
    if (stem_frame_source_open(path, fuzz_no_note, NULL, &src) != STEM_OK) return 0;
    stem_image frame = {0};
    bool done = false;
    for (int i = 0; i < 4 && !done; i++)
        if (stem_frame_source_next(src, &frame, &done) != STEM_OK) break;
    stem_image_free(&frame);
    stem_frame_source_close(src);
    return 0;
}
