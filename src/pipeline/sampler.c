/* The DDIM loop and frame batching (see sampler.h). */
#include "pipeline/sampler.h"

#include "stem/stem_sa.h"

const char *stem_phase_name(stem_phase phase) {
    switch (phase) {
    case STEM_PHASE_INVERSION: return "inversion";
    case STEM_PHASE_RECONSTRUCTION: return "reconstruction";
    case STEM_PHASE_EDITING: return "editing";
    }
    return "?";
}

int stem_sampler_timestep(const stem_ddim *ddim, stem_sampler_dir dir, int step) {
    /* ddim->timesteps are descending (sampling order): inversion walks them backwards */
    return dir == STEM_SAMPLER_INVERT ? ddim->timesteps[ddim->steps - 1 - step] : ddim->timesteps[step];
}

stem_status stem_sampler_run(const stem_sampler_loop *l, int first_step, stem_tensor *x) {
    const stem_ddim *ddim = l->ddim;
    const int steps = ddim->steps;
    stem_tensor eps = {0}, next = {0};
    stem_status s = stem_tensor_new(x->backend, x->dtype, x->ndim, x->shape, &eps);
    if (s == STEM_OK) s = stem_tensor_new(x->backend, x->dtype, x->ndim, x->shape, &next);
    for (int i = first_step; i < steps && s == STEM_OK; i++) {
        const int t = stem_sampler_timestep(ddim, l->dir, i);
        s = l->eps(l->eps_user, i, t, x, &eps);
        if (s == STEM_OK)
            s = l->dir == STEM_SAMPLER_INVERT ? stem_ddim_invert_step(ddim, t, x, &eps, &next)
                                              : stem_ddim_sample_step(ddim, t, x, &eps, &next);
        if (s == STEM_OK) s = stem_tensor_copy(&next, x);
        if (s == STEM_OK && l->on_step) {
            s = l->on_step(l->user, l->phase, i, steps, t, x);
            if (s != STEM_OK) break; /* its message is the caller's (e.g. "interrupted after step N") */
        }
        /* counted from 1, as the progress bar and the interruption message count */
        if (s != STEM_OK)
            stem_error_context(s, "%s step %d of %d (t = %d)", stem_phase_name(l->phase), i + 1, steps, t);
    }
    stem_tensor_free(&eps);
    stem_tensor_free(&next);
    return s;
}

/* ---- frame batching --------------------------------------------------------------------- */

void stem_frame_batching_plan(const stem_sa_options *sa, int64_t unet_frames, int64_t F, stem_frame_batching *b) {
    const int64_t want = unet_frames > 0 && unet_frames < F ? unet_frames : F;
    b->frames = F;
    b->layer_major = stem_sa_spans_video(sa) && unet_frames > 0 && unet_frames < F;
    if (sa->mode == STEM_SA_FRAME) {
        b->per_eval = want; /* frames are independent: any split */
    } else if (sa->scope == STEM_SCOPE_CHUNK && sa->batch_size > 0) {
        int64_t chunks = want / sa->batch_size; /* a chunk's frames share one EM problem */
        b->per_eval = chunks > 0 ? chunks * sa->batch_size : sa->batch_size;
    } else {
        b->per_eval = F; /* one EM problem over all frames: one evaluation */
    }
    b->slice = b->layer_major ? unet_frames : b->per_eval;
}

stem_status stem_sampler_unet_eps(void *self, int step, int t, const stem_tensor *x, stem_tensor *eps) {
    const stem_sampler_unet *u = self;
    const stem_frame_batching *b = &u->batching;
    const stem_unet_hooks none = {.branches = 1};
    const stem_unet_hooks *hooks = u->hooks ? u->hooks : &none;
    const float tf = (float)t;
    const int64_t F = x->shape[0];
    stem_status s = STEM_OK;
    for (int64_t f0 = 0; f0 < F && s == STEM_OK; f0 += b->per_eval) {
        const int64_t n = F - f0 < b->per_eval ? F - f0 : b->per_eval;
        stem_tensor xs, es;
        s = stem_tensor_narrow0(x, f0, n, &xs);
        if (s == STEM_OK) s = stem_tensor_narrow0(eps, f0, n, &es);
        if (u->before_eval) u->before_eval(u->before_user, step, f0, n);
        if (s == STEM_OK)
            s = stem_unet_forward_sliced(u->p->unet, u->p->arena, &xs, &tf, 1, u->context, hooks, b->slice, &es);
    }
    return s;
}
