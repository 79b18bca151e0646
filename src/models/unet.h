/* The Stable Diffusion UNet (diffusers UNet2DConditionModel, 0.20.2 semantics) for
 * SD 1.x and 2.x: everything is read from unet/config.json; configurations this code
 * does not implement are refused with a message naming the key.
 *
 *   sample [B, 4, h, w], timesteps (one per sample, or one for all),
 *   context [B or 1, 77, cross_attention_dim]  ->  eps [B, 4, h, w]
 *
 * h and w need not be multiples of 8: every upsampler resizes to the spatial size of
 * the skip connection it is concatenated with (diffusers' upsample_size), so
 * 106x60 -> 53x30 -> 27x15 -> 14x8 and back works.
 *
 * Hooks. Variants of the UNet (STEM self-attention, frame/inflated attention,
 * TokenFlow's extended attention, PnP injection, token flow, FreeU) plug in through
 * stem_unet_hooks without touching this code:
 *
 *  - self_attention: replaces the attention inside every attn1 (self-attention) of
 *    every transformer block, in execution order (16 sites in SD 1.5: down_blocks
 *    0..2 x 2, mid_block x 1, up_blocks 1..3 x 3). It receives q, k, v after to_q /
 *    to_k / to_v (no biases in SD) and writes the attention output before to_out.
 *    NULL means stem_self_attention_default (per-sample multi-head attention).
 *    Cross-attention (attn2) always runs the default attention.
 *
 *  - self_attention_collect: set it when attn1 needs the keys/values of ALL samples of
 *    the forward (STEM's EM over the whole video, inflated attention) while the forward
 *    runs on slices of samples (stem_unet_forward_sliced). Every transformer block then
 *    runs in two phases over the slices:
 *      1 (collect)  per slice: norm1 -> to_k, to_v -> self_attention_collect(k, v);
 *                   after the last slice the hook has every sample's k and v;
 *      2 (attend)   per slice: norm1 -> to_q -> self_attention(q, k = NULL, v = NULL)
 *                   -> to_out -> residual, then attn2 and the feed-forward.
 *    site->frame0 / site->batch / site->frames_total say which samples a call holds.
 *    self_attention must be set with it. Taps: NORM1, ATTN1_K, ATTN1_V fire in phase 1,
 *    ATTN1_Q, ATTN1_OUT in phase 2, once per slice each (norm1 is recomputed for q in
 *    phase 2, so an override of NORM1 reaches k and v only).
 *
 *  - tap: one callback for every other observation/override point. `tap_mask` selects
 *    the kinds (bit 1u << kind); the callback gets a stem_unet_tap describing where it
 *    is and the tensor(s) it may read or overwrite in place (same shape, same dtype, on
 *    the UNet's backend). See stem_unet_tap_kind for the points and their shapes.
 *
 * Slices. stem_unet_forward_sliced applies every module to slices of at most
 * slice_frames samples (each module is per-sample, except attn1 with a collect hook,
 * see above), so hooks see the slice: tap->x is [n, ...] starting at sample
 * tap->frame0, self_attention's q is [site->batch, ...] starting at site->frame0.
 * STEM_TAP_UP_CONCAT always sees all samples. stem_unet_forward is one slice.
 *
 * Tensors handed to hooks live in the forward's arena and are valid only during the
 * call. A hook that needs scratch memory allocates it from site->arena / tap->arena;
 * that memory is released when the enclosing transformer block (or resnet) finishes
 * its slice; memory a hook keeps across calls (collected keys/values) is its own.
 * A hook returning an error aborts the forward with that error (add context with
 * stem_error_context). Hooks are called on the host thread, in execution order; a
 * hook may keep state in `user` across calls (e.g. a per-timestep cache keyed by
 * site->index).
 *
 * Example (TokenFlow's PnP conv injection: the uncond and cond thirds of the batch take
 * the source third's residual in up_blocks.1.resnets.1):
 *
 *   static stem_status pnp(void *user, const stem_unet_tap *tap) {
 *       if (strcmp(tap->name, "up_blocks.1.resnets.1")) return STEM_OK;
 *       int64_t n = tap->x->shape[0] / 3;
 *       stem_tensor src, dst;
 *       STEM_TRY(stem_tensor_narrow0(tap->x, 0, n, &src));
 *       for (int b = 1; b < 3; b++) {
 *           STEM_TRY(stem_tensor_narrow0(tap->x, b * n, n, &dst));
 *           STEM_TRY(stem_tensor_copy(&src, &dst));
 *       }
 *       return STEM_OK;
 *   }
 *   stem_unet_hooks h = {.tap = pnp, .tap_mask = STEM_TAP_BIT(STEM_TAP_RESNET_RESIDUAL)};
 *
 * Memory: activations come from the caller's arena (reset to its position at the call
 * when the forward returns); roughly the skip connections, two up-path tensors and
 * one block's temporaries (the feed-forward's [rows, 8C] projection is computed in
 * row chunks of at most 32M elements). Sliced (layer-major), only the skips, the two
 * up-path tensors and a transformer's token stream span all samples
 * (stem_unet_sliced_state_elements); the temporaries are one slice's. Weights are
 * placed once at load. */
