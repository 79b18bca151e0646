/* BasicTransformerBlock (diffusers 0.20.2, models/attention.py): self-attention (attn1),
 * cross-attention (attn2) and the GEGLU feed-forward, each pre-LayerNorm with a residual
 * add, on one slice of rows, with the hook points of unet_hooks.h. attn1 and attn2 are
 * one code path: they differ in where the keys/values come from (the normed hidden
 * state, or the text context) and in the weights. */
#include "core/ops.h"
#include "models/unet_internal.h"

/* Rows of the feed-forward's [rows, 8C] GEGLU projection computed at once: bounds that
 * temporary to 32M elements (128 MB in f32) however many frames are in the batch. */
#define FF_CHUNK_ELEMENTS ((int64_t)32 << 20)

/* One attention's weights and hook points. */
typedef struct attn_module {
    const unet_tblock *tb;
    const stem_attn_site *site;
    const stem_tensor *norm_w, *norm_b, *wq, *wk, *wv, *wo, *bo;
    stem_unet_tap_kind tap0; /* NORM1 or NORM2; Q, K, V, OUT follow in the same order */
} attn_module;

enum { AT_NORM, AT_Q, AT_K, AT_V, AT_OUT };

static stem_unet_tap_kind tap_kind(const attn_module *m, int which) {
    if (m->tap0 == STEM_TAP_NORM1) return (stem_unet_tap_kind)(STEM_TAP_NORM1 + which);
    return (stem_unet_tap_kind)(STEM_TAP_NORM2 + which);
}

static attn_module module_of(const unet_tblock *tb, const stem_attn_site *site) {
    if (site->kind == STEM_ATTN_SELF)
        return (attn_module){tb, site, &tb->norm1_w, &tb->norm1_b, &tb->q1, &tb->k1, &tb->v1, &tb->o1_w, &tb->o1_b,
                             STEM_TAP_NORM1};
    return (attn_module){tb, site, &tb->norm2_w, &tb->norm2_b, &tb->q2, &tb->k2, &tb->v2, &tb->o2_w, &tb->o2_b,
                         STEM_TAP_NORM2};
}

/* The tap `which` on x, when some set has it on. */
static stem_status attn_tap(unet_run *r, const attn_module *m, int which, stem_tensor *x) {
    stem_unet_tap_kind kind = tap_kind(m, which);
    if (!unet_tap_on(r, kind)) return STEM_OK;
    const stem_attn_site *site = m->site;
    stem_unet_tap tap = {.kind = kind, .name = m->tb->name, .part = site->part, .block = site->block,
                         .layer = site->attention, .level = site->level, .attn = site, .span = site->span, .x = x,
                         .arena = r->arena};
    return unet_tap(r, &tap);
}

/* n = norm(hidden)   [n, N, C]; the NORM tap fires when `tap`. */
static stem_status attn_norm(unet_run *r, const attn_module *m, const stem_tensor *hidden, bool tap, stem_tensor *n) {
    STEM_TRY(unet_tmp(r, 3, hidden->shape, n));
    STEM_TRY(stem_layer_norm(hidden, m->norm_w, m->norm_b, 1e-5f, n));
    return tap ? attn_tap(r, m, AT_NORM, n) : STEM_OK;
}

/* y = x w^T (to_q / to_k / to_v, no bias in SD), then the tap `which`   [n, tokens, C] */
static stem_status attn_project(unet_run *r, const attn_module *m, const stem_tensor *x, const stem_tensor *w,
                                int which, stem_tensor *y) {
    int64_t shape[3] = {x->shape[0], x->shape[1], w->shape[0]};
    STEM_TRY(unet_tmp(r, 3, shape, y));
    STEM_TRY(stem_linear(x, w, NULL, y));
    return attn_tap(r, m, which, y);
}

/* a = the core of the last set that has one (or the default) on q [n, N, C]; k, v NULL
 * in phase 2 of a two-phase attn1. The probabilities first, when some set asks. */
