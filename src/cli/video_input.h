/* The inputs of a video command, opened the same way by every command: the frames
 * (probed before they are decoded at the requested size, then loaded) and the model. */
#ifndef STEM_CLI_VIDEO_INPUT_H
#define STEM_CLI_VIDEO_INPUT_H

#include "cli/video_args.h"
#include "io/frames.h"
#include "pipeline/pipeline.h"

/* What the frames will be, before any is decoded at the requested size. */
typedef struct cli_frames_probe {
    stem_frames_request req; /* for stem_frames_load: the size filled in from the first frame
                                when --width/--height (or the config) leave it open */
    int expected;            /* frames the run will take: --n-frames, capped by what a folder
                                holds; for a video (counted only by decoding) --n-frames, or 1 */
    int available;           /* image files in a folder (1 for an image file); -1 for a video */
    bool probed_first;       /* the first frame was decoded for its size */
} cli_frames_probe;

/* Opens v->frames, counts what it can without decoding, and decodes the first frame
 * only when the size is open. Errors name the frames (no frames, unreadable first frame). */
stem_status cli_frames_probe_open(const cli_video_args *v, cli_frames_probe *probe);

/* Decodes the frames of the probe's request; warns (unless quiet) when they differ in size. */
stem_status cli_frames_load(const cli_video_args *v, const cli_frames_probe *probe, stem_frames *fr);

/* "CMD: model PATH (bundled ...) on BACKEND" (unless quiet), then stem_pipeline_load_config
 * with --model-config; for a single file, where its tokenizer and scheduler came from. */
stem_status cli_model_open(const char *cmd, const cli_video_args *v, stem_backend *be, stem_pipeline *p);

#endif
