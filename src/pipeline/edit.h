/* TokenFlow plug-and-play editing of a STEM-inverted video (doc/algorithm.md §7).
 *
 * Per DDIM step s (t descending, the inversion's timesteps):
 *   keyframes   one frame per chunk of batch_size frames, drawn from the Philox stream
 *               (doc/algorithm.md §6: counter (chunk, 0, 0, 3 << 24 | s << 12));
 *   pivotal     one UNet evaluation of the keyframes, batch [source | uncond | cond] with
 *               latents [x_inv(t) | x | x] and contexts [inversion | negative | target];
 *               attn1 is extended attention (uncond/cond keyframes attend over all keyframes
 *               of their branch) or STEM bases (--edit-attention stem); every transformer
 *               block caches the source branch's norm1 features and every branch's attn1
 *               output of the keyframes; its eps is discarded;
 *   normal      per chunk, the same batch layout; attn1 is REPLACED by token flow: each
 *               token takes the cached attn1 output of its nearest (cosine of norm1
 *               features) token in keyframe i, blended with keyframe i - 1's by a sigmoid of
 *               the frame's distance to the two chunk centres;
 *               eps = eps_u + g (eps_c - eps_u); x <- DDIM sample step (eta 0).
 * PnP: uncond/cond Q, K <- source's in the named up-block attn1 sites for s < floor(S
 * pnp_attn_t); the residual of up_blocks.1.resnets.1 for s < floor(S pnp_f_t); FreeU before
 * every up-block resnet's skip concat (gated on the hidden state's channel count). */
#ifndef STEM_PIPELINE_EDIT_H
#define STEM_PIPELINE_EDIT_H

#include "pipeline/pipeline.h"
#include "stem/em.h"

typedef enum stem_edit_attention { STEM_EDIT_ATTN_EXTENDED, STEM_EDIT_ATTN_STEM } stem_edit_attention;
/* Frame counts that are not a multiple of batch_size: edit every frame (the last chunk is
 * shorter; stem's default) or drop the tail (the original's). */
typedef enum stem_edit_tail { STEM_EDIT_TAIL_EVERY, STEM_EDIT_TAIL_DROP } stem_edit_tail;

typedef struct stem_freeu_options {
    bool enabled;           /* default true (the original's) */
    float b1, b2, s1, s2;   /* 1.2, 1.4, 0.9, 0.2 */
    int64_t gate1, gate2;   /* hidden-state channels where (b1, s1) / (b2, s2) act: 1280, 640
                               (SD 1.5's up_blocks.0/1 widths, the original's gate) */
} stem_freeu_options;

typedef struct stem_edit_options {
    int steps;                  /* S: the inversion's DDIM step count */
    double guidance_scale;      /* g, default 7.5 */
    double pnp_attn_t, pnp_f_t; /* fractions of the steps with Q/K and conv injection: 0.5, 0.8
                                   (double: floor(S x 0.7) must be Python's 7 at S = 10) */
    int64_t batch_size;         /* frames per chunk, default 8 */
    stem_edit_tail tail;
    stem_edit_attention attention;
    uint64_t seed;              /* the Philox key of keyframes and EM draws, default 1 */
    stem_em_options em;         /* --edit-attention stem: bases 256, iters 5, tau 0.01 */
    stem_freeu_options freeu;
    int64_t unet_frames;        /* keyframes per branch the pivotal pass's modules take at once
                                   (0: all; fewer: layer-major, attn1 in two phases) */
    bool cache_on_host;         /* keep the keyframe caches in host memory (each normal pass
                                   copies the two keyframes it reads to the device) */
} stem_edit_options;

void stem_edit_options_default(stem_edit_options *o);
/* STEM_E_ARG naming the option when one is out of range. */
stem_status stem_edit_options_check(const stem_edit_options *o);
/* "extended" | "stem"; "every" | "drop". */
stem_status stem_edit_attention_parse(const char *s, stem_edit_attention *out);
stem_status stem_edit_tail_parse(const char *s, stem_edit_tail *out);
const char *stem_edit_attention_name(stem_edit_attention a);
const char *stem_edit_tail_name(stem_edit_tail t);

/* Fe: the frames edited out of F (all, or F - F mod batch_size with tail drop). */
int64_t stem_edit_frame_count(const stem_edit_options *o, int64_t frames);
/* The keyframe of chunk `chunk` (frames first .. first + length - 1) at step s, as a
 * global frame index (doc/algorithm.md §6). */
