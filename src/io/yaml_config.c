/* Reading the original's YAML configs with libyaml's document loader (which keeps
 * the line of every node, for the error messages). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* strdup */
#endif
#include "io/yaml_config.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

#include "io/image.h" /* STEM_IMAGE_MAX_DIM */

typedef enum { T_INT, T_NUM, T_STR } key_type;

static const struct {
    const char *name;
    key_type type;
    size_t offset;
} KEYS[STEM_CFG_KEY_COUNT] = {
    [STEM_CFG_SEED] = {"seed", T_INT, offsetof(stem_yaml_config, seed)},
    [STEM_CFG_DEVICE] = {"device", T_STR, offsetof(stem_yaml_config, device)},
    [STEM_CFG_OUTPUT_PATH] = {"output_path", T_STR, offsetof(stem_yaml_config, output_path)},
    [STEM_CFG_DATA_PATH] = {"data_path", T_STR, offsetof(stem_yaml_config, data_path)},
    [STEM_CFG_WIDTH] = {"width", T_INT, offsetof(stem_yaml_config, width)},
    [STEM_CFG_HEIGHT] = {"height", T_INT, offsetof(stem_yaml_config, height)},
    [STEM_CFG_LATENTS_PATH] = {"latents_path", T_STR, offsetof(stem_yaml_config, latents_path)},
    [STEM_CFG_N_INVERSION_STEPS] = {"n_inversion_steps", T_INT, offsetof(stem_yaml_config, n_inversion_steps)},
    [STEM_CFG_N_FRAMES] = {"n_frames", T_INT, offsetof(stem_yaml_config, n_frames)},
    [STEM_CFG_INVERSION_PROMPT] = {"inversion_prompt", T_STR, offsetof(stem_yaml_config, inversion_prompt)},
    [STEM_CFG_SD_VERSION] = {"sd_version", T_STR, offsetof(stem_yaml_config, sd_version)},
    [STEM_CFG_GUIDANCE_SCALE] = {"guidance_scale", T_NUM, offsetof(stem_yaml_config, guidance_scale)},
    [STEM_CFG_N_TIMESTEPS] = {"n_timesteps", T_INT, offsetof(stem_yaml_config, n_timesteps)},
    [STEM_CFG_PROMPT] = {"prompt", T_STR, offsetof(stem_yaml_config, prompt)},
    [STEM_CFG_NEGATIVE_PROMPT] = {"negative_prompt", T_STR, offsetof(stem_yaml_config, negative_prompt)},
    [STEM_CFG_BATCH_SIZE] = {"batch_size", T_INT, offsetof(stem_yaml_config, batch_size)},
    [STEM_CFG_PNP_ATTN_T] = {"pnp_attn_t", T_NUM, offsetof(stem_yaml_config, pnp_attn_t)},
    [STEM_CFG_PNP_F_T] = {"pnp_f_t", T_NUM, offsetof(stem_yaml_config, pnp_f_t)},
};

const char *stem_config_key_name(stem_config_key k) {
    return (unsigned)k < STEM_CFG_KEY_COUNT ? KEYS[k].name : "?";
}

int stem_config_key_find(const char *name) {
    for (int k = 0; k < STEM_CFG_KEY_COUNT; k++)
        if (!strcmp(KEYS[k].name, name)) return k;
    return -1;
}

const char *stem_yaml_config_text(const stem_yaml_config *c, stem_config_key k, char *buf, size_t len) {
    if ((unsigned)k >= STEM_CFG_KEY_COUNT) return NULL;
    const void *field = (const char *)c + KEYS[k].offset;
    switch (KEYS[k].type) {
    case T_STR: return *(char *const *)field;
    case T_INT:
        /* seed: the unsigned 64-bit Philox key it becomes (a negative seed wraps, as it always has) */
        if (k == STEM_CFG_SEED) snprintf(buf, len, "%llu", (unsigned long long)(uint64_t)*(const int64_t *)field);
        else snprintf(buf, len, "%d", *(const int *)field);
        return buf;
    case T_NUM: snprintf(buf, len, "%.17g", *(const double *)field); return buf;
    }
    return NULL;
}

void stem_yaml_config_free(stem_yaml_config *c) {
    if (!c) return;
    free(c->path);
    for (int k = 0; k < STEM_CFG_KEY_COUNT; k++)
        if (KEYS[k].type == T_STR) free(*(char **)((char *)c + KEYS[k].offset));
    memset(c, 0, sizeof *c);
}

