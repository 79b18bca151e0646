/* The op table: each entry names its inputs, attributes and outputs, and a run
 * function that reads attributes, allocates outputs and calls the front end in
 * core/ops.c. `stem op --list` prints this table; the golden tests cover it. */
#include <math.h>
#include <string.h>

#include "core/op_registry.h"
#include "core/ops.h"

/* ---- helpers ----------------------------------------------------------------------- */

static const stem_tensor *in_opt(const stem_tensor_map *in, const char *name) { return stem_tensor_map_get(in, name); }

static stem_status out_like(stem_backend *be, stem_tensor_map *out, const char *name, const stem_tensor *x,
                            stem_tensor **t) {
    return stem_op_output(be, out, name, x->dtype, x->ndim, x->shape, t);
}

/* "auto" -> 1/sqrt(d), else the number. */
static stem_status attention_scale(const stem_op_def *op, const stem_attrs *a, int64_t d, float *scale) {
    const char *v;
    STEM_TRY(stem_attr_string(op, a, "scale", &v));
    if (strcmp(v, "auto") == 0) {
        *scale = (float)(1.0 / sqrt((double)d));
        return STEM_OK;
    }
    double s;
    STEM_TRY(stem_attr_float(op, a, "scale", &s));
    *scale = (float)s;
    return STEM_OK;
}

#define IO(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NO_INPUTS ((const char *const[]){NULL})
#define ATTRS(...) ((const stem_attr_spec[]){__VA_ARGS__, {NULL, 0, NULL, NULL}})
#define NO_ATTRS ((const stem_attr_spec[]){{NULL, 0, NULL, NULL}})

/* ---- run functions ---------------------------------------------------------------------- */

static stem_status run_matmul(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                              const stem_attrs *a, stem_tensor_map *out) {
    const stem_tensor *x = NULL, *w = NULL, *c = in_opt(in, "c");
    STEM_TRY(stem_op_input(op, in, "a", &x));
    STEM_TRY(stem_op_input(op, in, "b", &w));
    bool ta, tb;
    double alpha, beta;
    STEM_TRY(stem_attr_bool(op, a, "trans_a", &ta));
    STEM_TRY(stem_attr_bool(op, a, "trans_b", &tb));
    STEM_TRY(stem_attr_float(op, a, "alpha", &alpha));
    STEM_TRY(stem_attr_float(op, a, "beta", &beta));
    if (x->ndim < 2 || w->ndim < 2) return stem_fail(STEM_E_SHAPE, "matmul: a and b need at least 2 dimensions");
    int64_t shape[STEM_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 2] = x->shape[x->ndim - (ta ? 1 : 2)];
    shape[x->ndim - 1] = w->shape[w->ndim - (tb ? 2 : 1)];
    stem_tensor *y;
    STEM_TRY(stem_op_output(be, out, "y", x->dtype, x->ndim, shape, &y));
    if (c) STEM_TRY(stem_tensor_copy(c, y));
    else if (beta != 0.0) return stem_fail(STEM_E_ARG, "matmul: beta=%g needs input 'c'", beta);
    return stem_matmul(x, w, ta, tb, (float)alpha, c ? (float)beta : 0.0f, y);
}