#ifndef STEM_MODELS_UNET_H
#define STEM_MODELS_UNET_H

#include <stdbool.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/backend.h"
#include "core/tensor.h"

#define STEM_UNET_MAX_LEVELS 6 /* len(block_out_channels) */
#define STEM_UNET_MAX_LAYERS 8 /* layers_per_block + 1, transformer_layers_per_block */

/* ---- configuration ------------------------------------------------------------------ */

typedef struct stem_unet_config {
    int levels;                                  /* len(block_out_channels) */
    int in_channels, out_channels;
    int block_out_channels[STEM_UNET_MAX_LEVELS];
    int layers_per_block[STEM_UNET_MAX_LEVELS];  /* resnets per down block (up: +1) */
    int transformer_layers[STEM_UNET_MAX_LEVELS];/* BasicTransformerBlocks per Transformer2DModel */
    /* config.json's attention_head_dim: in diffusers 0.20 UNet2DConditionModel this is
     * the number of HEADS per level (num_attention_heads = attention_head_dim, see its
     * comment about issue #2011); head width = channels / heads. SD 1.5: 8 heads at
     * every level (d = 40, 80, 160, 160); SD 2.x: [5, 10, 20, 20] (d = 64). The mid
     * block uses the last level's value; up block i uses level levels-1-i. */
    int heads[STEM_UNET_MAX_LEVELS];
    int cross_attention_dim[STEM_UNET_MAX_LEVELS];
    bool down_cross_attn[STEM_UNET_MAX_LEVELS];  /* CrossAttnDownBlock2D (else DownBlock2D) */
    bool up_cross_attn[STEM_UNET_MAX_LEVELS];    /* up_blocks[i]: CrossAttnUpBlock2D (else UpBlock2D) */
    bool use_linear_projection;                  /* SD 2.x: Linear proj_in/out; SD 1.x: 1x1 conv */
    bool upcast_attention;                       /* no effect in f32; attention softmax is always f32 */
    bool flip_sin_to_cos, center_input_sample;
    float freq_shift;
    int norm_num_groups;
    float norm_eps;                              /* resnets and conv_norm_out; Transformer2D norm: 1e-6 */
    int downsample_padding;                      /* 1: pad 1 all sides; 0: pad right/bottom by 1 */
    float mid_block_scale_factor;
    int time_embed_dim;                          /* time_embedding_dim or 4 * block_out_channels[0] */
    int conv_in_kernel, conv_out_kernel;
    int sample_size;                             /* informational (training resolution / 8) */
} stem_unet_config;

/* Parses and validates unet/config.json. Unsupported values (block types other than
 * CrossAttnDownBlock2D/DownBlock2D/UpBlock2D/CrossAttnUpBlock2D, a mid block other
 * than UNetMidBlock2DCrossAttn, only_cross_attention, dual_cross_attention,
 * class/addition embeddings, encoder_hid_dim, act_fn other than silu, ...) fail with
 * STEM_E_UNSUPPORTED naming the file, key and value. */
stem_status stem_unet_config_load(const char *config_json_path, stem_unet_config *cfg);

