#include "models/model_config.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

stem_status stem_config_load(const char *path, stem_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->path, sizeof c->path, "%s", path);
    FILE *f = fopen(path, "rb");
    if (!f) return stem_fail(STEM_E_IO, "%s: cannot open: %s", path, strerror(errno));
    fclose(f);
    json_object *root = json_object_from_file(path);
    if (!root) return stem_fail(STEM_E_FORMAT, "%s: not valid JSON: %s", path, json_util_get_last_err());
    if (!json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return stem_fail(STEM_E_FORMAT, "%s: expected a JSON object at the top level", path);
    }
    c->root = root;
    return STEM_OK;
}

stem_status stem_config_parse(const char *json, const char *what, stem_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->path, sizeof c->path, "%s", what);
    enum json_tokener_error err = json_tokener_success;
    json_object *root = json_tokener_parse_verbose(json, &err);
    if (!root) return stem_fail(STEM_E_FORMAT, "%s: not valid JSON: %s", what, json_tokener_error_desc(err));
    if (!json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return stem_fail(STEM_E_FORMAT, "%s: expected a JSON object at the top level", what);
    }
    c->root = root;
    return STEM_OK;
}

stem_status stem_config_new(const char *what, stem_config *c) { return stem_config_parse("{}", what, c); }

stem_status stem_config_set_json(stem_config *c, const char *key, const char *json_value) {
    json_object *v = json_tokener_parse(json_value);
    if (!v && strcmp(json_value, "null") != 0)
        return stem_fail(STEM_E_ARG, "%s: '%s': not a JSON value: %s", c->path, key, json_value);
    json_object_object_add(c->root, key, v);
    return STEM_OK;
}

stem_status stem_config_merge(stem_config *c, const stem_config *over, const char *what) {
    json_object_object_foreach((json_object *)over->root, key, val) {
        json_object_object_add(c->root, key, json_object_get(val)); /* shared, reference counted */
    }
    if (what) snprintf(c->path, sizeof c->path, "%s", what);
    return STEM_OK;
}

void stem_config_free(stem_config *c) {
    if (c->root) json_object_put(c->root);
    c->root = NULL;
}

static json_object *get(const stem_config *c, const char *key) {
    json_object *v = NULL;
    if (!c->root || !json_object_object_get_ex(c->root, key, &v)) return NULL;
    return json_object_is_type(v, json_type_null) ? NULL : v;
}

bool stem_config_has(const stem_config *c, const char *key) { return get(c, key) != NULL; }

static stem_status type_error(const stem_config *c, const char *key, const char *expected) {
    return stem_fail(STEM_E_FORMAT, "%s: '%s' is %s, expected %s", c->path, key,
                     json_type_to_name(json_object_get_type(get(c, key))), expected);
}

stem_status stem_config_require(const stem_config *c, const char *key) {
    if (!get(c, key)) return stem_fail(STEM_E_FORMAT, "%s: missing required key '%s'", c->path, key);
    return STEM_OK;
}

stem_status stem_config_int(const stem_config *c, const char *key, int64_t dflt, int64_t *out) {
    json_object *v = get(c, key);
    if (!v) { *out = dflt; return STEM_OK; }
    if (!json_object_is_type(v, json_type_int)) return type_error(c, key, "an integer");
    *out = json_object_get_int64(v);
    return STEM_OK;
}

stem_status stem_config_float(const stem_config *c, const char *key, double dflt, double *out) {
    json_object *v = get(c, key);
    if (!v) { *out = dflt; return STEM_OK; }
    if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
        return type_error(c, key, "a number");
    *out = json_object_get_double(v);
    return STEM_OK;
}

stem_status stem_config_bool(const stem_config *c, const char *key, bool dflt, bool *out) {
    json_object *v = get(c, key);
    if (!v) { *out = dflt; return STEM_OK; }
    if (!json_object_is_type(v, json_type_boolean)) return type_error(c, key, "a boolean");
    *out = json_object_get_boolean(v);
    return STEM_OK;
}

stem_status stem_config_string(const stem_config *c, const char *key, const char *dflt, const char **out) {
    json_object *v = get(c, key);
    if (!v) { *out = dflt; return STEM_OK; }
    if (!json_object_is_type(v, json_type_string)) return type_error(c, key, "a string");
    *out = json_object_get_string(v);
    return STEM_OK;
}

stem_status stem_config_ints(const stem_config *c, const char *key, int64_t *out, int max, int *n) {
    json_object *v = get(c, key);
    if (!v) return stem_fail(STEM_E_FORMAT, "%s: missing required key '%s'", c->path, key);
    if (json_object_is_type(v, json_type_int)) {
        out[0] = json_object_get_int64(v);
        *n = 1;
        return STEM_OK;
    }
    if (!json_object_is_type(v, json_type_array)) return type_error(c, key, "an integer or an array of integers");
    int len = (int)json_object_array_length(v);
    if (len > max) return stem_fail(STEM_E_FORMAT, "%s: '%s' has %d entries, at most %d supported", c->path, key, len, max);
    for (int i = 0; i < len; i++) {
        json_object *e = json_object_array_get_idx(v, (size_t)i);
        if (!json_object_is_type(e, json_type_int))
            return stem_fail(STEM_E_FORMAT, "%s: '%s'[%d] is not an integer", c->path, key, i);
        out[i] = json_object_get_int64(e);
    }
    *n = len;
    return STEM_OK;
}

stem_status stem_config_strings(const stem_config *c, const char *key, const char **out, int max, int *n) {
    json_object *v = get(c, key);
    if (!v) return stem_fail(STEM_E_FORMAT, "%s: missing required key '%s'", c->path, key);
    if (!json_object_is_type(v, json_type_array)) return type_error(c, key, "an array of strings");
    int len = (int)json_object_array_length(v);
    if (len > max) return stem_fail(STEM_E_FORMAT, "%s: '%s' has %d entries, at most %d supported", c->path, key, len, max);
    for (int i = 0; i < len; i++) {
        json_object *e = json_object_array_get_idx(v, (size_t)i);
        if (!json_object_is_type(e, json_type_string))
            return stem_fail(STEM_E_FORMAT, "%s: '%s'[%d] is not a string", c->path, key, i);
        out[i] = json_object_get_string(e);
    }
    *n = len;
    return STEM_OK;
}
