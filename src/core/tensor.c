#include "core/tensor.h"

#include <stdio.h>
#include <string.h>

#include "core/backend.h"
#include "core/host.h"

int64_t stem_numel(const stem_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t stem_nbytes(const stem_tensor *t) { return (size_t)stem_numel(t) * stem_dtype_size(t->dtype); }

bool stem_same_shape(const stem_tensor *a, const stem_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

const char *stem_shape_str(const stem_tensor *t, char *buf, size_t len) {
    size_t used = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < t->ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (used < len) snprintf(buf + used, len - used, "]");
    return buf;
}

static stem_status check_shape(int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > STEM_MAX_DIMS)
        return stem_fail(STEM_E_SHAPE, "tensor rank %d is outside 0..%d", ndim, STEM_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) return stem_fail(STEM_E_SHAPE, "negative size %lld on axis %d", (long long)shape[i], i);
    return STEM_OK;
}

stem_tensor stem_tensor_wrap(stem_backend *be, stem_dtype dt, int ndim, const int64_t *shape, void *data) {
    stem_tensor t = {.dtype = dt, .ndim = ndim, .data = data, .backend = be, .owned = false};
    for (int i = 0; i < ndim && i < STEM_MAX_DIMS; i++) t.shape[i] = shape[i];
    return t;
}

stem_status stem_tensor_new(stem_backend *be, stem_dtype dt, int ndim, const int64_t *shape, stem_tensor *out) {
    STEM_TRY(check_shape(ndim, shape));
    stem_tensor t = stem_tensor_wrap(be, dt, ndim, shape, NULL);
    size_t bytes = stem_nbytes(&t);
    /* allocate at least one byte so that empty tensors still have a valid pointer */
    STEM_TRY(be->ops->alloc(be, bytes ? bytes : 1, &t.data));
    t.owned = true;
    *out = t;
    return STEM_OK;
}

stem_status stem_tensor_zeros(stem_backend *be, stem_dtype dt, int ndim, const int64_t *shape, stem_tensor *out) {
    STEM_TRY(stem_tensor_new(be, dt, ndim, shape, out));
    stem_status s = be->ops->memset0(be, out->data, stem_nbytes(out));
    if (s != STEM_OK) stem_tensor_free(out);
    return s;
}

void stem_tensor_free(stem_tensor *t) {
    if (t->owned && t->data && t->backend) t->backend->ops->free(t->backend, t->data);
    t->data = NULL;
    t->owned = false;
}

stem_status stem_tensor_reshape(const stem_tensor *t, int ndim, const int64_t *shape, stem_tensor *view) {
    STEM_TRY(check_shape(ndim, shape));
    stem_tensor v = stem_tensor_wrap(t->backend, t->dtype, ndim, shape, t->data);
    if (stem_numel(&v) != stem_numel(t)) {
        char a[STEM_SHAPE_STR_LEN], b[STEM_SHAPE_STR_LEN];
        return stem_fail(STEM_E_SHAPE, "cannot reshape %s to %s", stem_shape_str(t, a, sizeof a),
                         stem_shape_str(&v, b, sizeof b));
    }
    *view = v;
    return STEM_OK;
}

stem_status stem_tensor_narrow0(const stem_tensor *t, int64_t start, int64_t count, stem_tensor *view) {
    if (t->ndim < 1 || start < 0 || count < 0 || start + count > t->shape[0])
        return stem_fail(STEM_E_SHAPE, "rows %lld..%lld are outside axis 0 of size %lld", (long long)start,
                         (long long)(start + count), t->ndim ? (long long)t->shape[0] : 0LL);
    stem_tensor v = *t;
    v.owned = false;
    v.shape[0] = count;
    size_t row_bytes = t->shape[0] ? stem_nbytes(t) / (size_t)t->shape[0] : 0;
    v.data = (char *)t->data + (size_t)start * row_bytes;
    *view = v;
    return STEM_OK;
}

static bool is_float(stem_dtype dt) { return dt == STEM_F32 || dt == STEM_F16 || dt == STEM_BF16; }

stem_status stem_tensor_copy(const stem_tensor *src, stem_tensor *dst) {
    if (!stem_same_shape(src, dst) || src->dtype != dst->dtype) {
        char a[STEM_SHAPE_STR_LEN], b[STEM_SHAPE_STR_LEN];
        return stem_fail(STEM_E_SHAPE, "copy: %s %s into %s %s", stem_dtype_name(src->dtype),
                         stem_shape_str(src, a, sizeof a), stem_dtype_name(dst->dtype),
                         stem_shape_str(dst, b, sizeof b));
    }
    size_t bytes = stem_nbytes(src);
    if (bytes == 0) return STEM_OK;
    stem_backend *sb = src->backend, *db = dst->backend;
    if (sb == db) return db->ops->copy(db, dst->data, src->data, bytes);
    if (sb->host_memory) return db->ops->upload(db, dst->data, src->data, bytes);
    if (db->host_memory) return sb->ops->download(sb, dst->data, src->data, bytes);
    /* device to another device: through the host */
    stem_tensor tmp;
    STEM_TRY(stem_tensor_new(stem_host(), src->dtype, src->ndim, src->shape, &tmp));
    stem_status s = sb->ops->download(sb, tmp.data, src->data, bytes);
    if (s == STEM_OK) s = db->ops->upload(db, dst->data, tmp.data, bytes);
    stem_tensor_free(&tmp);
    return s;
}

stem_status stem_tensor_to(const stem_tensor *src, stem_backend *be, stem_dtype dt, stem_tensor *out) {
    if (dt != src->dtype && !(is_float(dt) && is_float(src->dtype)))
        return stem_fail(STEM_E_DTYPE, "cannot convert %s to %s", stem_dtype_name(src->dtype), stem_dtype_name(dt));
    STEM_TRY(stem_tensor_new(be, dt, src->ndim, src->shape, out));
    if (dt == src->dtype) {
        stem_status s = stem_tensor_copy(src, out);
        if (s != STEM_OK) stem_tensor_free(out);
        return s;
    }
    /* convert on the host: load-time only, so simplicity beats speed here */
    stem_backend *cpu = stem_host();
    stem_tensor host_src = *src, staged = {0}, host_dst = {0};
    stem_status s = STEM_OK;
    if (!src->backend->host_memory) {
        s = stem_tensor_to(src, cpu, src->dtype, &staged);
        host_src = staged;
    }
    if (s == STEM_OK) s = stem_tensor_new(cpu, dt, src->ndim, src->shape, &host_dst);
    if (s == STEM_OK) {
        stem_convert(host_dst.data, dt, host_src.data, src->dtype, (size_t)stem_numel(src));
        s = stem_tensor_copy(&host_dst, out);
    }
    stem_tensor_free(&staged);
    stem_tensor_free(&host_dst);
    if (s != STEM_OK) stem_tensor_free(out);
    return s;
}

stem_status stem_tensor_flat_view(const stem_tensor *flat, int64_t a, int64_t b, int64_t c, stem_tensor *view) {
    stem_tensor head;
    int64_t shape[3] = {a, b, c};
    STEM_TRY(stem_tensor_narrow0(flat, 0, a * b * c, &head));
    return stem_tensor_reshape(&head, 3, shape, view);
}