static stem_status run_linear(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                              const stem_attrs *a, stem_tensor_map *out) {
    const stem_tensor *x = NULL, *w = NULL;
    STEM_TRY(stem_op_input(op, in, "x", &x));
    STEM_TRY(stem_op_input(op, in, "weight", &w));
    if (x->ndim < 1 || w->ndim != 2) return stem_fail(STEM_E_SHAPE, "linear: weight must be [out, in]");
    int64_t shape[STEM_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = w->shape[0];
    stem_tensor *y;
    STEM_TRY(stem_op_output(be, out, "y", x->dtype, x->ndim, shape, &y));
    return stem_linear(x, w, in_opt(in, "bias"), y);
}

static stem_status run_conv2d(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                              const stem_attrs *a, stem_tensor_map *out) {
    const stem_tensor *x = NULL, *w = NULL;
    STEM_TRY(stem_op_input(op, in, "x", &x));
    STEM_TRY(stem_op_input(op, in, "weight", &w));
    int64_t st[2], pd[4];
    int nst, npd;
    STEM_TRY(stem_attr_ints(op, a, "stride", st, 2, &nst));
    STEM_TRY(stem_attr_ints(op, a, "padding", pd, 4, &npd));
    if (nst == 1) st[1] = st[0];
    int pad[4];
    if (npd == 1) pad[0] = pad[1] = pad[2] = pad[3] = (int)pd[0];
    else if (npd == 2) { pad[0] = pad[1] = (int)pd[0]; pad[2] = pad[3] = (int)pd[1]; }
    else if (npd == 4) for (int i = 0; i < 4; i++) pad[i] = (int)pd[i];
    else return stem_fail(STEM_E_ARG, "conv2d: padding takes 1, 2 or 4 values (p | ph,pw | top,bottom,left,right)");
    if (x->ndim != 4 || w->ndim != 4) return stem_fail(STEM_E_SHAPE, "conv2d: x and weight must be 4-D");
    int64_t shape[4] = {x->shape[0], w->shape[0], stem_conv_out_size(x->shape[2], w->shape[2], (int)st[0], pad[0], pad[1]),
                        stem_conv_out_size(x->shape[3], w->shape[3], (int)st[1], pad[2], pad[3])};
    stem_tensor *y;
    STEM_TRY(stem_op_output(be, out, "y", x->dtype, 4, shape, &y));
    return stem_conv2d(x, w, in_opt(in, "bias"), (int)st[0], (int)st[1], pad, y);
}

static stem_status run_group_norm(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                                  const stem_attrs *a, stem_tensor_map *out) {
    const stem_tensor *x = NULL;
    STEM_TRY(stem_op_input(op, in, "x", &x));
    int64_t groups;
    double eps;
    bool silu;
    STEM_TRY(stem_attr_int(op, a, "groups", &groups));
    STEM_TRY(stem_attr_float(op, a, "eps", &eps));
    STEM_TRY(stem_attr_bool(op, a, "silu", &silu));
    stem_tensor *y;
    STEM_TRY(out_like(be, out, "y", x, &y));
    return stem_group_norm(x, in_opt(in, "gamma"), in_opt(in, "beta"), (int)groups, (float)eps, silu, y);
}

static stem_status run_layer_norm(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                                  const stem_attrs *a, stem_tensor_map *out) {
    const stem_tensor *x = NULL;
    STEM_TRY(stem_op_input(op, in, "x", &x));
    double eps;
    STEM_TRY(stem_attr_float(op, a, "eps", &eps));
    stem_tensor *y;
    STEM_TRY(out_like(be, out, "y", x, &y));
    return stem_layer_norm(x, in_opt(in, "gamma"), in_opt(in, "beta"), (float)eps, y);
}

static stem_status run_softmax(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                               const stem_attrs *a, stem_tensor_map *out) {
    const stem_tensor *x = NULL;
    STEM_TRY(stem_op_input(op, in, "x", &x));
    double scale;
    STEM_TRY(stem_attr_float(op, a, "scale", &scale));
    stem_tensor *y;
    STEM_TRY(out_like(be, out, "y", x, &y));
    return stem_softmax(x, (float)scale, y);
}

static stem_status run_unary_kind(stem_unary_kind kind, const stem_op_def *op, stem_backend *be,
                                  const stem_tensor_map *in, stem_tensor_map *out) {
    const stem_tensor *x = NULL;
    STEM_TRY(stem_op_input(op, in, "x", &x));
    stem_tensor *y;
    STEM_TRY(out_like(be, out, "y", x, &y));
    return stem_unary(kind, x, y);
}
#define UNARY_RUN(fn, kind)                                                                                \
    static stem_status fn(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,             \
                          const stem_attrs *a, stem_tensor_map *out) {                                     \
        return run_unary_kind(kind, op, be, in, out);                                                      \
    }
UNARY_RUN(run_silu, STEM_UNARY_SILU)
UNARY_RUN(run_gelu, STEM_UNARY_GELU)
UNARY_RUN(run_gelu_tanh, STEM_UNARY_GELU_TANH)
UNARY_RUN(run_quick_gelu, STEM_UNARY_QUICK_GELU)

static stem_status run_geglu(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                             const stem_attrs *a, stem_tensor_map *out) {
    const stem_tensor *x = NULL;
    STEM_TRY(stem_op_input(op, in, "x", &x));
    if (x->ndim < 1) return stem_fail(STEM_E_SHAPE, "geglu: x must have a last axis");
    int64_t shape[STEM_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] /= 2;
    stem_tensor *y;
    STEM_TRY(stem_op_output(be, out, "y", x->dtype, x->ndim, shape, &y));
    return stem_geglu(x, y);
}

static stem_status run_binary_kind(stem_binary_kind kind, const stem_op_def *op, stem_backend *be,
                                   const stem_tensor_map *in, stem_tensor_map *out) {
    const stem_tensor *x = NULL, *z = NULL;
    STEM_TRY(stem_op_input(op, in, "a", &x));
    STEM_TRY(stem_op_input(op, in, "b", &z));
    int nd = x->ndim > z->ndim ? x->ndim : z->ndim;
    int64_t shape[STEM_MAX_DIMS];
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - x->ndim), ib = i - (nd - z->ndim);
        int64_t da = ia >= 0 ? x->shape[ia] : 1, db = ib >= 0 ? z->shape[ib] : 1;
        shape[i] = da == 1 ? db : da;
    }
    stem_tensor *y;
    STEM_TRY(stem_op_output(be, out, "y", x->dtype, nd, shape, &y));
    return stem_binary(kind, x, z, y);
}
#define BINARY_RUN(fn, kind)                                                                               \
    static stem_status fn(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,             \
                          const stem_attrs *a, stem_tensor_map *out) {                                     \
        return run_binary_kind(kind, op, be, in, out);                                                     \
    }
