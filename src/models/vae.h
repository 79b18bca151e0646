/* The Stable Diffusion VAE (diffusers 0.20.2 AutoencoderKL; doc/algorithm.md §2).
 *
 * encode: frames [F, 3, H, W] in [-1, 1]
 *   conv_in -> per level: resnets (layers_per_block), Downsample2D (all but the last
 *   level: zero-pad right/bottom by one, 3x3 conv stride 2) -> mid (resnet, attention,
 *   resnet) -> group norm + SiLU -> conv_out (2 x latent channels) -> quant_conv
 *   -> latent = posterior mean (first half of the channels) x scaling_factor.
 *   H x W -> h x w with h = ceil((H - 1) / 2) per level (854 x 480 -> 106 x 60).
 * decode: latents [F, 4, h, w]
 *   ÷ scaling_factor -> post_quant_conv -> conv_in -> mid -> per level (reversed
 *   channels): resnets (layers_per_block + 1), Upsample2D (nearest 2x + 3x3 conv; all
 *   but the last) -> group norm + SiLU -> conv_out.
 * Resnets: GroupNorm(eps 1e-6) + SiLU, conv3x3, GroupNorm + SiLU, conv3x3, plus the
 * input (through a 1x1 conv_shortcut when the channel count changes).
 * Mid attention: one head over the h*w tokens of each frame (diffusers' Attention with
 * attention_head_dim = channels): group norm, q/k/v linear, softmax(q k^T / sqrt(C)) v
 * with the fused streaming attention op (no (hw)^2 matrix), to_out linear, + input.
 *
 * Frames are processed in chunks (chunk_frames at a time, or as many as fit
 * mem_budget), so memory does not grow with the video length; activations live in two
 * ping-pong arenas. */
#ifndef STEM_MODELS_VAE_H
#define STEM_MODELS_VAE_H

#include "core/arena.h"
#include "core/backend.h"
#include "models/model_config.h"
#include "models/weights.h"

#define STEM_VAE_MAX_LEVELS 8
#define STEM_VAE_MAX_RESNETS 8

typedef struct stem_vae_config {
    int64_t in_channels, out_channels, latent_channels;
    int64_t layers_per_block;
    int64_t groups; /* norm_num_groups */
    int levels;     /* len(block_out_channels) */
    int64_t block_out[STEM_VAE_MAX_LEVELS];
    double scaling_factor;
} stem_vae_config;

/* Weights are views (not owned) of the tensors placed by `weights`. */
typedef struct stem_vae_resnet {
    int64_t c_in, c_out;
    stem_tensor norm1_w, norm1_b, conv1_w, conv1_b, norm2_w, norm2_b, conv2_w, conv2_b;
    stem_tensor shortcut_w, shortcut_b; /* data NULL when c_in == c_out */
} stem_vae_resnet;

typedef struct stem_vae_attention {
    int64_t channels;
    stem_tensor norm_w, norm_b, q_w, q_b, k_w, k_b, v_w, v_b, out_w, out_b;
} stem_vae_attention;

typedef struct stem_vae_mid {
    stem_vae_resnet res0, res1;
    stem_vae_attention attn;
} stem_vae_mid;

typedef struct stem_vae_level {
    int n_res;
    stem_vae_resnet res[STEM_VAE_MAX_RESNETS];
    stem_tensor sample_w, sample_b; /* down/upsampler conv; data NULL on the last level */
} stem_vae_level;

typedef struct stem_vae {
    stem_vae_config cfg;
    stem_backend *be;
    stem_dtype dtype;
    stem_weights weights;
    int64_t params;
    /* encoder */
    stem_tensor enc_in_w, enc_in_b, enc_norm_w, enc_norm_b, enc_out_w, enc_out_b, quant_w, quant_b;
    stem_vae_level down[STEM_VAE_MAX_LEVELS];
    stem_vae_mid enc_mid;
    /* decoder (up[i] is diffusers' up_blocks[i]: channels block_out[levels-1-i]) */
    stem_tensor post_quant_w, post_quant_b, dec_in_w, dec_in_b, dec_norm_w, dec_norm_b, dec_out_w, dec_out_b;
    stem_vae_mid dec_mid;
    stem_vae_level up[STEM_VAE_MAX_LEVELS];
    /* chunking: frames per chunk (0 = as many as fit mem_budget bytes of activations) */
    int chunk_frames;
    size_t mem_budget;
    stem_arena *arena[2];
} stem_vae;

/* Parses a vae config.json (AutoencoderKL). Required: block_out_channels,
 * layers_per_block, latent_channels; the others default as in diffusers (act_fn
 * must be silu; block types must be DownEncoderBlock2D / UpDecoderBlock2D). */
stem_status stem_vae_parse_config(const stem_config *c, stem_vae_config *cfg);

/* Loads dir/config.json and the weights of dir onto `be` in `dtype`. */
stem_status stem_vae_load(const char *dir, stem_backend *be, stem_dtype dtype, stem_vae *v);
/* The same from an opened weight set with diffusers' names; takes over `w`. */
stem_status stem_vae_load_weights(const stem_vae_config *cfg, stem_weights *w, stem_vae *v);
void stem_vae_free(stem_vae *v);

/* Latent size of an H x W frame (three stride-2 steps for SD: 512 -> 64, 854 -> 106). */
void stem_vae_latent_size(const stem_vae *v, int64_t H, int64_t W, int64_t *h, int64_t *w);
/* Frame size a latent decodes to (h x w -> 8h x 8w for SD). */
void stem_vae_frame_size(const stem_vae *v, int64_t h, int64_t w, int64_t *H, int64_t *W);

/* frames [F, in_channels, H, W] -> latents [F, latent_channels, h, w]
 * (posterior mean x scaling_factor). Both tensors on any backend, any float dtype. */
stem_status stem_vae_encode(stem_vae *v, const stem_tensor *frames, stem_tensor *latents);
/* latents [F, latent_channels, h, w] (scaled as encode returns them)
 * -> frames [F, out_channels, H, W] (about [-1, 1]). */
stem_status stem_vae_decode(stem_vae *v, const stem_tensor *latents, stem_tensor *frames);

#endif
