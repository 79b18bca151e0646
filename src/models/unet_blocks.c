/* The UNet's building blocks (diffusers 0.20.2: models/resnet.py, attention.py,
 * transformer_2d.py): ResnetBlock2D, Transformer2DModel with its
 * BasicTransformerBlocks, Downsample2D, Upsample2D. Every function takes a run
 * (arena, hooks, time embedding, text context), frees its temporaries before
 * returning, and writes into caller-allocated outputs (or in place). */
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

static const int PAD1[4] = {1, 1, 1, 1};
static const int PAD0[4] = {0, 0, 0, 0};

/* ---- ResnetBlock2D --------------------------------------------------------------------- */

stem_status unet_resnet_forward(unet_run *r, const unet_resnet *rn, const stem_tensor *x, stem_tensor *y) {
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
                             .block = rn->block, .layer = rn->layer, .level = rn->level, .x = y, .arena = r->arena};
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

/* hidden [B, N, C] += attn1(norm1(hidden)), with the hooks. */
static stem_status self_attention_part(unet_run *r, const unet_tblock *tb, stem_attn_site *site, stem_tensor *hidden) {
    int64_t shape[3] = {hidden->shape[0], hidden->shape[1], hidden->shape[2]};
    stem_tensor n1, q, k, v, a, o;
    STEM_TRY(unet_tmp(r, 3, shape, &n1));
    STEM_TRY(stem_layer_norm(hidden, &tb->norm1_w, &tb->norm1_b, 1e-5f, &n1));
    stem_unet_tap tap = {.name = tb->name, .part = site->part, .block = site->block, .layer = site->attention,
                         .level = site->level, .attn = site, .arena = r->arena};
    if (unet_tap_on(r, STEM_TAP_NORM1)) {
        tap.kind = STEM_TAP_NORM1;
        tap.x = &n1;
        STEM_TRY(call_tap(r, &tap));
    }
    STEM_TRY(unet_tmp(r, 3, shape, &q));
    STEM_TRY(unet_tmp(r, 3, shape, &k));
    STEM_TRY(unet_tmp(r, 3, shape, &v));
    STEM_TRY(stem_linear(&n1, &tb->q1, NULL, &q));
    STEM_TRY(stem_linear(&n1, &tb->k1, NULL, &k));
    STEM_TRY(stem_linear(&n1, &tb->v1, NULL, &v));
    static const stem_unet_tap_kind qkv_kinds[3] = {STEM_TAP_ATTN1_Q, STEM_TAP_ATTN1_K, STEM_TAP_ATTN1_V};
    stem_tensor *qkv[3] = {&q, &k, &v};
    for (int i = 0; i < 3; i++)
        if (unet_tap_on(r, qkv_kinds[i])) {
            tap.kind = qkv_kinds[i];
            tap.x = qkv[i];
            STEM_TRY(call_tap(r, &tap));
        }
    STEM_TRY(unet_tmp(r, 3, shape, &a));
    const stem_unet_hooks *h = r->hooks;
    stem_status s = h && h->self_attention ? h->self_attention(h->self_attention_user, site, &q, &k, &v, &a)
                                           : stem_self_attention_default(NULL, site, &q, &k, &v, &a);
    if (s != STEM_OK) return stem_error_context(s, "self-attention hook at %s", site->name);
    STEM_TRY(unet_tmp(r, 3, shape, &o));
    STEM_TRY(stem_linear(&a, &tb->o1_w, &tb->o1_b, &o));
    if (unet_tap_on(r, STEM_TAP_ATTN1_OUT)) {
        tap.kind = STEM_TAP_ATTN1_OUT;
        tap.x = &o;
        STEM_TRY(call_tap(r, &tap));
    }
    return stem_binary(STEM_BINARY_ADD, hidden, &o, hidden);
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

static stem_status basic_block_forward(unet_run *r, const unet_tblock *tb, stem_attn_site *site,
                                       stem_tensor *hidden) {
    size_t mark = stem_arena_mark(r->arena);
    stem_status s = self_attention_part(r, tb, site, hidden);
    stem_arena_reset(r->arena, mark);
    if (s == STEM_OK) s = cross_attention_part(r, tb, site, hidden);
    stem_arena_reset(r->arena, mark);
    if (s == STEM_OK) s = feed_forward_part(r, tb, hidden);
    stem_arena_reset(r->arena, mark);
    return s;
}

/* ---- Transformer2DModel ------------------------------------------------------------------ */

stem_status unet_transformer_forward(unet_run *r, const unet_transformer *tr, stem_tensor *x) {
    size_t mark = stem_arena_mark(r->arena);
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], N = H * W;
    int64_t s_bcn[3] = {B, C, N}, s_bnc[3] = {B, N, C};
    static const int swap12[3] = {0, 2, 1};
    stem_tensor gn, gn3, tok, hidden, po, po_t, x3;
    stem_status s;
#define TRY(e) do { if ((s = (e)) != STEM_OK) goto done; } while (0)
    /* hidden: the token stream of the blocks            [B, N, C] */
    TRY(unet_tmp(r, 3, s_bnc, &hidden));
    size_t mark_in = stem_arena_mark(r->arena);
    /* gn = GroupNorm(x), eps 1e-6                          [B, C, H, W] */
    TRY(unet_tmp(r, 4, x->shape, &gn));
    TRY(stem_group_norm(x, &tr->norm_w, &tr->norm_b, r->u->cfg.norm_num_groups, 1e-6f, false, &gn));
    /* tokens: [B, C, N] -> [B, N, C]; proj_in per token. SD 1.x's 1x1 conv before the
     * permute is the same per-pixel matrix product as SD 2.x's Linear after it. */
    TRY(stem_tensor_reshape(&gn, 3, s_bcn, &gn3));
    TRY(unet_tmp(r, 3, s_bnc, &tok));
    TRY(stem_permute(&gn3, swap12, &tok));
    TRY(stem_linear(&tok, &tr->proj_in_w, &tr->proj_in_b, &hidden));
    stem_arena_reset(r->arena, mark_in);
    /* the transformer blocks on hidden                      [B, N, C] */
    for (int i = 0; i < tr->n_blocks; i++) {
        const unet_tblock *tb = &tr->blocks[i];
        stem_attn_site site = {
            .index = tb->attn1_index, .name = tb->attn1_name, .part = tr->part, .block = tr->block,
            .attention = tr->layer, .transformer_block = i, .level = tr->level, .batch = B, .tokens = N,
            .height = H, .width = W, .channels = C, .heads = tr->heads, .head_dim = tr->head_dim,
            .scale = (float)(1.0 / sqrt((double)tr->head_dim)), .arena = r->arena,
        };
        TRY(basic_block_forward(r, tb, &site, &hidden));
    }
    /* x += proj_out(hidden) back in [B, C, H, W] */
    TRY(unet_tmp(r, 3, s_bnc, &po));
    TRY(stem_linear(&hidden, &tr->proj_out_w, &tr->proj_out_b, &po));
    TRY(unet_tmp(r, 3, s_bcn, &po_t));
    TRY(stem_permute(&po, swap12, &po_t));
    TRY(stem_tensor_reshape(x, 3, s_bcn, &x3));
    TRY(stem_binary(STEM_BINARY_ADD, &x3, &po_t, &x3));
#undef TRY
done:
    stem_arena_reset(r->arena, mark);
    if (s != STEM_OK) return stem_error_context(s, "unet %s", tr->name);
    return STEM_OK;
}

