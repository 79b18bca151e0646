/* Tensor front ends: check once, describe the failure precisely, dispatch. */
#include "core/ops.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define SHAPE(t, buf) stem_shape_str((t), (buf), sizeof(buf))

/* ---- shared checks ------------------------------------------------------------- */

static stem_status check_same_backend(const char *op, const stem_tensor *a, const stem_tensor *b) {
    if (a && b && a->backend != b->backend)
        return stem_fail(STEM_E_ARG, "%s: operands live on different backends (%s, %s)", op,
                         a->backend ? a->backend->name : "none", b->backend ? b->backend->name : "none");
    return STEM_OK;
}

static stem_status check_dtype(const char *op, const char *what, const stem_tensor *t, stem_dtype dt) {
    if (t->dtype != dt)
        return stem_fail(STEM_E_DTYPE, "%s: %s is %s, expected %s", op, what, stem_dtype_name(t->dtype),
                         stem_dtype_name(dt));
    return STEM_OK;
}

static bool is_float_dtype(stem_dtype dt) { return dt == STEM_F32 || dt == STEM_F16 || dt == STEM_BF16; }

/* Checks each of `n` tensors (NULLs skipped) is on x's backend with x's dtype. */
static stem_status check_operands(const char *op, const stem_tensor *x, int n, const stem_tensor *const *ts,
                                  const char *const *names) {
    if (!x->data && stem_numel(x) > 0) return stem_fail(STEM_E_ARG, "%s: %s has no data", op, names[0]);
    if (!is_float_dtype(x->dtype))
        return stem_fail(STEM_E_DTYPE, "%s: %s is %s, expected a float tensor", op, names[0], stem_dtype_name(x->dtype));
    for (int i = 0; i < n; i++) {
        if (!ts[i]) continue;
        STEM_TRY(check_same_backend(op, x, ts[i]));
        STEM_TRY(check_dtype(op, names[i + 1], ts[i], x->dtype));
    }
    return STEM_OK;
}

static stem_status shape_error(const char *op, const char *what, const stem_tensor *t, const char *expected) {
    char b[STEM_SHAPE_STR_LEN];
    return stem_fail(STEM_E_SHAPE, "%s: %s has shape %s, expected %s", op, what, SHAPE(t, b), expected);
}

static stem_status expect_shape(const char *op, const char *what, const stem_tensor *t, int ndim,
                                const int64_t *shape) {
    stem_tensor want = {.ndim = ndim};
    memcpy(want.shape, shape, (size_t)ndim * sizeof *shape);
    if (stem_same_shape(t, &want)) return STEM_OK;
    char b[STEM_SHAPE_STR_LEN];
    return shape_error(op, what, t, SHAPE(&want, b));
}

static stem_status expect_vector(const char *op, const char *what, const stem_tensor *t, int64_t n) {
    if (!t) return STEM_OK;
    return expect_shape(op, what, t, 1, &n);
}

static int64_t prod(const int64_t *s, int from, int to) {
    int64_t p = 1;
    for (int i = from; i < to; i++) p *= s[i];
    return p;
}

#define BACKEND(t) ((t)->backend)
/* An op may land on one backend first: a NULL entry is an error, not a crash. */
#define DISPATCH(t, fn, params)                                                                  \
    (BACKEND(t)->ops->fn ? BACKEND(t)->ops->fn(BACKEND(t), (params))                             \
                         : stem_fail(STEM_E_UNSUPPORTED, "%s: not supported by backend '%s'", #fn, \
                                     BACKEND(t)->name))

/* ---- GEMM ---------------------------------------------------------------------- */