stem_status stem_yaml_config_defaults(stem_yaml_config *c) {
    memset(c, 0, sizeof *c);
    c->seed = 1;
    c->width = c->height = 512;
    c->n_inversion_steps = 50;
    c->n_frames = 0;
    c->guidance_scale = 7.5;
    c->n_timesteps = 50;
    c->batch_size = 8;
    c->pnp_attn_t = 0.5;
    c->pnp_f_t = 0.8;
    c->device = strdup("cuda");
    c->sd_version = strdup("1.5");
    c->negative_prompt = strdup("ugly, blurry, low res, unrealistic, unaesthetic");
    if (!c->device || !c->sd_version || !c->negative_prompt) {
        stem_yaml_config_free(c);
        return stem_fail(STEM_E_NOMEM, "config: out of memory");
    }
    return STEM_OK;
}

#define warn(fn, user, ...) stem_remark(fn, user, "warning", __VA_ARGS__)

static bool is_null_scalar(const yaml_node_t *v) {
    if (v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
    const char *s = (const char *)v->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* Decimal integer, as YAML writes it: [-+]?(0|[1-9][0-9]*). */
static bool parse_int(const char *s, int64_t *out) {
    const char *p = s;
    if (*p == '-' || *p == '+') p++;
    if (!*p || (p[0] == '0' && p[1])) return false;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9') return false;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE) return false;
    *out = v;
    return true;
}

static bool parse_number(const char *s, double *out) {
    if (!*s) return false;
    for (const char *q = s; *q; q++)
        if (!strchr("0123456789+-.eE", *q)) return false; /* no inf/nan/hex */
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno == ERANGE || !isfinite(v)) return false;
    *out = v;
    return true;
}

static const char *node_kind(const yaml_node_t *v) {
    return v->type == YAML_SEQUENCE_NODE ? "a list" : v->type == YAML_MAPPING_NODE ? "a mapping" : "nothing";
}

/* Range rules, by key. NULL when fine, else what is wrong. */
static const char *int_range_problem(stem_config_key k, int64_t v) {
    switch (k) {
    case STEM_CFG_WIDTH:
    case STEM_CFG_HEIGHT:
        return v >= 1 && v <= STEM_IMAGE_MAX_DIM ? NULL : "must be 1..16384";
    case STEM_CFG_N_INVERSION_STEPS:
    case STEM_CFG_N_TIMESTEPS:
        return v >= 1 && v <= 1000 ? NULL : "must be 1..1000";
    case STEM_CFG_N_FRAMES:
    case STEM_CFG_BATCH_SIZE:
        return v >= 1 && v <= 1000000 ? NULL : "must be positive";
    default: return NULL;
    }
}

static stem_status set_value(stem_yaml_config *c, const char *file, stem_config_key k, const yaml_node_t *v) {
    const char *name = KEYS[k].name;
    int line = (int)v->start_mark.line + 1;
    void *field = (char *)c + KEYS[k].offset;
    const char *want = KEYS[k].type == T_INT ? "an integer" : KEYS[k].type == T_NUM ? "a number" : "a string";
    if (v->type != YAML_SCALAR_NODE)
        return stem_fail(STEM_E_FORMAT, "%s:%d: key '%s': expected %s, got %s", file, line, name, want, node_kind(v));
    if (is_null_scalar(v))
        return stem_fail(STEM_E_FORMAT, "%s:%d: key '%s': expected %s, got no value (null)", file, line, name, want);
    const char *text = (const char *)v->data.scalar.value;
    bool plain = v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    switch (KEYS[k].type) {
    case T_STR: {
        char *dup = strdup(text);
        if (!dup) return stem_fail(STEM_E_NOMEM, "%s: out of memory", file);
        free(*(char **)field);
        *(char **)field = dup;
        return STEM_OK;
    }
    case T_INT: {
        int64_t iv;
        if (!plain || !parse_int(text, &iv))
            return stem_fail(STEM_E_FORMAT, "%s:%d: key '%s': expected %s, got %s'%s'", file, line, name, want,
                             plain ? "" : "the quoted string ", text);
        const char *problem = int_range_problem(k, iv);
        if (problem)
            return stem_fail(STEM_E_FORMAT, "%s:%d: key '%s': %lld %s", file, line, name, (long long)iv, problem);
        if (k == STEM_CFG_SEED)
            *(int64_t *)field = iv;
        else
            *(int *)field = (int)iv;
        return STEM_OK;
    }
    case T_NUM: {
        double dv;
        if (!plain || !parse_number(text, &dv))
            return stem_fail(STEM_E_FORMAT, "%s:%d: key '%s': expected %s, got %s'%s'", file, line, name, want,
                             plain ? "" : "the quoted string ", text);
        if ((k == STEM_CFG_PNP_ATTN_T || k == STEM_CFG_PNP_F_T) && !(dv >= 0.0 && dv <= 1.0))
            return stem_fail(STEM_E_FORMAT, "%s:%d: key '%s': %g must be in [0, 1]", file, line, name, dv);
        *(double *)field = dv;
        return STEM_OK;
    }
    }
    return STEM_OK;
}

static stem_status load_doc(yaml_document_t *doc, const char *file, stem_note_fn note, void *user, stem_yaml_config *c) {
    yaml_node_t *root = yaml_document_get_root_node(doc);
    if (!root) return stem_fail(STEM_E_FORMAT, "%s: empty config (no YAML document)", file);
    if (root->type != YAML_MAPPING_NODE)
        return stem_fail(STEM_E_FORMAT, "%s:%d: the config must be a mapping of keys to values, not %s", file,
                         (int)root->start_mark.line + 1,
                         root->type == YAML_SCALAR_NODE ? "a single value" : node_kind(root));
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *key = yaml_document_get_node(doc, p->key);
        yaml_node_t *val = yaml_document_get_node(doc, p->value);
        if (!key || !val) return stem_fail(STEM_E_FORMAT, "%s: malformed YAML document", file);
        int line = (int)key->start_mark.line + 1;
        if (key->type != YAML_SCALAR_NODE)
            return stem_fail(STEM_E_FORMAT, "%s:%d: a key must be a plain name, not %s", file, line, node_kind(key));
        const char *name = (const char *)key->data.scalar.value;
        int k = 0;
        while (k < STEM_CFG_KEY_COUNT && strcmp(KEYS[k].name, name) != 0) k++;
        if (k == STEM_CFG_KEY_COUNT) {
            warn(note, user, "%s:%d: unknown key '%s' (ignored)", file, line, name);
            continue;
        }
        if (c->present & (1u << k))
            warn(note, user, "%s:%d: key '%s' is set again (first on line %d); the last one counts", file, line, name,
                 c->line[k]);
        STEM_TRY(set_value(c, file, (stem_config_key)k, val));
        c->present |= 1u << k;
        c->line[k] = line;
    }
    return STEM_OK;
}