/* ---- Downsample2D / Upsample2D ------------------------------------------------------------- */

stem_status unet_downsample_forward(unet_run *r, const unet_block *blk, int padding, const stem_tensor *x,
                                    stem_tensor *y) {
    /* downsample_padding 1: symmetric padding 1; 0: diffusers pads (0, 1, 0, 1) first */
    static const int PAD_RB[4] = {0, 1, 0, 1};
    (void)r;
    return stem_conv2d(x, &blk->resample_w, &blk->resample_b, 2, 2, padding ? PAD1 : PAD_RB, y);
}

stem_status unet_upsample_forward(unet_run *r, const unet_block *blk, const stem_tensor *x, stem_tensor *y) {
    size_t mark = stem_arena_mark(r->arena);
    int64_t s_up[4] = {x->shape[0], x->shape[1], y->shape[2], y->shape[3]};
    stem_tensor up;
    stem_status s = unet_tmp(r, 4, s_up, &up);
    if (s == STEM_OK) s = stem_upsample_nearest(x, &up);
    if (s == STEM_OK) s = stem_conv2d(&up, &blk->resample_w, &blk->resample_b, 1, 1, PAD1, y);
    stem_arena_reset(r->arena, mark);
    return s;
}

/* ---- default self-attention ---------------------------------------------------------------- */

stem_status stem_self_attention_default(void *user, const stem_attn_site *site, const stem_tensor *q,
                                        const stem_tensor *k, const stem_tensor *v, stem_tensor *out) {
    (void)user;
    return stem_attention_heads(q, k, v, (int)site->heads, site->scale, out);
}
