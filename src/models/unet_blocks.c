/* The UNet's building blocks (diffusers 0.20.2: models/resnet.py, attention.py,
 * transformer_2d.py): ResnetBlock2D, Transformer2DModel with its
 * BasicTransformerBlocks, Downsample2D, Upsample2D. Every function takes a run
 * (arena, hooks, time embedding, text context), frees its temporaries before
 * returning, and writes into caller-allocated outputs (or in place).
 *
 * Slices: every module is per-sample, so each public function runs its module over
 * slices of r->slice samples (unet_over_slices; one slice = the whole batch). The one
 * exception is attn1 with a collect hook: its keys/values span all samples, so the
 * transformer then runs each BasicTransformerBlock in two phases over the slices
 * (transformer_two_phase). */
#include <math.h>
#include <string.h>

#include "core/ops.h"
#include "models/unet_internal.h"

/* Rows of the feed-forward's [rows, 8C] GEGLU projection computed at once: bounds that
 * temporary to 32M elements (128 MB in f32) however many frames are in the batch. */
#define FF_CHUNK_ELEMENTS ((int64_t)32 << 20)

stem_status unet_tmp(unet_run *r, int ndim, const int64_t *shape, stem_tensor *t) {
    return stem_arena_tensor(r->arena, r->u->dtype, ndim, shape, t);
}

bool unet_tap_on(const unet_run *r, stem_unet_tap_kind kind) {
    return r->hooks && r->hooks->tap && (r->hooks->tap_mask & STEM_TAP_BIT(kind));
}

static stem_status call_tap(unet_run *r, stem_unet_tap *tap) {
    static const char *const kinds[STEM_TAP_KIND_COUNT] = {"norm1", "attn1 q", "attn1 k", "attn1 v", "attn1 out",
                                                           "resnet residual", "skip concat"};
    stem_status s = r->hooks->tap(r->hooks->tap_user, tap);
    if (s == STEM_OK) return STEM_OK;
    if (tap->attn) return stem_error_context(s, "%s hook at %s", kinds[tap->kind], tap->attn->name);
    return stem_error_context(s, "%s hook", kinds[tap->kind]);
}

/* ---- slices ------------------------------------------------------------------------------ */

int64_t unet_slice_len(const unet_run *r, int64_t f0) {
    return r->batch - f0 < r->slice ? r->batch - f0 : r->slice;
}

stem_status unet_slice_run(const unet_run *r, int64_t f0, int64_t n, unet_run *sub) {
    *sub = *r;
    sub->batch = n;
    sub->frame0 = r->frame0 + f0;
    STEM_TRY(stem_tensor_narrow0(&r->temb_act, f0, n, &sub->temb_act));
    return stem_tensor_narrow0(&r->context, f0, n, &sub->context);
}

stem_status unet_over_slices(unet_run *r, unet_slice_fn fn, const void *module, const stem_tensor *x, stem_tensor *y) {
    for (int64_t f0 = 0; f0 < r->batch; f0 += r->slice) {
        int64_t n = unet_slice_len(r, f0);
        unet_run sub;
        stem_tensor xs, ys;
        STEM_TRY(unet_slice_run(r, f0, n, &sub));
        STEM_TRY(stem_tensor_narrow0(x, f0, n, &xs));
        STEM_TRY(stem_tensor_narrow0(y, f0, n, &ys));
        size_t mark = stem_arena_mark(r->arena);
        stem_status s = fn(&sub, module, &xs, &ys);
        stem_arena_reset(r->arena, mark);
        if (s != STEM_OK) return s;
    }
    return STEM_OK;
}

static const int PAD1[4] = {1, 1, 1, 1};
static const int PAD0[4] = {0, 0, 0, 0};

/* ---- ResnetBlock2D --------------------------------------------------------------------- */