stem_status stem_matmul(const stem_tensor *a, const stem_tensor *b, bool trans_a, bool trans_b, float alpha,
                        float beta, stem_tensor *c) {
    const char *op = "matmul";
    const stem_tensor *ts[] = {b, c};
    const char *names[] = {"a", "b", "c"};
    STEM_TRY(check_operands(op, a, 2, ts, names));
    if (a->ndim < 2 || b->ndim < 2 || c->ndim < 2)
        return stem_fail(STEM_E_SHAPE, "matmul: operands need at least 2 dimensions");
    int64_t m = a->shape[a->ndim - (trans_a ? 1 : 2)], k = a->shape[a->ndim - (trans_a ? 2 : 1)];
    int64_t kb = b->shape[b->ndim - (trans_b ? 1 : 2)], n = b->shape[b->ndim - (trans_b ? 2 : 1)];
    char sa[STEM_SHAPE_STR_LEN], sb[STEM_SHAPE_STR_LEN];
    if (k != kb)
        return stem_fail(STEM_E_SHAPE, "matmul: inner sizes differ: a %s%s, b %s%s", SHAPE(a, sa),
                         trans_a ? " (transposed)" : "", SHAPE(b, sb), trans_b ? " (transposed)" : "");
    int64_t batch = prod(a->shape, 0, a->ndim - 2);
    int64_t want[STEM_MAX_DIMS];
    memcpy(want, a->shape, sizeof want);
    want[a->ndim - 2] = m;
    want[a->ndim - 1] = n;
    STEM_TRY(expect_shape(op, "output", c, a->ndim, want));
    int64_t batch_b = prod(b->shape, 0, b->ndim - 2);
    if (batch_b != 1 && (b->ndim != a->ndim || batch_b != batch))
        return stem_fail(STEM_E_SHAPE, "matmul: b %s must be 2-D or have a's batch dimensions %s", SHAPE(b, sb),
                         SHAPE(a, sa));
    stem_gemm_params p = {
        .dtype = a->dtype, .trans_a = trans_a, .trans_b = trans_b, .m = m, .n = n, .k = k, .batch = batch,
        .alpha = alpha, .beta = beta,
        .a = a->data, .lda = a->shape[a->ndim - 1], .stride_a = m * k,
        .b = b->data, .ldb = b->shape[b->ndim - 1], .stride_b = batch_b == 1 ? 0 : k * n,
        .c = c->data, .ldc = n, .stride_c = m * n,
    };
    if (batch == 0 || m == 0 || n == 0) return STEM_OK;
    return DISPATCH(a, gemm, &p);
}

stem_status stem_linear(const stem_tensor *x, const stem_tensor *w, const stem_tensor *bias, stem_tensor *y) {
    const char *op = "linear";
    const stem_tensor *ts[] = {w, bias, y};
    const char *names[] = {"x", "weight", "bias", "y"};
    STEM_TRY(check_operands(op, x, 3, ts, names));
    char sx[STEM_SHAPE_STR_LEN], sw[STEM_SHAPE_STR_LEN];
    if (w->ndim != 2 || x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1])
        return stem_fail(STEM_E_SHAPE, "linear: x %s does not fit weight %s (expected weight [out, %lld])",
                         SHAPE(x, sx), SHAPE(w, sw), x->ndim ? (long long)x->shape[x->ndim - 1] : 0LL);
    int64_t k = w->shape[1], n = w->shape[0], rows = prod(x->shape, 0, x->ndim - 1);
    STEM_TRY(expect_vector(op, "bias", bias, n));
    int64_t want[STEM_MAX_DIMS];
    memcpy(want, x->shape, sizeof want);
    want[x->ndim - 1] = n;
    STEM_TRY(expect_shape(op, "output", y, x->ndim, want));
    if (rows == 0 || n == 0) return STEM_OK;
    stem_gemm_params p = {
        .dtype = x->dtype, .trans_b = true, .m = rows, .n = n, .k = k, .batch = 1, .alpha = 1.0f, .beta = 0.0f,
        .a = x->data, .lda = k, .b = w->data, .ldb = k, .c = y->data, .ldc = n,
    };
    STEM_TRY(DISPATCH(x, gemm, &p));
    if (!bias) return STEM_OK;
    stem_binary_params bp = {
        .dtype = x->dtype, .kind = STEM_BINARY_ADD, .ndim = 2, .shape = {rows, n},
        .stride_a = {n, 1}, .stride_b = {0, 1}, .a = y->data, .b = bias->data, .y = y->data,
    };
    return DISPATCH(x, binary, &bp);
}

/* ---- convolution and normalisation ------------------------------------------------ */

int64_t stem_conv_out_size(int64_t in, int64_t k, int stride, int pad_lo, int pad_hi) {
    int64_t span = in + pad_lo + pad_hi - k;
    return span < 0 || stride <= 0 ? 0 : span / stride + 1;
}

