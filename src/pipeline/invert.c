#include "pipeline/invert.h"

#include <string.h>

#include "stem/stem_sa.h"

void stem_invert_options_default(stem_invert_options *o) {
    memset(o, 0, sizeof *o);
    o->steps = 50;
    stem_sa_options_default(&o->sa);
}

bool stem_invert_layer_major(const stem_invert_options *o, int64_t frames) {
    return stem_sa_spans_video(&o->sa) && o->unet_frames > 0 && o->unet_frames < frames;
}

/* Frames per UNet evaluation: all, unless the attention mode lets them be split. */
static int64_t frames_per_eval(const stem_invert_options *o, int64_t F) {
    int64_t want = o->unet_frames > 0 && o->unet_frames < F ? o->unet_frames : F;
    if (o->sa.mode == STEM_SA_FRAME) return want;
    if (o->sa.scope == STEM_SCOPE_CHUNK && o->sa.batch_size > 0) {
        int64_t chunks = want / o->sa.batch_size;
        return chunks > 0 ? chunks * o->sa.batch_size : o->sa.batch_size;
    }
    return F;
}

/* ---- memory budget ------------------------------------------------------------------------ */

void stem_invert_plan_memory(const stem_pipeline *p, const stem_invert_options *o, int64_t frames, int64_t h,
                             int64_t w, size_t mem_bytes, stem_invert_memory_plan *plan) {
    const stem_unet_config *c = stem_unet_get_config(p->unet);
    const size_t dsize = stem_dtype_size(p->dtype);
    /* one evaluation, per frame: measured above the arena peak of SD 1.5 */
    const size_t per_frame = (size_t)40 * (size_t)c->block_out_channels[0] * (size_t)(h * w) * dsize;
    memset(plan, 0, sizeof *plan);
    plan->needed_all = per_frame * (size_t)frames;
    plan->fits = true;
    int64_t fit = per_frame ? (int64_t)(mem_bytes / per_frame) : frames;
    if (!stem_sa_spans_video(&o->sa)) {
        stem_invert_options tmp = *o;
        tmp.unet_frames = fit < 1 ? 1 : fit;
        plan->unet_frames = frames_per_eval(&tmp, frames);
        plan->needed = per_frame * (size_t)plan->unet_frames;
        /* chunk scope cannot split a chunk */
        plan->fits = plan->unet_frames < frames || plan->needed_all <= mem_bytes;
        return;
    }
    plan->unet_frames = frames;
    plan->needed = plan->needed_all;
    if (plan->needed_all <= mem_bytes) return;
    /* layer-major: all frames' skips, up-path buffers, token stream and attn1 keys/values,
     * plus one slice's activations (the whole per-frame estimate, conservatively) */
    int64_t max_c, kv = 2 * stem_sa_site_elements(p->unet, h, w, &max_c);
    int64_t bases = o->sa.mode == STEM_SA_STEM ? 2 * o->sa.em.bases * max_c : 0;
    int64_t state = stem_unet_sliced_state_elements(p->unet, h, w) + kv;
    plan->layer_major = true;
    plan->all_frame_state = ((size_t)state * (size_t)frames + (size_t)bases) * dsize;
    int64_t slice = 0;
    if (mem_bytes > plan->all_frame_state && per_frame)
        slice = (int64_t)((mem_bytes - plan->all_frame_state) / per_frame);
    plan->fits = slice >= 1;
    plan->unet_frames = slice < 1 ? 1 : slice < frames ? slice : frames - 1;
    plan->needed = plan->all_frame_state + per_frame * (size_t)plan->unet_frames;
}

/* ---- the DDIM loop ------------------------------------------------------------------------ */