/* ---- hooks -------------------------------------------------------------------------- */

typedef enum stem_unet_part { STEM_UNET_DOWN, STEM_UNET_MID, STEM_UNET_UP } stem_unet_part;

/* One self-attention (attn1) call site. */
typedef struct stem_attn_site {
    int index;          /* attn1 index in execution order, 0-based (0..15 in SD 1.5) */
    const char *name;   /* "down_blocks.0.attentions.0.transformer_blocks.0.attn1" */
    stem_unet_part part;
    int block;          /* index in down_blocks / up_blocks (0 for the mid block) */
    int attention;      /* index in that block's attentions */
    int transformer_block; /* index in transformer_blocks */
    int level;          /* resolution level: 0 = latent size, 1 = half, ... */
    int64_t batch;      /* samples in this call's q (the slice; all B unless sliced) */
    int64_t frame0;     /* the first of them within the forward's B samples */
    int64_t frames_total; /* B: samples in the forward */
    int64_t tokens;     /* per sample: height * width */
    int64_t height, width;
    int64_t channels;   /* heads * head_dim */
    int64_t heads, head_dim;
    float scale;        /* head_dim^-1/2 */
    stem_arena *arena;  /* scratch for the hook, released after the transformer block */
} stem_attn_site;

/* q, k, v: [batch, tokens, channels] (token-major, heads interleaved as
 * channel = head * head_dim + j, i.e. diffusers' head split); out: [batch, tokens,
 * channels], to be filled with the attention output before to_out. The hook may
 * also modify q, k, v (they are not used afterwards). With a collect hook, k and v
 * are NULL (the hook has them from phase 1). */
typedef stem_status (*stem_self_attention_fn)(void *user, const stem_attn_site *site, const stem_tensor *q,
                                              const stem_tensor *k, const stem_tensor *v, stem_tensor *out);

/* Phase 1 of a two-phase attn1: k, v [site->batch, tokens, channels] of samples
 * site->frame0 .. frame0 + batch - 1, valid only during the call (copy what you keep).
 * Called for the slices in order; the last has frame0 + batch == frames_total. */
typedef stem_status (*stem_self_attention_collect_fn)(void *user, const stem_attn_site *site, const stem_tensor *k,
                                                      const stem_tensor *v);

/* The default: out[b] = MHA(q[b], k[b], v[b]) per sample (stem_attention_heads). */
stem_status stem_self_attention_default(void *user, const stem_attn_site *site, const stem_tensor *q,
                                        const stem_tensor *k, const stem_tensor *v, stem_tensor *out);

typedef enum stem_unet_tap_kind {
    /* Transformer blocks (tap->attn is the block's attn1 site; x is [B, N, C]): */
    STEM_TAP_NORM1 = 0,  /* norm1 output = attn1 input (TokenFlow: token-flow features) */
    STEM_TAP_ATTN1_Q,    /* after to_q, before self_attention (PnP Q injection) */
    STEM_TAP_ATTN1_K,    /* after to_k (PnP K injection) */
    STEM_TAP_ATTN1_V,    /* after to_v */
    STEM_TAP_ATTN1_OUT,  /* after to_out (+bias), before the residual add (token flow
                            reads it on keyframes and overwrites it on other frames) */
    /* ResnetBlock2D (every resnet; tap->attn is NULL): */
    STEM_TAP_RESNET_RESIDUAL, /* x [B, C_out, H, W]: conv2 output, before the shortcut
                                 add (PnP conv injection in up_blocks.1.resnets.1) */
    /* Up blocks, before each resnet's skip concat (FreeU): x = hidden state
     * [B, C_h, H, W], skip = the skip connection [B, C_s, H, W]; both writable. */
    STEM_TAP_UP_CONCAT,
    STEM_TAP_KIND_COUNT
} stem_unet_tap_kind;

#define STEM_TAP_BIT(kind) (1u << (kind))

