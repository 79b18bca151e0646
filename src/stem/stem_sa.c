/* STEM-SA in one file: the UNet hooks that make every attn1 a STEM self-attention (or
 * frame / inflated attention), frame-major and layer-major; see stem_sa.h. */
#include "stem/stem_sa.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/host.h"
#include "core/ops.h"

/* Layer-major: what attn1 keeps of all frames. The buffers are sized for the largest
 * site and reused by all, one site at a time. */
typedef struct scope_store {
    stem_tensor k, v;             /* flat [F * max(N*C)]: one site's keys/values, all frames */
    stem_tensor k_base, v_base;   /* flat [M * max C]: its EM bases (stem) */
    stem_tensor k_scope, v_scope; /* what queries attend to: [1, M, C] bases or [1, F*N, C] tokens */
    int site;                     /* the attn1 site k_scope/v_scope belong to, -1: none yet */
} scope_store;

/* One site's deferred non-finite check (stem/em.h's stem_em_workspace.check). */
typedef struct site_check {
    bool used;          /* an EM wrote its statistics in this forward */
    int64_t heads, channels;
    const char *name;
} site_check;

struct stem_sa_hooks {
    stem_sa_options sa;   /* em.layer/phase/step/chunk set per call */
    stem_phase phase;
    int step;
    uint32_t chunk;       /* chunk index of the evaluation's first frame */
    bool layer_major;
    scope_store store;
    stem_tensor check;    /* f32 [sites * 3 * max C]: per site [3, C] k mean, k std, v mean */
    int64_t max_channels;
    int n_sites;
    site_check *sites;
};

bool stem_sa_spans_video(const stem_sa_options *sa) {
    return sa->mode != STEM_SA_FRAME && sa->scope == STEM_SCOPE_VIDEO;
}

