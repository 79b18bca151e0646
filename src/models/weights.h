/* A model component's weights (unet/, vae/, text_encoder/ of a diffusers folder):
 * the safetensors files are mapped, and each tensor is converted to the compute dtype
 * and placed on the backend when the model asks for it by name and shape. Asking for
 * a missing tensor, or with the wrong shape, fails with the component, the tensor, and
 * both shapes; stem_weights_finish() then reports tensors nobody asked for, so a
 * config that does not match its weights never runs silently. */
#ifndef STEM_MODELS_WEIGHTS_H
#define STEM_MODELS_WEIGHTS_H

#include "core/backend.h"
#include "core/tensor_map.h"

typedef struct stem_weights {
    char component[64];   /* "unet", for messages */
    char dir[1024];
    stem_backend *be;
    stem_dtype dtype;     /* compute dtype of float weights on `be` */
    stem_tensor_map host; /* all tensors of all files, host views (mapped) */
    stem_tensor_map *files; /* one map per file (own the mappings) */
    int file_count;
    stem_tensor_map placed; /* tensors converted and placed on `be` (owned) */
    unsigned char *used;  /* per host tensor: asked for */
    size_t placed_bytes;
    bool shapes_only;     /* stem_weights_open_shapes: no files; every tensor asked for exists */
    const char *names_note; /* "" or how the names were made (a single file's LDM names), for messages */
} stem_weights;

/* Loads `dir` (e.g. model/unet): diffusion_pytorch_model[.fp16].safetensors,
 * model[.fp16].safetensors, or the shards named by a *.safetensors.index.json.
 * A folder holding only .bin/.ckpt (pickle) weights is refused with a message saying
 * to convert them. `component` names the component in messages. On failure nothing is
 * left to free (stem_weights_close is still safe). */
stem_status stem_weights_open(const char *dir, const char *component, stem_backend *be, stem_dtype dtype,
                              stem_weights *w);
/* A component folder's config.json (into *c) and weights (into *w), as every model
 * loader needs them; `component` names both in errors. On failure nothing is left
 * to free. */
typedef struct stem_config stem_config;
stem_status stem_component_open(const char *dir, const char *component, stem_backend *be, stem_dtype dtype,
                                stem_config *c, stem_weights *w);
/* A weight set without files, for planning from configs alone (`stem edit --dry-run`):
 * every tensor asked for "exists" with the shape asked, its data NULL (nothing may run
 * on it); stem_weights_param_count counts what was asked for. */
stem_status stem_weights_open_shapes(const char *dir, const char *component, stem_backend *be, stem_dtype dtype,
                                     stem_weights *w);
/* Opens one .safetensors file (e.g. a single-file checkpoint). */
stem_status stem_weights_open_file(const char *path, const char *component, stem_backend *be, stem_dtype dtype,
                                   stem_weights *w);
/* The tensor `name` on the backend, checked against `shape` (ndim entries). The
 * pointer stays valid until stem_weights_close. */
stem_status stem_weights_get(stem_weights *w, const char *name, int ndim, const int64_t *shape,
                             const stem_tensor **out);
/* Same, or *out = NULL when the file does not have it. */
stem_status stem_weights_get_optional(stem_weights *w, const char *name, int ndim, const int64_t *shape,
                                      const stem_tensor **out);
/* True when the file holds `name`. */
bool stem_weights_has(const stem_weights *w, const char *name);
/* Fails (STEM_E_FORMAT) when tensors were never asked for, naming up to a few;
 * then releases the host mappings (placed tensors stay). */
stem_status stem_weights_finish(stem_weights *w);
/* Frees everything, placed tensors included. */
void stem_weights_close(stem_weights *w);
/* Parameter count of every tensor in the files. */
int64_t stem_weights_param_count(const stem_weights *w);

#endif