/* One slice: x [n, c_in, H, W] -> y [n, c_out, H, W]. */
static stem_status resnet_slice(unet_run *r, const void *module, const stem_tensor *x, stem_tensor *y) {
    const unet_resnet *rn = module;
    const stem_unet_config *cfg = &r->u->cfg;
    size_t mark = stem_arena_mark(r->arena);
    int64_t B = x->shape[0], H = x->shape[2], W = x->shape[3];
    int64_t s_in[4] = {B, rn->c_in, H, W}, s_out[4] = {B, rn->c_out, H, W};
    stem_tensor h1, c1, tp, tp4, h2;
    stem_status s;
#define TRY(e) do { if ((s = (e)) != STEM_OK) goto done; } while (0)
    /* h1 = SiLU(GN(x))                                   [B, c_in, H, W] */
    TRY(unet_tmp(r, 4, s_in, &h1));
    TRY(stem_group_norm(x, &rn->norm1_w, &rn->norm1_b, cfg->norm_num_groups, cfg->norm_eps, true, &h1));
    /* c1 = conv1(h1) + time_emb_proj(SiLU(temb))[:, :, None, None]   [B, c_out, H, W] */
    TRY(unet_tmp(r, 4, s_out, &c1));
    TRY(stem_conv2d(&h1, &rn->conv1_w, &rn->conv1_b, 1, 1, PAD1, &c1));
    int64_t s_tp[2] = {B, rn->c_out}, s_tp4[4] = {B, rn->c_out, 1, 1};
    TRY(unet_tmp(r, 2, s_tp, &tp));
    TRY(stem_linear(&r->temb_act, &rn->temb_w, &rn->temb_b, &tp));
    TRY(stem_tensor_reshape(&tp, 4, s_tp4, &tp4));
    TRY(stem_binary(STEM_BINARY_ADD, &c1, &tp4, &c1));
    /* h2 = SiLU(GN(c1)); dropout is the identity at inference */
    TRY(unet_tmp(r, 4, s_out, &h2));
    TRY(stem_group_norm(&c1, &rn->norm2_w, &rn->norm2_b, cfg->norm_num_groups, cfg->norm_eps, true, &h2));
    /* y = conv2(h2): the residual branch */
    TRY(stem_conv2d(&h2, &rn->conv2_w, &rn->conv2_b, 1, 1, PAD1, y));
    if (unet_tap_on(r, STEM_TAP_RESNET_RESIDUAL)) {
        stem_unet_tap tap = {.kind = STEM_TAP_RESNET_RESIDUAL, .name = rn->name, .part = rn->part,
                             .block = rn->block, .layer = rn->layer, .level = rn->level, .x = y,
                             .frame0 = r->frame0, .arena = r->arena};
        TRY(call_tap(r, &tap));
    }
    /* y += shortcut(x) (1x1 conv when the channel count changes) */
    if (rn->shortcut) {
        stem_tensor sc;
        TRY(unet_tmp(r, 4, s_out, &sc));
        TRY(stem_conv2d(x, &rn->short_w, &rn->short_b, 1, 1, PAD0, &sc));
        TRY(stem_binary(STEM_BINARY_ADD, y, &sc, y));
    } else {
        TRY(stem_binary(STEM_BINARY_ADD, y, x, y));
    }
    if (rn->output_scale_factor != 1.0f) TRY(stem_affine(y, 1.0f / rn->output_scale_factor, 0.0f, y));
#undef TRY
done:
    stem_arena_reset(r->arena, mark);
    return s;
}

stem_status unet_resnet_forward(unet_run *r, const unet_resnet *rn, const stem_tensor *x, stem_tensor *y) {
    stem_status s = unet_over_slices(r, resnet_slice, rn, x, y);
    if (s != STEM_OK) return stem_error_context(s, "unet %s", rn->name);
    return STEM_OK;
}

/* ---- BasicTransformerBlock --------------------------------------------------------------- */

/* Rows [start, start + n) of a [B, N, C] tensor seen as [B*N, C]. */
static stem_status rows_view(const stem_tensor *t, int64_t start, int64_t n, stem_tensor *v) {
    stem_tensor flat;
    int64_t s2[2] = {t->shape[0] * t->shape[1], t->shape[2]};
    STEM_TRY(stem_tensor_reshape(t, 2, s2, &flat));
    return stem_tensor_narrow0(&flat, start, n, v);
}

/* The tap of `kind` on x, when it is on. */
static stem_status attn1_tap(unet_run *r, const unet_tblock *tb, const stem_attn_site *site, stem_unet_tap_kind kind,
                             stem_tensor *x) {
    if (!unet_tap_on(r, kind)) return STEM_OK;
    stem_unet_tap tap = {.kind = kind, .name = tb->name, .part = site->part, .block = site->block,
                         .layer = site->attention, .level = site->level, .attn = site, .x = x,
                         .frame0 = site->frame0, .arena = r->arena};
    return call_tap(r, &tap);
}

