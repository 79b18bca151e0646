/* The TokenFlow editing loop over a whole video (see edit.h, doc/algorithm.md §7). */
#include "pipeline/edit.h"

/* Layer: pipeline (doc/architecture.md); the hooks are src/edit's. */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/ops.h"
#include "core/philox.h"
#include "edit/freeu.h"
#include "edit/tokenflow.h"

void stem_edit_options_default(stem_edit_options *o) {
    memset(o, 0, sizeof *o);
    o->steps = 50;
    o->guidance_scale = 7.5;
    o->pnp_attn_t = 0.5;
    o->pnp_f_t = 0.8;
    o->batch_size = 8;
    o->tail = STEM_EDIT_TAIL_EVERY;
    o->attention = STEM_EDIT_ATTN_EXTENDED;
    o->seed = 1;
    o->em = (stem_em_options){.bases = 256, .iters = 5, .tau = 0.01f, .block = 65536, .seed = 1};
    o->freeu = (stem_freeu_options){.enabled = true, .b1 = 1.2f, .b2 = 1.4f, .s1 = 0.9f, .s2 = 0.2f,
                                    .gate1 = 1280, .gate2 = 640};
}

stem_status stem_edit_options_check(const stem_edit_options *o) {
    if (o->steps < 1 || o->steps > 1000) return stem_fail(STEM_E_ARG, "edit: steps %d is not in 1..1000", o->steps);
    if (!isfinite(o->guidance_scale) || o->guidance_scale < 0 || o->guidance_scale > 100)
        return stem_fail(STEM_E_ARG, "edit: guidance scale %g is not in [0, 100]", o->guidance_scale);
    if (!(o->pnp_attn_t >= 0 && o->pnp_attn_t <= 1))
        return stem_fail(STEM_E_ARG, "edit: pnp_attn_t %g is not a fraction in [0, 1]", o->pnp_attn_t);
    if (!(o->pnp_f_t >= 0 && o->pnp_f_t <= 1))
        return stem_fail(STEM_E_ARG, "edit: pnp_f_t %g is not a fraction in [0, 1]", o->pnp_f_t);
    if (o->batch_size < 1 || o->batch_size > 4096)
        return stem_fail(STEM_E_ARG, "edit: batch size %lld is not in 1..4096", (long long)o->batch_size);
    if (o->unet_frames < 0) return stem_fail(STEM_E_ARG, "edit: frames per UNet evaluation must be >= 0");
    const float f[4] = {o->freeu.b1, o->freeu.b2, o->freeu.s1, o->freeu.s2};
    static const char *const names[4] = {"b1", "b2", "s1", "s2"};
    for (int i = 0; i < 4; i++)
        if (o->freeu.enabled && !(isfinite(f[i]) && fabsf(f[i]) <= 100))
            return stem_fail(STEM_E_ARG, "edit: FreeU %s = %g is not a finite factor in [-100, 100]", names[i],
                             (double)f[i]);
    if (o->attention == STEM_EDIT_ATTN_STEM) {
        stem_em_options em = o->em;
        em.seed = o->seed;
        stem_status s = stem_em_options_check(&em);
        if (s != STEM_OK) return stem_error_context(s, "--edit-attention stem");
    }
    return STEM_OK;
}

stem_status stem_edit_attention_parse(const char *s, stem_edit_attention *out) {
    if (strcmp(s, "extended") == 0) *out = STEM_EDIT_ATTN_EXTENDED;
    else if (strcmp(s, "stem") == 0) *out = STEM_EDIT_ATTN_STEM;
    else return stem_fail(STEM_E_ARG, "edit attention '%s': expected extended or stem", s);
    return STEM_OK;
}

stem_status stem_edit_tail_parse(const char *s, stem_edit_tail *out) {
    if (strcmp(s, "every") == 0) *out = STEM_EDIT_TAIL_EVERY;
    else if (strcmp(s, "drop") == 0) *out = STEM_EDIT_TAIL_DROP;
    else return stem_fail(STEM_E_ARG, "tail '%s': expected every or drop", s);
    return STEM_OK;
}

