/* Front end of the em_block backend op: shape checks, strides, dispatch. */
#include "stem/em_ops.h"

#include <string.h>

static int64_t prod(const int64_t *s, int from, int to) {
    int64_t p = 1;
    for (int i = from; i < to; i++) p *= s[i];
    return p;
}

stem_status stem_heads_view_make(const stem_tensor *t, stem_head_layout layout, int64_t heads, const char *what,
                                 stem_heads_view *out) {
    char sb[STEM_SHAPE_STR_LEN];
    memset(out, 0, sizeof *out);
    out->t = t;
    out->layout = layout;
    if (layout == STEM_HEADS_MAJOR) {
        if (t->ndim != 3)
            return stem_fail(STEM_E_SHAPE, "%s has shape %s, expected [heads, tokens, head_dim]", what,
                             stem_shape_str(t, sb, sizeof sb));
        if (heads && t->shape[0] != heads)
            return stem_fail(STEM_E_SHAPE, "%s has shape %s, expected %lld heads on axis 0", what,
                             stem_shape_str(t, sb, sizeof sb), (long long)heads);
        out->heads = t->shape[0];
        out->n = t->shape[1];
        out->d = t->shape[2];
    } else {
        if (t->ndim < 2)
            return stem_fail(STEM_E_SHAPE, "%s has shape %s, expected [tokens, channels] (or [frames, tokens, channels])",
                             what, stem_shape_str(t, sb, sizeof sb));
        int64_t c = t->shape[t->ndim - 1];
        if (heads < 1 || c % heads != 0)
            return stem_fail(STEM_E_SHAPE, "%s has %lld channels, which do not split into %lld heads (channels must be heads x head_dim)",
                             what, (long long)c, (long long)heads);
        out->heads = heads;
        out->n = prod(t->shape, 0, t->ndim - 1);
        out->d = c / heads;
    }
    if (out->heads < 1 || out->d < 1)
        return stem_fail(STEM_E_SHAPE, "%s has shape %s: no heads or an empty head width", what,
                         stem_shape_str(t, sb, sizeof sb));
    return STEM_OK;
}

/* Element strides of head h, token i: ptr + h*head_stride + i*row_stride. */
static stem_attn_operand operand(const stem_heads_view *v, int64_t row0) {
    size_t es = stem_dtype_size(v->t->dtype);
    stem_attn_operand o = {0};
    if (v->layout == STEM_HEADS_MAJOR) {
        o.head_stride = v->n * v->d;
        o.row_stride = v->d;
    } else {
        o.head_stride = v->d;
        o.row_stride = v->heads * v->d;
    }
    o.ptr = (const char *)v->t->data + (size_t)(row0 * o.row_stride) * es;
    return o;
}

static stem_status expect_f32(const char *what, const stem_tensor *t, const stem_tensor *like, int ndim,
                              const int64_t *shape) {
    char sb[STEM_SHAPE_STR_LEN];
    if (t->dtype != STEM_F32)
        return stem_fail(STEM_E_DTYPE, "em_block: %s is %s, expected f32 (EM statistics are f32)", what,
                         stem_dtype_name(t->dtype));
    if (t->backend != like->backend)
        return stem_fail(STEM_E_ARG, "em_block: %s lives on another backend than k", what);
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        stem_tensor want = {.ndim = ndim};
        memcpy(want.shape, shape, (size_t)ndim * sizeof *shape);
        char wb[STEM_SHAPE_STR_LEN];
        return stem_fail(STEM_E_SHAPE, "em_block: %s has shape %s, expected %s", what, stem_shape_str(t, sb, sizeof sb),
                         stem_shape_str(&want, wb, sizeof wb));
    }
    return STEM_OK;
}

stem_status stem_em_block(const stem_heads_view *k, const stem_heads_view *v, int64_t row0, int64_t rows,
                          const stem_tensor *mu, float tau, float norm_eps, bool overwrite, stem_tensor *zk,
                          stem_tensor *zsum, stem_tensor *zv) {
    const stem_tensor *kt = k->t;
    stem_backend *be = kt->backend;
    if (!be || (!kt->data && stem_numel(kt) > 0)) return stem_fail(STEM_E_ARG, "em_block: k has no data");
    if (kt->dtype != STEM_F32 && kt->dtype != STEM_F16 && kt->dtype != STEM_BF16)
        return stem_fail(STEM_E_DTYPE, "em_block: k is %s, expected a float tensor", stem_dtype_name(kt->dtype));
    if (zv) {
        if (!v) return stem_fail(STEM_E_ARG, "em_block: zv given without v");
        if (v->t->backend != be || v->t->dtype != kt->dtype || v->layout != k->layout || v->heads != k->heads ||
            v->n != k->n || v->d != k->d)
            return stem_fail(STEM_E_SHAPE, "em_block: v must match k (backend, dtype, layout, heads, tokens, width)");
    }
    if (row0 < 0 || rows < 0 || row0 + rows > k->n)
        return stem_fail(STEM_E_ARG, "em_block: tokens [%lld, %lld) are outside 0..%lld", (long long)row0,
                         (long long)(row0 + rows), (long long)k->n);
    if (!(tau > 0.0f)) return stem_fail(STEM_E_ARG, "em_block: tau must be > 0 (got %g)", (double)tau);
    if (!(norm_eps >= 0.0f)) return stem_fail(STEM_E_ARG, "em_block: norm_eps must be >= 0");
    if (mu->ndim != 3) return stem_fail(STEM_E_SHAPE, "em_block: mu must be [heads, bases, head_dim]");
    int64_t m = mu->shape[1];
    int64_t hmd[3] = {k->heads, m, k->d}, hm[2] = {k->heads, m};
    STEM_TRY(expect_f32("mu", mu, kt, 3, hmd));
    STEM_TRY(expect_f32("zk", zk, kt, 3, hmd));
    STEM_TRY(expect_f32("zsum", zsum, kt, 2, hm));
    if (zv) STEM_TRY(expect_f32("zv", zv, kt, 3, hmd));
    if (m < 1) return stem_fail(STEM_E_SHAPE, "em_block: no bases");
    if (!be->ops->em_block)
        return stem_fail(STEM_E_UNSUPPORTED, "em_block: the %s backend has no EM kernel", be->name);
    stem_em_block_params p = {
        .dtype = kt->dtype, .heads = k->heads, .rows = rows, .m = m, .d = k->d, .tau = tau, .norm_eps = norm_eps,
        .overwrite = overwrite, .k = operand(k, row0), .mu = mu->data, .zk = zk->data, .zsum = zsum->data,
        .zv = zv ? zv->data : NULL,
    };
    if (zv) p.v = operand(v, row0);
    if (rows == 0 && !overwrite) return STEM_OK;
    if (!be->ops->em_block) return stem_fail(STEM_E_UNSUPPORTED, "em_block: not supported by backend '%s'", be->name);
    return be->ops->em_block(be, &p);
}
