/* `stem edit` as a job: its state, shared by cli/cmd_edit.c (the steps) and
 * cli/edit_prepare.c (what is checked and planned before the first step). */
#ifndef STEM_CLI_EDIT_JOB_H
#define STEM_CLI_EDIT_JOB_H

#include "cli/edit_args.h"
#include "cli/edit_inversion.h"
#include "cli/edit_latents.h"
#include "cli/edit_manifest.h"
#include "cli/edit_outputs.h"
#include "cli/progress.h"
#include "io/atomic_file.h"

typedef struct edit_job {
    edit_args a;
    char what[PATH_MAX + 32]; /* how messages name the inversion (edit_inversion_what) */
    char inv_dir[PATH_MAX + 16];
    bool make;                /* this run makes the inversion (in OUT.partial/inversion or latents_path) */
    edit_inversion inv;       /* read once it exists */
    stem_backend *be;
    stem_pipeline p;
    bool loaded;
    stem_ddim ddim;
    stem_frame_geometry g;
    stem_edit_options o;      /* a.edit with the steps and the memory plan's choices */
    stem_edit_memory_plan plan;
    stem_outdir od;
    json_object *options, *manifest;
    stem_latent_store store;  /* the edit's latents */
    edit_source src;
    stem_tensor ctx[3], x, host; /* contexts [1, 77, X]; x [Fe, 4, h, w]; decoded frames (host) */
    edit_metrics metrics;
    edit_report rep;
    cli_device_peak device;
    stem_progress progress;
    int first_step, stop_after;
} edit_job;

/* Where the inversion is or will be made; an existing one read and checked against the
 * options (before anything is written). */
stem_status edit_job_locate(edit_job *j);
/* The model: the inversion's (or --model), loaded on j->be. */
stem_status edit_job_load_model(edit_job *j);
/* The inversion's latents and sizes against the model (j->inv must be read). */
stem_status edit_job_check_inversion(edit_job *j);
/* The options with the steps and the memory plan of `frames` frames of W x H; notes
 * (FreeU, drop-tail, the plan when it splits the work) unless quiet. */
stem_status edit_job_plan(edit_job *j, int64_t frames, int width, int height);
/* The three contexts (inversion prompt, negative, target), warning of truncation. */
stem_status edit_job_encode_prompts(edit_job *j);

#endif
