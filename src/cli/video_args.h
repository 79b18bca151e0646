/* What every command that runs Stable Diffusion over a video takes: the model, the
 * frames and their count and size, the original's YAML config, the output folder, the
 * backend, the memory limit; the option rows for them (cli/options.h), and how they are
 * resolved: flags first, then the YAML config, then $STEM_MODEL and the bundled tiny
 * model and clip (refdata/models/shapes-sd1, refdata/clips/shapes).
 *
 * A command embeds a cli_video_args in its own argument struct, adds the rows it wants
 * with cli_video_add_*, its own rows, calls cli_parse and then cli_video_resolve. */
#ifndef STEM_CLI_VIDEO_ARGS_H
#define STEM_CLI_VIDEO_ARGS_H

#include <limits.h>
#include <stdbool.h>

#include "cli/options.h"
#include "core/dtype.h"

typedef struct cli_video_args {
    const char *model, *model_config, *frames, *out, *config, *backend; /* model_config: NULL, none */
    int n_frames, width, height, threads; /* 0: all frames, the first frame's size, all cores */
    size_t mem_limit;                     /* bytes of UNet activations; 0 = default */
    stem_dtype dtype;
    bool resume, force, quiet;
    bool model_is_default, frames_is_default; /* the bundled model / clip */
    /* what set the frame count, for messages: "--n-frames" or "n_frames (CONFIG.yaml)" */
    char n_frames_name[PATH_MAX + 32];
    char model_buf[PATH_MAX], frames_buf[PATH_MAX], out_buf[PATH_MAX];
    char out_help[160];
} cli_video_args;

/* Defaults: backend cpu, f32, --out default_out (kept, not copied). */
void cli_video_defaults(cli_video_args *v, const char *default_out);

/* input: --model DIR|FILE, --model-config DIR|FILE.json, --frames DIR|VIDEO (YAML data_path). */
void cli_video_add_input(cli_table *t, cli_video_args *v);
/* --config FILE.yaml, --n-frames N (n_frames), --width W (width), --height H (height). */
void cli_video_add_shape(cli_table *t, cli_video_args *v);
/* run: --out DIR, --backend, --dtype, --threads, --mem-limit, --resume, --force, --quiet. */
void cli_video_add_run(cli_table *t, cli_video_args *v);

/* After cli_parse: checks --dtype against --backend, takes $STEM_MODEL for a missing
 * --model, reads --config (its keys for the rows the command line left unset; device
 * "cuda..." -> --backend cuda; sd_version -> $STEM_MODEL_SDxx or $STEM_MODEL for the
 * model, never a download; the first of out_keys that the file sets -> --out), and
 * falls back to the bundled model and clip. Returns 0, or the exit status of an error it
 * printed ("CMD: ..."). out_keys: NULL-terminated YAML keys naming the output folder
 * ({"latents_path", "output_path", NULL} for invert), or NULL. */
int cli_video_resolve(const char *cmd, cli_table *t, cli_video_args *v, const char *const *out_keys);

/* A stem_note_fn printing "stem: note: ..." unless *(const bool *)user (quiet). */
void cli_note_to_stderr(void *user, const char *message);

#endif
