/* `stem edit`'s command line: flags, the original's YAML config (doc/algorithm.md §8),
 * defaults, and the flags handed on to the inversion when stem edit runs one first. */
#ifndef STEM_CLI_EDIT_ARGS_H
#define STEM_CLI_EDIT_ARGS_H

#include <limits.h>
#include <stdbool.h>

#include "io/resize.h"
#include "pipeline/edit.h"

#define EDIT_INV_ARGV_MAX 64

typedef struct edit_args {
    /* the inversion: an existing `stem invert` folder (--inversion, or the config's
     * latents_path), else one made first in OUT/inversion */
    const char *inversion;
    bool inversion_from_config; /* latents_path: made there when it does not exist yet */
    const char *prompt, *negative_prompt, *out, *config, *backend;
    /* inversion inputs: what an inversion run takes, and what an existing one must match
     * (NULL / 0 when not given) */
    const char *model, *frames, *inversion_prompt, *attention, *em_scope;
    int n_frames, width, height, steps;
    /* what set each of them, for messages: "--steps" or "n_timesteps (FILE.yaml)" */
    const char *steps_name, *frames_name, *n_frames_name, *width_name, *height_name, *inversion_prompt_name;
    bool inversion_flags; /* --frames, --inversion-prompt, --attention or --em-scope given */
    stem_edit_options edit;  /* steps is filled from the inversion */
    bool seed_set, bases_set, em_iters_set, batch_set, backend_set;
    int threads, fps;
    size_t mem_limit; /* bytes for UNet activations and caches; 0 = default */
    stem_dtype dtype;
    stem_quantize quantize;
    bool resume, force, quiet, dry_run;
    /* flags for the in-process `stem invert`, as given (values point into argv or this struct) */
    int inv_argc;
    const char *inv_argv[EDIT_INV_ARGV_MAX];
    char model_buf[PATH_MAX], out_buf[PATH_MAX], inversion_buf[PATH_MAX], prompt_buf[4096], negative_buf[4096];
    char names_buf[6][PATH_MAX + 32];
    char frames_buf[PATH_MAX], inversion_prompt_buf[4096];
} edit_args;

/* 0: run with *a; -1: --help was printed (exit 0); > 0: the exit status of a usage
 * error already printed. */
int edit_parse_args(int argc, char **argv, edit_args *a);

/* How messages name the inversion folder: "--inversion", "latents_path (X.yaml)", or
 * "the inversion" (the one stem edit makes in OUT/inversion). */
void edit_inversion_what(const edit_args *a, char *buf, size_t len);

/* A stem_note_fn printing "stem: note: ..." unless *(const bool *)user (quiet). */
void edit_note_to_stderr(void *user, const char *message);

#endif
