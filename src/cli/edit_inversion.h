/* The inversion `stem edit` works on: a finished `stem invert` folder, read and checked
 * before anything is loaded, or made first (in-process) when there is none; and the
 * source branch's latents streamed from its files during the edit.
 *
 * What a finished inversion folder holds (cmd_invert.c writes it): manifest.json with
 * "tool": "stem invert ..." (written last, so its presence means complete), options.json
 * (model, frames, prompt, n_frames, width, height, steps, attention, ...),
 * latents/inv_SSS_tTTTT.safetensors for every step S (ascending t), frames/input (the
 * input as encoded, 8-bit PNG at the input size) and frames/recon (its reconstruction at
 * the output size).
 *
 * z0 (doc/algorithm.md §7) is the VAE encoding of frames/input, re-encoded here as
 * `stem invert` encoded it (the PNGs hold exactly the 8-bit pixels it read, so with the
 * same model, backend and dtype z0 is the same); the inversion folder is thus all an edit
 * needs, wherever the original frames went. */
#ifndef STEM_CLI_EDIT_INVERSION_H
#define STEM_CLI_EDIT_INVERSION_H

#include <json-c/json.h>
#include <limits.h>

#include "cli/edit_args.h"
#include "pipeline/pipeline.h"
#include "stem/ddim.h"

typedef struct edit_inversion {
    char dir[PATH_MAX];
    char what[PATH_MAX + 32]; /* how messages name it: "--inversion", "latents_path (X.yaml)" */
    char model[PATH_MAX];   /* options.json's model */
    char model_config[PATH_MAX]; /* options.json's model_config ("" when none) */
    char fingerprint[17];   /* manifest.json's model fingerprint ("" when absent) */
    char frames[PATH_MAX], prompt[4096], attention[32], em_scope[32], backend[32], dtype[8];
    int n_frames, width, height, steps;
    int out_w, out_h;       /* decoded frame size (manifest frame_sizes.output) */
    char x_T_checksum[17];  /* of the last step's latents: identifies this inversion */
} edit_inversion;

/* Reads DIR's options.json and manifest.json. Errors (STEM_E_ARG / STEM_E_FORMAT) name
 * DIR and what is wrong: missing, an interrupted run (DIR.partial), no manifest, not
 * written by stem invert, a key missing. */
stem_status edit_inversion_read(const char *dir, const char *what, edit_inversion *inv);

/* The flags of `a` that an existing inversion must match (model by fingerprint, frame
 * count, size, steps); STEM_E_ARG naming the flag, both values and DIR otherwise. */
stem_status edit_inversion_check_args(const edit_inversion *inv, const edit_args *a);

/* The model an edit of `inv` runs with: --model, else the inversion's; --model-config,
 * else the inversion's (NULL when neither has one). */
const char *edit_inversion_model(const edit_inversion *inv, const edit_args *a);
const char *edit_inversion_model_config(const edit_inversion *inv, const edit_args *a);

/* Every step's latents file is there, undamaged (checksum, step metadata), and of shape
 * [n_frames, C, h, w]: STEM_E_FORMAT naming the first missing or bad file. Sets
 * inv->x_T_checksum. */
stem_status edit_inversion_check_latents(edit_inversion *inv, const stem_ddim *ddim, int64_t c, int64_t h, int64_t w);

/* "DIR/latents/inv_SSS_tTTTT.safetensors" of inversion step `step` (t ascending;
 * pipeline/latent_store.h names it). */
stem_status edit_inversion_latents_path(const edit_inversion *inv, const stem_ddim *ddim, int step, char *buf,
                                        size_t len);

/* Runs `stem invert`'s job (cli_invert_run) in this process into `dir` with a's inversion
 * options on the pipeline p (loaded from the inversion's model; NULL: loaded there),
 * resuming an interrupted one there with --resume. */
stem_status edit_inversion_run(const edit_args *a, const char *dir, stem_pipeline *p);

/* The source branch's latents (stem_edit_source_fn): frames [f0, f0 + n) of inversion step
 * s, from the file of that step, mapped once per step (a page cache view: only what is
 * read is brought in) and copied into the caller's tensor. Every file was checked up front
 * (edit_inversion_check_latents); stem_latent_store_load would check the whole file again
 * at each of a step's 1 + 2 x chunks calls (every keyframe, every chunk). */
typedef struct edit_source {
    const edit_inversion *inv;
    const stem_ddim *ddim;
    int mapped_step;       /* the step whose file is mapped, -1: none */
    void *map;             /* stem_tensor_map of that file */
    double seconds;        /* time spent reading */
} edit_source;

void edit_source_init(edit_source *src, const edit_inversion *inv, const stem_ddim *ddim);
stem_status edit_source_read(void *user, int inv_step, int64_t f0, int64_t n, stem_tensor *out);
void edit_source_free(edit_source *src);

/* The inversion's identity for options.json (resume compares it). */
json_object *edit_inversion_json(const edit_inversion *inv);

#endif