stem_status stem_conv2d(const stem_tensor *x, const stem_tensor *w, const stem_tensor *bias, int stride_h,
                        int stride_w, const int pad[4], stem_tensor *y) {
    const char *op = "conv2d";
    const stem_tensor *ts[] = {w, bias, y};
    const char *names[] = {"x", "weight", "bias", "y"};
    STEM_TRY(check_operands(op, x, 3, ts, names));
    char sx[STEM_SHAPE_STR_LEN], sw[STEM_SHAPE_STR_LEN];
    if (x->ndim != 4) return shape_error(op, "x", x, "[n, c_in, h, w]");
    if (w->ndim != 4 || w->shape[1] != x->shape[1])
        return stem_fail(STEM_E_SHAPE, "conv2d: weight %s does not fit x %s (expected [c_out, %lld, kh, kw])",
                         SHAPE(w, sw), SHAPE(x, sx), (long long)x->shape[1]);
    if (stride_h < 1 || stride_w < 1) return stem_fail(STEM_E_ARG, "conv2d: stride must be >= 1");
    for (int i = 0; i < 4; i++)
        if (pad[i] < 0) return stem_fail(STEM_E_ARG, "conv2d: padding must be >= 0");
    STEM_TRY(expect_vector(op, "bias", bias, w->shape[0]));
    stem_conv2d_params p = {
        .dtype = x->dtype, .n = x->shape[0], .c_in = x->shape[1], .h = x->shape[2], .w = x->shape[3],
        .c_out = w->shape[0], .kh = w->shape[2], .kw = w->shape[3], .stride_h = stride_h, .stride_w = stride_w,
        .pad_top = pad[0], .pad_bottom = pad[1], .pad_left = pad[2], .pad_right = pad[3],
        .x = x->data, .weight = w->data, .bias = bias ? bias->data : NULL, .y = y->data,
    };
    p.h_out = stem_conv_out_size(p.h, p.kh, stride_h, pad[0], pad[1]);
    p.w_out = stem_conv_out_size(p.w, p.kw, stride_w, pad[2], pad[3]);
    if (p.h_out <= 0 || p.w_out <= 0)
        return stem_fail(STEM_E_SHAPE, "conv2d: kernel %lldx%lld is larger than padded input %s", (long long)p.kh,
                         (long long)p.kw, SHAPE(x, sx));
    int64_t want[4] = {p.n, p.c_out, p.h_out, p.w_out};
    STEM_TRY(expect_shape(op, "output", y, 4, want));
    if (p.n == 0) return STEM_OK;
    return DISPATCH(x, conv2d, &p);
}

stem_status stem_group_norm(const stem_tensor *x, const stem_tensor *gamma, const stem_tensor *beta, int groups,
                            float eps, bool silu, stem_tensor *y) {
    const char *op = "group_norm";
    const stem_tensor *ts[] = {gamma, beta, y};
    const char *names[] = {"x", "gamma", "beta", "y"};
    STEM_TRY(check_operands(op, x, 3, ts, names));
    if (x->ndim < 2) return shape_error(op, "x", x, "[n, c, ...]");
    int64_t c = x->shape[1];
    if (groups < 1 || c % groups != 0)
        return stem_fail(STEM_E_ARG, "group_norm: %lld channels do not split into %d groups", (long long)c, groups);
    STEM_TRY(expect_vector(op, "gamma", gamma, c));
    STEM_TRY(expect_vector(op, "beta", beta, c));
    STEM_TRY(expect_shape(op, "output", y, x->ndim, x->shape));
    stem_group_norm_params p = {
        .dtype = x->dtype, .n = x->shape[0], .c = c, .spatial = prod(x->shape, 2, x->ndim), .groups = groups,
        .eps = eps, .silu = silu, .x = x->data, .gamma = gamma ? gamma->data : NULL,
        .beta = beta ? beta->data : NULL, .y = y->data,
    };
    if (stem_numel(x) == 0) return STEM_OK;
    return DISPATCH(x, group_norm, &p);
}

stem_status stem_layer_norm(const stem_tensor *x, const stem_tensor *gamma, const stem_tensor *beta, float eps,
                            stem_tensor *y) {
    const char *op = "layer_norm";
    const stem_tensor *ts[] = {gamma, beta, y};
    const char *names[] = {"x", "gamma", "beta", "y"};
    STEM_TRY(check_operands(op, x, 3, ts, names));
    if (x->ndim < 1) return shape_error(op, "x", x, "[..., c]");
    int64_t cols = x->shape[x->ndim - 1];
    STEM_TRY(expect_vector(op, "gamma", gamma, cols));
    STEM_TRY(expect_vector(op, "beta", beta, cols));
    STEM_TRY(expect_shape(op, "output", y, x->ndim, x->shape));
    stem_layer_norm_params p = {
        .dtype = x->dtype, .rows = prod(x->shape, 0, x->ndim - 1), .cols = cols, .eps = eps, .x = x->data,
        .gamma = gamma ? gamma->data : NULL, .beta = beta ? beta->data : NULL, .y = y->data,
    };
    if (stem_numel(x) == 0) return STEM_OK;
    return DISPATCH(x, layer_norm, &p);
}

/* ---- pointwise ---------------------------------------------------------------------- */

stem_status stem_softmax(const stem_tensor *x, float scale, stem_tensor *y) {
    const stem_tensor *ts[] = {y};
    const char *names[] = {"x", "y"};
    STEM_TRY(check_operands("softmax", x, 1, ts, names));
    if (x->ndim < 1) return shape_error("softmax", "x", x, "at least 1 dimension");
    STEM_TRY(expect_shape("softmax", "output", y, x->ndim, x->shape));
    stem_softmax_params p = {.dtype = x->dtype, .rows = prod(x->shape, 0, x->ndim - 1),
                             .cols = x->shape[x->ndim - 1], .scale = scale, .x = x->data, .y = y->data};
    if (stem_numel(x) == 0) return STEM_OK;
    return DISPATCH(x, softmax, &p);
}

