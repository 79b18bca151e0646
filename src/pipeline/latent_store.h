/* The latents of every finished step of one DDIM loop, as files in a run's folder, and
 * where an interrupted loop resumes (doc/architecture.md "Errors and outputs").
 *
 *   DIR/<kind>_SSS_tTTTT.safetensors     SSS: the step (0-based, 3 digits), TTTT its timestep
 *
 * kind        phase            order of t   written by
 * inv         inversion        ascending    stem invert (x after inversion step i)
 * rec         reconstruction   descending   stem invert
 * edit        editing          descending   stem edit
 *
 * Each file is pipeline/latent_file.h's format (tensor "latents" [F, 4, h, w], metadata
 * phase, step, timestep and a checksum), written atomically after its step, so an
 * interrupted run loses at most the step in flight. The store holds the naming only; it
 * reads the timesteps from the loop's stem_ddim, which must outlive it. */
#ifndef STEM_PIPELINE_LATENT_STORE_H
#define STEM_PIPELINE_LATENT_STORE_H

#include <limits.h>

#include "pipeline/sampler.h"

typedef struct stem_latent_store {
    char dir[PATH_MAX];     /* the folder of the files (a run's "latents/") */
    char kind[16];          /* the file names' prefix: "inv", "rec", "edit" */
    stem_phase phase;       /* the files' "phase" metadata */
    stem_sampler_dir order; /* how step i maps to its timestep */
    const stem_ddim *ddim;  /* the loop's steps (not owned) */
} stem_latent_store;

/* A store of `kind` files in `dir` (which need not exist yet). STEM_E_ARG when kind is
 * empty, too long or not [a-z0-9] (it becomes part of file names), or dir is too long. */
stem_status stem_latent_store_init(stem_latent_store *st, const char *dir, const char *kind, stem_phase phase,
                                   stem_sampler_dir order, const stem_ddim *ddim);
/* The store stem writes for `phase` (the table above). */
stem_status stem_latent_store_for_phase(stem_latent_store *st, const char *dir, stem_phase phase,
                                        const stem_ddim *ddim);

/* The timestep of step i, and the file of step i ("DIR/inv_003_t0061.safetensors");
 * STEM_E_ARG when i is out of range or the path does not fit `len`. */
int stem_latent_store_timestep(const stem_latent_store *st, int step);
stem_status stem_latent_store_path(const stem_latent_store *st, int step, char *buf, size_t len);

/* Writes x (any backend; copied to the host) as step i's file. */
stem_status stem_latent_store_save(const stem_latent_store *st, int step, const stem_tensor *x);

/* Reads step i's file (checked: checksum, phase, step, timestep) into x: all frames, or
 * frames [f0, f0 + x->shape[0]) of them (stem edit streams the inversion's latents per
 * chunk). STEM_E_IO naming the file when it is missing. */
stem_status stem_latent_store_load(const stem_latent_store *st, int step, int64_t f0, stem_tensor *x);

/* Where an interrupted loop resumes: *last = the last step whose file exists (-1: none),
 * its latents loaded into x. Every existing file of the store is checked, not just the
 * last: a damaged earlier step would otherwise be carried into the finished folder.
 * Errors name the file and what does not match. */
stem_status stem_latent_store_resume_point(const stem_latent_store *st, stem_tensor *x, int *last);

#endif
