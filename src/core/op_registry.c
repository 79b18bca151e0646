/* Attribute parsing and the host-side op runner shared by `stem op`, the golden
 * tests and the parity tests. The op table itself is in op_defs.c. */
#include "core/op_registry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>

#include "core/host.h"

static const stem_attr_spec *find_spec(const stem_op_def *op, const char *name) {
    for (const stem_attr_spec *s = op->attrs; s && s->name; s++)
        if (strcmp(s->name, name) == 0) return s;
    return NULL;
}

stem_status stem_attrs_add(stem_attrs *attrs, const char *key_eq_value) {
    const char *eq = strchr(key_eq_value, '=');
    if (!eq || eq == key_eq_value)
        return stem_fail(STEM_E_ARG, "attribute '%s' is not KEY=VALUE", key_eq_value);
    if (attrs->count == STEM_MAX_ATTRS) return stem_fail(STEM_E_ARG, "more than %d attributes", STEM_MAX_ATTRS);
    /* keys are stored as "key" copies; values point past the '=' of the caller's string */
    size_t klen = (size_t)(eq - key_eq_value);
    char *key = malloc(klen + 1);
    if (!key) return stem_fail(STEM_E_NOMEM, "out of memory");
    memcpy(key, key_eq_value, klen);
    key[klen] = '\0';
    for (int i = 0; i < attrs->count; i++)
        if (strcmp(attrs->keys[i], key) == 0) {
            free(key);
            return stem_fail(STEM_E_ARG, "attribute '%.*s' given twice", (int)klen, key_eq_value);
        }
    attrs->keys[attrs->count] = key;
    attrs->values[attrs->count] = eq + 1;
    attrs->count++;
    return STEM_OK;
}

void stem_attrs_free(stem_attrs *attrs) {
    for (int i = 0; i < attrs->count; i++) free((char *)attrs->keys[i]);
    attrs->count = 0;
}

stem_status stem_attrs_validate(const stem_op_def *op, const stem_attrs *attrs) {
    for (int i = 0; i < attrs->count; i++)
        if (!find_spec(op, attrs->keys[i])) {
            char known[512] = "";
            size_t used = 0;
            for (const stem_attr_spec *s = op->attrs; s && s->name && used < sizeof known - 64; s++)
                used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", used ? ", " : "", s->name);
            return stem_fail(STEM_E_ARG, "op %s has no attribute '%s' (attributes: %s)", op->name, attrs->keys[i],
                             used ? known : "none");
        }
    for (const stem_attr_spec *s = op->attrs; s && s->name; s++) {
        if (s->default_value) continue;
        bool given = false;
        for (int i = 0; i < attrs->count; i++) given |= strcmp(attrs->keys[i], s->name) == 0;
        if (!given) return stem_fail(STEM_E_ARG, "op %s needs --attr %s=... (%s)", op->name, s->name, s->help);
    }
    return STEM_OK;
}

static stem_status raw_value(const stem_op_def *op, const stem_attrs *a, const char *name, const char **out) {
    const stem_attr_spec *spec = find_spec(op, name);
    for (int i = 0; a && i < a->count; i++)
        if (strcmp(a->keys[i], name) == 0) {
            *out = a->values[i];
            return STEM_OK;
        }
    if (!spec) return stem_fail(STEM_E_ARG, "op %s: internal: no attribute spec '%s'", op->name, name);
    if (!spec->default_value) return stem_fail(STEM_E_ARG, "op %s needs --attr %s=...", op->name, name);
    *out = spec->default_value;
    return STEM_OK;
}

stem_status stem_attr_int(const stem_op_def *op, const stem_attrs *a, const char *name, int64_t *out) {
    const char *v;
    STEM_TRY(raw_value(op, a, name, &v));
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 0);
    if (errno || end == v || *end)
        return stem_fail(STEM_E_ARG, "op %s: attribute %s='%s' is not an integer", op->name, name, v);
    *out = x;
    return STEM_OK;
}

stem_status stem_attr_float(const stem_op_def *op, const stem_attrs *a, const char *name, double *out) {
    const char *v;
    STEM_TRY(raw_value(op, a, name, &v));
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end)
        return stem_fail(STEM_E_ARG, "op %s: attribute %s='%s' is not a number", op->name, name, v);
    *out = x;
    return STEM_OK;
}

