/* Private to unet.c / unet_blocks.c: the UNet's modules as plain structs of weight
 * tensors (views of the tensors stem_weights placed once; the views are copies of the
 * tensor headers because the weights' map may move its entries as it grows), and the
 * per-forward run state. Names and
 * layouts follow diffusers' state dict so the code reads next to the PyTorch source. */
#ifndef STEM_MODELS_UNET_INTERNAL_H
#define STEM_MODELS_UNET_INTERNAL_H

#include "models/unet.h"
#include "models/weights.h"

#define UNET_NAME_LEN 96
/* conv_in + per level (layers + downsample) */
#define UNET_MAX_SKIPS (1 + STEM_UNET_MAX_LEVELS * (STEM_UNET_MAX_LAYERS + 1))

/* ResnetBlock2D: x -> GN+SiLU -> conv1 -> + time_emb_proj(SiLU(temb)) -> GN+SiLU ->
 * conv2 -> + shortcut(x) -> / output_scale_factor. */
typedef struct unet_resnet {
    char name[UNET_NAME_LEN]; /* "down_blocks.0.resnets.1" */
    stem_unet_part part;
    int block, layer, level;
    int64_t c_in, c_out;
    float output_scale_factor;
    stem_tensor norm1_w, norm1_b, conv1_w, conv1_b, temb_w, temb_b;
    stem_tensor norm2_w, norm2_b, conv2_w, conv2_b;
    bool shortcut;                  /* 1x1 conv when c_in != c_out */
    stem_tensor short_w, short_b;
} unet_resnet;

/* BasicTransformerBlock: self-attention, cross-attention, GEGLU feed-forward, each
 * pre-LayerNorm with a residual add. */
typedef struct unet_tblock {
    char name[UNET_NAME_LEN];       /* "...attentions.0.transformer_blocks.0" */
    char attn1_name[UNET_NAME_LEN + 8], attn2_name[UNET_NAME_LEN + 8];
    int attn1_index;                /* execution order over the whole UNet */
    int index;                      /* in transformer_blocks */
    stem_tensor norm1_w, norm1_b, q1, k1, v1, o1_w, o1_b;
    stem_tensor norm2_w, norm2_b, q2, k2, v2, o2_w, o2_b;
    stem_tensor norm3_w, norm3_b, ff1_w, ff1_b, ff2_w, ff2_b;
} unet_tblock;

/* Transformer2DModel: GN(eps 1e-6) -> proj_in -> blocks -> proj_out -> + input. */
typedef struct unet_transformer {
    char name[UNET_NAME_LEN]; /* "down_blocks.0.attentions.0" */
    stem_unet_part part;
    int block, layer, level;
    int64_t channels, heads, head_dim, cross_dim;
    stem_tensor norm_w, norm_b, proj_in_b, proj_out_b;
    stem_tensor proj_in_w, proj_out_w; /* [C, C] (views of [C, C, 1, 1] 1x1-conv weights in SD 1.x) */
    int n_blocks;
    unet_tblock blocks[STEM_UNET_MAX_LAYERS];
} unet_transformer;

typedef struct unet_block {
    int n_layers;
    bool cross_attn;
    unet_resnet resnets[STEM_UNET_MAX_LAYERS];
    unet_transformer attns[STEM_UNET_MAX_LAYERS];
    bool resample;                 /* downsampler (down blocks) / upsampler (up blocks) */
    stem_tensor resample_w, resample_b;
} unet_block;

struct stem_unet {
    stem_unet_config cfg;
    stem_backend *be;
    stem_dtype dtype;
    stem_weights w;
    int64_t params;
    stem_tensor conv_in_w, conv_in_b;
    stem_tensor time_w1, time_b1, time_w2, time_b2;
    unet_block down[STEM_UNET_MAX_LEVELS];
    unet_resnet mid_resnets[2];
    unet_transformer mid_attn;
    unet_block up[STEM_UNET_MAX_LEVELS];
    stem_tensor norm_out_w, norm_out_b, conv_out_w, conv_out_b;
    /* the skip stack the down path pushes and the up path pops */
    int n_skips;
    int64_t skip_channels[UNET_MAX_SKIPS];
    int skip_level[UNET_MAX_SKIPS];
    int n_attn1;
#define UNET_MAX_ATTN1 (STEM_UNET_MAX_LEVELS * 2 * STEM_UNET_MAX_LAYERS * STEM_UNET_MAX_LAYERS + STEM_UNET_MAX_LAYERS)
    const char *attn1_names[UNET_MAX_ATTN1];
    int attn1_levels[UNET_MAX_ATTN1];
    int64_t attn1_channels[UNET_MAX_ATTN1];
};

/* State of one forward pass, or of one slice of its frames (unet_slice_run). */
typedef struct unet_run {
    stem_unet *u;
    stem_arena *arena;
    const stem_unet_hooks *hooks; /* never NULL (an empty list when the caller gave none) */
    stem_unet_span span;  /* the rows this run holds: span.frames of every branch */
    int64_t batch;        /* rows: span.branches * span.frames */
    int64_t slice;        /* frames per slice: the modules run on at most this many at once */
    stem_tensor temb_act; /* SiLU(time embedding) [batch, T]: every resnet's time_emb_proj input */
    stem_tensor context;  /* [batch, S, C_x] */
} unet_run;