static stem_status attn_core(unet_run *r, const attn_module *m, const stem_tensor *q, const stem_tensor *k,
                             const stem_tensor *v, stem_tensor *a) {
    const stem_attn_site *site = m->site;
    STEM_TRY(unet_probs(r, site, q, k));
    STEM_TRY(unet_tmp(r, 3, q->shape, a));
    const stem_unet_hook_set *set = unet_core_set(r, site->kind);
    stem_status s = set ? (site->kind == STEM_ATTN_SELF ? set->self_attention : set->cross_attention)(
                              set->user, site, q, k, v, a)
                        : stem_attention_default(NULL, site, q, k, v, a);
    if (s != STEM_OK) return stem_error_context(s, "attention hook at %s", site->name);
    return STEM_OK;
}

/* hidden += o, with the OUT tap before the residual add   [n, N, C] */
static stem_status attn_residual(unet_run *r, const attn_module *m, stem_tensor *o, stem_tensor *hidden) {
    STEM_TRY(attn_tap(r, m, AT_OUT, o));
    return stem_binary(STEM_BINARY_ADD, hidden, o, hidden);
}

/* hidden += to_out(a)   [n, N, C] */
static stem_status attn_output(unet_run *r, const attn_module *m, const stem_tensor *a, stem_tensor *hidden) {
    stem_tensor o;
    STEM_TRY(unet_tmp(r, 3, a->shape, &o));
    STEM_TRY(stem_linear(a, m->wo, m->bo, &o));
    return attn_residual(r, m, &o, hidden);
}

/* Whether a set replaces this call; then hidden += its output. */
static stem_status attn_replaced(unet_run *r, const attn_module *m, const stem_tensor *n, stem_tensor *hidden,
                                 bool *replaced) {
    size_t mark = stem_arena_mark(r->arena);
    stem_tensor o;
    STEM_TRY(unet_tmp(r, 3, n->shape, &o));
    STEM_TRY(unet_replace(r, m->site, n, &o, replaced));
    if (*replaced) return attn_residual(r, m, &o, hidden);
    stem_arena_reset(r->arena, mark);
    return STEM_OK;
}

/* One phase: hidden [n, N, C] += attention(norm(hidden)), keys/values within the slice:
 * from the normed hidden state (attn1) or the slice's context rows (attn2). */
static stem_status attention_part(unet_run *r, const attn_module *m, stem_tensor *hidden) {
    stem_tensor n, q, k, v, a;
    bool replaced;
    STEM_TRY(attn_norm(r, m, hidden, true, &n));
    STEM_TRY(attn_replaced(r, m, &n, hidden, &replaced));
    if (replaced) return STEM_OK;
    const stem_tensor *kv_in = m->site->kind == STEM_ATTN_SELF ? &n : &r->context;
    STEM_TRY(attn_project(r, m, &n, m->wq, AT_Q, &q));
    STEM_TRY(attn_project(r, m, kv_in, m->wk, AT_K, &k));
    STEM_TRY(attn_project(r, m, kv_in, m->wv, AT_V, &v));
    STEM_TRY(attn_core(r, m, &q, &k, &v, &a));
    return attn_output(r, m, &a, hidden);
}

stem_status unet_attn1_collect(unet_run *r, const unet_tblock *tb, const stem_attn_site *site,
                               const stem_tensor *hidden) {
    attn_module m = module_of(tb, site);
    stem_tensor n, k, v;
    size_t mark = stem_arena_mark(r->arena);
    stem_status s = attn_norm(r, &m, hidden, true, &n);
    if (s == STEM_OK) s = attn_project(r, &m, &n, m.wk, AT_K, &k);
    if (s == STEM_OK) s = attn_project(r, &m, &n, m.wv, AT_V, &v);
    if (s == STEM_OK) {
        const stem_unet_hook_set *set = unet_core_set(r, STEM_ATTN_SELF);
        s = set->self_attention_collect(set->user, site, &k, &v);
        if (s != STEM_OK) s = stem_error_context(s, "self-attention collect hook at %s", site->name);
    }
    stem_arena_reset(r->arena, mark);
    return s;
}

/* Phase 2 on one slice: hidden [n, N, C] += attn1 with this slice's queries against what
 * the core's set collected from all frames. */
