/* `stem invert`'s command line: flags, the original's YAML config, defaults. */
#ifndef STEM_CLI_INVERT_ARGS_H
#define STEM_CLI_INVERT_ARGS_H

#include <limits.h>
#include <stdbool.h>

#include "io/resize.h"
#include "pipeline/invert.h"

typedef struct invert_args {
    const char *model, *model_config, *frames, *prompt, *out, *config, *backend;
    int n_frames, width, height, threads, fps;
    size_t mem_limit; /* bytes of UNet activations; 0 = default */
    stem_dtype dtype;
    stem_invert_options inv;
    stem_quantize quantize;
    bool resume, force, quiet, model_is_default, frames_is_default;
    /* what set the frame count, for messages: "--n-frames" or "n_frames (CONFIG.yaml)" */
    char n_frames_name[PATH_MAX + 32];
    char model_buf[PATH_MAX], frames_buf[PATH_MAX], prompt_buf[1024];
} invert_args;

/* 0: run with *a; -1: --help was printed (exit 0); > 0: the exit status of a usage
 * error already printed. */
int invert_parse_args(int argc, char **argv, invert_args *a);

/* A stem_note_fn printing "stem: note: ..." unless *(const bool *)user (quiet). */
void invert_note_to_stderr(void *user, const char *message);

#endif