stem_status stem_unary(stem_unary_kind kind, const stem_tensor *x, stem_tensor *y) {
    const stem_tensor *ts[] = {y};
    const char *names[] = {"x", "y"};
    STEM_TRY(check_operands("unary", x, 1, ts, names));
    STEM_TRY(expect_shape("unary", "output", y, x->ndim, x->shape));
    stem_unary_params p = {.dtype = x->dtype, .kind = kind, .n = stem_numel(x), .x = x->data, .y = y->data};
    if (p.n == 0) return STEM_OK;
    return DISPATCH(x, unary, &p);
}

stem_status stem_geglu(const stem_tensor *x, stem_tensor *y) {
    const stem_tensor *ts[] = {y};
    const char *names[] = {"x", "y"};
    STEM_TRY(check_operands("geglu", x, 1, ts, names));
    if (x->ndim < 1 || x->shape[x->ndim - 1] % 2 != 0) return shape_error("geglu", "x", x, "[..., 2h]");
    int64_t want[STEM_MAX_DIMS];
    memcpy(want, x->shape, sizeof want);
    want[x->ndim - 1] /= 2;
    STEM_TRY(expect_shape("geglu", "output", y, x->ndim, want));
    stem_geglu_params p = {.dtype = x->dtype, .rows = prod(x->shape, 0, x->ndim - 1), .cols = want[x->ndim - 1],
                           .x = x->data, .y = y->data};
    if (stem_numel(y) == 0) return STEM_OK;
    return DISPATCH(x, geglu, &p);
}

static const char *binary_name(stem_binary_kind k) {
    static const char *names[] = {"add", "sub", "mul", "div"};
    return names[k];
}

stem_status stem_binary(stem_binary_kind kind, const stem_tensor *a, const stem_tensor *b, stem_tensor *y) {
    const char *op = binary_name(kind);
    const stem_tensor *ts[] = {b, y};
    const char *names[] = {"a", "b", "y"};
    STEM_TRY(check_operands(op, a, 2, ts, names));
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    stem_binary_params p = {.dtype = a->dtype, .kind = kind, .ndim = nd, .a = a->data, .b = b->data, .y = y->data};
    /* numpy broadcasting: align from the right; size-1 axes get stride 0 */
    int64_t sa = 1, sb = 1;
    for (int i = nd - 1; i >= 0; i--) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char s1[STEM_SHAPE_STR_LEN], s2[STEM_SHAPE_STR_LEN];
            return stem_fail(STEM_E_SHAPE, "%s: shapes %s and %s do not broadcast", op, SHAPE(a, s1), SHAPE(b, s2));
        }
        p.shape[i] = da == 1 ? db : da;
        p.stride_a[i] = da == 1 ? 0 : sa;
        p.stride_b[i] = db == 1 ? 0 : sb;
        sa *= da;
        sb *= db;
    }
    STEM_TRY(expect_shape(op, "output", y, nd, p.shape));
    if (stem_numel(y) == 0) return STEM_OK;
    return DISPATCH(a, binary, &p);
}

stem_status stem_affine(const stem_tensor *x, float alpha, float beta, stem_tensor *y) {
    const stem_tensor *ts[] = {y};
    const char *names[] = {"x", "y"};
    STEM_TRY(check_operands("scale", x, 1, ts, names));
    STEM_TRY(expect_shape("scale", "output", y, x->ndim, x->shape));
    stem_affine_params p = {.dtype = x->dtype, .n = stem_numel(x), .alpha = alpha, .beta = beta, .x = x->data,
                            .y = y->data};
    if (p.n == 0) return STEM_OK;
    return DISPATCH(x, affine, &p);
}

/* ---- layout ----------------------------------------------------------------------- */

stem_status stem_upsample_nearest(const stem_tensor *x, stem_tensor *y) {
    const stem_tensor *ts[] = {y};
    const char *names[] = {"x", "y"};
    STEM_TRY(check_operands("upsample_nearest", x, 1, ts, names));
    if (x->ndim < 2 || y->ndim != x->ndim) return shape_error("upsample_nearest", "x", x, "[..., h, w] like y");
    for (int i = 0; i < x->ndim - 2; i++)
        if (x->shape[i] != y->shape[i]) return shape_error("upsample_nearest", "output", y, "x's leading axes");
    stem_upsample_params p = {.dtype = x->dtype, .planes = prod(x->shape, 0, x->ndim - 2),
                              .h = x->shape[x->ndim - 2], .w = x->shape[x->ndim - 1],
                              .h_out = y->shape[y->ndim - 2], .w_out = y->shape[y->ndim - 1],
                              .x = x->data, .y = y->data};
    if (stem_numel(y) == 0) return STEM_OK;
    if (p.h == 0 || p.w == 0) return stem_fail(STEM_E_SHAPE, "upsample_nearest: empty input plane");
    return DISPATCH(x, upsample_nearest, &p);
}