BINARY_RUN(run_add, STEM_BINARY_ADD)
BINARY_RUN(run_sub, STEM_BINARY_SUB)
BINARY_RUN(run_mul, STEM_BINARY_MUL)
BINARY_RUN(run_div, STEM_BINARY_DIV)

static stem_status run_scale(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                             const stem_attrs *a, stem_tensor_map *out) {
    const stem_tensor *x = NULL;
    STEM_TRY(stem_op_input(op, in, "x", &x));
    double alpha, beta;
    STEM_TRY(stem_attr_float(op, a, "alpha", &alpha));
    STEM_TRY(stem_attr_float(op, a, "beta", &beta));
    stem_tensor *y;
    STEM_TRY(out_like(be, out, "y", x, &y));
    return stem_affine(x, (float)alpha, (float)beta, y);
}

static stem_status run_upsample(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                                const stem_attrs *a, stem_tensor_map *out) {
    const stem_tensor *x = NULL;
    STEM_TRY(stem_op_input(op, in, "x", &x));
    if (x->ndim < 2) return stem_fail(STEM_E_SHAPE, "upsample_nearest: x must be [..., h, w]");
    int64_t shape[STEM_MAX_DIMS], size[2];
    memcpy(shape, x->shape, sizeof shape);
    const char *v;
    STEM_TRY(stem_attr_string(op, a, "size", &v));
    if (strcmp(v, "2x") == 0) {
        size[0] = 2 * x->shape[x->ndim - 2];
        size[1] = 2 * x->shape[x->ndim - 1];
    } else {
        int n;
        STEM_TRY(stem_attr_ints(op, a, "size", size, 2, &n));
        if (n != 2 || size[0] < 1 || size[1] < 1)
            return stem_fail(STEM_E_ARG, "upsample_nearest: size must be 'h_out,w_out' (positive)");
    }
    shape[x->ndim - 2] = size[0];
    shape[x->ndim - 1] = size[1];
    stem_tensor *y;
    STEM_TRY(stem_op_output(be, out, "y", x->dtype, x->ndim, shape, &y));
    return stem_upsample_nearest(x, y);
}

