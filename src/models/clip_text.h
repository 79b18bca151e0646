/* The CLIP text encoder of Stable Diffusion (doc/algorithm.md §3), with the semantics of
 * transformers 4.33.3 CLIPTextModel: what the pipeline uses is the last hidden state
 * after the final layer norm, [B, L, hidden] (L = 77 tokens).
 *
 *   x = token_embedding[ids] + position_embedding[0..L)
 *   per layer (pre-LN):  x += out_proj(causal_self_attention(layer_norm1(x)))
 *                        x += fc2(act(fc1(layer_norm2(x))))
 *   out = final_layer_norm(x)
 *
 * Attention: heads = num_attention_heads, q scaled by head_dim^-0.5, a causal mask
 * (token i sees tokens 0..i; SD pipelines pass no padding mask). 77 tokens make the
 * L x L score matrix tiny, so it is computed explicitly: matmul, an additive -inf
 * mask above the diagonal, softmax, matmul. act = hidden_act: "quick_gelu" (SD 1.x,
 * CLIP ViT-L/14), "gelu" (SD 2.x, OpenCLIP ViT-H; exact erf form) or "gelu_new"
 * (tanh form). Everything is read from text_encoder/config.json. */
#ifndef STEM_MODELS_CLIP_TEXT_H
#define STEM_MODELS_CLIP_TEXT_H

#include "core/arena.h"
#include "core/backend.h"
#include "core/ops.h"
#include "models/model_config.h"
#include "models/weights.h"

typedef struct stem_clip_text_config {
    int64_t hidden;       /* hidden_size */
    int64_t layers;       /* num_hidden_layers */
    int64_t heads;        /* num_attention_heads */
    int64_t intermediate; /* intermediate_size */
    int64_t max_positions; /* max_position_embeddings */
    int64_t vocab;        /* vocab_size */
    double ln_eps;        /* layer_norm_eps */
    char hidden_act[32];
    stem_unary_kind act;
} stem_clip_text_config;

/* Weights are views (not owned) of the tensors placed by `weights`. */
typedef struct stem_clip_layer {
    stem_tensor ln1_w, ln1_b, q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b;
    stem_tensor ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
} stem_clip_layer;

typedef struct stem_clip_text {
    stem_clip_text_config cfg;
    stem_backend *be;
    stem_dtype dtype;
    stem_weights weights; /* owns the placed tensors below */
    stem_tensor tok_emb, pos_emb, final_ln_w, final_ln_b;
    stem_clip_layer *layer;
    stem_arena *arena;    /* activations of one forward */
    stem_tensor mask;     /* [mask_len, mask_len] additive causal mask on be */
    int64_t mask_len;
    int64_t params;       /* parameters in the weight files */
} stem_clip_text;

/* Parses a text_encoder config.json. Required keys: hidden_size, num_hidden_layers,
 * num_attention_heads, intermediate_size, max_position_embeddings, vocab_size;
 * hidden_act and layer_norm_eps default as in transformers (quick_gelu, 1e-5).
 * An unknown hidden_act is STEM_E_UNSUPPORTED naming the file and the value. */
stem_status stem_clip_text_parse_config(const stem_config *c, stem_clip_text_config *cfg);

/* Loads dir/config.json and dir's weights (model.safetensors, fp16 variants,
 * shards) onto `be` in `dtype` (weights are converted, e.g. fp16 -> f32). Every
 * tensor is checked by name and shape; tensors the config does not use are an error
 * (text_model.embeddings.position_ids, a buffer, is allowed). Names with or without the
 * "text_model." prefix (transformers < 5 / >= 5) load. */
stem_status stem_clip_text_load(const char *dir, stem_backend *be, stem_dtype dtype, stem_clip_text *m);

/* The same from an opened weight set with transformers' names (e.g. a single-file
 * checkpoint mapped by models/ldm_names.h); takes over `w` (also on failure). */
stem_status stem_clip_text_load_weights(const stem_clip_text_config *cfg, stem_weights *w, stem_clip_text *m);

/* ids [B, L] int32 (any backend; 1 <= L <= max_positions) -> out [B, L, hidden]
 * (any backend, any float dtype). Token ids outside the vocabulary are an error. */
stem_status stem_clip_text_forward(stem_clip_text *m, const stem_tensor *ids, stem_tensor *out);

void stem_clip_text_free(stem_clip_text *m);

#endif