static stem_status copy2d(const stem_tensor *like, int64_t rows, int64_t cols, const void *src, int64_t src_stride,
                          void *dst, int64_t dst_stride) {
    if (rows == 0 || cols == 0) return STEM_OK;
    stem_copy2d_params p = {.dtype = like->dtype, .rows = rows, .cols = cols, .src = src, .src_stride = src_stride,
                            .dst = dst, .dst_stride = dst_stride};
    return DISPATCH(like, copy2d, &p);
}

stem_status stem_concat(const stem_tensor *const *xs, int count, int axis, stem_tensor *y) {
    if (count < 1) return stem_fail(STEM_E_ARG, "concat: no inputs");
    const stem_tensor *x0 = xs[0];
    if (axis < 0) axis += x0->ndim;
    if (axis < 0 || axis >= x0->ndim)
        return stem_fail(STEM_E_ARG, "concat: axis %d is outside a %d-D tensor", axis, x0->ndim);
    int64_t total = 0;
    for (int i = 0; i < count; i++) {
        const stem_tensor *ts[] = {y};
        const char *names[] = {"input", "y"};
        STEM_TRY(check_operands("concat", xs[i], 1, ts, names));
        if (xs[i]->ndim != x0->ndim) return shape_error("concat", "an input", xs[i], "the rank of the first input");
        for (int d = 0; d < x0->ndim; d++)
            if (d != axis && xs[i]->shape[d] != x0->shape[d]) {
                char b0[STEM_SHAPE_STR_LEN], bi[STEM_SHAPE_STR_LEN];
                return stem_fail(STEM_E_SHAPE, "concat: input %d %s differs from input 0 %s off axis %d", i,
                                 SHAPE(xs[i], bi), SHAPE(x0, b0), axis);
            }
        total += xs[i]->shape[axis];
    }
    int64_t want[STEM_MAX_DIMS];
    memcpy(want, x0->shape, sizeof want);
    want[axis] = total;
    STEM_TRY(expect_shape("concat", "output", y, x0->ndim, want));
    /* view every tensor as [outer, axis * inner]; each input is one 2-D copy */
    int64_t outer = prod(x0->shape, 0, axis), inner = prod(x0->shape, axis + 1, x0->ndim);
    size_t esize = stem_dtype_size(y->dtype);
    int64_t offset = 0;
    for (int i = 0; i < count; i++) {
        int64_t cols = xs[i]->shape[axis] * inner;
        STEM_TRY(copy2d(y, outer, cols, xs[i]->data, cols, (char *)y->data + (size_t)offset * esize, total * inner));
        offset += cols;
    }
    return STEM_OK;
}

stem_status stem_slice(const stem_tensor *x, int axis, int64_t start, stem_tensor *y) {
    const stem_tensor *ts[] = {y};
    const char *names[] = {"x", "y"};
    STEM_TRY(check_operands("slice", x, 1, ts, names));
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis >= x->ndim || y->ndim != x->ndim)
        return stem_fail(STEM_E_ARG, "slice: axis %d does not fit x of rank %d and y of rank %d", axis, x->ndim, y->ndim);
    int64_t len = y->shape[axis];
    if (start < 0 || len < 0 || start + len > x->shape[axis])
        return stem_fail(STEM_E_ARG, "slice: [%lld, %lld) is outside axis %d of size %lld", (long long)start,
                         (long long)(start + len), axis, (long long)x->shape[axis]);
    int64_t want[STEM_MAX_DIMS];
    memcpy(want, x->shape, sizeof want);
    want[axis] = len;
    STEM_TRY(expect_shape("slice", "output", y, x->ndim, want));
    int64_t outer = prod(x->shape, 0, axis), inner = prod(x->shape, axis + 1, x->ndim);
    size_t esize = stem_dtype_size(x->dtype);
    return copy2d(x, outer, len * inner, (const char *)x->data + (size_t)(start * inner) * esize,
                  x->shape[axis] * inner, y->data, len * inner);
}