static stem_status run_concat(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                              const stem_attrs *a, stem_tensor_map *out) {
    static const char *names[] = {"x0", "x1", "x2", "x3"};
    const stem_tensor *xs[4];
    int count = 0;
    for (int i = 0; i < 4; i++) {
        const stem_tensor *t = in_opt(in, names[i]);
        if (!t) break;
        xs[count++] = t;
    }
    if (count < 2) return stem_fail(STEM_E_NOTFOUND, "concat needs inputs x0 and x1 (then x2, x3 in order)");
    int64_t axis;
    STEM_TRY(stem_attr_int(op, a, "axis", &axis));
    if (axis < 0) axis += xs[0]->ndim;
    if (axis < 0 || axis >= xs[0]->ndim) return stem_fail(STEM_E_ARG, "concat: axis is outside the tensors");
    int64_t shape[STEM_MAX_DIMS];
    memcpy(shape, xs[0]->shape, sizeof shape);
    shape[axis] = 0;
    for (int i = 0; i < count; i++) shape[axis] += xs[i]->ndim > axis ? xs[i]->shape[axis] : 0;
    stem_tensor *y;
    STEM_TRY(stem_op_output(be, out, "y", xs[0]->dtype, xs[0]->ndim, shape, &y));
    return stem_concat(xs, count, (int)axis, y);
}

static stem_status run_slice(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                             const stem_attrs *a, stem_tensor_map *out) {
    const stem_tensor *x = NULL;
    STEM_TRY(stem_op_input(op, in, "x", &x));
    int64_t axis, start, length;
    STEM_TRY(stem_attr_int(op, a, "axis", &axis));
    STEM_TRY(stem_attr_int(op, a, "start", &start));
    STEM_TRY(stem_attr_int(op, a, "length", &length));
    int64_t given = axis;
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis >= x->ndim)
        return stem_fail(STEM_E_ARG, "slice: axis %lld is outside -%d..%d for the %d-D input 'x'", (long long)given,
                         x->ndim, x->ndim - 1, x->ndim);
    if (length < 0) return stem_fail(STEM_E_ARG, "slice: length %lld is negative", (long long)length);
    int64_t shape[STEM_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[axis] = length;
    stem_tensor *y;
    STEM_TRY(stem_op_output(be, out, "y", x->dtype, x->ndim, shape, &y));
    return stem_slice(x, (int)axis, start, y);
}

static stem_status run_permute(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                               const stem_attrs *a, stem_tensor_map *out) {
    const stem_tensor *x = NULL;
    STEM_TRY(stem_op_input(op, in, "x", &x));
    int64_t p64[STEM_MAX_DIMS];
    int n;
    STEM_TRY(stem_attr_ints(op, a, "perm", p64, STEM_MAX_DIMS, &n));
    if (n != x->ndim) return stem_fail(STEM_E_ARG, "permute: perm has %d entries for a %d-D tensor", n, x->ndim);
    int perm[STEM_MAX_DIMS];
    int64_t shape[STEM_MAX_DIMS];
    for (int i = 0; i < n; i++) {
        if (p64[i] < 0 || p64[i] >= n) return stem_fail(STEM_E_ARG, "permute: perm entry %lld is out of range", (long long)p64[i]);
        perm[i] = (int)p64[i];
        shape[i] = x->shape[perm[i]];
    }
    stem_tensor *y;
    STEM_TRY(stem_op_output(be, out, "y", x->dtype, n, shape, &y));
    return stem_permute(x, perm, y);
}

