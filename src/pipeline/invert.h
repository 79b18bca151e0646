/* STEM inversion and DDIM reconstruction of a whole video (SPEC.md §4, §5).
 *
 * Every UNet evaluation runs on all F frames at once (layer-major), so that with
 * `--em-scope video` one EM problem per self-attention layer spans the whole video;
 * every attn1 goes through stem_self_attention() with the chosen mode and scope, and
 * the EM's Philox counter carries (layer, phase, step, chunk) as SPEC §6 fixes them.
 *
 *   inversion       x_0 = z0; for t = 1, 21, ..., 981 (ascending):
 *                   eps = UNet(x, t, c); x <- invert_step(t, x, eps); report (i, t, x)
 *   reconstruction  x = x_T; for t = 981, ..., 1 (descending):
 *                   eps = UNet(x, t, c); x <- sample_step(t, x, eps); report (i, t, x)
 * Inversion conditions on the inversion prompt only (no classifier-free guidance). */
#ifndef STEM_PIPELINE_INVERT_H
#define STEM_PIPELINE_INVERT_H

#include "pipeline/pipeline.h"
#include "stem/em.h"
#include "stem/stem_attention.h"

typedef struct stem_invert_options {
    int steps;            /* DDIM steps S, default 50 */
    stem_sa_options sa;   /* self-attention mode, scope, EM options (seed in sa.em.seed) */
} stem_invert_options;

void stem_invert_options_default(stem_invert_options *o);

/* Called after every step with the latents at that point (on the pipeline's backend).
 * A non-OK return stops the loop with that status (e.g. interrupted). */
typedef stem_status (*stem_step_fn)(void *user, stem_phase phase, int step_index, int steps, int t,
                                    const stem_tensor *latents);

/* z0 [F, 4, h, w] -> x [F, 4, h, w] at the last (noisiest) timestep, in place in `x`
 * (x holds z0 on entry, or the latents after step `first_step - 1` when resuming). */
stem_status stem_invert_latents(stem_pipeline *p, const stem_tensor *context, const stem_invert_options *o,
                                int first_step, stem_tensor *x, stem_step_fn on_step, void *user);

/* x [F, 4, h, w] at the noisiest timestep -> z0, in place (DDIM sampling, eta = 0). */
stem_status stem_reconstruct_latents(stem_pipeline *p, const stem_tensor *context, const stem_invert_options *o,
                                     int first_step, stem_tensor *x, stem_step_fn on_step, void *user);

#endif
