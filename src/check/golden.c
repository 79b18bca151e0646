#include "check/golden.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/host.h"
#include "check/op_catalog.h"
#include "io/safetensors.h"

static stem_status parse_tolerance(const stem_golden *g, const char *key, double *out) {
    const char *v = stem_tensor_map_get_meta(&g->file, key);
    if (!v) return stem_fail(STEM_E_FORMAT, "%s: golden file has no '%s' metadata", g->path, key);
    char *end;
    *out = strtod(v, &end);
    if (end == v || *end || *out < 0) return stem_fail(STEM_E_FORMAT, "%s: metadata %s='%s' is not a tolerance", g->path, key, v);
    return STEM_OK;
}

stem_status stem_golden_load(const char *path, stem_golden *g) {
    memset(g, 0, sizeof *g);
    stem_tensor_map_init(&g->file);
    stem_tensor_map_init(&g->inputs);
    stem_tensor_map_init(&g->expected);
    g->path = strdup(path);
    if (!g->path) return stem_fail(STEM_E_NOMEM, "out of memory");
    stem_status s = stem_safetensors_load(path, -1, &g->file);
    if (s != STEM_OK) return s;
    const char *op = stem_tensor_map_get_meta(&g->file, "op");
    if (!op) return stem_fail(STEM_E_FORMAT, "%s: golden file has no 'op' metadata", path);
    g->op = stem_op_find(op);
    if (!g->op) return stem_fail(STEM_E_NOTFOUND, "%s: unknown op '%s' (see stem op --list)", path, op);
    STEM_TRY(parse_tolerance(g, "rtol", &g->rtol));
    STEM_TRY(parse_tolerance(g, "atol", &g->atol));
    for (int i = 0; i < g->file.meta_count; i++) {
        const stem_meta_entry *m = &g->file.meta[i];
        if (strncmp(m->key, "attr.", 5) != 0) continue;
        char kv[512];
        snprintf(kv, sizeof kv, "%s=%s", m->key + 5, m->value);
        /* stem_attrs keeps a pointer to the value: point into the metadata, which lives as long as g */
        STEM_TRY(stem_attrs_add(&g->attrs, kv));
        g->attrs.values[g->attrs.count - 1] = m->value;
    }
    for (int i = 0; i < g->file.count; i++) {
        const stem_named_tensor *nt = &g->file.items[i];
        stem_tensor view = nt->tensor;
        view.owned = false;
        if (strncmp(nt->name, "in.", 3) == 0) STEM_TRY(stem_tensor_map_put(&g->inputs, nt->name + 3, view));
        else if (strncmp(nt->name, "out.", 4) == 0) STEM_TRY(stem_tensor_map_put(&g->expected, nt->name + 4, view));
        else return stem_fail(STEM_E_FORMAT, "%s: tensor '%s' is neither in.* nor out.*", path, nt->name);
    }
    if (g->expected.count == 0) return stem_fail(STEM_E_FORMAT, "%s: golden file has no out.* tensors", path);
    return STEM_OK;
}

void stem_golden_free(stem_golden *g) {
    stem_attrs_free(&g->attrs);
    stem_tensor_map_free(&g->inputs);
    stem_tensor_map_free(&g->expected);
    stem_tensor_map_free(&g->file);
    free(g->path);
    memset(g, 0, sizeof *g);
}

stem_status stem_golden_round_inputs(stem_golden *g, stem_dtype dt) {
    for (int i = 0; i < g->inputs.count; i++) {
        stem_tensor *in = &g->inputs.items[i].tensor;
        bool is_float = in->dtype == STEM_F32 || in->dtype == STEM_F16 || in->dtype == STEM_BF16;
        if (!is_float || in->dtype == dt) continue;
        stem_tensor low, back;
        STEM_TRY(stem_tensor_to(in, stem_host(), dt, &low));
        stem_status s = stem_tensor_to(&low, stem_host(), in->dtype, &back);
        stem_tensor_free(&low);
        STEM_TRY(s);
        STEM_TRY(stem_tensor_map_put(&g->inputs, g->inputs.items[i].name, back)); /* owned now */
    }
    return STEM_OK;
}

