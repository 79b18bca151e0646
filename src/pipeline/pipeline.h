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
void stem_pipeline_free(stem_pipeline *p);

/* context [1, 77, cross_attention_dim] (owned, on the pipeline's backend) for `prompt`;
 * *truncated tells whether the prompt was longer than 77 tokens. */
stem_status stem_pipeline_encode_prompt(stem_pipeline *p, const char *prompt, stem_tensor *context, bool *truncated);

/* A 64-bit FNV-1a fingerprint (16 hex digits) of a diffusers folder: model_index.json,
 * every component's config.json, and each weight file's size and first 1 MiB (its
 * safetensors header and the first tensors). Cheap on multi-GB folders, and it changes
 * when any config, tensor list, dtype or file changes; it is not a cryptographic hash
 * of every weight byte. */
stem_status stem_model_fingerprint(const char *model_dir, char out[17]);

#endif
