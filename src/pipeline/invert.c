/* Inversion and reconstruction: thin wrappers of the sampler with STEM-SA, and the
 * memory plan (see invert.h). */
#include "pipeline/invert.h"

#include <string.h>

#include "stem/stem_sa.h"

void stem_invert_options_default(stem_invert_options *o) {
    memset(o, 0, sizeof *o);
    o->steps = 50;
    stem_sa_options_default(&o->sa);
}

bool stem_invert_layer_major(const stem_invert_options *o, int64_t frames) {
    stem_frame_batching b;
    stem_frame_batching_plan(&o->sa, o->unet_frames, frames, &b);
    return b.layer_major;
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
        stem_frame_batching b;
        stem_frame_batching_plan(&o->sa, fit < 1 ? 1 : fit, frames, &b);
        plan->unet_frames = b.per_eval;
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

/* ---- the DDIM loop: the sampler with STEM-SA ---------------------------------------------- */

/* Before each evaluation: the EM's counter words (step, chunk of its first frame). */
typedef struct sa_step {
    stem_sa_hooks *sa;
    const stem_sa_options *opt;
} sa_step;

static void sa_before_eval(void *user, int step, int64_t f0, int64_t n) {
    (void)n;
    const sa_step *c = user;
    stem_sa_hooks_set_step(c->sa, step, c->opt->scope == STEM_SCOPE_CHUNK ? (uint32_t)(f0 / c->opt->batch_size) : 0);
}

/* S UNet evaluations with STEM-SA hooks over o's frame batching, each followed by a DDIM
 * update of x: the sampler (pipeline/sampler.h) in the phase's direction. */
static stem_status run_phase(stem_pipeline *p, const stem_tensor *context, const stem_invert_options *o,
                             stem_phase phase, int first_step, stem_tensor *x, stem_step_fn on_step, void *user) {
    stem_ddim ddim;
    STEM_TRY(stem_ddim_init(&ddim, &p->schedule, o->steps));
    stem_sampler_unet model = {.p = p, .context = context};
    stem_frame_batching_plan(&o->sa, o->unet_frames, x->shape[0], &model.batching);
    size_t mark = stem_arena_mark(p->arena);
    stem_sa_hooks *sa = NULL;
    stem_status s = stem_sa_hooks_create(&o->sa, phase, p->unet, p->arena, x->shape[0], x->shape[2], x->shape[3],
                                         model.batching.layer_major, &sa);
    if (s == STEM_OK) {
        stem_unet_hook_set set = stem_sa_hook_set(sa);
        const stem_unet_hooks hooks = {.branches = 1, .sets = &set, .n_sets = 1};
        sa_step step = {.sa = sa, .opt = &o->sa};
        model.hooks = &hooks;
        model.before_eval = sa_before_eval;
        model.before_user = &step;
        const stem_sampler_loop loop = {
            .ddim = &ddim,
            .dir = phase == STEM_PHASE_INVERSION ? STEM_SAMPLER_INVERT : STEM_SAMPLER_SAMPLE,
            .phase = phase,
            .eps = stem_sampler_unet_eps,
            .eps_user = &model,
            .on_step = on_step,
            .user = user,
        };
        s = stem_sampler_run(&loop, first_step, x);
    }
    stem_arena_reset(p->arena, mark);
    stem_sa_hooks_free(sa);
    stem_ddim_free(&ddim);
    return s;
}

stem_status stem_invert_latents(stem_pipeline *p, const stem_tensor *context, const stem_invert_options *o,
                                int first_step, stem_tensor *x, stem_step_fn on_step, void *user) {
    return run_phase(p, context, o, STEM_PHASE_INVERSION, first_step, x, on_step, user);
}

stem_status stem_reconstruct_latents(stem_pipeline *p, const stem_tensor *context, const stem_invert_options *o,
                                     int first_step, stem_tensor *x, stem_step_fn on_step, void *user) {
    return run_phase(p, context, o, STEM_PHASE_RECONSTRUCTION, first_step, x, on_step, user);
}