static stem_status run_timestep(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                                const stem_attrs *a, stem_tensor_map *out) {
    const stem_tensor *t = NULL;
    STEM_TRY(stem_op_input(op, in, "t", &t));
    int64_t dim;
    bool flip;
    double shift, period;
    STEM_TRY(stem_attr_int(op, a, "dim", &dim));
    STEM_TRY(stem_attr_bool(op, a, "flip_sin_to_cos", &flip));
    STEM_TRY(stem_attr_float(op, a, "freq_shift", &shift));
    STEM_TRY(stem_attr_float(op, a, "max_period", &period));
    if (t->ndim != 1) return stem_fail(STEM_E_SHAPE, "timestep_embedding: t must be [n]");
    /* the timestep stays f32 whatever the compute dtype (it can be 981: f16 would round it) */
    stem_tensor t32 = *t, conv = {0};
    if (t->dtype != STEM_F32) {
        STEM_TRY(stem_tensor_new(be, STEM_F32, 1, t->shape, &conv));
        stem_status s = stem_cast(t, &conv);
        if (s != STEM_OK) { stem_tensor_free(&conv); return s; }
        t32 = conv;
    }
    int64_t shape[2] = {t->shape[0], dim};
    stem_tensor *y;
    stem_status s = stem_op_output(be, out, "y", t->dtype, 2, shape, &y);
    if (s == STEM_OK) s = stem_timestep_embedding(&t32, flip, (float)shift, (float)period, y);
    stem_tensor_free(&conv);
    return s;
}

static stem_status run_attention(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                                 const stem_attrs *a, stem_tensor_map *out) {
    const stem_tensor *q = NULL, *k = NULL, *v = NULL;
    STEM_TRY(stem_op_input(op, in, "q", &q));
    STEM_TRY(stem_op_input(op, in, "k", &k));
    STEM_TRY(stem_op_input(op, in, "v", &v));
    if (q->ndim < 2 || v->ndim != q->ndim) return stem_fail(STEM_E_SHAPE, "attention: q, k, v need the same rank >= 2");
    float scale;
    STEM_TRY(attention_scale(op, a, q->shape[q->ndim - 1], &scale));
    int64_t shape[STEM_MAX_DIMS];
    memcpy(shape, q->shape, sizeof shape);
    shape[q->ndim - 1] = v->shape[v->ndim - 1];
    stem_tensor *o;
    STEM_TRY(stem_op_output(be, out, "out", q->dtype, q->ndim, shape, &o));
    return stem_attention(q, k, v, scale, o);
}

static stem_status run_mha(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                           const stem_attrs *a, stem_tensor_map *out) {
    const stem_tensor *q = NULL, *k = NULL, *v = NULL;
    STEM_TRY(stem_op_input(op, in, "q", &q));
    STEM_TRY(stem_op_input(op, in, "k", &k));
    STEM_TRY(stem_op_input(op, in, "v", &v));
    int64_t heads;
    STEM_TRY(stem_attr_int(op, a, "heads", &heads));
    if (q->ndim != 3 || v->ndim != 3 || heads < 1 || heads > 1024 || q->shape[2] % heads)
        return stem_fail(STEM_E_SHAPE, "mha: q, k, v must be [batch, tokens, heads*dim] with heads dividing dim");
    float scale;
    STEM_TRY(attention_scale(op, a, q->shape[2] / heads, &scale));
    int64_t shape[3] = {q->shape[0], q->shape[1], v->shape[2]};
    stem_tensor *o;
    STEM_TRY(stem_op_output(be, out, "out", q->dtype, 3, shape, &o));
    return stem_attention_heads(q, k, v, (int)heads, scale, o);
}

static stem_status run_gather(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                              const stem_attrs *a, stem_tensor_map *out) {
    const stem_tensor *src = NULL, *idx = NULL;
    STEM_TRY(stem_op_input(op, in, "src", &src));
    STEM_TRY(stem_op_input(op, in, "idx", &idx));
    if (src->ndim != 2 || idx->ndim != 1) return stem_fail(STEM_E_SHAPE, "gather_rows: src must be [n, c], idx [m]");
    int64_t shape[2] = {idx->shape[0], src->shape[1]};
    stem_tensor *y;
    STEM_TRY(stem_op_output(be, out, "y", src->dtype, 2, shape, &y));
    return stem_gather_rows(src, idx, y);
}

