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
    for (int i = first_step; i < o->steps && s == STEM_OK; i++) {
        /* inversion walks the timesteps upwards (1 .. 981), sampling downwards */
        int t = phase == STEM_PHASE_INVERSION ? ddim.timesteps[o->steps - 1 - i] : ddim.timesteps[i];
        float tf = (float)t;
        st.step = i;
        s = stem_unet_forward(p->unet, p->arena, x, &tf, 1, context, &hooks, &eps);
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
