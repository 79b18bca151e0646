/* A loaded Stable Diffusion model, ready to invert and reconstruct videos:
 * tokenizer, CLIP text encoder, UNet, VAE and the DDIM schedule of a diffusers folder,
 * all on one backend. */
#ifndef STEM_PIPELINE_PIPELINE_H
#define STEM_PIPELINE_PIPELINE_H

#include "core/arena.h"
#include "models/clip_text.h"
#include "models/tokenizer.h"
#include "models/unet.h"
#include "models/vae.h"
#include "stem/ddim.h"

typedef struct stem_pipeline {
    char model_dir[1024];
    stem_backend *be;
    stem_dtype dtype;
    stem_tokenizer *tokenizer;
    stem_clip_text text;
    stem_unet *unet;
    stem_vae vae;
    stem_ddim_config schedule;
    stem_arena *arena; /* UNet activations, reused by every forward */
    bool loaded_text, loaded_vae;
} stem_pipeline;

/* Loads every component of the diffusers folder `model_dir`; errors name the component. */
stem_status stem_pipeline_load(const char *model_dir, stem_backend *be, stem_dtype dtype, stem_pipeline *p);
/* The components' configs and the UNet's structure only (stem_unet_load_shapes; the text
 * encoder's and VAE's configs, the scheduler): config.json files suffice, no weight or
 * tokenizer file is read. For geometry and memory plans (`stem edit --dry-run`); nothing
 * can run on it. */
stem_status stem_pipeline_load_shapes(const char *model_dir, stem_backend *be, stem_dtype dtype, stem_pipeline *p);
void stem_pipeline_free(stem_pipeline *p);

/* context [1, 77, cross_attention_dim] (owned, on the pipeline's backend) for `prompt`;
 * *truncated tells whether the prompt was longer than 77 tokens. */
stem_status stem_pipeline_encode_prompt(stem_pipeline *p, const char *prompt, stem_tensor *context, bool *truncated);

/* How H x W frames go through the model (doc/frame-sizes.md). The VAE encoder's padded
 * stride-2 convolutions take each side x to (x - 1) / 2 + 1 per level (SD, factor 8:
 * 854 -> 427 -> 213 -> 106), the UNet takes the latents down its levels and back, and
 * the decoder returns factor x the latent size: 848 x 480 for 854 x 480 frames. That
 * decoded size is the size of every output frame; it matches the input's top-left
 * out_h x out_w pixels (the encoder drops the last columns and rows, it does not rescale). */
typedef struct stem_frame_geometry {
    int64_t in_h, in_w;         /* frames into the VAE encoder */
    int64_t latent_h, latent_w; /* latents [F, latent_channels, latent_h, latent_w] */
    int unet_levels;
    int64_t unet_h[STEM_UNET_MAX_LEVELS], unet_w[STEM_UNET_MAX_LEVELS]; /* level 0 = latent */
    int64_t out_h, out_w;       /* what the decoder returns: factor * latent */
    int factor;                 /* the VAE's downsampling factor, 2^(levels - 1) */
} stem_frame_geometry;

/* The geometry of H x W frames through p, and what the components must agree on (the
 * VAE's latent channels are the UNet's in/out channels, the VAE reads and writes RGB,
 * the text encoder's width is the UNet's cross_attention_dim). STEM_E_ARG naming the
 * size when the frames are smaller than the VAE's factor on a side. */
stem_status stem_pipeline_geometry(const stem_pipeline *p, int64_t H, int64_t W, stem_frame_geometry *g);

/* A 64-bit FNV-1a fingerprint (16 hex digits) of a diffusers folder: model_index.json,
 * every component's config.json, and each weight file's size and first 1 MiB (its
 * safetensors header and the first tensors). Cheap on multi-GB folders, and it changes
 * when any config, tensor list, dtype or file changes; it is not a cryptographic hash
 * of every weight byte. */
stem_status stem_model_fingerprint(const char *model_dir, char out[17]);

#endif