static stem_status run_argmax_cos(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                                  const stem_attrs *a, stem_tensor_map *out) {
    const stem_tensor *x = NULL, *ref = NULL;
    STEM_TRY(stem_op_input(op, in, "a", &x));
    STEM_TRY(stem_op_input(op, in, "ref", &ref));
    if (x->ndim != 2 && x->ndim != 3) return stem_fail(STEM_E_SHAPE, "argmax_cos: a must be [n, c] or [b, n, c]");
    stem_tensor *idx;
    STEM_TRY(stem_op_output(be, out, "idx", STEM_I32, x->ndim - 1, x->shape, &idx));
    return stem_argmax_cos(x, ref, idx);
}

static stem_status run_mean_std(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                                const stem_attrs *a, stem_tensor_map *out) {
    const stem_tensor *x = NULL;
    STEM_TRY(stem_op_input(op, in, "x", &x));
    int64_t axis;
    STEM_TRY(stem_attr_int(op, a, "axis", &axis));
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis >= x->ndim) return stem_fail(STEM_E_ARG, "mean_std: axis is outside x");
    int64_t shape[STEM_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < x->ndim; i++)
        if (i != axis) shape[nd++] = x->shape[i];
    stem_tensor *mean, *std;
    STEM_TRY(stem_op_output(be, out, "mean", x->dtype, nd, shape, &mean));
    STEM_TRY(stem_op_output(be, out, "std", x->dtype, nd, shape, &std));
    return stem_mean_std(x, (int)axis, mean, std);
}

static stem_status run_philox(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                              const stem_attrs *a, stem_tensor_map *out) {
    int64_t shape[STEM_MAX_DIMS], seed, w[3];
    int nd;
    STEM_TRY(stem_attr_ints(op, a, "shape", shape, STEM_MAX_DIMS, &nd));
    STEM_TRY(stem_attr_int(op, a, "seed", &seed));
    STEM_TRY(stem_attr_int(op, a, "w1", &w[0]));
    STEM_TRY(stem_attr_int(op, a, "w2", &w[1]));
    STEM_TRY(stem_attr_int(op, a, "w3", &w[2]));
    for (int i = 0; i < 3; i++)
        if (w[i] < 0 || w[i] > 0xffffffffLL) return stem_fail(STEM_E_ARG, "philox_normal: w%d must fit 32 bits", i + 1);
    stem_tensor *y;
    STEM_TRY(stem_op_output(be, out, "y", STEM_F32, nd, shape, &y));
    return stem_philox_normal((uint64_t)seed, (uint32_t)w[0], (uint32_t)w[1], (uint32_t)w[2], y);
}

static stem_status run_freeu_filter(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                                   const stem_attrs *a, stem_tensor_map *out) {
    const stem_tensor *x = NULL;
    STEM_TRY(stem_op_input(op, in, "x", &x));
    double s;
    STEM_TRY(stem_attr_float(op, a, "s", &s));
    stem_tensor *y;
    STEM_TRY(out_like(be, out, "y", x, &y));
    return stem_freeu_filter(x, (float)s, y);
}

/* ---- the table ---------------------------------------------------------------------- */

#define OP(var, NAME, SUMMARY, INPUTS, OUTPUTS, ATTR_LIST, RUN) \
    static const stem_op_def var = {NAME, SUMMARY, INPUTS, OUTPUTS, ATTR_LIST, RUN};

#define SCALE_ATTR {"scale", STEM_ATTR_STRING, "auto", "softmax scale; auto = 1/sqrt(d)"}

OP(op_matmul, "matmul", "y = alpha * op(a) @ op(b) + beta * c (batched; b may be 2-D)",
   IO("a", "b", "c?"), IO("y"),
   ATTRS({"trans_a", STEM_ATTR_BOOL, "0", "a is stored [..., k, m]"},
         {"trans_b", STEM_ATTR_BOOL, "0", "b is stored [..., n, k]"},
         {"alpha", STEM_ATTR_FLOAT, "1", "scale of the product"},
         {"beta", STEM_ATTR_FLOAT, "0", "scale of c (needs input c)"}),
   run_matmul)