/* n1 = norm1(hidden)   [n, N, C]; the NORM1 tap fires when `tap`. */
static stem_status attn1_norm(unet_run *r, const unet_tblock *tb, const stem_attn_site *site,
                              const stem_tensor *hidden, bool tap, stem_tensor *n1) {
    STEM_TRY(unet_tmp(r, 3, hidden->shape, n1));
    STEM_TRY(stem_layer_norm(hidden, &tb->norm1_w, &tb->norm1_b, 1e-5f, n1));
    return tap ? attn1_tap(r, tb, site, STEM_TAP_NORM1, n1) : STEM_OK;
}

/* y = n1 w^T (to_q / to_k / to_v, no bias), then the tap of `kind`   [n, N, C] */
static stem_status attn1_project(unet_run *r, const unet_tblock *tb, const stem_attn_site *site,
                                 const stem_tensor *n1, const stem_tensor *w, stem_unet_tap_kind kind, stem_tensor *y) {
    STEM_TRY(unet_tmp(r, 3, n1->shape, y));
    STEM_TRY(stem_linear(n1, w, NULL, y));
    return attn1_tap(r, tb, site, kind, y);
}

/* a = the self_attention hook (or the default) on q [n, N, C]; k, v NULL in phase 2. */
static stem_status attn1_attention(unet_run *r, const stem_attn_site *site, const stem_tensor *q,
                                   const stem_tensor *k, const stem_tensor *v, stem_tensor *a) {
    STEM_TRY(unet_tmp(r, 3, q->shape, a));
    const stem_unet_hooks *h = r->hooks;
    stem_status s = h && h->self_attention ? h->self_attention(h->self_attention_user, site, q, k, v, a)
                                           : stem_self_attention_default(NULL, site, q, k, v, a);
    if (s != STEM_OK) return stem_error_context(s, "self-attention hook at %s", site->name);
    return STEM_OK;
}

/* hidden += to_out(a), with the ATTN1_OUT tap before the residual add   [n, N, C] */
static stem_status attn1_output(unet_run *r, const unet_tblock *tb, const stem_attn_site *site, const stem_tensor *a,
                                stem_tensor *hidden) {
    stem_tensor o;
    STEM_TRY(unet_tmp(r, 3, a->shape, &o));
    STEM_TRY(stem_linear(a, &tb->o1_w, &tb->o1_b, &o));
    STEM_TRY(attn1_tap(r, tb, site, STEM_TAP_ATTN1_OUT, &o));
    return stem_binary(STEM_BINARY_ADD, hidden, &o, hidden);
}

/* One phase: hidden [n, N, C] += attn1(norm1(hidden)), attention within the slice. */
static stem_status self_attention_part(unet_run *r, const unet_tblock *tb, const stem_attn_site *site,
                                       stem_tensor *hidden) {
    stem_tensor n1, q, k, v, a;
    STEM_TRY(attn1_norm(r, tb, site, hidden, true, &n1));
    STEM_TRY(attn1_project(r, tb, site, &n1, &tb->q1, STEM_TAP_ATTN1_Q, &q));
    STEM_TRY(attn1_project(r, tb, site, &n1, &tb->k1, STEM_TAP_ATTN1_K, &k));
    STEM_TRY(attn1_project(r, tb, site, &n1, &tb->v1, STEM_TAP_ATTN1_V, &v));
    STEM_TRY(attn1_attention(r, site, &q, &k, &v, &a));
    return attn1_output(r, tb, site, &a, hidden);
}

/* Phase 1 on one slice: the keys and values of norm1(hidden) [n, N, C] go to the
 * collect hook (which keeps them for all samples). */