/* The shared loop: S UNet evaluations, each followed by a DDIM update of x. */
static stem_status run_ddim_loop(stem_pipeline *p, const stem_tensor *context, const stem_invert_options *o,
                                 stem_phase phase, int first_step, stem_tensor *x, stem_step_fn on_step, void *user) {
    stem_ddim ddim;
    STEM_TRY(stem_ddim_init(&ddim, &p->schedule, o->steps));
    const int64_t F = x->shape[0];
    const bool layer_major = stem_invert_layer_major(o, F);
    /* frame-major: evaluations of `per` frames (all, or whole chunks); layer-major: one
     * evaluation of all frames, each module over slices of o->unet_frames */
    const int64_t per = frames_per_eval(o, F), slice = layer_major ? o->unet_frames : per;
    size_t mark = stem_arena_mark(p->arena);
    stem_tensor eps = {0}, next = {0};
    stem_sa_hooks *sa = NULL;
    stem_status s = stem_tensor_new(p->be, x->dtype, x->ndim, x->shape, &eps);
    if (s == STEM_OK) s = stem_tensor_new(p->be, x->dtype, x->ndim, x->shape, &next);
    if (s == STEM_OK)
        s = stem_sa_hooks_create(&o->sa, phase, p->unet, p->arena, F, x->shape[2], x->shape[3], layer_major, &sa);
    stem_unet_hook_set set = sa ? stem_sa_hook_set(sa) : (stem_unet_hook_set){0};
    const stem_unet_hooks hooks = {.branches = 1, .sets = &set, .n_sets = 1};
    for (int i = first_step; i < o->steps && s == STEM_OK; i++) {
        /* inversion walks the timesteps upwards (1 .. 981), sampling downwards */
        int t = phase == STEM_PHASE_INVERSION ? ddim.timesteps[o->steps - 1 - i] : ddim.timesteps[i];
        float tf = (float)t;
        for (int64_t f0 = 0; f0 < F && s == STEM_OK; f0 += per) {
            int64_t n = F - f0 < per ? F - f0 : per;
            stem_tensor xs, es;
            s = stem_tensor_narrow0(x, f0, n, &xs);
            if (s == STEM_OK) s = stem_tensor_narrow0(&eps, f0, n, &es);
            stem_sa_hooks_set_step(sa, i, o->sa.scope == STEM_SCOPE_CHUNK ? (uint32_t)(f0 / o->sa.batch_size) : 0);
            if (s == STEM_OK)
                s = stem_unet_forward_sliced(p->unet, p->arena, &xs, &tf, 1, context, &hooks, slice, &es);
        }
        if (s == STEM_OK)
            s = phase == STEM_PHASE_INVERSION ? stem_ddim_invert_step(&ddim, t, x, &eps, &next)
                                              : stem_ddim_sample_step(&ddim, t, x, &eps, &next);
        if (s == STEM_OK) s = stem_tensor_copy(&next, x);
        if (s == STEM_OK && on_step) {
            s = on_step(user, phase, i, o->steps, t, x);
            if (s != STEM_OK) break; /* its message is the caller's (e.g. "interrupted after step N") */
        }
        /* counted from 1, as the progress bar and the interruption message count */
        if (s != STEM_OK) stem_error_context(s, "%s step %d of %d (t = %d)", phase == STEM_PHASE_INVERSION ? "inversion" : "reconstruction", i + 1, o->steps, t);
    }
    stem_arena_reset(p->arena, mark);
    stem_sa_hooks_free(sa);
    stem_tensor_free(&eps);
    stem_tensor_free(&next);
    stem_ddim_free(&ddim);
    return s;
}

stem_status stem_invert_latents(stem_pipeline *p, const stem_tensor *context, const stem_invert_options *o,
                                int first_step, stem_tensor *x, stem_step_fn on_step, void *user) {
    return run_ddim_loop(p, context, o, STEM_PHASE_INVERSION, first_step, x, on_step, user);
}

stem_status stem_reconstruct_latents(stem_pipeline *p, const stem_tensor *context, const stem_invert_options *o,
                                     int first_step, stem_tensor *x, stem_step_fn on_step, void *user) {
    return run_ddim_loop(p, context, o, STEM_PHASE_RECONSTRUCTION, first_step, x, on_step, user);
}