static stem_status attn1_attend(unet_run *r, const attn_module *m, stem_tensor *hidden) {
    stem_tensor n, q, a;
    bool replaced;
    STEM_TRY(attn_norm(r, m, hidden, false, &n)); /* recomputed; its tap fired in phase 1 */
    STEM_TRY(attn_replaced(r, m, &n, hidden, &replaced));
    if (replaced) return STEM_OK;
    STEM_TRY(attn_project(r, m, &n, m->wq, AT_Q, &q));
    STEM_TRY(attn_core(r, m, &q, NULL, NULL, &a));
    return attn_output(r, m, &a, hidden);
}

/* Rows [start, start + n) of a [B, N, C] tensor seen as [B*N, C]. */
static stem_status rows_view(const stem_tensor *t, int64_t start, int64_t n, stem_tensor *v) {
    stem_tensor flat;
    int64_t s2[2] = {t->shape[0] * t->shape[1], t->shape[2]};
    STEM_TRY(stem_tensor_reshape(t, 2, s2, &flat));
    return stem_tensor_narrow0(&flat, start, n, v);
}

/* hidden [B, N, C] += ff(norm3(hidden)), ff = Linear(4C) o GEGLU o Linear(8C), in row
 * chunks (the rows are independent). */
static stem_status feed_forward_part(unet_run *r, const unet_tblock *tb, stem_tensor *hidden) {
    int64_t rows = hidden->shape[0] * hidden->shape[1], C = hidden->shape[2];
    int64_t inner = tb->ff2_w.shape[1]; /* 4C */
    int64_t shape[3] = {hidden->shape[0], hidden->shape[1], C};
    stem_tensor n3;
    STEM_TRY(unet_tmp(r, 3, shape, &n3));
    STEM_TRY(stem_layer_norm(hidden, &tb->norm3_w, &tb->norm3_b, 1e-5f, &n3));
    int64_t chunk = FF_CHUNK_ELEMENTS / (2 * inner);
    if (chunk < 256) chunk = 256;
    if (chunk > rows) chunk = rows;
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
        int64_t nr = rows - r0 < chunk ? rows - r0 : chunk;
        size_t mark = stem_arena_mark(r->arena);
        stem_tensor in, out, p, g, f;
        int64_t s_p[2] = {nr, 2 * inner}, s_g[2] = {nr, inner}, s_f[2] = {nr, C};
        stem_status s;
        if ((s = rows_view(&n3, r0, nr, &in)) == STEM_OK && (s = rows_view(hidden, r0, nr, &out)) == STEM_OK &&
            (s = unet_tmp(r, 2, s_p, &p)) == STEM_OK && (s = stem_linear(&in, &tb->ff1_w, &tb->ff1_b, &p)) == STEM_OK &&
            (s = unet_tmp(r, 2, s_g, &g)) == STEM_OK && (s = stem_geglu(&p, &g)) == STEM_OK &&
            (s = unet_tmp(r, 2, s_f, &f)) == STEM_OK && (s = stem_linear(&g, &tb->ff2_w, &tb->ff2_b, &f)) == STEM_OK)
            s = stem_binary(STEM_BINARY_ADD, &out, &f, &out);
        stem_arena_reset(r->arena, mark);
        if (s != STEM_OK) return s;
    }
    return STEM_OK;
}

stem_status unet_basic_block(unet_run *r, const unet_tblock *tb, const stem_attn_site sites[2], bool two_phase,
                             stem_tensor *hidden) {
    attn_module self = module_of(tb, &sites[0]), cross = module_of(tb, &sites[1]);
    size_t mark = stem_arena_mark(r->arena);
    stem_status s = two_phase ? attn1_attend(r, &self, hidden) : attention_part(r, &self, hidden);
    stem_arena_reset(r->arena, mark);
    if (s == STEM_OK) s = attention_part(r, &cross, hidden);
    stem_arena_reset(r->arena, mark);
    if (s == STEM_OK) s = feed_forward_part(r, tb, hidden);
    stem_arena_reset(r->arena, mark);
    return s;
}