typedef struct stem_unet_tap {
    stem_unet_tap_kind kind;
    const char *name;   /* the module: "up_blocks.1.resnets.1",
                           "mid_block.attentions.0.transformer_blocks.0" */
    stem_unet_part part;
    int block, layer;   /* block index; resnet/attention index inside it */
    int level;
    const stem_attn_site *attn; /* transformer-block kinds; NULL otherwise */
    stem_tensor *x;     /* samples frame0 .. frame0 + x->shape[0] - 1 */
    int64_t frame0;     /* 0 unless the forward is sliced */
    stem_tensor *skip;  /* STEM_TAP_UP_CONCAT only */
    stem_arena *arena;  /* scratch, released after the enclosing block */
} stem_unet_tap;

typedef stem_status (*stem_unet_tap_fn)(void *user, const stem_unet_tap *tap);

typedef struct stem_unet_hooks {
    stem_self_attention_fn self_attention; /* NULL: stem_self_attention_default */
    void *self_attention_user;
    /* NULL: attn1 runs per slice in one phase. Set: two phases (see above); it gets
     * self_attention_user. */
    stem_self_attention_collect_fn self_attention_collect;
    stem_unet_tap_fn tap;                  /* NULL: no taps */
    void *tap_user;
    unsigned tap_mask;                     /* STEM_TAP_BIT(kind) | ... */
} stem_unet_hooks;

/* ---- the model ---------------------------------------------------------------------- */

typedef struct stem_unet stem_unet;

/* Reads unet_dir/config.json and the weights in unet_dir (converted to `dtype` and
 * placed on `be` once). Errors name the component, tensor and both shapes; weights
 * the config does not use are an error too (a config/weights mismatch never runs). */
stem_status stem_unet_load(const char *unet_dir, stem_backend *be, stem_dtype dtype, stem_unet **out);
void stem_unet_free(stem_unet *u);

const stem_unet_config *stem_unet_get_config(const stem_unet *u);
stem_backend *stem_unet_backend(const stem_unet *u);
stem_dtype stem_unet_dtype(const stem_unet *u);
int64_t stem_unet_param_count(const stem_unet *u);
/* Self-attention sites in execution order (the `index` of stem_attn_site). */
int stem_unet_attn1_count(const stem_unet *u);
const char *stem_unet_attn1_name(const stem_unet *u, int index);
/* Latent sizes per level for an h x w input (level 0 = h x w; each downsampler gives
 * ceil(x / 2)); returns the level count. */
int stem_unet_level_sizes(const stem_unet *u, int64_t h, int64_t w, int64_t *hs, int64_t *ws);

/* eps = UNet(sample, t, context).
 *   sample  [B, in_channels, h, w] on the UNet's backend, its dtype
 *   timesteps: host floats, n_timesteps = 1 (shared) or B
 *   context [B or 1, seq, cross_attention_dim] on the backend (1 is broadcast)
 *   out     [B, out_channels, h, w], caller-allocated (not from `arena` above its
 *           mark at the call, which the forward resets to when it returns)
 *   hooks   may be NULL.
 * All activations come from `arena`; on return the arena is back where it was. */
stem_status stem_unet_forward(stem_unet *u, stem_arena *arena, const stem_tensor *sample, const float *timesteps,
                              int64_t n_timesteps, const stem_tensor *context, const stem_unet_hooks *hooks,
                              stem_tensor *out);

/* The same forward, layer-major: every module runs over all B samples in slices of
 * at most slice_frames (>= 1; >= B is stem_unet_forward), releasing each slice's
 * temporaries before the next. With hooks->self_attention_collect, attn1 spans all B
 * samples (two phases, see the hooks above). Results equal stem_unet_forward's to
 * float rounding (the GEMM shapes change). */
stem_status stem_unet_forward_sliced(stem_unet *u, stem_arena *arena, const stem_tensor *sample,
                                     const float *timesteps, int64_t n_timesteps, const stem_tensor *context,
                                     const stem_unet_hooks *hooks, int64_t slice_frames, stem_tensor *out);

/* Elements per sample that a sliced forward keeps for all samples at once on an
 * h x w input: the skip connections, the two up-path buffers and the largest
 * transformer's token stream [N, C] (not counting what a collect hook keeps). */
int64_t stem_unet_sliced_state_elements(const stem_unet *u, int64_t h, int64_t w);

#endif
