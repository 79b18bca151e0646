/* Writing a clip as a video file through FFmpeg's libraries (when stem was built
 * with them): H.264 (libx264, CRF 18) in yuv420p, or MPEG-4 part 2 at high quality
 * when this FFmpeg has no libx264; the container follows the file name (.mp4, .mkv).
 * Written to "<path>.tmp.<pid>" and renamed when complete. */
#ifndef STEM_IO_VIDEO_WRITE_H
#define STEM_IO_VIDEO_WRITE_H

#include <stdbool.h>

#include "core/tensor.h"
#include "io/resize.h"

/* True when this build can write videos. */
bool stem_video_write_available(void);

/* Whether stem_video_write(path, ...) can write width x height frames at fps: the sizes,
 * the container for path's name and the encoder (opened, then closed; no file made). */
stem_status stem_video_write_check(const char *path, int width, int height, int fps);

/* pixels: host f32 [F, 3, H, W] in [-1, 1], H and W even (yuv420p); fps > 0.
 * STEM_E_UNSUPPORTED without FFmpeg; STEM_E_ARG for odd sizes; errors name `path`. */
stem_status stem_video_write(const char *path, const stem_tensor *pixels, int fps, stem_quantize q);

#endif
