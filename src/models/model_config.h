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
/* The same from JSON text (`what` names it in messages, as c->path). */
stem_status stem_config_parse(const char *json, const char *what, stem_config *c);
/* An empty object named `what` (c->path), to fill with stem_config_set_json. */
stem_status stem_config_new(const char *what, stem_config *c);
/* Sets key to the JSON value `json_value` ("8", "[16, 32]", "\"silu\"", "true"). */
stem_status stem_config_set_json(stem_config *c, const char *key, const char *json_value);
/* Copies every top-level key of `over` into `c` (over's values win); c->path becomes
 * `what` when not NULL. */
stem_status stem_config_merge(stem_config *c, const stem_config *over, const char *what);
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
