/* The UNet's building blocks (diffusers 0.20.2: models/resnet.py, attention.py,
 * transformer_2d.py): ResnetBlock2D, Transformer2DModel with its
 * BasicTransformerBlocks, Downsample2D, Upsample2D. Every function takes a run
 * (arena, hooks, time embedding, text context), frees its temporaries before
 * returning, and writes into caller-allocated outputs (or in place).
 *
 * The BasicTransformerBlock is in unet_attention.c.
 *
 * Slices: every module is per-sample, so each public function runs its module over
 * slices of r->slice frames of every branch (unet_over_slices; one slice = the whole
 * batch). With one branch a slice is a view of the batch's rows; with several, its
 * rows are gathered into an arena copy and the module's output written back. The one
 * exception is attn1 with a collect hook: its keys/values span all frames, so the
 * transformer then runs each BasicTransformerBlock in two phases over the slices
 * (transformer_two_phase). */
#include <math.h>
#include <string.h>

#include "core/ops.h"
#include "models/unet_internal.h"

stem_status unet_tmp(unet_run *r, int ndim, const int64_t *shape, stem_tensor *t) {
    return stem_arena_tensor(r->arena, r->u->dtype, ndim, shape, t);
}

/* ---- slices ------------------------------------------------------------------------------ */

/* Whether frames [f0, f0 + n) of every branch are one contiguous run of rows. */
static bool rows_contiguous(const unet_run *r, int64_t f0, int64_t n) {
    return r->span.branches == 1 || (f0 == 0 && n == r->span.frames);
}

/* x's shape with `rows` rows. */
static void shape_with_rows(const stem_tensor *x, int64_t rows, int64_t *shape) {
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[0] = rows;
}

stem_status unet_rows(unet_run *r, const stem_tensor *x, int64_t f0, int64_t n, stem_tensor *rows) {
    const int64_t R = r->span.branches, F = r->span.frames;
    if (rows_contiguous(r, f0, n)) return stem_tensor_narrow0(x, R == 1 ? f0 : 0, R * n, rows);
    /* rows (b, f0 .. f0 + n - 1) of every branch b, gathered into [R * n, ...] */
    int64_t shape[STEM_MAX_DIMS];
    shape_with_rows(x, R * n, shape);
    STEM_TRY(stem_arena_tensor(r->arena, x->dtype, x->ndim, shape, rows));
    for (int64_t b = 0; b < R; b++) {
        stem_tensor from, to;
        STEM_TRY(stem_tensor_narrow0(x, b * F + f0, n, &from));
        STEM_TRY(stem_tensor_narrow0(rows, b * n, n, &to));
        STEM_TRY(stem_tensor_copy(&from, &to));
    }
    return STEM_OK;
}

stem_status unet_rows_put(unet_run *r, const stem_tensor *rows, int64_t f0, int64_t n, stem_tensor *y) {
    const int64_t R = r->span.branches, F = r->span.frames;
    if (rows_contiguous(r, f0, n)) return STEM_OK;
    for (int64_t b = 0; b < R; b++) {
        stem_tensor from, to;
        STEM_TRY(stem_tensor_narrow0(rows, b * n, n, &from));
        STEM_TRY(stem_tensor_narrow0(y, b * F + f0, n, &to));
        STEM_TRY(stem_tensor_copy(&from, &to));
    }
    return STEM_OK;
}

/* Frames in the slice starting at f0. */
static int64_t slice_len(const unet_run *r, int64_t f0) {
    return r->span.frames - f0 < r->slice ? r->span.frames - f0 : r->slice;
}

stem_status unet_slice_run(unet_run *r, int64_t f0, int64_t n, unet_run *sub) {
    *sub = *r;
    sub->span.frame0 = r->span.frame0 + f0;
    sub->span.frames = n;
    sub->batch = r->span.branches * n;
    STEM_TRY(unet_rows(r, &r->temb_act, f0, n, &sub->temb_act));
    return unet_rows(r, &r->context, f0, n, &sub->context);
}

