/* STEM inversion and DDIM reconstruction of a whole video (doc/algorithm.md §4, §5).
 *
 * With `--em-scope video` (stem, inflated) one EM problem per self-attention layer
 * spans the whole video, so every UNet evaluation takes all F frames. By default they
 * go through each module together; when they do not fit (unet_frames < F) the
 * evaluation is layer-major (stem_unet_forward_sliced): each module runs over slices
 * of unet_frames frames, and each attn1 first collects the keys/values of all F frames
 * (phase 1), computes the EM bases of all of them (stem) or keeps them (inflated),
 * then lets every slice's queries attend (phase 2). Only the skip connections, the
 * hidden state and one layer's keys/values are kept for all frames. Frame attention
 * and chunk scope instead split the frames into separate evaluations (frame-major).
 * Every attn1 computes what stem_self_attention() does for the chosen mode and scope,
 * and the EM's Philox counter carries (layer, phase, step, chunk) as doc/algorithm.md §6 fixes
 * them, whichever way the frames go through the UNet.
 *
 *   inversion       x_0 = z0; for t = 1, 21, ..., 981 (ascending):
 *                   eps = UNet(x, t, c); x <- invert_step(t, x, eps); report (i, t, x)
 *   reconstruction  x = x_T; for t = 981, ..., 1 (descending):
 *                   eps = UNet(x, t, c); x <- sample_step(t, x, eps); report (i, t, x)
 * Inversion conditions on the inversion prompt only (no classifier-free guidance). */
#ifndef STEM_PIPELINE_INVERT_H
#define STEM_PIPELINE_INVERT_H

#include "pipeline/pipeline.h"
#include "pipeline/sampler.h"
#include "stem/em.h"
#include "stem/stem_attention.h"

typedef struct stem_invert_options {
    int steps;            /* DDIM steps S, default 50 */
    stem_sa_options sa;   /* self-attention mode, scope, EM options (seed in sa.em.seed) */
    /* Frames the UNet's modules take at once; 0 = all. --attention frame: any count
     * (separate evaluations); scope chunk: whole chunks of batch_size; scope video
     * (stem, inflated): all frames in one layer-major evaluation, its modules over
     * slices of this many frames. Results agree with all-frames evaluation to float
     * rounding (GEMM shapes change), not bit for bit. */
    int64_t unet_frames;
} stem_invert_options;

/* Whether o's UNet evaluations on `frames` frames are layer-major (scope video, stem or
 * inflated, with 0 < unet_frames < frames). */
bool stem_invert_layer_major(const stem_invert_options *o, int64_t frames);

/* How the UNet takes `frames` frames of h x w latents within mem_bytes of activations.
 * Estimates: one evaluation needs ~40 x block_out_channels[0] x h x w floats per frame
 * (above the measured arena peak of SD 1.5); layer-major keeps, per frame, the skips,
 * up-path buffers, a token stream and the largest layer's keys/values
 * (all_frame_state), plus one slice at the one-evaluation rate. */
typedef struct stem_invert_memory_plan {
    int64_t unet_frames;    /* for o->unet_frames */
    bool layer_major;       /* scope video over slices (all frames did not fit at once) */
    bool fits;              /* false: even the smallest evaluation (1-frame slices, one
                               chunk, one frame) is over mem_bytes */
    size_t needed_all;      /* estimate: all frames in one evaluation */
    size_t needed;          /* estimate of this plan */
    size_t all_frame_state; /* layer-major: what is kept for all frames */
} stem_invert_memory_plan;

void stem_invert_plan_memory(const stem_pipeline *p, const stem_invert_options *o, int64_t frames, int64_t h,
                             int64_t w, size_t mem_bytes, stem_invert_memory_plan *plan);

void stem_invert_options_default(stem_invert_options *o);

/* The two loops are the sampler (pipeline/sampler.h) with STEM-SA's hook set
 * (stem/stem_sa.h) over o's frame batching; on_step is called after every step. */

/* z0 [F, 4, h, w] -> x [F, 4, h, w] at the last (noisiest) timestep, in place in `x`
 * (x holds z0 on entry, or the latents after step `first_step - 1` when resuming). */
stem_status stem_invert_latents(stem_pipeline *p, const stem_tensor *context, const stem_invert_options *o,
                                int first_step, stem_tensor *x, stem_step_fn on_step, void *user);

/* x [F, 4, h, w] at the noisiest timestep -> z0, in place (DDIM sampling, eta = 0). */
stem_status stem_reconstruct_latents(stem_pipeline *p, const stem_tensor *context, const stem_invert_options *o,
                                     int first_step, stem_tensor *x, stem_step_fn on_step, void *user);

#endif