stem_status stem_yaml_config_load(const char *path, stem_note_fn note, void *note_user, stem_yaml_config *out) {
    memset(out, 0, sizeof *out);
    if (!path || !*path) return stem_fail(STEM_E_ARG, "config: no file name given");
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return stem_fail(STEM_E_IO, "config '%s' is a directory", path);
    FILE *fp = fopen(path, "rb");
    if (!fp) return stem_fail(STEM_E_IO, "config '%s': cannot open: %s", path, strerror(errno));
    STEM_TRY(stem_yaml_config_defaults(out));
    out->path = strdup(path);
    yaml_parser_t parser;
    yaml_document_t doc;
    stem_status s = STEM_OK;
    if (!out->path) s = stem_fail(STEM_E_NOMEM, "config '%s': out of memory", path);
    if (s == STEM_OK && !yaml_parser_initialize(&parser)) s = stem_fail(STEM_E_NOMEM, "config '%s': out of memory", path);
    if (s == STEM_OK) {
        yaml_parser_set_input_file(&parser, fp);
        if (!yaml_parser_load(&parser, &doc)) {
            const yaml_mark_t *m = &parser.problem_mark;
            s = stem_fail(STEM_E_FORMAT, "%s:%d:%d: not valid YAML: %s%s%s", path, (int)m->line + 1, (int)m->column + 1,
                          parser.problem ? parser.problem : "syntax error", parser.context ? " " : "",
                          parser.context ? parser.context : "");
        } else {
            s = load_doc(&doc, path, note, note_user, out);
            yaml_document_delete(&doc);
        }
        yaml_parser_delete(&parser);
    }
    if (s == STEM_OK && ferror(fp)) s = stem_fail(STEM_E_IO, "config '%s': read error", path);
    fclose(fp);
    if (s != STEM_OK) stem_yaml_config_free(out);
    return s;
}
