/* Where a model's components come from: a diffusers folder or a single-file checkpoint,
 * optionally with a configuration that overrides (--model-config).
 *
 *   folder    <model>/<component>/config.json and weights, <model>/tokenizer/,
 *             <model>/scheduler/scheduler_config.json
 *   file      one .safetensors in the original LDM layout (models/ldm_names.h): weights
 *             mapped to diffusers names, configs read from the tensors' shapes with SD's
 *             fixed values (models/ldm_config.h); it has no tokenizer and no scheduler:
 *             the tokenizer is the bundled CLIP one (<bundled>/clip for SD 1.x, its vocabulary
 *             with <bundled>/clip-sd2's special tokens for SD 2.x, pad "!"), the scheduler
 *             SD's DDIM values (what diffusers' single-file loader builds)
 *   override  --model-config DIR: DIR/<component>/config.json keys replace the model's (or
 *             the derived) ones, DIR/scheduler/scheduler_config.json and DIR/tokenizer/
 *             replace scheduler and tokenizer — a diffusers folder of the same SD version
 *             (its weights are not read) is one;
 *             --model-config FILE.json: {"unet": {...}, "vae": {...}, "text_encoder": {...},
 *             "scheduler": {...}, "tokenizer": "DIR"}, each optional; the objects'
 *             keys replace the model's, a relative tokenizer folder is taken from the
 *             JSON file's folder.
 * Weights always come from the model; every tensor is still checked by name and shape
 * against the final config, so an override that does not fit the weights fails naming
 * the tensor. */
#ifndef STEM_MODELS_MODEL_SOURCE_H
#define STEM_MODELS_MODEL_SOURCE_H

#include <stdbool.h>

#include "core/tensor_map.h"
#include "models/clip_text.h"
#include "models/ldm_names.h"
#include "models/model_config.h"
#include "models/tokenizer.h"
#include "models/unet.h"
#include "models/vae.h"

typedef struct stem_model_source {
    char path[1024];
    char config[1024];        /* --model-config, "" when none */
    bool single_file;
    bool config_is_dir;
    stem_config override;     /* the JSON file's object (config_is_dir false, config set) */
    stem_tensor_map header;   /* single file: names, shapes and dtypes (no data) */
    stem_ldm_layout layout;   /* single file */
} stem_model_source;

/* Checks that `path` is a diffusers folder (model_index.json) or a .safetensors LDM
 * checkpoint (header only), and that `config` (NULL or "" for none) is a folder or a
 * .json file holding an object with only the keys above. Errors name the path. */
stem_status stem_model_source_open(const char *path, const char *config, stem_model_source *src);
void stem_model_source_close(stem_model_source *src);

/* The config of "unet", "vae" or "text_encoder" after overrides; for a single file, a key
 * the shapes cannot give and no override sets is an error saying what to pass. */
stem_status stem_model_source_config(const stem_model_source *src, const char *component, stem_config *out);

/* Loaders: config (above), weights with diffusers names, checked by name and shape. */
stem_status stem_model_source_load_text(const stem_model_source *src, stem_backend *be, stem_dtype dtype,
                                        stem_clip_text *m);
stem_status stem_model_source_load_unet(const stem_model_source *src, stem_backend *be, stem_dtype dtype,
                                        stem_unet **out);
stem_status stem_model_source_load_vae(const stem_model_source *src, stem_backend *be, stem_dtype dtype,
                                       stem_vae *v);
/* Configs only (no weight is read): the text encoder's and the VAE's parsed configs, and
 * the UNet's structure on data-less weights of the shapes it asks for
 * (stem_weights_open_shapes: sizes and memory plans; it cannot run). A single file's
 * configs come from its header's shapes, as above. */
stem_status stem_model_source_text_config(const stem_model_source *src, stem_clip_text_config *cfg);
stem_status stem_model_source_vae_config(const stem_model_source *src, stem_vae_config *cfg);
stem_status stem_model_source_load_unet_shapes(const stem_model_source *src, stem_backend *be, stem_dtype dtype,
                                               stem_unet **out);

/* The tokenizer's folders (rules above; `bundled` is the folder holding clip/ and
 * clip-sd2/): vocab.json and merges.txt from vocab_dir, tokenizer_config.json and
 * special_tokens_map.json from special_dir. `what` receives where they came from. */
stem_status stem_model_source_tokenizer_dirs(const stem_model_source *src, const char *bundled, char *vocab_dir,
                                             char *special_dir, size_t dir_len, char *what, size_t what_len);
stem_status stem_model_source_tokenizer(const stem_model_source *src, const char *bundled, stem_tokenizer **out,
                                        char *what, size_t what_len);

/* The scheduler config as JSON text (malloc'ed; *json = NULL when the model has none and
 * no override sets one: then SD's DDIM values apply), `what` its origin. */
stem_status stem_model_source_scheduler(const stem_model_source *src, char **json, char *what, size_t what_len);

#endif