const char *stem_edit_attention_name(stem_edit_attention a) { return a == STEM_EDIT_ATTN_STEM ? "stem" : "extended"; }
const char *stem_edit_tail_name(stem_edit_tail t) { return t == STEM_EDIT_TAIL_DROP ? "drop" : "every"; }

int64_t stem_edit_frame_count(const stem_edit_options *o, int64_t frames) {
    if (o->tail == STEM_EDIT_TAIL_DROP && o->batch_size > 0) return frames - frames % o->batch_size;
    return frames;
}

int64_t stem_edit_keyframe(uint64_t seed, int step, int64_t chunk, int64_t first, int64_t length) {
    stem_philox4 ctr = {{(uint32_t)chunk, 0, 0, (3u << 24) | ((uint32_t)step << 12)}};
    stem_philox4 r = stem_philox4x32_10(ctr, (uint32_t)seed, (uint32_t)(seed >> 32));
    return first + (int64_t)(r.v[0] % (uint32_t)length);
}

stem_status stem_edit_initial_latents(const stem_pipeline *p, int steps, const stem_tensor *z0,
                                      const stem_tensor *x_inv_T, stem_tensor *x) {
    stem_ddim ddim;
    STEM_TRY(stem_ddim_init(&ddim, &p->schedule, steps));
    const int T = ddim.timesteps[0];
    double a, b;
    stem_tensor eps = {0};
    stem_status s = stem_ddim_coefficients(&ddim, STEM_DDIM_ADD_NOISE, T, &a, &b);
    if (s == STEM_OK) s = stem_tensor_new(z0->backend, z0->dtype, z0->ndim, z0->shape, &eps);
    /* eps = (x_inv(T) - sqrt(abar_T) z0) / sqrt(1 - abar_T) */
    if (s == STEM_OK) s = stem_affine(z0, (float)-a, 0.0f, &eps);
    if (s == STEM_OK) s = stem_binary(STEM_BINARY_ADD, x_inv_T, &eps, &eps);
    if (s == STEM_OK) s = stem_affine(&eps, (float)(1.0 / b), 0.0f, &eps);
    if (s == STEM_OK) s = stem_ddim_add_noise(&ddim, T, z0, &eps, x);
    stem_tensor_free(&eps);
    stem_ddim_free(&ddim);
    return s;
}

/* ---- the loop --------------------------------------------------------------------------------- */

typedef struct edit_run {
    stem_pipeline *p;
    const stem_edit_inputs *in;
    const stem_edit_options *o;
    const stem_edit_observer *obs;
    stem_tokenflow *tf;
    stem_freeu_hooks freeu;
    stem_unet_hook_set sets[2];
    stem_unet_hooks hooks;
    int64_t frames, chunks;
    stem_tensor sample, context, eps; /* [3 max(K, B), ...]: one evaluation's batch */
    stem_tensor guided;               /* [B, 4, h, w] */
    stem_tensor *x;                   /* [Fe, 4, h, w]: the latents being edited */
    stem_tensor next;                 /* [Fe, 4, h, w]: after this step */
} edit_run;

static stem_status observe_index(void *user, int step, int block, int64_t first, int64_t n, int which,
                                 stem_tensor *idx) {
    const stem_edit_observer *obs = user;
    (void)n;
    return obs->token_flow(obs->user, step, block, first, which, idx);
}

/* The first 3 n rows of a batch buffer: [3 n, ...] */
static stem_status batch_rows(const stem_tensor *buf, int64_t n, stem_tensor *out) {
    return stem_tensor_narrow0(buf, 0, 3 * n, out);
}