/* A tensor of the UNet's dtype from the run's arena. */
stem_status unet_tmp(unet_run *r, int ndim, const int64_t *shape, stem_tensor *t);

/* ---- slices (unet_blocks.c) ---- */

/* Frames [f0, f0 + n) of every branch of a run: *sub is r restricted to them (time
 * embedding and context rows taken with unet_rows). */
stem_status unet_slice_run(unet_run *r, int64_t f0, int64_t n, unet_run *sub);
/* The rows of frames [f0, f0 + n) of every branch of x [r->batch, ...]: a view when they
 * are contiguous (one branch, or all frames), else a copy from the arena. */
stem_status unet_rows(unet_run *r, const stem_tensor *x, int64_t f0, int64_t n, stem_tensor *rows);
/* Writes rows (from unet_rows on y, or a tensor shaped like them) back into y when
 * unet_rows would have copied; nothing when rows is a view of y. */
stem_status unet_rows_put(unet_run *r, const stem_tensor *rows, int64_t f0, int64_t n, stem_tensor *y);
/* One module on one slice: x and y hold that slice's rows (and may be one tensor). */
typedef stem_status (*unet_slice_fn)(unet_run *slice, const void *module, const stem_tensor *x, stem_tensor *y);
/* y = module(x) over slices of r->slice frames; x, y [batch, ...] hold all rows of r (the
 * same tensor for in-place modules). The arena is reset after each slice. */
stem_status unet_over_slices(unet_run *r, unet_slice_fn fn, const void *module, const stem_tensor *x, stem_tensor *y);

/* ---- hook dispatch (unet_hooks.c) ---- */

/* STEM_E_ARG when the sets cannot compose (a collect without its core, ...) or B is not
 * a multiple of the branch count. */
stem_status unet_hooks_check(const stem_unet_hooks *h, int64_t B);
bool unet_tap_on(const unet_run *r, stem_unet_tap_kind kind);
/* Every set whose mask has tap->kind, in order. */
stem_status unet_tap(unet_run *r, stem_unet_tap *tap);
/* The set whose core runs at sites of `kind` (the last that provides one), or NULL. */
const stem_unet_hook_set *unet_core_set(const unet_run *r, stem_attn_kind kind);
/* The first set that replaces the call writes out and sets *replaced. */
stem_status unet_replace(unet_run *r, const stem_attn_site *site, const stem_tensor *x, stem_tensor *out,
                         bool *replaced);
/* softmax(q_h k_h^T * scale) per sample to every set that wants them (nothing computed
 * when none does). */
stem_status unet_probs(unet_run *r, const stem_attn_site *site, const stem_tensor *q, const stem_tensor *k);
stem_status unet_forward_end(const stem_unet_hooks *h);

/* ---- modules ---- */

/* The modules below apply per sample, so each runs over slices of r->slice frames
 * (all at once when r->slice >= the run's frames), every slice's temporaries released
 * before the next; x and y hold all r->batch rows. */

/* x [B, c_in, H, W] -> y [B, c_out, H, W] (y caller-allocated, must not alias x). */
stem_status unet_resnet_forward(unet_run *r, const unet_resnet *rn, const stem_tensor *x, stem_tensor *y);
/* x [B, C, H, W], in place. With a collect hook attn1 spans all frames (two phases). */
stem_status unet_transformer_forward(unet_run *r, const unet_transformer *tr, stem_tensor *x);
/* x [B, C, H, W] -> y [B, C, H', W'] (3x3 conv, stride 2). */
stem_status unet_downsample_forward(unet_run *r, const unet_block *blk, const stem_tensor *x, stem_tensor *y);
/* x [B, C, H, W] -> nearest resize to y's H', W' -> 3x3 conv -> y [B, C, H', W']. */
stem_status unet_upsample_forward(unet_run *r, const unet_block *blk, const stem_tensor *x, stem_tensor *y);
/* The UP_CONCAT tap, then cat = [h | skip] along channels   (h [B, C_h, H, W], skip
 * [B, C_s, H, W] -> cat [B, C_h + C_s, H, W]), over slices. */
stem_status unet_up_concat(unet_run *r, const char *name, int block, int layer, int level, stem_tensor *h,
                           stem_tensor *skip, stem_tensor *cat);

/* ---- BasicTransformerBlock (unet_attention.c) ---- */

/* attn1, attn2 and the feed-forward on one slice, hidden [n, N, C] in place; sites[0]
 * attn1's, sites[1] attn2's. two_phase: attn1's keys/values are already collected. */
stem_status unet_basic_block(unet_run *r, const unet_tblock *tb, const stem_attn_site sites[2], bool two_phase,
                             stem_tensor *hidden);
/* Phase 1 of a two-phase attn1 on one slice: norm1(hidden) -> k, v -> the collect hook. */
stem_status unet_attn1_collect(unet_run *r, const unet_tblock *tb, const stem_attn_site *site,
                               const stem_tensor *hidden);

#endif
