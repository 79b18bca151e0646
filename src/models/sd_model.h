/* A Stable Diffusion model on disk: a diffusers folder (model_index.json, unet/, vae/,
 * text_encoder/, tokenizer/, scheduler/) or a single-file original (LDM) checkpoint
 * (.safetensors; names mapped by models/ldm_names.h). stem_sd_inspect() finds what is
 * there without loading any weights (headers only): components present and missing,
 * parameter counts, weight dtypes, the SD version, the scheduler; `stem info` prints it.
 *
 * Version rules (read from the configs, never from the folder name):
 *   SD 1.x: CLIP ViT-L/14 text encoder (hidden_act quick_gelu, 768 wide, 12 layers) and
 *           a UNet whose transformer proj_in/proj_out are 1x1 convs
 *           (use_linear_projection false), cross_attention_dim 768;
 *   SD 2.x: OpenCLIP ViT-H text encoder (gelu, 1024 wide, 23 of its 24 layers) and a
 *           UNet with linear projections, cross_attention_dim 1024; "768-v" models
 *           predict v (scheduler prediction_type v_prediction).
 * A model that follows one family's rules with other sizes (the tiny test models) is
 * reported as that family with "tiny/custom sizes". */
#ifndef STEM_MODELS_SD_MODEL_H
#define STEM_MODELS_SD_MODEL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "models/ldm_names.h"

typedef enum stem_sd_version {
    STEM_SD_UNKNOWN = 0,
    STEM_SD_1X,
    STEM_SD_2X,
} stem_sd_version;

#define STEM_SD_MAX_COMPONENTS 8

typedef struct stem_sd_component {
    char name[32];        /* "unet", "vae", "text_encoder", "tokenizer", "scheduler", ... */
    char library[32];     /* from model_index.json ("diffusers", "transformers"), "" if not listed */
    char class_name[64];  /* "UNet2DConditionModel", ... */
    bool listed;          /* named in model_index.json with a class */
    bool required;        /* stem needs it */
    bool present;         /* its folder (or its tensors, for a single file) exists */
    bool usable;          /* present and nothing wrong found */
    char weights[160];    /* file(s) holding the weights, "" for tokenizer/scheduler */
    int64_t tensors, params;
    char dtypes[48];      /* "F16", "F16, F32" */
    char detail[384];     /* one line of architecture facts */
    char problem[512];    /* why it is not usable; "" when fine */
} stem_sd_component;

typedef struct stem_sd_info {
    char path[1024];
    bool single_file;
    char pipeline_class[64], diffusers_version[32];
    int n_components;
    stem_sd_component comp[STEM_SD_MAX_COMPONENTS];
    stem_sd_version version;
    bool custom_sizes;    /* follows a family's rules with unusual sizes */
    char version_text[320];
    char scheduler[320];  /* one-line scheduler summary */
    int64_t text_hidden, text_layers, unet_cross_dim;
    char text_act[32];    /* hidden_act of the text encoder, "" if unknown */
    bool unet_linear_proj;
    char prediction[32];  /* scheduler prediction_type, "" if unknown */
    stem_ldm_summary ldm; /* single_file only */
    int missing;          /* required components missing or unusable */
} stem_sd_info;

/* Inspects a diffusers folder or a single-file .safetensors checkpoint. Returns
 * STEM_OK whenever it could look (missing components are reported in `info`, with
 * info->missing > 0); an error when `path` does not exist, a folder has no
 * model_index.json (the message says which component folders it has), or a file is
 * not a safetensors LDM checkpoint (.ckpt/.pt pickles are refused with a message saying
 * to convert them). */
stem_status stem_sd_inspect(const char *path, stem_sd_info *info);

/* The human-readable report of `stem info`. */
void stem_sd_info_print(const stem_sd_info *info, FILE *out);

/* Opens the weights of `component` ("unet", "vae" or "text_encoder") of the model at
 * `path` with diffusers names: <path>/<component>/ of a diffusers folder, or the
 * mapped tensors of a single-file checkpoint (`lay`, e.g. the UNet's layers_per_block
 * and the text encoder's num_hidden_layers from the configs used with it; NULL infers
 * them from the names). Models then load from `w` (stem_clip_text_load_weights,
 * stem_vae_load_weights, ...). */
stem_status stem_sd_open_weights(const char *path, const char *component, const stem_ldm_layout *lay,
                                 stem_backend *be, stem_dtype dtype, stem_weights *w);

/* The component `name`, or NULL. */
const stem_sd_component *stem_sd_find(const stem_sd_info *info, const char *name);

/* "SD 1.x", "SD 2.x", "unknown" */
const char *stem_sd_version_name(stem_sd_version v);

#endif