/* contexts [3 n, 77, X]: rows of branch b are context b (source, negative, target) */
static stem_status fill_contexts(edit_run *r, int64_t n, stem_tensor *ctx) {
    const stem_tensor *c[3] = {r->in->context_source, r->in->context_negative, r->in->context_target};
    STEM_TRY(batch_rows(&r->context, n, ctx));
    for (int64_t b = 0; b < 3; b++)
        for (int64_t j = 0; j < n; j++) {
            stem_tensor row;
            STEM_TRY(stem_tensor_narrow0(ctx, b * n + j, 1, &row));
            STEM_TRY(stem_tensor_copy(c[b], &row));
        }
    return STEM_OK;
}

/* One UNet evaluation of [source | uncond | cond] x n frames whose sample rows are filled. */
static stem_status evaluate(edit_run *r, int64_t n, int t, stem_tensor *sample, stem_tensor *eps) {
    stem_tensor ctx;
    STEM_TRY(fill_contexts(r, n, &ctx));
    r->sets[0] = stem_tokenflow_hook_set(r->tf); /* two-phase or not, per pass */
    const float tf = (float)t;
    const int64_t slice = r->o->unet_frames > 0 && r->o->unet_frames < n ? r->o->unet_frames : n;
    return stem_unet_forward_sliced(r->p->unet, r->p->arena, sample, &tf, 1, &ctx, &r->hooks, slice, eps);
}

/* The pivotal pass of step s: the keyframes' batch; its eps is discarded. */
static stem_status pivotal_pass(edit_run *r, int s, int t) {
    const int64_t K = r->chunks, B = r->o->batch_size, F = r->frames;
    int64_t picks[4096];
    stem_tensor sample, eps, row, xk;
    STEM_TRY(batch_rows(&r->sample, K, &sample));
    STEM_TRY(batch_rows(&r->eps, K, &eps));
    for (int64_t c = 0; c < K; c++) {
        const int64_t first = c * B, len = F - first < B ? F - first : B;
        picks[c] = stem_edit_keyframe(r->o->seed, s, c, first, len);
        STEM_TRY(stem_tensor_narrow0(&sample, c, 1, &row));
        STEM_TRY(r->in->source(r->in->source_user, r->o->steps - 1 - s, picks[c], 1, &row));
        for (int64_t b = 1; b < 3; b++) {
            STEM_TRY(stem_tensor_narrow0(&sample, b * K + c, 1, &row));
            STEM_TRY(stem_tensor_narrow0(r->x, picks[c], 1, &xk));
            STEM_TRY(stem_tensor_copy(&xk, &row));
        }
    }
    if (r->obs && r->obs->keyframes) STEM_TRY(r->obs->keyframes(r->obs->user, s, picks, K));
    stem_tokenflow_set_pivotal(r->tf);
    return evaluate(r, K, t, &sample, &eps);
}

/* Chunk c's normal pass at step s: eps of its frames with guidance, then the DDIM step
 * into r->next (x itself stays the step's input for the later chunks). */
static stem_status normal_pass(edit_run *r, const stem_ddim *ddim, int s, int t, int64_t c) {
    const int64_t B = r->o->batch_size, first = c * B, n = r->frames - first < B ? r->frames - first : B;
    stem_tensor sample, eps, rows, xs, eu, ec, e, next;
    STEM_TRY(batch_rows(&r->sample, n, &sample));
    STEM_TRY(batch_rows(&r->eps, n, &eps));
    STEM_TRY(stem_tensor_narrow0(&sample, 0, n, &rows));
    STEM_TRY(r->in->source(r->in->source_user, r->o->steps - 1 - s, first, n, &rows));
    STEM_TRY(stem_tensor_narrow0(r->x, first, n, &xs));
    for (int64_t b = 1; b < 3; b++) {
        STEM_TRY(stem_tensor_narrow0(&sample, b * n, n, &rows));
        STEM_TRY(stem_tensor_copy(&xs, &rows));
    }
    stem_tokenflow_set_chunk(r->tf, c, first, n);
    STEM_TRY(evaluate(r, n, t, &sample, &eps));
    /* eps = eps_u + g (eps_c - eps_u) */
    STEM_TRY(stem_tensor_narrow0(&eps, n, n, &eu));
    STEM_TRY(stem_tensor_narrow0(&eps, 2 * n, n, &ec));
    STEM_TRY(stem_tensor_narrow0(&r->guided, 0, n, &e));
    STEM_TRY(stem_binary(STEM_BINARY_SUB, &ec, &eu, &e));
    STEM_TRY(stem_affine(&e, (float)r->o->guidance_scale, 0.0f, &e));
    STEM_TRY(stem_binary(STEM_BINARY_ADD, &eu, &e, &e));
    STEM_TRY(stem_tensor_narrow0(&r->next, first, n, &next));
    return stem_ddim_sample_step(ddim, t, &xs, &e, &next);
}

