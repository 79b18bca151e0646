/* A loaded Stable Diffusion model, ready to invert and reconstruct videos:
 * tokenizer, CLIP text encoder, UNet, VAE and the DDIM schedule of a diffusers folder or a
 * single-file checkpoint, all on one backend. */
#ifndef STEM_PIPELINE_PIPELINE_H
#define STEM_PIPELINE_PIPELINE_H

#include "core/arena.h"
#include "models/clip_text.h"
#include "models/tokenizer.h"
#include "models/unet.h"
#include "models/vae.h"
#include "stem/ddim.h"

typedef struct stem_pipeline {
    char model_dir[1024];       /* the diffusers folder or single-file checkpoint */
    char model_config[1024];    /* --model-config, "" when none */
    bool single_file;
    char tokenizer_from[1400];  /* where the tokenizer and the scheduler came from */
    char scheduler_from[1400];
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

/* Loads every component of `model`: a diffusers folder, or a single-file .safetensors
 * checkpoint in the original LDM layout (SD 1.x / 2.x), whose configs come from the
 * tensors' shapes, whose tokenizer is the bundled CLIP one ($STEM_REFDATA or the source
 * tree's refdata/tokenizer) and whose scheduler is SD's DDIM; `model_config` (NULL: none)
 * overrides configs, tokenizer and scheduler (models/model_source.h). Errors name the
 * component, and the tensor or key. */
stem_status stem_pipeline_load_config(const char *model, const char *model_config, stem_backend *be, stem_dtype dtype,
                                      stem_pipeline *p);
/* The same without --model-config. */
stem_status stem_pipeline_load(const char *model, stem_backend *be, stem_dtype dtype, stem_pipeline *p);
/* The components' configs and the UNet's structure only (no tokenizer, text encoder or
 * VAE weights; the UNet's data-less, models/model_source.h): a diffusers folder's
 * config.json files suffice, a single file's header (its configs come from the tensors'
 * shapes), with `model_config` (NULL: none) as for stem_pipeline_load_config. No weight
 * or tokenizer file is read. For geometry and memory plans (`stem edit --dry-run`);
 * nothing can run on it. */
stem_status stem_pipeline_load_shapes(const char *model, const char *model_config, stem_backend *be, stem_dtype dtype,
                                      stem_pipeline *p);
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

/* A 64-bit FNV-1a fingerprint (16 hex digits) of a model. A diffusers folder:
 * model_index.json, every component's config.json, and each weight file's size and first
 * 1 MiB (its safetensors header and the first tensors). A single-file checkpoint: its
 * size, first MiB (the whole header of an SD checkpoint) and last MiB, and the tokenizer
 * files it runs with. Then `model_config` (NULL or "": none): a folder as a model folder,
 * a .json file's bytes. Cheap on multi-GB models, and it changes when any config, tensor
 * list, dtype or file changes; it is not a cryptographic hash of every weight byte. */
stem_status stem_model_fingerprint(const char *model, const char *model_config, char out[17]);

#endif
