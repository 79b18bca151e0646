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
 * Hooks (src/models/unet_hooks.h has the contract): a forward takes a list of hook
 * sets, each with its own state, over a batch of branches x frames; taps observe or
 * override named points, attn1/attn2 have call sites whose attention core a set may
 * replace, whose whole call a set may replace, and whose attention probabilities a set
 * may observe; attn1 may run in two phases so that a sliced forward attends over all
 * frames.
 *
 * Example (TokenFlow's PnP conv injection: the uncond and cond branches take the source
 * branch's residual in up_blocks.1.resnets.1). Every call holds the same frames of all
 * three branches, so this is right sliced or not:
 *
 *   static stem_status pnp(void *user, const stem_unet_tap *tap) {
 *       (void)user;
 *       if (strcmp(tap->name, "up_blocks.1.resnets.1")) return STEM_OK;
 *       stem_tensor src, dst; // [span.frames, C, H, W]: this call's frames of one branch
 *       STEM_TRY(stem_unet_span_branch(&tap->span, tap->x, 0, &src));
 *       for (int64_t b = 1; b < tap->span.branches; b++) {
 *           STEM_TRY(stem_unet_span_branch(&tap->span, tap->x, b, &dst));
 *           STEM_TRY(stem_tensor_copy(&src, &dst));
 *       }
 *       return STEM_OK;
 *   }
 *   stem_unet_hook_set sets[] = {
 *       {.tap = pnp, .tap_mask = STEM_TAP_BIT(STEM_TAP_RESNET_RESIDUAL)},
 *       {.tap = freeu, .tap_mask = STEM_TAP_BIT(STEM_TAP_UP_CONCAT), .user = &freeu_factors},
 *   };
 *   stem_unet_hooks hooks = {.branches = 3, .sets = sets, .n_sets = 2};
 *   // sample [3F, 4, h, w] = [source | uncond | cond], context [3F, 77, X]
 *   stem_unet_forward_sliced(u, arena, sample, &t, 1, context, &hooks, 4, eps);
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
#include "models/model_config.h"
#include "models/unet_hooks.h"
#include "models/weights.h"

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
/* The same from a loaded config (errors name c->path). */
stem_status stem_unet_parse_config(const stem_config *c, stem_unet_config *cfg);

/* ---- the model ---------------------------------------------------------------------- */

typedef struct stem_unet stem_unet;

/* Reads unet_dir/config.json and the weights in unet_dir (converted to `dtype` and
 * placed on `be` once). Errors name the component, tensor and both shapes; weights
 * the config does not use are an error too (a config/weights mismatch never runs). */
stem_status stem_unet_load(const char *unet_dir, stem_backend *be, stem_dtype dtype, stem_unet **out);
/* The same from a parsed config and an opened weight set with diffusers' names (e.g. a
 * single-file checkpoint mapped by models/ldm_names.h); takes over `w` (also on failure). */
stem_status stem_unet_load_weights(const stem_unet_config *cfg, stem_weights *w, stem_unet **out);
/* The same structure from unet_dir/config.json alone, its weights data-less (no weight
 * file is read): for sizes and memory plans only; a forward on it is an error. */
stem_status stem_unet_load_shapes(const char *unet_dir, stem_backend *be, stem_dtype dtype, stem_unet **out);
void stem_unet_free(stem_unet *u);

const stem_unet_config *stem_unet_get_config(const stem_unet *u);
stem_backend *stem_unet_backend(const stem_unet *u);
stem_dtype stem_unet_dtype(const stem_unet *u);
int64_t stem_unet_param_count(const stem_unet *u);
/* Transformer blocks in execution order (the `index` of stem_attn_site); the names are
 * their attn1 sites'. */
int stem_unet_attn1_count(const stem_unet *u);
const char *stem_unet_attn1_name(const stem_unet *u, int index);
/* Its resolution level (0 = latent size; -1 for no such block) and channels (heads x
 * head_dim, 0 for no such block): what a hook sizes per-block caches with. */
int stem_unet_attn1_level(const stem_unet *u, int index);
int64_t stem_unet_attn1_channels(const stem_unet *u, int index);
/* Latent sizes per level for an h x w input (level 0 = h x w; each downsampler gives
 * ceil(x / 2)); returns the level count. */
int stem_unet_level_sizes(const stem_unet *u, int64_t h, int64_t w, int64_t *hs, int64_t *ws);

/* eps = UNet(sample, t, context).
 *   sample  [B, in_channels, h, w] on the UNet's backend, its dtype
 *   timesteps: host floats, n_timesteps = 1 (shared) or B
 *   context [B or 1, seq, cross_attention_dim] on the backend (1 is broadcast)
 *   out     [B, out_channels, h, w], caller-allocated (not from `arena` above its
 *           mark at the call, which the forward resets to when it returns)
 *   hooks   may be NULL (one branch, no hooks); B must be a multiple of hooks->branches.
 * All activations come from `arena`; on return the arena is back where it was. */
stem_status stem_unet_forward(stem_unet *u, stem_arena *arena, const stem_tensor *sample, const float *timesteps,
                              int64_t n_timesteps, const stem_tensor *context, const stem_unet_hooks *hooks,
                              stem_tensor *out);

/* The same forward, layer-major: every module runs over slices of at most slice_frames
 * frames of every branch (>= 1; >= the frames per branch is stem_unet_forward),
 * releasing each slice's temporaries before the next. With a collect hook, attn1 spans
 * all frames (two phases, see unet_hooks.h). Results equal stem_unet_forward's to
 * float rounding (the GEMM shapes change). */
stem_status stem_unet_forward_sliced(stem_unet *u, stem_arena *arena, const stem_tensor *sample,
                                     const float *timesteps, int64_t n_timesteps, const stem_tensor *context,
                                     const stem_unet_hooks *hooks, int64_t slice_frames, stem_tensor *out);

/* The arena bytes a forward of `batch` samples at h x w latents holds at its peak, from the
 * module structure (src/models/unet_memory.c replays the forward's allocations; without
 * the arena's block boundaries, so an arena of small blocks may peak a little higher), for
 * a context of context_len tokens. The _sliced form: a batch of `branches` x frames run
 * over slices of slice_frames frames (two_phase: attn1 in two phases over all frames). */
size_t stem_unet_activation_bytes(const stem_unet *u, int64_t batch, int64_t h, int64_t w, int64_t context_len);
size_t stem_unet_activation_bytes_sliced(const stem_unet *u, int64_t batch, int64_t branches, int64_t slice_frames,
                                         int64_t h, int64_t w, int64_t context_len, bool two_phase);

/* Elements per sample that a sliced forward keeps for all samples at once on an
 * h x w input: the skip connections, the two up-path buffers and the largest
 * transformer's token stream [N, C] (not counting what a collect hook keeps). */
int64_t stem_unet_sliced_state_elements(const stem_unet *u, int64_t h, int64_t w);

#endif