stem_status unet_over_slices(unet_run *r, unet_slice_fn fn, const void *module, const stem_tensor *x, stem_tensor *y) {
    const bool in_place = x->data == y->data;
    for (int64_t f0 = 0; f0 < r->span.frames; f0 += r->slice) {
        int64_t n = slice_len(r, f0);
        size_t mark = stem_arena_mark(r->arena);
        unet_run sub;
        stem_tensor xs, ys;
        stem_status s = unet_slice_run(r, f0, n, &sub);
        if (s == STEM_OK) s = unet_rows(r, x, f0, n, &xs);
        if (s == STEM_OK) {
            /* y's rows: a view, or (several branches) a gathered copy written back below.
             * Gathered, not just allocated: a module may read y (the two-phase transformer's
             * output adds the residual already in y). */
            if (in_place) ys = xs;
            else s = unet_rows(r, y, f0, n, &ys);
        }
        if (s == STEM_OK) s = fn(&sub, module, &xs, &ys);
        if (s == STEM_OK) s = unet_rows_put(r, &ys, f0, n, y);
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
                             .block = rn->block, .layer = rn->layer, .level = rn->level, .span = r->span, .x = y,
                             .arena = r->arena};
        TRY(unet_tap(r, &tap));
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

/* ---- Transformer2DModel ------------------------------------------------------------------ */

/* The attn1 and attn2 sites of block i for the run's rows (a slice of H x W tokens). */
static void block_sites(const unet_run *r, const unet_transformer *tr, int i, int64_t H, int64_t W,
                        stem_attn_site sites[2]) {
    const unet_tblock *tb = &tr->blocks[i];
    for (int k = 0; k < 2; k++)
        sites[k] = (stem_attn_site){
            .kind = k ? STEM_ATTN_CROSS : STEM_ATTN_SELF, .index = tb->attn1_index,
            .name = k ? tb->attn2_name : tb->attn1_name, .part = tr->part, .block = tr->block,
            .attention = tr->layer, .transformer_block = i, .level = tr->level, .span = r->span,
            .tokens = H * W, .height = H, .width = W, .kv_tokens = k ? r->context.shape[1] : H * W,
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
        stem_attn_site sites[2];
        block_sites(r, tr, i, x->shape[2], x->shape[3], sites);
        STEM_TRY(unet_basic_block(r, &tr->blocks[i], sites, false, &hidden));
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
    stem_attn_site sites[2];
    block_sites(r, b->tr, b->index, b->height, b->width, sites);
    return unet_attn1_collect(r, &b->tr->blocks[b->index], &sites[0], hidden);
}

/* Phase 2 on one slice: the rest of the block, hidden [n, N, C] in place. */
static stem_status attend_slice(unet_run *r, const void *module, const stem_tensor *hidden_in, stem_tensor *hidden) {
    const block_ref *b = module;
    (void)hidden_in;
    stem_attn_site sites[2];
    block_sites(r, b->tr, b->index, b->height, b->width, sites);
    return unet_basic_block(r, &b->tr->blocks[b->index], sites, true, hidden);
}

/* attn1 over all frames, the rest per slice: the token stream of all rows stays
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
    const stem_unet_hook_set *core = unet_core_set(r, STEM_ATTN_SELF);
    bool two_phase = core && core->self_attention_collect;
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

/* ---- the up path's skip concat ------------------------------------------------------------- */

typedef struct up_concat {
    unet_run *parent;   /* the run whose rows skip holds */
    const char *name;
    int block, layer, level;
    const stem_tensor *skip;
} up_concat;

/* One slice: the UP_CONCAT tap on h and the slice's skip rows, then cat = [h | skip]. */
static stem_status up_concat_slice(unet_run *r, const void *module, const stem_tensor *h_in, stem_tensor *cat) {
    const up_concat *c = module;
    stem_tensor h = *h_in, skip;
    STEM_TRY(unet_rows(c->parent, c->skip, r->span.frame0 - c->parent->span.frame0, r->span.frames, &skip));
    if (unet_tap_on(r, STEM_TAP_UP_CONCAT)) {
        stem_unet_tap tap = {.kind = STEM_TAP_UP_CONCAT, .name = c->name, .part = STEM_UNET_UP, .block = c->block,
                             .layer = c->layer, .level = c->level, .span = r->span, .x = &h, .skip = &skip,
                             .arena = r->arena};
        STEM_TRY(unet_tap(r, &tap));
    }
    const stem_tensor *parts[2] = {&h, &skip};
    return stem_concat(parts, 2, 1, cat);
}

stem_status unet_up_concat(unet_run *r, const char *name, int block, int layer, int level, stem_tensor *h,
                           stem_tensor *skip, stem_tensor *cat) {
    up_concat c = {.parent = r, .name = name, .block = block, .layer = layer, .level = level, .skip = skip};
    return unet_over_slices(r, up_concat_slice, &c, h, cat);
}
