/* Single-file Stable Diffusion checkpoints in the original LDM layout
 * (v1-5-pruned.safetensors, v2-1_512-ema-pruned.safetensors, ...): the one place that
 * maps their tensor names to diffusers/transformers names, with the semantics of
 * diffusers 0.20.2 convert_from_ckpt.py (convert_ldm_unet_checkpoint,
 * convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint, convert_open_clip_checkpoint):
 *
 *   model.diffusion_model.*   -> unet         input_blocks.i.j / middle_block.j /
 *                                             output_blocks.i.j -> down_blocks / mid_block /
 *                                             up_blocks (block = (i-1) / (layers+1) ...),
 *                                             in_layers.0 -> norm1, in_layers.2 -> conv1,
 *                                             out_layers.0 -> norm2, out_layers.3 -> conv2,
 *                                             emb_layers.1 -> time_emb_proj,
 *                                             skip_connection -> conv_shortcut, op -> conv
 *   first_stage_model.*       -> vae          down.i.block.j -> down_blocks.i.resnets.j,
 *                                             up.i -> up_blocks.(levels-1-i), norm_out ->
 *                                             conv_norm_out, nin_shortcut -> conv_shortcut,
 *                                             mid.attn_1.{norm,q,k,v,proj_out} ->
 *                                             mid_block.attentions.0.{group_norm,to_q,to_k,
 *                                             to_v,to_out.0} with [c, c, 1, 1] -> [c, c]
 *   cond_stage_model.transformer.*  -> text_encoder (SD 1.x: transformers' CLIP names)
 *   cond_stage_model.model.*        -> text_encoder (SD 2.x OpenCLIP: resblocks.n ->
 *                                             encoder.layers.n, attn.in_proj_* split in
 *                                             three rows blocks into q/k/v_proj, ln_1/ln_2,
 *                                             mlp.c_fc/c_proj -> fc1/fc2; layers at or
 *                                             beyond the text config's num_hidden_layers,
 *                                             text_projection and logit_scale are unused)
 *
 * Every mapped tensor is a view of the file's tensor (a row block, or a reshape that
 * drops trailing 1x1 axes), so nothing is copied before the model asks for it. */
#ifndef STEM_MODELS_LDM_NAMES_H
#define STEM_MODELS_LDM_NAMES_H

#include <stdbool.h>

#include "core/tensor_map.h"
#include "models/weights.h"

typedef enum stem_ldm_component {
    STEM_LDM_UNET = 0,
    STEM_LDM_VAE,
    STEM_LDM_TEXT,
    STEM_LDM_COMPONENTS
} stem_ldm_component;

/* "unet", "vae", "text_encoder" */
const char *stem_ldm_component_name(stem_ldm_component c);

typedef enum stem_ldm_text_kind {
    STEM_LDM_TEXT_NONE = 0,
    STEM_LDM_TEXT_CLIP,     /* SD 1.x: cond_stage_model.transformer.text_model.* */
    STEM_LDM_TEXT_OPENCLIP, /* SD 2.x: cond_stage_model.model.* */
} stem_ldm_text_kind;

/* What the name mapping needs to know about the architecture. */
typedef struct stem_ldm_layout {
    int unet_layers_per_block; /* diffusers layers_per_block (LDM num_res_blocks) */
    int unet_levels;           /* len(block_out_channels) */
    int vae_levels;
    int text_layers;           /* layers to map; inferred: all for CLIP, all but the last for
                                  OpenCLIP (diffusers' SD 2.x config uses 23 of 24) */
    int text_layers_in_file;
    stem_ldm_text_kind text_kind;
} stem_ldm_layout;

/* One diffusers tensor made from one LDM tensor. */
typedef struct stem_ldm_target {
    stem_ldm_component component;
    char name[256];
    int64_t row_start, rows; /* a block of rows (axis 0) of the LDM tensor; rows = 0: all */
    bool squeeze;            /* drop trailing size-1 axes ([c, c, 1, 1] -> [c, c]) */
} stem_ldm_target;

/* Maps one LDM tensor name (of `ndim` axes, axis 0 of size rows0) to its diffusers
 * names: returns how many (1, or 3 for OpenCLIP's fused q/k/v), or 0 when the tensor is
 * not used (then *why says why: "EMA copy", "unused by CLIPTextModel", ...). */
int stem_ldm_map_name(const char *ldm_name, int ndim, int64_t rows0, const stem_ldm_layout *lay,
                      stem_ldm_target out[3], const char **why);

/* The layout from the tensor names of a checkpoint (header only is enough).
 * STEM_E_FORMAT when the file is not an LDM checkpoint (no model.diffusion_model.*,
 * first_stage_model.* or cond_stage_model.* tensors). */
stem_status stem_ldm_infer_layout(const stem_tensor_map *m, stem_ldm_layout *lay);

/* Opens one component of a single-file checkpoint as a weight set with diffusers
 * names (models then load from it as from a diffusers folder). `lay` = NULL infers the
 * layout; pass one to match a diffusers config (e.g. text_layers = 23 for SD 2.x). */
stem_status stem_ldm_weights_open(const char *path, stem_ldm_component comp, const stem_ldm_layout *lay,
                                  stem_backend *be, stem_dtype dtype, stem_weights *w);

#define STEM_LDM_MAX_DTYPES 4

/* What `stem info` reports about a checkpoint. */
typedef struct stem_ldm_summary {
    stem_ldm_layout layout;
    int64_t tensors;                            /* in the file */
    int64_t mapped[STEM_LDM_COMPONENTS];        /* diffusers tensors per component */
    int64_t params[STEM_LDM_COMPONENTS];        /* their element counts */
    int64_t ignored, ignored_params;            /* LDM tensors not mapped */
    char ignored_examples[512];                 /* "'model_ema.x' (EMA copy), ..." */
    char dtypes[STEM_LDM_COMPONENTS][48];       /* "F16" or "F16, F32" */
    int64_t text_hidden;                        /* width of the token embedding, 0 if none */
    bool unet_linear_proj;                      /* proj_in is a linear layer (SD 2.x) */
    int64_t unet_context_dim;                   /* attn2.to_k input width */
} stem_ldm_summary;

stem_status stem_ldm_inspect(const char *path, stem_ldm_summary *s);

#endif
