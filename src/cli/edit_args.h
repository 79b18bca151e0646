/* `stem edit`'s command line: its table of options (cli/options.h: the shared video
 * options of cli/video_args.h, the inversion's and the editing's), the original's YAML
 * config (doc/algorithm.md §8), the defaults. */
#ifndef STEM_CLI_EDIT_ARGS_H
#define STEM_CLI_EDIT_ARGS_H

#include <limits.h>
#include <stdbool.h>

#include "cli/invert_args.h"
#include "cli/video_args.h"
#include "pipeline/edit.h"

#define EDIT_ORIGIN_LEN (PATH_MAX + 32)

typedef struct edit_args {
    /* model, frames, their count and size, config, out, backend, memory, resume/force/quiet;
     * model and frames are the inversion's inputs (a given inversion has its own) */
    cli_video_args v;
    /* the inversion stem edit makes first without --inversion: its prompt, steps,
     * attention, scope, 8-bit rounding and fps (inv.v is filled from v when it runs) */
    invert_args inv;
    const char *inversion; /* --inversion DIR, or the config's latents_path */
    bool inversion_from_config;
    bool inversion_exists; /* the folder is there (a finished inversion, checked later) */
    const char *prompt, *negative_prompt;
    stem_edit_options edit; /* steps is the inversion's */
    bool drop_tail, no_freeu, dry_run;
    /* where each inversion input came from, for messages ("--steps", "n_timesteps (X.yaml)");
     * empty: not given */
    char origin_inversion[EDIT_ORIGIN_LEN], origin_frames[EDIT_ORIGIN_LEN], origin_width[EDIT_ORIGIN_LEN],
        origin_height[EDIT_ORIGIN_LEN], origin_steps[EDIT_ORIGIN_LEN], origin_prompt[EDIT_ORIGIN_LEN],
        origin_attention[EDIT_ORIGIN_LEN], origin_scope[EDIT_ORIGIN_LEN], origin_model[EDIT_ORIGIN_LEN];
    char inversion_buf[PATH_MAX], prompt_buf[4096], negative_buf[4096];
} edit_args;

/* 0: run with *a; -1: --help was printed (exit 0); > 0: the exit status of a usage
 * error already printed. */
int edit_parse_args(int argc, char **argv, edit_args *a);

/* How messages name the inversion folder: "--inversion", "latents_path (X.yaml)", or
 * "the inversion" (the one stem edit makes in OUT/inversion). */
void edit_inversion_what(const edit_args *a, char *buf, size_t len);

/* The invert_args of the inversion stem edit runs first into `dir`. */
void edit_inversion_args(const edit_args *a, const char *dir, bool resume, invert_args *out);

#endif
