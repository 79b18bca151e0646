/* A tensor is a small value: dtype, shape, and a pointer into memory owned by a
 * backend (host memory for the CPU backend, device memory for CUDA). Tensors are
 * always contiguous and row-major; ops that want other layouts take explicit
 * strides in their parameter structs (see core/backend.h). */
#ifndef STEM_CORE_TENSOR_H
#define STEM_CORE_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/error.h"

#define STEM_MAX_DIMS 6

typedef struct stem_backend stem_backend;

typedef struct stem_tensor {
    stem_dtype dtype;
    int ndim;
    int64_t shape[STEM_MAX_DIMS];
    void *data;            /* host or device pointer, per `backend` */
    stem_backend *backend; /* where `data` lives; NULL for an empty tensor */
    bool owned;            /* stem_tensor_free releases `data` */
} stem_tensor;

int64_t stem_numel(const stem_tensor *t);
size_t stem_nbytes(const stem_tensor *t);
bool stem_same_shape(const stem_tensor *a, const stem_tensor *b);
/* "[2, 4, 64, 64]" into buf (at least 96 bytes); returns buf. */
const char *stem_shape_str(const stem_tensor *t, char *buf, size_t len);
#define STEM_SHAPE_STR_LEN 96

/* A fresh, owned, uninitialised tensor on `be`. */
stem_status stem_tensor_new(stem_backend *be, stem_dtype dt, int ndim, const int64_t *shape,
                            stem_tensor *out);
/* Same, filled with zeros. */
stem_status stem_tensor_zeros(stem_backend *be, stem_dtype dt, int ndim, const int64_t *shape,
                              stem_tensor *out);
/* Wraps memory the caller keeps alive (not owned). */
stem_tensor stem_tensor_wrap(stem_backend *be, stem_dtype dt, int ndim, const int64_t *shape,
                             void *data);
void stem_tensor_free(stem_tensor *t);

/* A view with another shape of the same element count (not owned). */
stem_status stem_tensor_reshape(const stem_tensor *t, int ndim, const int64_t *shape,
                                stem_tensor *view);
/* A view of `count` consecutive entries along axis 0 (not owned). */
stem_status stem_tensor_narrow0(const stem_tensor *t, int64_t start, int64_t count,
                                stem_tensor *view);

/* The first a*b*c entries of a 1-D (flat) tensor as a view [a, b, c] (not owned): one
 * buffer sized for the largest use, viewed per use. */
stem_status stem_tensor_flat_view(const stem_tensor *flat, int64_t a, int64_t b, int64_t c, stem_tensor *view);
/* Copies `src` (any backend) into a new owned tensor on `be` with dtype `dt`,
 * converting f32/f16/bf16 as needed. */
stem_status stem_tensor_to(const stem_tensor *src, stem_backend *be, stem_dtype dt,
                           stem_tensor *out);
/* Copies between two existing tensors of equal shape and dtype on any backends. */
stem_status stem_tensor_copy(const stem_tensor *src, stem_tensor *dst);

#endif
