/* The diffusers configs of a single-file (LDM) checkpoint, read from its tensors' shapes.
 * A checkpoint stores weights, not hyper-parameters; what the shapes give:
 *
 *   unet  in/out_channels and conv kernels (conv_in, out.2), block_out_channels (each
 *         level's first resnet), layers_per_block (models/ldm_names.h layout), which
 *         levels have transformers (input_blocks.i.1 / output_blocks.i.1 proj_in) and how
 *         many (transformer_blocks.n), cross_attention_dim (attn2.to_k), use_linear_projection
 *         (proj_in is [C, C], not [C, C, 1, 1]), time_embedding_dim (time_embed.0)
 *   vae   in/out_channels, block_out_channels (encoder.down.i.block.0), layers_per_block,
 *         latent_channels (decoder.conv_in)
 *   text  vocab_size and hidden_size (token embedding), max_position_embeddings, intermediate_size
 *         (first MLP), num_hidden_layers (all CLIP layers; OpenCLIP: all but the last,
 *         as SD 2.x conditions on the penultimate layer), hidden_act by layout (CLIP
 *         quick_gelu, OpenCLIP gelu)
 *
 * and what they cannot give takes Stable Diffusion's fixed values, as diffusers 0.20.2's
 * single-file loader takes them from v1-/v2-inference.yaml: norm_num_groups 32 (the UNet
 * and the VAE, GroupNorm32 in the original code), attention heads 8 per level with 1x1-conv
 * projections (SD 1.x num_heads) or channels / 64 with linear ones (SD 2.x
 * num_head_channels), text heads hidden / 64 (ViT-L/14 12, ViT-H 16), VAE scaling_factor
 * 0.18215, the defaults of diffusers for the rest. A fixed value that does not fit the
 * shapes (64 does not divide 16 channels) is not set; its key is listed in `unfit`, and
 * the caller asks for it (--model-config). */
#ifndef STEM_MODELS_LDM_CONFIG_H
#define STEM_MODELS_LDM_CONFIG_H

#include "models/ldm_names.h"
#include "models/model_config.h"

#define STEM_LDM_MAX_UNFIT 4

typedef struct stem_ldm_unfit {
    int n;
    char key[STEM_LDM_MAX_UNFIT][32];    /* config keys left unset */
    char why[STEM_LDM_MAX_UNFIT][160];   /* "SD 2.x's 64 channels a head do not divide block_out_channels [16, 32]" */
} stem_ldm_unfit;

/* The config of `comp` from the header `m` of the checkpoint at `path` (tensor names and
 * shapes; data not needed) and its layout (stem_ldm_infer_layout). c->path names the
 * origin in messages ("<path> (unet config from the tensor shapes)"). A tensor needed for
 * a size that is missing or has the wrong rank: STEM_E_FORMAT naming it. */
stem_status stem_ldm_derive_config(const char *path, const stem_tensor_map *m, const stem_ldm_layout *lay,
                                   stem_ldm_component comp, stem_config *c, stem_ldm_unfit *unfit);

#endif