stem_status stem_permute(const stem_tensor *x, const int *perm, stem_tensor *y) {
    const stem_tensor *ts[] = {y};
    const char *names[] = {"x", "y"};
    STEM_TRY(check_operands("permute", x, 1, ts, names));
    stem_permute_params p = {.dtype = x->dtype, .ndim = x->ndim, .x = x->data, .y = y->data};
    int64_t want[STEM_MAX_DIMS];
    bool seen[STEM_MAX_DIMS] = {false};
    for (int i = 0; i < x->ndim; i++) {
        if (perm[i] < 0 || perm[i] >= x->ndim || seen[perm[i]])
            return stem_fail(STEM_E_ARG, "permute: perm is not a permutation of 0..%d", x->ndim - 1);
        seen[perm[i]] = true;
        p.perm[i] = perm[i];
        p.shape[i] = x->shape[i];
        want[i] = x->shape[perm[i]];
    }
    STEM_TRY(expect_shape("permute", "output", y, x->ndim, want));
    if (stem_numel(x) == 0) return STEM_OK;
    return DISPATCH(x, permute, &p);
}

stem_status stem_timestep_embedding(const stem_tensor *t, bool flip_sin_to_cos, float freq_shift, float max_period,
                                    stem_tensor *y) {
    STEM_TRY(check_dtype("timestep_embedding", "t", t, STEM_F32));
    STEM_TRY(check_same_backend("timestep_embedding", t, y));
    if (!is_float_dtype(y->dtype)) return stem_fail(STEM_E_DTYPE, "timestep_embedding: output must be float");
    if (t->ndim != 1) return shape_error("timestep_embedding", "t", t, "[n]");
    if (y->ndim != 2 || y->shape[0] != t->shape[0] || y->shape[1] < 2)
        return shape_error("timestep_embedding", "output", y, "[n, dim] with dim >= 2");
    if ((float)(y->shape[1] / 2) - freq_shift == 0.0f)
        return stem_fail(STEM_E_ARG, "timestep_embedding: dim/2 - freq_shift must not be 0");
    stem_timestep_params p = {.dtype = y->dtype, .n = t->shape[0], .dim = y->shape[1],
                              .flip_sin_to_cos = flip_sin_to_cos, .freq_shift = freq_shift,
                              .max_period = max_period, .t = t->data, .y = y->data};
    if (p.n == 0) return STEM_OK;
    return DISPATCH(t, timestep_embedding, &p);
}

/* ---- attention ---------------------------------------------------------------------- */

stem_status stem_attention(const stem_tensor *q, const stem_tensor *k, const stem_tensor *v, float scale,
                           stem_tensor *out) {
    const char *op = "attention";
    const stem_tensor *ts[] = {k, v, out};
    const char *names[] = {"q", "k", "v", "out"};
    STEM_TRY(check_operands(op, q, 3, ts, names));
    int nd = q->ndim;
    if (nd < 2 || k->ndim != nd || v->ndim != nd) return stem_fail(STEM_E_SHAPE, "attention: q, k, v need the same rank >= 2");
    for (int i = 0; i < nd - 2; i++)
        if (k->shape[i] != q->shape[i] || v->shape[i] != q->shape[i]) {
            char s1[STEM_SHAPE_STR_LEN], s2[STEM_SHAPE_STR_LEN], s3[STEM_SHAPE_STR_LEN];
            return stem_fail(STEM_E_SHAPE, "attention: batch axes differ: q %s, k %s, v %s", SHAPE(q, s1),
                             SHAPE(k, s2), SHAPE(v, s3));
        }
    int64_t nq = q->shape[nd - 2], d = q->shape[nd - 1], nk = k->shape[nd - 2], dv = v->shape[nd - 1];
    if (k->shape[nd - 1] != d) return shape_error(op, "k", k, "the same last axis as q");
    if (v->shape[nd - 2] != nk) return shape_error(op, "v", v, "as many rows as k");
    int64_t want[STEM_MAX_DIMS];
    memcpy(want, q->shape, sizeof want);
    want[nd - 1] = dv;
    STEM_TRY(expect_shape(op, "output", out, nd, want));
    if (nk == 0) return stem_fail(STEM_E_SHAPE, "attention: no keys");
    int64_t batch = prod(q->shape, 0, nd - 2);
    stem_attention_params p = {
        .dtype = q->dtype, .outer = batch, .heads = 1, .nq = nq, .nk = nk, .d = d, .dv = dv, .scale = scale,
        .q = {q->data, nq * d, 0, d}, .k = {k->data, nk * d, 0, d}, .v = {v->data, nk * dv, 0, dv},
        .out = out->data, .out_outer_stride = nq * dv, .out_head_stride = 0, .out_row_stride = dv,
    };
    if (batch == 0 || nq == 0) return STEM_OK;
    return DISPATCH(q, attention, &p);
}