static stem_status self_attention_collect(unet_run *r, const unet_tblock *tb, const stem_attn_site *site,
                                          const stem_tensor *hidden) {
    stem_tensor n1, k, v;
    STEM_TRY(attn1_norm(r, tb, site, hidden, true, &n1));
    STEM_TRY(attn1_project(r, tb, site, &n1, &tb->k1, STEM_TAP_ATTN1_K, &k));
    STEM_TRY(attn1_project(r, tb, site, &n1, &tb->v1, STEM_TAP_ATTN1_V, &v));
    const stem_unet_hooks *h = r->hooks;
    stem_status s = h->self_attention_collect(h->self_attention_user, site, &k, &v);
    if (s != STEM_OK) return stem_error_context(s, "self-attention collect hook at %s", site->name);
    return STEM_OK;
}

/* Phase 2 on one slice: hidden [n, N, C] += attn1 with this slice's queries against
 * what the hook collected from all samples. */
static stem_status self_attention_attend(unet_run *r, const unet_tblock *tb, const stem_attn_site *site,
                                         stem_tensor *hidden) {
    stem_tensor n1, q, a;
    STEM_TRY(attn1_norm(r, tb, site, hidden, false, &n1)); /* recomputed; its tap fired in phase 1 */
    STEM_TRY(attn1_project(r, tb, site, &n1, &tb->q1, STEM_TAP_ATTN1_Q, &q));
    STEM_TRY(attn1_attention(r, site, &q, NULL, NULL, &a));
    return attn1_output(r, tb, site, &a, hidden);
}