OP(op_linear, "linear", "y[..., n] = x[..., k] @ weight[n, k]^T + bias[n] (torch Linear)",
   IO("x", "weight", "bias?"), IO("y"), NO_ATTRS, run_linear)
OP(op_conv2d, "conv2d", "2-D convolution, NCHW, zero padding (asymmetric allowed)",
   IO("x", "weight", "bias?"), IO("y"),
   ATTRS({"stride", STEM_ATTR_INTS, "1", "s or sh,sw"},
         {"padding", STEM_ATTR_INTS, "0", "p, ph,pw or top,bottom,left,right"}),
   run_conv2d)
OP(op_group_norm, "group_norm", "group normalisation over (c/groups, spatial), optional fused SiLU",
   IO("x", "gamma?", "beta?"), IO("y"),
   ATTRS({"groups", STEM_ATTR_INT, "32", "number of groups"},
         {"eps", STEM_ATTR_FLOAT, "1e-5", "added to the variance"},
         {"silu", STEM_ATTR_BOOL, "0", "apply SiLU after the affine"}),
   run_group_norm)
OP(op_layer_norm, "layer_norm", "layer normalisation over the last axis",
   IO("x", "gamma?", "beta?"), IO("y"), ATTRS({"eps", STEM_ATTR_FLOAT, "1e-5", "added to the variance"}),
   run_layer_norm)
OP(op_softmax, "softmax", "softmax(scale * x) over the last axis",
   IO("x"), IO("y"), ATTRS({"scale", STEM_ATTR_FLOAT, "1", "multiplies x first"}), run_softmax)
OP(op_silu, "silu", "x * sigmoid(x)", IO("x"), IO("y"), NO_ATTRS, run_silu)
OP(op_gelu, "gelu", "exact GELU: x * Phi(x) (erf)", IO("x"), IO("y"), NO_ATTRS, run_gelu)
OP(op_gelu_tanh, "gelu_tanh", "GELU, tanh approximation", IO("x"), IO("y"), NO_ATTRS, run_gelu_tanh)
OP(op_quick_gelu, "quick_gelu", "x * sigmoid(1.702 x) (CLIP, SD 1.x)", IO("x"), IO("y"), NO_ATTRS, run_quick_gelu)
OP(op_geglu, "geglu", "x[..., 2h] = [hidden | gate] -> hidden * gelu(gate)", IO("x"), IO("y"), NO_ATTRS, run_geglu)
OP(op_add, "add", "a + b (broadcast)", IO("a", "b"), IO("y"), NO_ATTRS, run_add)
OP(op_sub, "sub", "a - b (broadcast)", IO("a", "b"), IO("y"), NO_ATTRS, run_sub)
OP(op_mul, "mul", "a * b (broadcast)", IO("a", "b"), IO("y"), NO_ATTRS, run_mul)
OP(op_div, "div", "a / b (broadcast)", IO("a", "b"), IO("y"), NO_ATTRS, run_div)
OP(op_scale, "scale", "alpha * x + beta", IO("x"), IO("y"),
   ATTRS({"alpha", STEM_ATTR_FLOAT, "1", "multiplier"}, {"beta", STEM_ATTR_FLOAT, "0", "offset"}), run_scale)
OP(op_upsample, "upsample_nearest", "nearest resize of the last two axes (PyTorch legacy rule)",
   IO("x"), IO("y"), ATTRS({"size", STEM_ATTR_STRING, "2x", "h_out,w_out, or 2x"}), run_upsample)
OP(op_concat, "concat", "concatenate x0, x1[, x2, x3] along an axis",
   IO("x0", "x1", "x2?", "x3?"), IO("y"), ATTRS({"axis", STEM_ATTR_INT, "0", "axis (negative counts from the end)"}),
   run_concat)
