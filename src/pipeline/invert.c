#include "pipeline/invert.h"

#include <string.h>

void stem_invert_options_default(stem_invert_options *o) {
    memset(o, 0, sizeof *o);
    o->steps = 50;
    stem_sa_options_default(&o->sa);
}

/* ---- layer-major: what attn1 keeps of all frames ------------------------------------------ */

/* With scope video (stem, inflated) and the UNet in slices of frames, each attn1 site
 * gathers the keys/values of every frame (phase 1), then every slice's queries attend to
 * the scope: the EM bases of all frames (stem) or all frames' tokens (inflated). The
 * buffers come from the pipeline's arena, sized for the largest site, reused by all. */
typedef struct scope_store {
    stem_tensor k, v;             /* flat [F * max(N*C)]: one site's keys/values, all frames */
    stem_tensor k_base, v_base;   /* flat [M * max C]: its EM bases (stem) */
    stem_tensor k_scope, v_scope; /* what queries attend to: [1, M, C] bases or [1, F*N, C] tokens */
    int site;                     /* the attn1 site k_scope/v_scope belong to, -1: none yet */
} scope_store;

/* What the self-attention hooks need to set the EM counter words of each call. */
typedef struct attention_state {
    stem_sa_options sa;
    stem_phase phase;
    int step;
    scope_store store; /* layer-major only */
} attention_state;

/* Whether every attn1 needs the keys/values of all frames at once. */
static bool attention_spans_video(const stem_sa_options *sa) {
    return sa->mode != STEM_SA_FRAME && sa->scope == STEM_SCOPE_VIDEO;
}

bool stem_invert_layer_major(const stem_invert_options *o, int64_t frames) {
    return attention_spans_video(&o->sa) && o->unet_frames > 0 && o->unet_frames < frames;
}

/* The largest attn1 token stream on an h x w latent: max over levels of N * C (an upper
 * bound: not every level has attention), and the largest C. */
static int64_t largest_site_elements(const stem_unet *u, int64_t h, int64_t w, int64_t *max_channels) {
    const stem_unet_config *c = stem_unet_get_config(u);
    int64_t hs[STEM_UNET_MAX_LEVELS], ws[STEM_UNET_MAX_LEVELS], most = 0;
    *max_channels = 0;
    for (int l = stem_unet_level_sizes(u, h, w, hs, ws) - 1; l >= 0; l--) {
        int64_t C = c->block_out_channels[l];
        if (C * hs[l] * ws[l] > most) most = C * hs[l] * ws[l];
        if (C > *max_channels) *max_channels = C;
    }
    return most;
}

/* The store for F frames of h x w latents, from the arena (released by the caller's reset). */
static stem_status scope_store_alloc(stem_pipeline *p, const stem_sa_options *sa, int64_t F, int64_t h, int64_t w,
                                     scope_store *sc) {
    memset(sc, 0, sizeof *sc);
    sc->site = -1;
    int64_t max_c, kv = F * largest_site_elements(p->unet, h, w, &max_c), bases = sa->em.bases * max_c;
    STEM_TRY(stem_arena_tensor(p->arena, p->dtype, 1, &kv, &sc->k));
    STEM_TRY(stem_arena_tensor(p->arena, p->dtype, 1, &kv, &sc->v));
    if (sa->mode != STEM_SA_STEM) return STEM_OK;
    STEM_TRY(stem_arena_tensor(p->arena, p->dtype, 1, &bases, &sc->k_base));
    return stem_arena_tensor(p->arena, p->dtype, 1, &bases, &sc->v_base);
}

/* The first a*b*c elements of a flat store as [a, b, c]. */
static stem_status store_view(const stem_tensor *flat, int64_t a, int64_t b, int64_t c, stem_tensor *view) {
    stem_tensor head;
    int64_t shape[3] = {a, b, c};
    STEM_TRY(stem_tensor_narrow0(flat, 0, a * b * c, &head));
    return stem_tensor_reshape(&head, 3, shape, view);
}

/* The EM options of one site: counter words (layer, phase, step, chunk) as doc/algorithm.md §6 sets them. */
static stem_sa_options site_options(const attention_state *st, const stem_attn_site *site) {
    stem_sa_options o = st->sa;
    o.em.layer = (uint32_t)site->index;
    o.em.phase = (uint32_t)st->phase;
    o.em.step = (uint32_t)st->step;
    return o;
}

/* The scope of the last collected site, once every frame is in: the EM bases of all
 * F frames (stem, em.chunk = 0 as in the all-frames evaluation) or their tokens. */
static stem_status finish_scope(attention_state *st, const stem_attn_site *site, const stem_tensor *k_all,
                                const stem_tensor *v_all) {
    scope_store *sc = &st->store;
    const int64_t F = site->frames_total, N = site->tokens, C = site->channels;
    if (st->sa.mode == STEM_SA_INFLATED) {
        STEM_TRY(store_view(&sc->k, 1, F * N, C, &sc->k_scope));
        STEM_TRY(store_view(&sc->v, 1, F * N, C, &sc->v_scope));
    } else {
        stem_sa_options o = site_options(st, site);
        o.em.chunk = 0;
        STEM_TRY(store_view(&sc->k_base, 1, o.em.bases, C, &sc->k_scope));
        STEM_TRY(store_view(&sc->v_base, 1, o.em.bases, C, &sc->v_scope));
        STEM_TRY(stem_sa_bases(k_all, v_all, site->heads, &o.em, &sc->k_scope, &sc->v_scope));
    }
    sc->site = site->index;
    return STEM_OK;
}