stem_status stem_attention_heads(const stem_tensor *q, const stem_tensor *k, const stem_tensor *v, int heads,
                                 float scale, stem_tensor *out) {
    const char *op = "mha";
    const stem_tensor *ts[] = {k, v, out};
    const char *names[] = {"q", "k", "v", "out"};
    STEM_TRY(check_operands(op, q, 3, ts, names));
    if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3)
        return stem_fail(STEM_E_SHAPE, "mha: q, k, v must be [batch, tokens, heads*dim]");
    if (heads < 1 || q->shape[2] % heads || v->shape[2] % heads)
        return stem_fail(STEM_E_ARG, "mha: %d heads do not divide the channel counts %lld and %lld", heads,
                         (long long)q->shape[2], (long long)v->shape[2]);
    int64_t b = q->shape[0], nq = q->shape[1], c = q->shape[2], nk = k->shape[1], cv = v->shape[2];
    int64_t kw[3] = {b, nk, c}, vw[3] = {b, nk, cv}, ow[3] = {b, nq, cv};
    STEM_TRY(expect_shape(op, "k", k, 3, kw));
    STEM_TRY(expect_shape(op, "v", v, 3, vw));
    STEM_TRY(expect_shape(op, "output", out, 3, ow));
    if (nk == 0) return stem_fail(STEM_E_SHAPE, "mha: no keys");
    int64_t d = c / heads, dv = cv / heads;
    stem_attention_params p = {
        .dtype = q->dtype, .outer = b, .heads = heads, .nq = nq, .nk = nk, .d = d, .dv = dv, .scale = scale,
        .q = {q->data, nq * c, d, c}, .k = {k->data, nk * c, d, c}, .v = {v->data, nk * cv, dv, cv},
        .out = out->data, .out_outer_stride = nq * cv, .out_head_stride = dv, .out_row_stride = cv,
    };
    if (b == 0 || nq == 0) return STEM_OK;
    return DISPATCH(q, attention, &p);
}

/* ---- indexing and statistics ------------------------------------------------------------ */

stem_status stem_gather_rows(const stem_tensor *src, const stem_tensor *idx, stem_tensor *y) {
    const stem_tensor *ts[] = {y};
    const char *names[] = {"src", "y"};
    STEM_TRY(check_operands("gather_rows", src, 1, ts, names));
    STEM_TRY(check_dtype("gather_rows", "idx", idx, STEM_I32));
    STEM_TRY(check_same_backend("gather_rows", src, idx));
    if (src->ndim != 2) return shape_error("gather_rows", "src", src, "[n, c]");
    if (idx->ndim != 1) return shape_error("gather_rows", "idx", idx, "[m]");
    int64_t want[2] = {idx->shape[0], src->shape[1]};
    STEM_TRY(expect_shape("gather_rows", "output", y, 2, want));
    if (src->backend->host_memory) { /* indices are checked where they can be read cheaply */
        const int32_t *ix = idx->data;
        for (int64_t i = 0; i < idx->shape[0]; i++)
            if (ix[i] < 0 || ix[i] >= src->shape[0])
                return stem_fail(STEM_E_ARG, "gather_rows: idx[%lld] = %d is outside 0..%lld", (long long)i, ix[i],
                                 (long long)src->shape[0] - 1);
    }
    stem_gather_params p = {.dtype = src->dtype, .n_idx = idx->shape[0], .n_src = src->shape[0],
                            .cols = src->shape[1], .src = src->data, .idx = idx->data, .y = y->data};
    if (p.n_idx == 0) return STEM_OK;
    return DISPATCH(src, gather_rows, &p);
}

stem_status stem_argmax_cos(const stem_tensor *a, const stem_tensor *ref, stem_tensor *idx) {
    const stem_tensor *ts[] = {ref};
    const char *names[] = {"a", "ref"};
    STEM_TRY(check_operands("argmax_cos", a, 1, ts, names));
    STEM_TRY(check_dtype("argmax_cos", "idx", idx, STEM_I32));
    STEM_TRY(check_same_backend("argmax_cos", a, idx));
    if (a->ndim != ref->ndim || (a->ndim != 2 && a->ndim != 3))
        return stem_fail(STEM_E_SHAPE, "argmax_cos: a and ref must both be [n, c] or [b, n, c]");
    int three = a->ndim == 3;
    int64_t b = three ? a->shape[0] : 1, n = a->shape[three], m = ref->shape[three], c = a->shape[three + 1];
    if (ref->shape[three + 1] != c || (three && ref->shape[0] != b)) {
        char s1[STEM_SHAPE_STR_LEN], s2[STEM_SHAPE_STR_LEN];
        return stem_fail(STEM_E_SHAPE, "argmax_cos: a %s and ref %s differ in batch or channels", SHAPE(a, s1),
                         SHAPE(ref, s2));
    }
    if (m == 0) return stem_fail(STEM_E_SHAPE, "argmax_cos: ref has no rows");
    int64_t want[2] = {b, n};
    STEM_TRY(expect_shape("argmax_cos", "output", idx, three ? 2 : 1, three ? want : want + 1));
    stem_argmax_cos_params p = {.dtype = a->dtype, .batch = b, .n = n, .m = m, .c = c, .a = a->data,
                                .ref = ref->data, .idx = idx->data};
    if (b == 0 || n == 0) return STEM_OK;
    return DISPATCH(a, argmax_cos, &p);
}