int64_t stem_sa_site_elements(const stem_unet *u, int64_t h, int64_t w, int64_t *max_channels) {
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

/* ---- the EM options and workspace of one call ---------------------------------------- */

/* Counter words (layer, phase, step, chunk) as doc/algorithm.md §6 sets them. */
static stem_sa_options site_options(const stem_sa_hooks *h, const stem_attn_site *site) {
    stem_sa_options o = h->sa;
    o.em.layer = (uint32_t)site->index;
    o.em.phase = (uint32_t)h->phase;
    o.em.step = (uint32_t)h->step;
    o.em.chunk = h->sa.scope == STEM_SCOPE_CHUNK ? h->chunk : 0;
    return o;
}

/* Temporaries from the site's arena; statistics into the site's check slot [3, C]. */
static stem_status site_workspace(stem_sa_hooks *h, const stem_attn_site *site, stem_tensor *slot,
                                  stem_em_workspace *ws) {
    if (site->span.branches != 1)
        return stem_fail(STEM_E_ARG, "STEM self-attention takes one branch (the batch has %lld)",
                         (long long)site->span.branches);
    if (site->index < 0 || site->index >= h->n_sites || site->channels > h->max_channels)
        return stem_fail(STEM_E_ARG, "not a site of the UNet the STEM self-attention hooks were made for");
    site_check *c = &h->sites[site->index];
    stem_tensor flat;
    int64_t shape[2] = {3, site->channels};
    STEM_TRY(stem_tensor_narrow0(&h->check, site->index * 3 * h->max_channels, 3 * site->channels, &flat));
    STEM_TRY(stem_tensor_reshape(&flat, 2, shape, slot));
    c->heads = site->heads;
    c->channels = site->channels;
    c->name = site->name;
    *ws = (stem_em_workspace){.arena = site->arena, .check = slot, .check_used = &c->used};
    return STEM_OK;
}

/* forward_end: the deferred checks of every site an EM ran at, one copy to the host. */
static stem_status check_sites(void *user) {
    stem_sa_hooks *h = user;
    bool any = false;
    for (int i = 0; i < h->n_sites; i++) any |= h->sites[i].used;
    if (!any) return STEM_OK;
    stem_tensor host;
    STEM_TRY(stem_tensor_to(&h->check, stem_host(), STEM_F32, &host));
    const float *x = host.data;
    static const char *const what[3] = {"k", "k", "v"}; /* rows: k mean, k std, v mean */
    stem_status s = STEM_OK;
    for (int i = 0; i < h->n_sites && s == STEM_OK; i++) {
        site_check *c = &h->sites[i];
        for (int64_t j = 0; c->used && j < 3 * c->channels && s == STEM_OK; j++) {
            float v = x[i * 3 * h->max_channels + j];
            int64_t ch = j % c->channels, d = c->channels / c->heads;
            if (!isfinite(v))
                s = stem_fail(STEM_E_ARG,
                              "%s (step %d): em: %s has a non-finite value (NaN or Inf) in head %lld, channel %lld "
                              "(or values too large for f32 statistics)",
                              c->name, h->step, what[j / c->channels], (long long)(ch / d), (long long)(ch % d));
        }
    }
    for (int i = 0; i < h->n_sites; i++) h->sites[i].used = false;
    stem_tensor_free(&host);
    return s;
}

/* ---- frame-major: every attn1 on the frames of one UNet evaluation ------------------------ */

/* q, k, v [n, N, C] of the same frames (all, or whole chunks). */
static stem_status attention_hook(void *user, const stem_attn_site *site, const stem_tensor *q,
                                  const stem_tensor *k, const stem_tensor *v, stem_tensor *out) {
    stem_sa_hooks *h = user;
    stem_sa_options o = site_options(h, site);
    stem_tensor slot;
    stem_em_workspace ws;
    stem_status s = site_workspace(h, site, &slot, &ws);
    if (s == STEM_OK) s = stem_self_attention_ws(q, k, v, site->heads, &o, &ws, out);
    if (s != STEM_OK) return stem_error_context(s, "%s", site->name);
    return STEM_OK;
}

/* ---- layer-major: all frames' keys/values, then each slice's queries ------------------- */

/* The scope of the last collected site, once every frame is in: the EM bases of all F
 * frames (stem, em.chunk = 0 as in the all-frames evaluation) or their tokens. */
static stem_status finish_scope(stem_sa_hooks *h, const stem_attn_site *site, const stem_tensor *k_all,
                                const stem_tensor *v_all) {
    scope_store *sc = &h->store;
    const int64_t F = site->span.frames_total, N = site->tokens, C = site->channels;
    if (h->sa.mode == STEM_SA_INFLATED) {
        STEM_TRY(stem_tensor_flat_view(&sc->k, 1, F * N, C, &sc->k_scope));
        STEM_TRY(stem_tensor_flat_view(&sc->v, 1, F * N, C, &sc->v_scope));
    } else {
        stem_sa_options o = site_options(h, site);
        stem_tensor slot;
        stem_em_workspace ws;
        STEM_TRY(site_workspace(h, site, &slot, &ws)); /* the caller names the site */
        STEM_TRY(stem_tensor_flat_view(&sc->k_base, 1, o.em.bases, C, &sc->k_scope));
        STEM_TRY(stem_tensor_flat_view(&sc->v_base, 1, o.em.bases, C, &sc->v_scope));
        STEM_TRY(stem_sa_bases(k_all, v_all, site->heads, &o.em, &ws, &sc->k_scope, &sc->v_scope));
    }
    sc->site = site->index;
    return STEM_OK;
}

/* Phase 1: the slice's k, v [n, N, C] go to rows frame0 .. of the store [F, N, C]; after
 * the last slice, the scope is computed. */
static stem_status collect_hook(void *user, const stem_attn_site *site, const stem_tensor *k, const stem_tensor *v) {
    stem_sa_hooks *h = user;
    scope_store *sc = &h->store;
    const stem_unet_span *sp = &site->span;
    const int64_t F = sp->frames_total, N = site->tokens, C = site->channels;
    if (sp->branches != 1)
        return stem_fail(STEM_E_ARG, "%s: STEM self-attention takes one branch (the batch has %lld)", site->name,
                         (long long)sp->branches);
    if (F * N * C > stem_numel(&sc->k))
        return stem_fail(STEM_E_ARG, "%s: %lld x %lld x %lld keys exceed the layer-major store", site->name,
                         (long long)F, (long long)N, (long long)C);
    stem_tensor k_all, v_all, k_rows, v_rows;
    STEM_TRY(stem_tensor_flat_view(&sc->k, F, N, C, &k_all));
    STEM_TRY(stem_tensor_flat_view(&sc->v, F, N, C, &v_all));
    STEM_TRY(stem_tensor_narrow0(&k_all, sp->frame0, sp->frames, &k_rows));
    STEM_TRY(stem_tensor_narrow0(&v_all, sp->frame0, sp->frames, &v_rows));
    STEM_TRY(stem_tensor_copy(k, &k_rows));
    STEM_TRY(stem_tensor_copy(v, &v_rows));
    sc->site = -1;
    if (sp->frame0 + sp->frames < F) return STEM_OK;
    stem_status s = finish_scope(h, site, &k_all, &v_all);
    if (s != STEM_OK) return stem_error_context(s, "%s", site->name);
    return STEM_OK;
}

/* Phase 2: the slice's queries q [n, N, C] attend to the site's scope (k, v are NULL). */
static stem_status attend_hook(void *user, const stem_attn_site *site, const stem_tensor *q, const stem_tensor *k,
                               const stem_tensor *v, stem_tensor *out) {
    const stem_sa_hooks *h = user;
    (void)k;
    (void)v;
    if (h->store.site != site->index)
        return stem_fail(STEM_E_ARG, "%s: queries before all frames' keys/values were collected", site->name);
    stem_status s = stem_sa_attend(q, &h->store.k_scope, &h->store.v_scope, site->heads, out);
    if (s != STEM_OK) return stem_error_context(s, "%s", site->name);
    return STEM_OK;
}

/* ---- the hook set ------------------------------------------------------------------------ */

stem_status stem_sa_hooks_create(const stem_sa_options *sa, stem_phase phase, stem_unet *u, stem_arena *arena,
                                 int64_t frames, int64_t h, int64_t w, bool layer_major, stem_sa_hooks **out) {
    *out = NULL;
    if (layer_major && !stem_sa_spans_video(sa))
        return stem_fail(STEM_E_ARG, "stem self-attention: layer-major needs scope video with stem or inflated "
                                     "attention (got %s, %s)", stem_sa_mode_name(sa->mode),
                         stem_em_scope_name(sa->scope));
    stem_sa_hooks *hk = calloc(1, sizeof *hk);
    if (!hk) return stem_fail(STEM_E_NOMEM, "stem self-attention: out of memory");
    hk->sa = *sa;
    hk->phase = phase;
    hk->layer_major = layer_major;
    hk->store.site = -1;
    hk->n_sites = stem_unet_attn1_count(u);
    hk->sites = calloc((size_t)(hk->n_sites ? hk->n_sites : 1), sizeof *hk->sites);
    const stem_dtype dt = stem_unet_dtype(u);
    const int64_t kv = frames * stem_sa_site_elements(u, h, w, &hk->max_channels);
    const int64_t bases = sa->em.bases * hk->max_channels, check = (int64_t)hk->n_sites * 3 * hk->max_channels;
    stem_status s = hk->sites ? STEM_OK : stem_fail(STEM_E_NOMEM, "stem self-attention: out of memory");
    if (s == STEM_OK) s = stem_arena_tensor(arena, STEM_F32, 1, &check, &hk->check);
    if (s == STEM_OK && layer_major) {
        s = stem_arena_tensor(arena, dt, 1, &kv, &hk->store.k);
        if (s == STEM_OK) s = stem_arena_tensor(arena, dt, 1, &kv, &hk->store.v);
        if (s == STEM_OK && sa->mode == STEM_SA_STEM) s = stem_arena_tensor(arena, dt, 1, &bases, &hk->store.k_base);
        if (s == STEM_OK && sa->mode == STEM_SA_STEM) s = stem_arena_tensor(arena, dt, 1, &bases, &hk->store.v_base);
    }
    if (s != STEM_OK) {
        stem_sa_hooks_free(hk);
        return stem_error_context(s, "stem self-attention workspace");
    }
    *out = hk;
    return STEM_OK;
}

void stem_sa_hooks_free(stem_sa_hooks *hooks) {
    if (!hooks) return;
    free(hooks->sites);
    free(hooks);
}

void stem_sa_hooks_set_step(stem_sa_hooks *hooks, int step, uint32_t chunk) {
    hooks->step = step;
    hooks->chunk = chunk;
}

stem_unet_hook_set stem_sa_hook_set(stem_sa_hooks *hooks) {
    stem_unet_hook_set set = {.user = hooks, .self_attention = attention_hook, .forward_end = check_sites};
    if (hooks->layer_major) {
        set.self_attention = attend_hook;
        set.self_attention_collect = collect_hook;
    }
    return set;
}