OP(op_slice, "slice", "y = x[start:start+length] along an axis", IO("x"), IO("y"),
   ATTRS({"axis", STEM_ATTR_INT, "0", "axis"}, {"start", STEM_ATTR_INT, "0", "first index"},
         {"length", STEM_ATTR_INT, NULL, "entries to keep"}),
   run_slice)
OP(op_permute, "permute", "y = x.permute(perm)", IO("x"), IO("y"),
   ATTRS({"perm", STEM_ATTR_INTS, NULL, "e.g. 0,2,1,3"}), run_permute)
OP(op_timestep, "timestep_embedding", "sinusoidal timestep embedding (diffusers get_timestep_embedding)",
   IO("t"), IO("y"),
   ATTRS({"dim", STEM_ATTR_INT, "320", "embedding width"},
         {"flip_sin_to_cos", STEM_ATTR_BOOL, "1", "cos half first (SD: 1)"},
         {"freq_shift", STEM_ATTR_FLOAT, "0", "downscale_freq_shift (SD: 0)"},
         {"max_period", STEM_ATTR_FLOAT, "10000", "longest period"}),
   run_timestep)
OP(op_attention, "attention", "softmax(scale q k^T) v, streaming (no nq x nk matrix)",
   IO("q", "k", "v"), IO("out"), ATTRS(SCALE_ATTR), run_attention)
OP(op_mha, "mha", "multi-head attention on [b, n, heads*d] tensors (no head permutes)",
   IO("q", "k", "v"), IO("out"),
   ATTRS({"heads", STEM_ATTR_INT, NULL, "number of heads"}, SCALE_ATTR), run_mha)
OP(op_gather, "gather_rows", "y[i] = src[idx[i]] (idx int32)", IO("src", "idx"), IO("y"), NO_ATTRS, run_gather)
OP(op_argmax_cos, "argmax_cos", "idx[b, i] = argmax_j cos(a[b, i], ref[b, j]) (TokenFlow nearest neighbours)",
   IO("a", "ref"), IO("idx"), NO_ATTRS, run_argmax_cos)
OP(op_mean_std, "mean_std", "mean and unbiased std along an axis", IO("x"), IO("mean", "std"),
   ATTRS({"axis", STEM_ATTR_INT, "0", "reduced axis"}), run_mean_std)
OP(op_philox, "philox_normal", "standard normals from the Philox4x32-10 stream (doc/algorithm.md §6)", NO_INPUTS, IO("y"),
   ATTRS({"shape", STEM_ATTR_INTS, NULL, "e.g. 256,40"}, {"seed", STEM_ATTR_INT, "0", "64-bit key"},
         {"w1", STEM_ATTR_INT, "0", "counter word 1"}, {"w2", STEM_ATTR_INT, "0", "counter word 2"},
         {"w3", STEM_ATTR_INT, "0", "counter word 3"}),
   run_philox)
OP(op_freeu_filter, "freeu_filter", "FreeU's Fourier filter: the DFT coefficients at (k_y, k_x) in {0,-1}^2 of each "
   "[h, w] plane scaled by s (doc/algorithm.md §7)",
   IO("x"), IO("y"), ATTRS({"s", STEM_ATTR_FLOAT, NULL, "low-frequency factor (FreeU: s1 0.9, s2 0.2)"}),
   run_freeu_filter)

const stem_op_def *const stem_core_ops[] = {
    &op_matmul, &op_linear, &op_conv2d, &op_group_norm, &op_layer_norm, &op_softmax, &op_silu, &op_gelu,
    &op_gelu_tanh, &op_quick_gelu, &op_geglu, &op_add, &op_sub, &op_mul, &op_div, &op_scale, &op_upsample,
    &op_concat, &op_slice, &op_permute, &op_timestep, &op_attention, &op_mha, &op_gather, &op_argmax_cos,
    &op_mean_std, &op_philox, &op_freeu_filter, NULL,
};