static stem_status edit_buffers(edit_run *r) {
    const stem_tensor *x = r->x;
    const stem_tensor *ctx = r->in->context_source;
    const int64_t most = r->chunks > r->o->batch_size ? r->chunks : r->o->batch_size;
    int64_t s[4] = {3 * most, x->shape[1], x->shape[2], x->shape[3]};
    int64_t c[3] = {3 * most, ctx->shape[1], ctx->shape[2]};
    int64_t g[4] = {r->o->batch_size, x->shape[1], x->shape[2], x->shape[3]};
    stem_backend *be = x->backend;
    STEM_TRY(stem_tensor_new(be, x->dtype, 4, s, &r->sample));
    STEM_TRY(stem_tensor_new(be, x->dtype, 4, s, &r->eps));
    STEM_TRY(stem_tensor_new(be, ctx->dtype, 3, c, &r->context));
    STEM_TRY(stem_tensor_new(be, x->dtype, 4, g, &r->guided));
    return stem_tensor_new(be, x->dtype, x->ndim, x->shape, &r->next);
}

/* One arena block for the largest evaluation (src/models/unet_memory.c's replay of its
 * allocations, plus room for the hooks' scratch), so that the arena peaks at the plan and
 * not at the plan plus block-boundary waste. Skipped when the caller has the arena in use. */
static void reserve_arena(edit_run *r) {
    const stem_tensor *x = r->x;
    const int64_t h = x->shape[2], w = x->shape[3], K = r->chunks;
    const int64_t n = r->frames < r->o->batch_size ? r->frames : r->o->batch_size;
    const int64_t ctx = r->in->context_source->shape[1];
    size_t need = stem_unet_activation_bytes(r->p->unet, 3 * n, h, w, ctx);
    const bool sliced = r->o->unet_frames > 0 && r->o->unet_frames < K;
    size_t piv = sliced ? stem_unet_activation_bytes_sliced(r->p->unet, 3 * K, 3, r->o->unet_frames, h, w, ctx, true)
                        : stem_unet_activation_bytes(r->p->unet, 3 * K, h, w, ctx);
    if (piv > need) need = piv;
    if (stem_arena_mark(r->p->arena) == 0 && stem_arena_reserve(r->p->arena, need + need / 32 + ((size_t)4 << 20)) != STEM_OK)
        stem_clear_error();
}

static stem_status check_inputs(const stem_pipeline *p, const stem_edit_inputs *in, const stem_tensor *x) {
    const stem_tensor *c[3] = {in->context_source, in->context_negative, in->context_target};
    static const char *const names[3] = {"inversion prompt", "negative prompt", "prompt"};
    if (!in->source) return stem_fail(STEM_E_ARG, "edit: no source of the inversion's latents");
    if (x->ndim != 4 || x->shape[0] < 1 || x->backend != p->be || x->dtype != p->dtype)
        return stem_fail(STEM_E_ARG, "edit: the latents must be [F, 4, h, w] on the pipeline's backend and dtype");
    for (int i = 0; i < 3; i++)
        if (!c[i] || c[i]->ndim != 3 || c[i]->shape[0] != 1 || !stem_same_shape(c[i], c[0]))
            return stem_fail(STEM_E_SHAPE, "edit: the %s's context must be [1, 77, X] like the inversion prompt's",
                             names[i]);
    return STEM_OK;
}