/* hidden [B, N, C] += attn2(norm2(hidden), context [B, S, C_x]). */
static stem_status cross_attention_part(unet_run *r, const unet_tblock *tb, const stem_attn_site *site,
                                        stem_tensor *hidden) {
    int64_t shape[3] = {hidden->shape[0], hidden->shape[1], hidden->shape[2]};
    int64_t kv_shape[3] = {hidden->shape[0], r->context.shape[1], hidden->shape[2]};
    stem_tensor n2, q, k, v, a, o;
    STEM_TRY(unet_tmp(r, 3, shape, &n2));
    STEM_TRY(stem_layer_norm(hidden, &tb->norm2_w, &tb->norm2_b, 1e-5f, &n2));
    STEM_TRY(unet_tmp(r, 3, shape, &q));
    STEM_TRY(stem_linear(&n2, &tb->q2, NULL, &q));
    STEM_TRY(unet_tmp(r, 3, kv_shape, &k));
    STEM_TRY(unet_tmp(r, 3, kv_shape, &v));
    STEM_TRY(stem_linear(&r->context, &tb->k2, NULL, &k));
    STEM_TRY(stem_linear(&r->context, &tb->v2, NULL, &v));
    STEM_TRY(unet_tmp(r, 3, shape, &a));
    STEM_TRY(stem_attention_heads(&q, &k, &v, (int)site->heads, site->scale, &a));
    STEM_TRY(unet_tmp(r, 3, shape, &o));
    STEM_TRY(stem_linear(&a, &tb->o2_w, &tb->o2_b, &o));
    return stem_binary(STEM_BINARY_ADD, hidden, &o, hidden);
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

/* BasicTransformerBlock on one slice, hidden [n, N, C] in place. In the two-phase form
 * the keys/values are already collected (attn1 = phase 2). */
static stem_status basic_block_forward(unet_run *r, const unet_tblock *tb, const stem_attn_site *site,
                                       bool two_phase, stem_tensor *hidden) {
    size_t mark = stem_arena_mark(r->arena);
    stem_status s = two_phase ? self_attention_attend(r, tb, site, hidden) : self_attention_part(r, tb, site, hidden);
    stem_arena_reset(r->arena, mark);
    if (s == STEM_OK) s = cross_attention_part(r, tb, site, hidden);
    stem_arena_reset(r->arena, mark);
    if (s == STEM_OK) s = feed_forward_part(r, tb, hidden);
    stem_arena_reset(r->arena, mark);
    return s;
}

/* ---- Transformer2DModel ------------------------------------------------------------------ */

/* The attn1 site of block i for the run's samples (a slice of H x W tokens). */
static stem_attn_site block_site(const unet_run *r, const unet_transformer *tr, int i, int64_t H, int64_t W) {
    const unet_tblock *tb = &tr->blocks[i];
    return (stem_attn_site){
        .index = tb->attn1_index, .name = tb->attn1_name, .part = tr->part, .block = tr->block,
        .attention = tr->layer, .transformer_block = i, .level = tr->level, .batch = r->batch,
        .frame0 = r->frame0, .frames_total = r->frames_total, .tokens = H * W, .height = H, .width = W,
        .channels = tr->channels, .heads = tr->heads, .head_dim = tr->head_dim,
        .scale = (float)(1.0 / sqrt((double)tr->head_dim)), .arena = r->arena,
    };
}

static const int SWAP12[3] = {0, 2, 1};

/* The blocks' token stream: hidden = proj_in(GroupNorm(x))   x [n, C, H, W] -> [n, N, C] */
static stem_status transformer_in(unet_run *r, const void *module, const stem_tensor *x, stem_tensor *hidden) {
    const unet_transformer *tr = module;
    int64_t n = x->shape[0], C = x->shape[1], N = x->shape[2] * x->shape[3];
    int64_t s_cn[3] = {n, C, N}, s_nc[3] = {n, N, C};
    stem_tensor gn, gn3, tok;
    /* gn = GroupNorm(x), eps 1e-6                          [n, C, H, W] */
    STEM_TRY(unet_tmp(r, 4, x->shape, &gn));
    STEM_TRY(stem_group_norm(x, &tr->norm_w, &tr->norm_b, r->u->cfg.norm_num_groups, 1e-6f, false, &gn));
    /* tokens: [n, C, N] -> [n, N, C]; proj_in per token. SD 1.x's 1x1 conv before the
     * permute is the same per-pixel matrix product as SD 2.x's Linear after it. */
    STEM_TRY(stem_tensor_reshape(&gn, 3, s_cn, &gn3));
    STEM_TRY(unet_tmp(r, 3, s_nc, &tok));
    STEM_TRY(stem_permute(&gn3, SWAP12, &tok));
    return stem_linear(&tok, &tr->proj_in_w, &tr->proj_in_b, hidden);
}

/* x += proj_out(hidden) back in [n, C, H, W]   (hidden [n, N, C]) */
static stem_status transformer_out(unet_run *r, const void *module, const stem_tensor *hidden, stem_tensor *x) {
    const unet_transformer *tr = module;
    int64_t n = x->shape[0], C = x->shape[1], N = x->shape[2] * x->shape[3];
    int64_t s_cn[3] = {n, C, N}, s_nc[3] = {n, N, C};
    stem_tensor po, po_t, x3;
    STEM_TRY(unet_tmp(r, 3, s_nc, &po));
    STEM_TRY(stem_linear(hidden, &tr->proj_out_w, &tr->proj_out_b, &po));
    STEM_TRY(unet_tmp(r, 3, s_cn, &po_t));
    STEM_TRY(stem_permute(&po, SWAP12, &po_t));
    STEM_TRY(stem_tensor_reshape(x, 3, s_cn, &x3));
    return stem_binary(STEM_BINARY_ADD, &x3, &po_t, &x3);
}

/* One slice, attn1 within it: x [n, C, H, W] in place (x_in is the same tensor). */
static stem_status transformer_slice(unet_run *r, const void *module, const stem_tensor *x_in, stem_tensor *x) {
    const unet_transformer *tr = module;
    (void)x_in;
    int64_t s_nc[3] = {x->shape[0], x->shape[2] * x->shape[3], x->shape[1]};
    stem_tensor hidden;
    STEM_TRY(unet_tmp(r, 3, s_nc, &hidden));
    size_t mark = stem_arena_mark(r->arena);
    STEM_TRY(transformer_in(r, tr, x, &hidden));
    stem_arena_reset(r->arena, mark);
    for (int i = 0; i < tr->n_blocks; i++) {
        stem_attn_site site = block_site(r, tr, i, x->shape[2], x->shape[3]);
        STEM_TRY(basic_block_forward(r, &tr->blocks[i], &site, false, &hidden));
    }
    return transformer_out(r, tr, &hidden, x);
}

/* Block i of a transformer on H x W tokens: the module of the two phases' slices. */
typedef struct block_ref {
    const unet_transformer *tr;
    int index;
    int64_t height, width;
} block_ref;

/* Phase 1 on one slice of hidden [n, N, C] (y is the same tensor, unchanged). */
static stem_status collect_slice(unet_run *r, const void *module, const stem_tensor *hidden, stem_tensor *y) {
    const block_ref *b = module;
    (void)y;
    stem_attn_site site = block_site(r, b->tr, b->index, b->height, b->width);
    return self_attention_collect(r, &b->tr->blocks[b->index], &site, hidden);
}

/* Phase 2 on one slice: the rest of the block, hidden [n, N, C] in place. */
static stem_status attend_slice(unet_run *r, const void *module, const stem_tensor *hidden_in, stem_tensor *hidden) {
    const block_ref *b = module;
    (void)hidden_in;
    stem_attn_site site = block_site(r, b->tr, b->index, b->height, b->width);
    return basic_block_forward(r, &b->tr->blocks[b->index], &site, true, hidden);
}

/* attn1 over all samples, the rest per slice: the token stream of all samples stays
 * between the phases, each block collects every slice's keys/values (phase 1) before
 * any slice attends (phase 2). x [B, C, H, W] in place. */
static stem_status transformer_two_phase(unet_run *r, const unet_transformer *tr, stem_tensor *x) {
    int64_t s_nc[3] = {r->batch, x->shape[2] * x->shape[3], x->shape[1]};
    stem_tensor hidden; /* [B, N, C] */
    STEM_TRY(unet_tmp(r, 3, s_nc, &hidden));
    STEM_TRY(unet_over_slices(r, transformer_in, tr, x, &hidden));
    for (int i = 0; i < tr->n_blocks; i++) {
        block_ref b = {.tr = tr, .index = i, .height = x->shape[2], .width = x->shape[3]};
        STEM_TRY(unet_over_slices(r, collect_slice, &b, &hidden, &hidden));
        STEM_TRY(unet_over_slices(r, attend_slice, &b, &hidden, &hidden));
    }
    return unet_over_slices(r, transformer_out, tr, &hidden, x);
}

stem_status unet_transformer_forward(unet_run *r, const unet_transformer *tr, stem_tensor *x) {
    size_t mark = stem_arena_mark(r->arena);
    bool two_phase = r->hooks && r->hooks->self_attention_collect;
    stem_status s = two_phase ? transformer_two_phase(r, tr, x) : unet_over_slices(r, transformer_slice, tr, x, x);
    stem_arena_reset(r->arena, mark);
    if (s != STEM_OK) return stem_error_context(s, "unet %s", tr->name);
    return STEM_OK;
}

/* ---- Downsample2D / Upsample2D ------------------------------------------------------------- */

static stem_status downsample_slice(unet_run *r, const void *module, const stem_tensor *x, stem_tensor *y) {
    const unet_block *blk = module;
    /* downsample_padding 1: symmetric padding 1; 0: diffusers pads (0, 1, 0, 1) first */
    static const int PAD_RB[4] = {0, 1, 0, 1};
    return stem_conv2d(x, &blk->resample_w, &blk->resample_b, 2, 2, r->u->cfg.downsample_padding ? PAD1 : PAD_RB, y);
}

stem_status unet_downsample_forward(unet_run *r, const unet_block *blk, const stem_tensor *x, stem_tensor *y) {
    return unet_over_slices(r, downsample_slice, blk, x, y);
}

static stem_status upsample_slice(unet_run *r, const void *module, const stem_tensor *x, stem_tensor *y) {
    const unet_block *blk = module;
    int64_t s_up[4] = {x->shape[0], x->shape[1], y->shape[2], y->shape[3]};
    stem_tensor up;
    STEM_TRY(unet_tmp(r, 4, s_up, &up));
    STEM_TRY(stem_upsample_nearest(x, &up));
    return stem_conv2d(&up, &blk->resample_w, &blk->resample_b, 1, 1, PAD1, y);
}

stem_status unet_upsample_forward(unet_run *r, const unet_block *blk, const stem_tensor *x, stem_tensor *y) {
    return unet_over_slices(r, upsample_slice, blk, x, y);
}

/* ---- default self-attention ---------------------------------------------------------------- */

stem_status stem_self_attention_default(void *user, const stem_attn_site *site, const stem_tensor *q,
                                        const stem_tensor *k, const stem_tensor *v, stem_tensor *out) {
    (void)user;
    return stem_attention_heads(q, k, v, (int)site->heads, site->scale, out);
}