stem_status stem_golden_run(const stem_golden *g, stem_backend *be, stem_dtype dt, stem_tensor_map *outputs) {
    stem_status s = stem_op_execute(g->op, be, dt, &g->inputs, &g->attrs, outputs);
    if (s != STEM_OK) return stem_error_context(s, "%s", g->path);
    return STEM_OK;
}

static double element(const stem_tensor *t, int64_t i) {
    switch (t->dtype) {
    case STEM_F32: return ((const float *)t->data)[i];
    case STEM_F16: return stem_f16_to_f32(((const uint16_t *)t->data)[i]);
    case STEM_BF16: return stem_bf16_to_f32(((const uint16_t *)t->data)[i]);
    case STEM_I32: return ((const int32_t *)t->data)[i];
    case STEM_I64: return (double)((const int64_t *)t->data)[i];
    case STEM_U8: return ((const uint8_t *)t->data)[i];
    default: return NAN;
    }
}

static bool is_int(stem_dtype dt) { return dt == STEM_I32 || dt == STEM_I64 || dt == STEM_U8; }

stem_status stem_compare_tensors(const stem_tensor *got, const stem_tensor *want, double rtol, double atol,
                                 stem_compare *c) {
    memset(c, 0, sizeof *c);
    c->worst_index = -1;
    char a[STEM_SHAPE_STR_LEN], b[STEM_SHAPE_STR_LEN];
    if (!stem_same_shape(got, want))
        return stem_fail(STEM_E_SHAPE, "shape %s, expected %s", stem_shape_str(got, a, sizeof a),
                         stem_shape_str(want, b, sizeof b));
    if (is_int(got->dtype) != is_int(want->dtype))
        return stem_fail(STEM_E_DTYPE, "dtype %s, expected %s", stem_dtype_name(got->dtype), stem_dtype_name(want->dtype));
    if (!got->backend->host_memory || !want->backend->host_memory)
        return stem_fail(STEM_E_ARG, "compare: tensors must be on the host");
    bool exact = is_int(want->dtype);
    c->numel = stem_numel(want);
    double worst_excess = -1;
    for (int64_t i = 0; i < c->numel; i++) {
        double g = element(got, i), w = element(want, i);
        double diff = fabs(g - w);
        /* A NaN or Inf on either side is a violation, even NaN vs NaN or Inf vs Inf: the
         * reference generators only store finite outputs, and two of stem's own results
         * that both overflow are not "equal". The difference counts as infinite. */
        bool nonfinite = !isfinite(g) || !isfinite(w);
        if (nonfinite) {
            c->nonfinite++;
            diff = INFINITY;
        }
        double limit = exact ? 0 : atol + rtol * fabs(w);
        if (diff > c->max_abs) c->max_abs = diff;
        if (fabs(w) > atol && diff / fabs(w) > c->max_rel) c->max_rel = diff / fabs(w);
        if (nonfinite || !(diff <= limit)) c->violations++; /* !(<=): a NaN could not pass */
        double excess = isinf(diff) ? INFINITY : diff - limit; /* the first NaN/Inf is the worst */
        if (excess > worst_excess) {
            worst_excess = excess;
            c->worst_index = i;
            c->worst_got = g;
            c->worst_want = w;
        }
    }
    return STEM_OK;
}

void stem_compare_describe(const stem_compare *c, double rtol, double atol, char *buf, size_t len) {
    int n = snprintf(buf, len, "max abs %.3g, max rel %.3g, %lld of %lld outside rtol %.3g atol %.3g", c->max_abs,
                     c->max_rel, (long long)c->violations, (long long)c->numel, rtol, atol);
    if (c->nonfinite && n > 0 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n, ", %lld NaN/Inf", (long long)c->nonfinite);
    if (c->violations && n > 0 && (size_t)n < len)
        snprintf(buf + n, len - (size_t)n, " (worst at flat index %lld: got %.9g, want %.9g)", (long long)c->worst_index,
                 c->worst_got, c->worst_want);
}
