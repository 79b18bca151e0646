/* `stem invert`'s command line: its table of options (the shared video options of
 * cli/video_args.h plus the algorithm's), the original's YAML config, the defaults. */
#ifndef STEM_CLI_INVERT_ARGS_H
#define STEM_CLI_INVERT_ARGS_H

#include <stdbool.h>

#include "cli/video_args.h"
#include "io/resize.h"
#include "pipeline/invert.h"

typedef struct invert_args {
    cli_video_args v;         /* model, frames, out, backend, memory, resume/force/quiet */
    const char *prompt;       /* the inversion prompt (describes the input video) */
    int fps;                  /* of recon.mp4 */
    stem_invert_options inv;  /* steps, attention mode and scope, EM options, seed */
    stem_quantize quantize;
    bool dry_run;             /* print the memory plan and exit */
    char prompt_buf[1024];
} invert_args;

/* The defaults of `stem invert` with no flags (model and frames unset: cli_video_resolve
 * or the caller fills them). For commands that run an inversion themselves. */
void invert_args_defaults(invert_args *a);

/* 0: run with *a; -1: --help was printed (exit 0); > 0: the exit status of a usage
 * error already printed. */
int invert_parse_args(int argc, char **argv, invert_args *a);

#endif