/* Phase 1 of each attn1 (layer-major): the slice's k, v [n, N, C] go to rows frame0 ..
 * of the store [F, N, C]; after the last slice, the scope is computed. */
static stem_status collect_hook(void *user, const stem_attn_site *site, const stem_tensor *k, const stem_tensor *v) {
    attention_state *st = user;
    scope_store *sc = &st->store;
    const int64_t F = site->frames_total, N = site->tokens, C = site->channels;
    if (F * N * C > stem_numel(&sc->k))
        return stem_fail(STEM_E_ARG, "%s: %lld x %lld x %lld keys exceed the layer-major store", site->name,
                         (long long)F, (long long)N, (long long)C);
    stem_tensor k_all, v_all, k_rows, v_rows;
    STEM_TRY(store_view(&sc->k, F, N, C, &k_all));
    STEM_TRY(store_view(&sc->v, F, N, C, &v_all));
    STEM_TRY(stem_tensor_narrow0(&k_all, site->frame0, site->batch, &k_rows));
    STEM_TRY(stem_tensor_narrow0(&v_all, site->frame0, site->batch, &v_rows));
    STEM_TRY(stem_tensor_copy(k, &k_rows));
    STEM_TRY(stem_tensor_copy(v, &v_rows));
    sc->site = -1;
    if (site->frame0 + site->batch < F) return STEM_OK;
    stem_status s = finish_scope(st, site, &k_all, &v_all);
    if (s != STEM_OK) return stem_error_context(s, "%s", site->name);
    return STEM_OK;
}

/* Phase 2 (layer-major): the slice's queries q [n, N, C] attend to the site's scope. */
static stem_status attend_hook(void *user, const stem_attn_site *site, const stem_tensor *q, const stem_tensor *k,
                               const stem_tensor *v, stem_tensor *out) {
    const attention_state *st = user;
    (void)k;
    (void)v; /* NULL: collected in phase 1 */
    if (st->store.site != site->index)
        return stem_fail(STEM_E_ARG, "%s: queries before all frames' keys/values were collected", site->name);
    stem_status s = stem_sa_attend(q, &st->store.k_scope, &st->store.v_scope, site->heads, out);
    if (s != STEM_OK) return stem_error_context(s, "%s", site->name);
    return STEM_OK;
}

/* ---- frame-major: every attn1 on the frames of one UNet evaluation ------------------------ */

/* The UNet's attn1 hook when one evaluation holds whole scopes (all frames, or whole
 * chunks): q, k, v [n, N, C] of the same frames. */
static stem_status stem_attention_hook(void *user, const stem_attn_site *site, const stem_tensor *q,
                                       const stem_tensor *k, const stem_tensor *v, stem_tensor *out) {
    const attention_state *st = user;
    stem_sa_options o = site_options(st, site);
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
    if (!attention_spans_video(&o->sa)) {
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
    int64_t max_c, kv = 2 * largest_site_elements(p->unet, h, w, &max_c);
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
    attention_state st = {.sa = o->sa, .phase = phase};
    stem_unet_hooks hooks = {.self_attention = stem_attention_hook, .self_attention_user = &st};
    if (layer_major) {
        hooks.self_attention = attend_hook;
        hooks.self_attention_collect = collect_hook;
    }
    size_t mark = stem_arena_mark(p->arena);
    stem_tensor eps = {0}, next = {0};
    stem_status s = stem_tensor_new(p->be, x->dtype, x->ndim, x->shape, &eps);
    if (s == STEM_OK) s = stem_tensor_new(p->be, x->dtype, x->ndim, x->shape, &next);
    if (s == STEM_OK && layer_major) s = scope_store_alloc(p, &o->sa, F, x->shape[2], x->shape[3], &st.store);
    for (int i = first_step; i < o->steps && s == STEM_OK; i++) {
        /* inversion walks the timesteps upwards (1 .. 981), sampling downwards */
        int t = phase == STEM_PHASE_INVERSION ? ddim.timesteps[o->steps - 1 - i] : ddim.timesteps[i];
        float tf = (float)t;
        st.step = i;
        for (int64_t f0 = 0; f0 < F && s == STEM_OK; f0 += per) {
            int64_t n = F - f0 < per ? F - f0 : per;
            stem_tensor xs, es;
            s = stem_tensor_narrow0(x, f0, n, &xs);
            if (s == STEM_OK) s = stem_tensor_narrow0(&eps, f0, n, &es);
            st.sa.em.chunk = o->sa.scope == STEM_SCOPE_CHUNK ? (uint32_t)(f0 / o->sa.batch_size) : 0;
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