stem_status stem_mean_std(const stem_tensor *x, int axis, stem_tensor *mean, stem_tensor *std) {
    const char *names[] = {"x"};
    STEM_TRY(check_operands("mean_std", x, 0, NULL, names));
    /* mean and std: x's dtype, or f32 (statistics of f16 data without rounding them) */
    stem_dtype out = mean->dtype == STEM_F32 ? STEM_F32 : x->dtype;
    STEM_TRY(check_same_backend("mean_std", x, mean));
    STEM_TRY(check_dtype("mean_std", "mean", mean, out));
    if (std) {
        STEM_TRY(check_same_backend("mean_std", x, std));
        STEM_TRY(check_dtype("mean_std", "std", std, out));
    }
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis >= x->ndim) return stem_fail(STEM_E_ARG, "mean_std: axis is outside a %d-D tensor", x->ndim);
    int64_t want[STEM_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < x->ndim; i++)
        if (i != axis) want[nd++] = x->shape[i];
    STEM_TRY(expect_shape("mean_std", "mean", mean, nd, want));
    if (std) STEM_TRY(expect_shape("mean_std", "std", std, nd, want));
    if (x->shape[axis] == 0) return stem_fail(STEM_E_SHAPE, "mean_std: axis %d is empty", axis);
    stem_mean_std_params p = {.dtype = x->dtype, .out_dtype = mean->dtype, .outer = prod(x->shape, 0, axis), .n = x->shape[axis],
                              .inner = prod(x->shape, axis + 1, x->ndim), .x = x->data, .mean = mean->data,
                              .std = std ? std->data : NULL};
    if (stem_numel(mean) == 0) return STEM_OK;
    return DISPATCH(x, mean_std, &p);
}

stem_status stem_philox_normal(uint64_t seed, uint32_t w1, uint32_t w2, uint32_t w3, stem_tensor *y) {
    if (!is_float_dtype(y->dtype)) return stem_fail(STEM_E_DTYPE, "philox_normal: output must be float");
    stem_philox_params p = {.dtype = y->dtype, .n = stem_numel(y), .seed = seed, .w1 = w1, .w2 = w2, .w3 = w3,
                            .y = y->data};
    if (p.n == 0) return STEM_OK;
    return DISPATCH(y, philox_normal, &p);
}

stem_status stem_freeu_filter(const stem_tensor *x, float s, stem_tensor *y) {
    const stem_tensor *ts[] = {y};
    const char *names[] = {"x", "y"};
    STEM_TRY(check_operands("freeu_filter", x, 1, ts, names));
    if (x->ndim < 2) return shape_error("freeu_filter", "x", x, "[..., h, w]");
    if (!isfinite(s)) return stem_fail(STEM_E_ARG, "freeu_filter: s = %g is not a finite number", (double)s);
    STEM_TRY(expect_shape("freeu_filter", "output", y, x->ndim, x->shape));
    stem_freeu_filter_params p = {.dtype = x->dtype, .planes = prod(x->shape, 0, x->ndim - 2),
                                  .h = x->shape[x->ndim - 2], .w = x->shape[x->ndim - 1], .s = s,
                                  .x = x->data, .y = y->data};
    if (stem_numel(x) == 0) return STEM_OK;
    return DISPATCH(x, freeu_filter, &p);
}

stem_status stem_cast(const stem_tensor *x, stem_tensor *y) {
    if (!is_float_dtype(x->dtype) || !is_float_dtype(y->dtype))
        return stem_fail(STEM_E_DTYPE, "cast: %s to %s is not a float conversion", stem_dtype_name(x->dtype),
                         stem_dtype_name(y->dtype));
    STEM_TRY(check_same_backend("cast", x, y));
    STEM_TRY(expect_shape("cast", "output", y, x->ndim, x->shape));
    stem_convert_params p = {.n = stem_numel(x), .src_dtype = x->dtype, .dst_dtype = y->dtype, .src = x->data,
                             .dst = y->data};
    if (p.n == 0) return STEM_OK;
    return DISPATCH(x, convert, &p);
}
