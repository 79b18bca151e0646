/* Frames in and out.
 *
 * A frame source is one of
 *   - a directory: its PNG and JPEG files (by extension: .png .jpg .jpeg, any case),
 *     sorted by name in byte order (Python's sorted(os.listdir()) for UTF-8 names);
 *     other entries (files, subdirectories, hidden files) are skipped with one note;
 *     a file with an image extension that does not decode is an error naming it;
 *   - a single PNG/JPEG file: one frame;
 *   - any other file: a video, decoded with FFmpeg's libraries when stem was built
 *     with them (frames converted to RGB24 by swscale, bilinear, like
 *     torchvision.io.read_video); otherwise STEM_E_UNSUPPORTED saying so.
 *
 * stem_frames_load takes the first n frames, converts each to RGB (image.h), resizes
 * it to exactly width x height (resize.h, PIL LANCZOS) and maps it to float pixels in
 * [-1, 1]. Frames may differ in size (each is resized; `mixed_sizes` tells the caller
 * to warn). stem_frames_write_dir writes frames back out as 00000.png, 00001.png, ... */
#ifndef STEM_IO_FRAMES_H
#define STEM_IO_FRAMES_H

#include <stdbool.h>

#include "core/tensor.h"
#include "io/image.h"
#include "io/resize.h"

/* Non-fatal remarks go to a stem_note_fn (core/error.h); NULL wherever one is asked
 * for: the remark goes to stderr as "stem: note: ...". */

/* ---- streaming ------------------------------------------------------------------- */

typedef struct stem_frame_source stem_frame_source;

/* Opens a directory, image file or video. Errors name `path`: STEM_E_NOTFOUND (does
 * not exist), STEM_E_FORMAT (a directory without PNG/JPEG files; a file that is not
 * a video FFmpeg can decode), STEM_E_UNSUPPORTED (a video, built without FFmpeg). */
stem_status stem_frame_source_open(const char *path, stem_note_fn note, void *note_user, stem_frame_source **out);
/* Number of frames when known up front (directory, image file); -1 for a video. */
int stem_frame_source_count(const stem_frame_source *src);
/* The next frame, in RGB at its own size, into `frame` (freed and replaced).
 * At the end: *done = true and STEM_OK. Errors name the file or "VIDEO: frame N". */
stem_status stem_frame_source_next(stem_frame_source *src, stem_image *frame, bool *done);
/* Name of the frame `next` returned last: its file name, or "frame N" for a video. */
const char *stem_frame_source_name(const stem_frame_source *src);
void stem_frame_source_close(stem_frame_source *src);

/* ---- whole clips ----------------------------------------------------------------- */

typedef struct stem_frames_request {
    const char *path; /* directory of frames, image file or video */
    int n_frames;     /* take the first n; 0: all. More than there are: STEM_E_ARG */
    const char *n_frames_name; /* what set n_frames, for that message ("--n-frames"); NULL: "n_frames" */
    int width, height; /* resize every frame to exactly this (1..STEM_IMAGE_MAX_DIM) */
    stem_note_fn note; /* remarks; NULL: stderr */
    void *note_user;
} stem_frames_request;

typedef struct stem_frames {
    int count, width, height;
    stem_tensor pixels;      /* host f32 [count, 3, height, width] in [-1, 1], owned */
    char **names;            /* [count] file name of each frame, or "frame N" */
    int src_width, src_height; /* size of the first frame before resizing */
    bool mixed_sizes;        /* not all frames had the first frame's size */
    int available;           /* frames in the source (a video: decoded so far, >= count) */
} stem_frames;

stem_status stem_frames_load(const stem_frames_request *req, stem_frames *out);
void stem_frames_free(stem_frames *f);

/* Frame `index` of host f32 pixels [F, 3, H, W] in [-1, 1] as an 8-bit image. */
stem_status stem_pixels_frame_to_image(const stem_tensor *pixels, int index, stem_quantize q, stem_image *out);

/* The top-left height x width region of host f32 pixels [F, 3, H, W] (height <= H,
 * width <= W) as a new host tensor [F, 3, height, width]: where frames the VAE decodes
 * (a multiple of its factor) meet the input (doc/frame-sizes.md). */
stem_status stem_pixels_crop(const stem_tensor *pixels, int64_t height, int64_t width, stem_tensor *out);

/* Writes every frame of host f32 pixels [F, 3, H, W] in [-1, 1] into `dir` (created
 * if missing) as %05d.png (the original's names), each file atomically. A failure
 * part way leaves some frames written: write into a stem_outdir (io/atomic_file.h)
 * so that an incomplete set never sits under the final name. */
stem_status stem_frames_write_dir(const char *dir, const stem_tensor *pixels, stem_quantize q);

#endif
