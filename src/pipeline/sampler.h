/* The DDIM loop over a whole video, in either direction (doc/algorithm.md §4), and the
 * frame batching of its UNet evaluations (doc/architecture.md "Memory").
 *
 *   inversion (STEM_SAMPLER_INVERT, t ascending):   for i = first .. S-1, t = timesteps[S-1-i]
 *       eps = model(i, t, x);  x <- invert_step(t, x, eps);  on_step(i, t, x)
 *   sampling  (STEM_SAMPLER_SAMPLE, t descending):  for i = first .. S-1, t = timesteps[i]
 *       eps = model(i, t, x);  x <- sample_step(t, x, eps);  on_step(i, t, x)
 *
 * The model is a callback (stem_eps_fn) so that one loop serves inversion and
 * reconstruction (stem_sampler_unet_eps: the conditioned UNet over frame batches, with
 * hook sets such as STEM-SA) and editing (TokenFlow's passes and guidance). Step i counts
 * from 0 in the loop's own order; `first` resumes after a saved step i - 1
 * (pipeline/latent_store.h). */
#ifndef STEM_PIPELINE_SAMPLER_H
#define STEM_PIPELINE_SAMPLER_H

#include "pipeline/pipeline.h"
#include "stem/em.h"
#include "stem/stem_attention.h"

typedef enum stem_sampler_dir {
    STEM_SAMPLER_INVERT, /* ascending t: x_0 -> x_T */
    STEM_SAMPLER_SAMPLE, /* descending t: x_T -> x_0 (DDIM, eta 0) */
} stem_sampler_dir;

/* "inversion", "reconstruction", "editing": the steps' name in messages and in the
 * latents files' metadata. */
const char *stem_phase_name(stem_phase phase);

/* The timestep of step i (0 <= i < S) in direction dir. */
int stem_sampler_timestep(const stem_ddim *ddim, stem_sampler_dir dir, int step);

/* eps [F, 4, h, w] = the model's noise prediction for x [F, 4, h, w] at step i / timestep t
 * (both on the pipeline's backend, eps allocated by the loop). */
typedef stem_status (*stem_eps_fn)(void *user, int step, int t, const stem_tensor *x, stem_tensor *eps);

/* Called after every step with the latents at that point (on the pipeline's backend).
 * A non-OK return stops the loop with that status (e.g. interrupted). */
typedef stem_status (*stem_step_fn)(void *user, stem_phase phase, int step_index, int steps, int t,
                                    const stem_tensor *latents);

typedef struct stem_sampler_loop {
    const stem_ddim *ddim; /* S steps and their timesteps (not owned) */
    stem_sampler_dir dir;
    stem_phase phase;      /* handed to on_step; names the steps in errors */
    stem_eps_fn eps;
    void *eps_user;
    stem_step_fn on_step;  /* may be NULL */
    void *user;
} stem_sampler_loop;

/* Runs steps first .. S-1 on x in place: x holds the latents after step first - 1 (or the
 * loop's start, x_0 or x_T, with first = 0). Errors get the context "PHASE step i+1 of S
 * (t = T)" (counted from 1, as progress bars count). */
stem_status stem_sampler_run(const stem_sampler_loop *loop, int first_step, stem_tensor *x);

/* ---- frame batching --------------------------------------------------------------------- */

/* How F frames go through one step's UNet evaluations:
 *   frame-major  evaluations of per_eval frames each (all F; or, when they do not fit, any
 *                count for frame attention, whole chunks of batch_size for scope chunk);
 *   layer-major  scope video (stem, inflated) when all frames do not fit: one evaluation
 *                of all F frames whose modules run over slices of `slice` frames, each attn1
 *                collecting every slice's keys/values first (stem_unet_forward_sliced). */
typedef struct stem_frame_batching {
    int64_t frames;   /* F */
    int64_t per_eval; /* frames per UNet evaluation */
    int64_t slice;    /* frames each module takes at once (per_eval unless layer-major) */
    bool layer_major;
} stem_frame_batching;

/* The batching of F frames when the UNet's modules may take unet_frames at once (0: all). */
void stem_frame_batching_plan(const stem_sa_options *sa, int64_t unet_frames, int64_t frames,
                              stem_frame_batching *b);

/* The conditioned UNet over frame batches, as a stem_eps_fn (stem_sampler_unet_eps). */
typedef struct stem_sampler_unet {
    stem_pipeline *p;
    const stem_tensor *context; /* [1, 77, X], the same for every frame */
    stem_frame_batching batching;
    const stem_unet_hooks *hooks; /* NULL: a plain UNet */
    /* before each evaluation, of frames [f0, f0 + n) at step i (STEM-SA: the EM's counter
     * words, doc/algorithm.md §6); may be NULL */
    void (*before_eval)(void *user, int step, int64_t f0, int64_t n);
    void *before_user;
} stem_sampler_unet;

/* eps = UNet(x, t, context) of every frame, evaluation by evaluation (`self`: a
 * stem_sampler_unet). */
stem_status stem_sampler_unet_eps(void *self, int step, int t, const stem_tensor *x, stem_tensor *eps);

#endif