int64_t stem_edit_keyframe(uint64_t seed, int step, int64_t chunk, int64_t first, int64_t length);

/* The inversion's saved latents of frames [f0, f0 + n) after inversion step inv_step
 * (0-based, ascending t: inv_step S-1 is x_T's), into out [n, 4, h, w] (on the pipeline's
 * backend, its dtype). The CLI streams them from the inversion's files. */
typedef stem_status (*stem_edit_source_fn)(void *user, int inv_step, int64_t f0, int64_t n, stem_tensor *out);

typedef struct stem_edit_inputs {
    stem_edit_source_fn source;
    void *source_user;
    const stem_tensor *context_source;   /* [1, 77, X]: the inversion prompt */
    const stem_tensor *context_negative; /* [1, 77, X] */
    const stem_tensor *context_target;   /* [1, 77, X]: the edit prompt */
} stem_edit_inputs;

/* x_T = add_noise(z0, eps, T) with eps = (x_inv(T) - sqrt(abar_T) z0) / sqrt(1 - abar_T),
 * doc/algorithm.md §7: z0 [Fe, 4, h, w], x_inv_T the inversion's last latents of the same
 * frames -> x [Fe, 4, h, w] (caller-allocated). */
stem_status stem_edit_initial_latents(const stem_pipeline *p, int steps, const stem_tensor *z0,
                                      const stem_tensor *x_inv_T, stem_tensor *x);

/* Observers for tests and tools (any member may be NULL): the token-flow indices of every
 * transformer block in the normal pass; idx [n, N] (I32, on the backend) for the chunk's
 * frames first .. first + n - 1, against keyframe `which` (0: keyframe i, 1: keyframe i-1).
 * The observer may overwrite idx (tests force a reference's choice at near-ties). */
typedef struct stem_edit_observer {
    void *user;
    stem_status (*token_flow)(void *user, int step, int block, int64_t first, int which, stem_tensor *idx);
    stem_status (*keyframes)(void *user, int step, const int64_t *frames, int64_t count);
} stem_edit_observer;

/* Progress and results: called after each pass of step `step` with x NULL (pass 0 = the
 * pivotal pass, 1 .. passes - 1 = the chunks' normal passes), then once with pass ==
 * passes and x [Fe, 4, h, w], the latents after the step. A non-OK return stops the loop
 * with that status. */
typedef stem_status (*stem_edit_step_fn)(void *user, int step, int steps, int t, int pass, int passes,
                                         const stem_tensor *x);

/* The editing loop: x [Fe, 4, h, w] holds x_T (stem_edit_initial_latents) on entry, or the
 * latents after step first_step - 1 when resuming; on return the edited z0. */
stem_status stem_edit_latents(stem_pipeline *p, const stem_edit_inputs *in, const stem_edit_options *o,
                              int first_step, stem_tensor *x, const stem_edit_observer *obs,
                              stem_edit_step_fn on_step, void *user);

/* Memory of an edit of F frames (h x w latents) within mem_bytes of device memory for
 * activations, caches and latents (weights not included: doc/architecture.md "Memory").
 * Decides, in this order: everything on the device; the caches on the host; the pivotal
 * pass layer-major over slices of keyframes (caches on the device if they still fit).
 * Apply it with stem_edit_apply_plan. */
typedef struct stem_edit_memory_plan {
    int64_t frames_edited, chunks, keyframes;
    int64_t unet_frames;         /* pivotal pass: keyframes per branch its modules take at once */
    bool pivotal_sliced;         /* the pivotal pass runs layer-major over slices */
    size_t cache_bytes;          /* keyframe caches: norm1 (source) + attn1 outputs (3 branches) */
    bool cache_on_host;          /* the caches did not fit next to the activations */
    size_t pivotal_bytes;        /* activations of the pivotal pass */
    size_t normal_bytes;         /* activations of one normal-pass evaluation (3 x batch_size) */
    size_t latent_bytes;         /* x, the per-chunk source latents and eps (device) */
    size_t device_bytes;         /* the device total of the plan */
    size_t host_bytes;           /* what the plan keeps on the host (caches when off-device) */
    bool fits;
} stem_edit_memory_plan;

void stem_edit_plan_memory(const stem_pipeline *p, const stem_edit_options *o, int64_t frames, int64_t h, int64_t w,
                           size_t mem_bytes, stem_edit_memory_plan *plan);
/* o->unet_frames and o->cache_on_host from the plan. */
void stem_edit_apply_plan(const stem_edit_memory_plan *plan, stem_edit_options *o);

#endif
