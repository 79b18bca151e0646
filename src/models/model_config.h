/* Reading a component's config.json (diffusers/transformers): typed getters with
 * defaults, and errors that name the file and key. */
#ifndef STEM_MODELS_MODEL_CONFIG_H
#define STEM_MODELS_MODEL_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"

typedef struct stem_config {
    char path[1024];
    void *root; /* json_object * (json-c), kept opaque here */
} stem_config;

/* STEM_E_IO when missing/unreadable, STEM_E_FORMAT when not a JSON object. */
stem_status stem_config_load(const char *path, stem_config *c);
void stem_config_free(stem_config *c);
bool stem_config_has(const stem_config *c, const char *key);
/* A missing key gives the default; a present key of the wrong type is an error
 * ("unet/config.json: 'layers_per_block' is a string, expected an integer"). */
stem_status stem_config_int(const stem_config *c, const char *key, int64_t dflt, int64_t *out);
stem_status stem_config_float(const stem_config *c, const char *key, double dflt, double *out);
stem_status stem_config_bool(const stem_config *c, const char *key, bool dflt, bool *out);
/* The string stays valid while c is loaded; dflt may be NULL (then *out = NULL when missing). */
stem_status stem_config_string(const stem_config *c, const char *key, const char *dflt, const char **out);
/* An integer array, or a single integer repeated `count` times (e.g. attention_head_dim
 * given as 8 or as [5, 10, 20, 20]). *n receives the length; more than max is an error. */
stem_status stem_config_ints(const stem_config *c, const char *key, int64_t *out, int max, int *n);
/* A string array (e.g. down_block_types); strings stay valid while c is loaded. */
stem_status stem_config_strings(const stem_config *c, const char *key, const char **out, int max, int *n);
/* Requires the key: STEM_E_FORMAT naming file and key when absent. */
stem_status stem_config_require(const stem_config *c, const char *key);

#endif
