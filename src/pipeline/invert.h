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
    /* Frames per UNet evaluation; 0 = all. Only honoured where the attention allows it:
     * any count with --attention frame, whole chunks of batch_size with scope chunk;
     * scope video (stem, inflated) always evaluates all frames together. Results agree
     * with all-frames evaluation to float rounding (GEMM shapes change), not bit for bit. */
    int64_t unet_frames;
} stem_invert_options;

/* Frames per UNet evaluation that fit `mem_bytes` of activations for frames of
 * h x w latents (estimate: ~40 x block_out_channels[0] x h x w floats per frame, above
 * the measured arena peak of SD 1.5), rounded to what o's attention allows; also sets
 * *needed to the estimate for all F frames in one evaluation. */
int64_t stem_invert_frames_for_budget(const stem_pipeline *p, const stem_invert_options *o, int64_t frames,
                                      int64_t h, int64_t w, size_t mem_bytes, size_t *needed_all);

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