stem_status stem_attr_bool(const stem_op_def *op, const stem_attrs *a, const char *name, bool *out) {
    const char *v;
    STEM_TRY(raw_value(op, a, name, &v));
    if (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes")) *out = true;
    else if (!strcmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no")) *out = false;
    else return stem_fail(STEM_E_ARG, "op %s: attribute %s='%s' is not a boolean (0/1/true/false)", op->name, name, v);
    return STEM_OK;
}

stem_status stem_attr_string(const stem_op_def *op, const stem_attrs *a, const char *name, const char **out) {
    return raw_value(op, a, name, out);
}

stem_status stem_attr_ints(const stem_op_def *op, const stem_attrs *a, const char *name, int64_t *out, int max,
                           int *count) {
    const char *v;
    STEM_TRY(raw_value(op, a, name, &v));
    int n = 0;
    const char *p = v;
    while (*p) {
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 0);
        if (errno || end == p || (*end && *end != ','))
            return stem_fail(STEM_E_ARG, "op %s: attribute %s='%s' is not a comma-separated list of integers",
                             op->name, name, v);
        if (n == max) return stem_fail(STEM_E_ARG, "op %s: attribute %s='%s' has more than %d values", op->name, name, v, max);
        out[n++] = x;
        p = *end ? end + 1 : end;
    }
    if (n == 0) return stem_fail(STEM_E_ARG, "op %s: attribute %s is empty", op->name, name);
    *count = n;
    return STEM_OK;
}

static bool is_float(stem_dtype dt) { return dt == STEM_F32 || dt == STEM_F16 || dt == STEM_BF16; }

/* "name?" -> name without the '?' into buf; returns whether optional. */
static bool input_name(const char *spec, char *buf, size_t len) {
    size_t n = strlen(spec);
    bool optional = n && spec[n - 1] == '?';
    if (optional) n--;
    if (n >= len) n = len - 1;
    memcpy(buf, spec, n);
    buf[n] = '\0';
    return optional;
}

stem_status stem_op_execute(const stem_op_def *op, stem_backend *be, stem_dtype dtype,
                            const stem_tensor_map *host_in, const stem_attrs *attrs, stem_tensor_map *host_out) {
    STEM_TRY(stem_attrs_validate(op, attrs));
    for (int i = 0; i < host_in->count; i++) {
        bool known = false;
        char name[64];
        for (const char *const *s = op->inputs; *s; s++) {
            input_name(*s, name, sizeof name);
            known |= strcmp(name, host_in->items[i].name) == 0;
        }
        if (!known) return stem_fail(STEM_E_ARG, "op %s has no input '%s'", op->name, host_in->items[i].name);
    }
    stem_tensor_map dev_in, dev_out;
    stem_tensor_map_init(&dev_in);
    stem_tensor_map_init(&dev_out);
    stem_status s = STEM_OK;
    for (const char *const *spec = op->inputs; *spec && s == STEM_OK; spec++) {
        char name[64];
        bool optional = input_name(*spec, name, sizeof name);
        stem_tensor *t = stem_tensor_map_get(host_in, name);
        if (!t) {
            if (!optional) s = stem_fail(STEM_E_NOTFOUND, "op %s needs input '%s'", op->name, name);
            continue;
        }
        stem_tensor moved;
        s = stem_tensor_to(t, be, is_float(t->dtype) ? dtype : t->dtype, &moved);
        if (s != STEM_OK) s = stem_error_context(s, "op %s: input '%s'", op->name, name);
        if (s == STEM_OK) s = stem_tensor_map_put(&dev_in, name, moved);
    }
    if (s == STEM_OK) s = op->run(op, be, &dev_in, attrs, &dev_out);
    if (s == STEM_OK) s = be->ops->synchronize(be);
    for (int i = 0; i < dev_out.count && s == STEM_OK; i++) {
        stem_tensor *t = &dev_out.items[i].tensor, host;
        s = stem_tensor_to(t, stem_host(), is_float(t->dtype) ? STEM_F32 : t->dtype, &host);
        if (s == STEM_OK) s = stem_tensor_map_put(host_out, dev_out.items[i].name, host);
    }
    stem_tensor_map_free(&dev_in);
    stem_tensor_map_free(&dev_out);
    return s;
}

stem_status stem_op_input(const stem_op_def *op, const stem_tensor_map *in, const char *name,
                          const stem_tensor **out) {
    const stem_tensor *t = stem_tensor_map_get(in, name);
    if (!t) return stem_fail(STEM_E_NOTFOUND, "op %s needs input '%s'", op->name, name);
    *out = t;
    return STEM_OK;
}

stem_status stem_op_output(stem_backend *be, stem_tensor_map *out, const char *name, stem_dtype dt, int ndim,
                           const int64_t *shape, stem_tensor **t) {
    stem_tensor fresh;
    STEM_TRY(stem_tensor_new(be, dt, ndim, shape, &fresh));
    STEM_TRY(stem_tensor_map_put(out, name, fresh));
    *t = stem_tensor_map_get(out, name);
    return STEM_OK;
}
