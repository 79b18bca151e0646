#include "pipeline/invert.h"

#include <string.h>

void stem_invert_options_default(stem_invert_options *o) {
    memset(o, 0, sizeof *o);
    o->steps = 50;
    stem_sa_options_default(&o->sa);
}

/* What the self-attention hook needs to set the EM counter words of each call. */
typedef struct attention_state {
    stem_sa_options sa;
    stem_phase phase;
    int step;
} attention_state;

/* The UNet's attn1 hook: every self-attention of every block, all frames at once. */
static stem_status stem_attention_hook(void *user, const stem_attn_site *site, const stem_tensor *q,
                                       const stem_tensor *k, const stem_tensor *v, stem_tensor *out) {
    const attention_state *st = user;
    stem_sa_options o = st->sa;
    o.em.layer = (uint32_t)site->index;
    o.em.phase = (uint32_t)st->phase;
    o.em.step = (uint32_t)st->step;
    stem_status s = stem_self_attention(q, k, v, site->heads, &o, out);
    if (s != STEM_OK) return stem_error_context(s, "%s", site->name);
    return STEM_OK;
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

int64_t stem_invert_frames_for_budget(const stem_pipeline *p, const stem_invert_options *o, int64_t frames,
                                      int64_t h, int64_t w, size_t mem_bytes, size_t *needed_all) {
    const stem_unet_config *c = stem_unet_get_config(p->unet);
    size_t per_frame = (size_t)40 * (size_t)c->block_out_channels[0] * (size_t)(h * w) * stem_dtype_size(p->dtype);
    *needed_all = per_frame * (size_t)frames;
    int64_t fit = per_frame ? (int64_t)(mem_bytes / per_frame) : frames;
    stem_invert_options tmp = *o;
    tmp.unet_frames = fit < 1 ? 1 : fit;
    return frames_per_eval(&tmp, frames);
}

/* The shared loop: S UNet evaluations, each followed by a DDIM update of x. */
static stem_status run_ddim_loop(stem_pipeline *p, const stem_tensor *context, const stem_invert_options *o,
                                 stem_phase phase, int first_step, stem_tensor *x, stem_step_fn on_step, void *user) {
    stem_ddim ddim;
    STEM_TRY(stem_ddim_init(&ddim, &p->schedule, o->steps));
    attention_state st = {.sa = o->sa, .phase = phase};
    stem_unet_hooks hooks = {.self_attention = stem_attention_hook, .self_attention_user = &st};
    stem_tensor eps = {0}, next = {0};
    stem_status s = stem_tensor_new(p->be, x->dtype, x->ndim, x->shape, &eps);
    if (s == STEM_OK) s = stem_tensor_new(p->be, x->dtype, x->ndim, x->shape, &next);
    const int64_t F = x->shape[0], per = frames_per_eval(o, F);
    for (int i = first_step; i < o->steps && s == STEM_OK; i++) {
        /* inversion walks the timesteps upwards (1 .. 981), sampling downwards */
        int t = phase == STEM_PHASE_INVERSION ? ddim.timesteps[o->steps - 1 - i] : ddim.timesteps[i];
        float tf = (float)t;
        st.step = i;
        /* the UNet over slices of frames (all of them unless the attention allows less) */
        for (int64_t f0 = 0; f0 < F && s == STEM_OK; f0 += per) {
            int64_t n = F - f0 < per ? F - f0 : per;
            stem_tensor xs, es;
            s = stem_tensor_narrow0(x, f0, n, &xs);
            if (s == STEM_OK) s = stem_tensor_narrow0(&eps, f0, n, &es);
            st.sa.em.chunk = o->sa.scope == STEM_SCOPE_CHUNK ? (uint32_t)(f0 / o->sa.batch_size) : 0;
            if (s == STEM_OK) s = stem_unet_forward(p->unet, p->arena, &xs, &tf, 1, context, &hooks, &es);
        }
        if (s == STEM_OK)
            s = phase == STEM_PHASE_INVERSION ? stem_ddim_invert_step(&ddim, t, x, &eps, &next)
                                              : stem_ddim_sample_step(&ddim, t, x, &eps, &next);
        if (s == STEM_OK) s = stem_tensor_copy(&next, x);
        if (s == STEM_OK && on_step) s = on_step(user, phase, i, o->steps, t, x);
        if (s != STEM_OK) stem_error_context(s, "%s step %d (t = %d)", phase == STEM_PHASE_INVERSION ? "inversion" : "reconstruction", i, t);
    }
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