stem_status stem_edit_latents(stem_pipeline *p, const stem_edit_inputs *in, const stem_edit_options *o,
                              int first_step, stem_tensor *x, const stem_edit_observer *obs,
                              stem_edit_step_fn on_step, void *user) {
    STEM_TRY(stem_edit_options_check(o));
    STEM_TRY(check_inputs(p, in, x));
    edit_run r = {.p = p, .in = in, .o = o, .obs = obs, .x = x, .frames = x->shape[0]};
    r.chunks = (r.frames + o->batch_size - 1) / o->batch_size;
    if (r.chunks > 4096)
        return stem_fail(STEM_E_ARG, "edit: %lld chunks of %lld frames (at most 4096; raise --batch-size)",
                         (long long)r.chunks, (long long)o->batch_size);
    stem_ddim ddim;
    STEM_TRY(stem_ddim_init(&ddim, &p->schedule, o->steps));
    stem_tokenflow_config tc = {.keyframes = r.chunks, .batch_size = o->batch_size,
                                .stem_bases = o->attention == STEM_EDIT_ATTN_STEM, .em = o->em};
    tc.em.seed = o->seed;
    tc.cache_on_host = o->cache_on_host;
    tc.two_phase = o->unet_frames > 0 && o->unet_frames < r.chunks;
    stem_status s = stem_tokenflow_create(p->unet, &tc, x->shape[2], x->shape[3], &r.tf);
    if (s == STEM_OK) s = edit_buffers(&r);
    if (s == STEM_OK) reserve_arena(&r);
    if (s == STEM_OK) {
        if (obs && obs->token_flow) stem_tokenflow_set_observer(r.tf, observe_index, (void *)obs);
        r.sets[0] = stem_tokenflow_hook_set(r.tf);
        r.freeu = (stem_freeu_hooks){.b1 = o->freeu.b1, .b2 = o->freeu.b2, .s1 = o->freeu.s1, .s2 = o->freeu.s2,
                                     .gate1 = o->freeu.gate1, .gate2 = o->freeu.gate2};
        r.sets[1] = stem_freeu_hook_set(&r.freeu);
        r.hooks = (stem_unet_hooks){.branches = 3, .sets = r.sets, .n_sets = o->freeu.enabled ? 2 : 1};
    }
    /* Q/K injection in the first floor(S pnp_attn_t) steps, conv in the first floor(S pnp_f_t) */
    const int qk_steps = (int)floor(o->steps * o->pnp_attn_t), conv_steps = (int)floor(o->steps * o->pnp_f_t);
    const int passes = 1 + (int)r.chunks;
    for (int i = first_step; i < o->steps && s == STEM_OK; i++) {
        const int t = ddim.timesteps[i];
        stem_tokenflow_set_step(r.tf, i, i < qk_steps, i < conv_steps);
        s = pivotal_pass(&r, i, t);
        if (s == STEM_OK && on_step) s = on_step(user, i, o->steps, t, 0, passes, NULL);
        for (int64_t c = 0; c < r.chunks && s == STEM_OK; c++) {
            s = normal_pass(&r, &ddim, i, t, c);
            if (s == STEM_OK && on_step) s = on_step(user, i, o->steps, t, (int)c + 1, passes, NULL);
        }
        if (s == STEM_OK) s = stem_tensor_copy(&r.next, x);
        if (s == STEM_OK && on_step) {
            s = on_step(user, i, o->steps, t, passes, passes, x);
            if (s != STEM_OK) break; /* the caller's message (e.g. interrupted) */
        }
        if (s != STEM_OK) stem_error_context(s, "editing step %d of %d (t = %d)", i + 1, o->steps, t);
    }
    stem_tokenflow_free(r.tf);
    stem_tensor_free(&r.sample);
    stem_tensor_free(&r.eps);
    stem_tensor_free(&r.context);
    stem_tensor_free(&r.guided);
    stem_tensor_free(&r.next);
    stem_ddim_free(&ddim);
    return s;
}
