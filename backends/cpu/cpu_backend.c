/* The CPU backend: core's host memory (core/host.h, 64-byte aligned), f32 compute on the kernels of
 * kernels/cpu. This file only checks what the kernels cannot (dtypes, index
 * ranges), hands them scratch memory, and turns failures into stem_status values. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/cpu_info.h"
#include "core/host.h"
#include "kernels/cpu/em.h"
#include "kernels/cpu/kernels.h"

#define ALIGN 64 /* stem_host_alloc's alignment, for the cached scratch buffer */

/* ---- memory: host memory, a facility of core (core/host.h) ------------------------------ */

static stem_status host_alloc(size_t bytes, void **out, const char *what) { return stem_host_alloc(bytes, out, what); }

static stem_status cpu_alloc(stem_backend *be, size_t bytes, void **out) {
    return host_alloc(bytes, out, "a tensor");
}

static void cpu_free(stem_backend *be, void *ptr) { stem_host_free(ptr); }

static stem_status cpu_copy(stem_backend *be, void *dst, const void *src, size_t bytes) {
    stem_cpu_copy_bytes(dst, src, bytes);
    return STEM_OK;
}

static stem_status cpu_memset0(stem_backend *be, void *dst, size_t bytes) {
    stem_cpu_zero_bytes(dst, bytes);
    return STEM_OK;
}

static stem_status cpu_synchronize(stem_backend *be) { return STEM_OK; }

/* Kernel scratch: one cached buffer (grown as needed, kept up to SCRATCH_KEEP bytes)
 * for the common case of one caller at a time; a concurrent caller gets its own. */
#define SCRATCH_KEEP ((size_t)256 << 20)
static pthread_mutex_t scratch_lock = PTHREAD_MUTEX_INITIALIZER;
static void *scratch_buf;
static size_t scratch_cap;
static bool scratch_busy;

typedef struct scratch { void *ptr; bool cached; } scratch;

static stem_status scratch_take(size_t bytes, const char *op, scratch *s) {
    s->ptr = NULL;
    s->cached = false;
    if (bytes == 0) return STEM_OK;
    pthread_mutex_lock(&scratch_lock);
    if (!scratch_busy && bytes <= SCRATCH_KEEP) {
        if (scratch_cap < bytes) {
            free(scratch_buf);
            scratch_buf = NULL;
            scratch_cap = 0;
            if (posix_memalign(&scratch_buf, ALIGN, bytes) != 0) {
                scratch_buf = NULL;
                pthread_mutex_unlock(&scratch_lock);
                return stem_fail(STEM_E_NOMEM, "cpu backend: cannot allocate %zu bytes (%.1f MiB) of scratch for %s",
                                 bytes, (double)bytes / (1024.0 * 1024.0), op);
            }
            scratch_cap = bytes;
        }
        scratch_busy = true;
        s->ptr = scratch_buf;
        s->cached = true;
        pthread_mutex_unlock(&scratch_lock);
        return STEM_OK;
    }
    pthread_mutex_unlock(&scratch_lock);
    char what[64];
    snprintf(what, sizeof what, "scratch of %s", op);
    return host_alloc(bytes, &s->ptr, what);
}

static void scratch_give(scratch *s) {
    if (s->cached) {
        pthread_mutex_lock(&scratch_lock);
        scratch_busy = false;
        pthread_mutex_unlock(&scratch_lock);
    } else {
        free(s->ptr);
    }
    s->ptr = NULL;
}

/* ---- compute ----------------------------------------------------------------------- */

#define REQUIRE_F32(dt, op)                                                                         \
    do {                                                                                            \
        if ((dt) != STEM_F32)                                                                       \
            return stem_fail(STEM_E_DTYPE, "%s: the cpu backend computes in f32, got %s", op,       \
                             stem_dtype_name(dt));                                                  \
    } while (0)

static stem_status cpu_gemm(stem_backend *be, const stem_gemm_params *p) {
    REQUIRE_F32(p->dtype, "gemm");
    stem_cpu_gemm_f32(p);
    return STEM_OK;
}

static stem_status cpu_conv2d(stem_backend *be, const stem_conv2d_params *p) {
    REQUIRE_F32(p->dtype, "conv2d");
    if (p->stride_h < 1 || p->stride_w < 1)
        return stem_fail(STEM_E_ARG, "conv2d: stride %dx%d must be positive", p->stride_h, p->stride_w);
    scratch s;
    STEM_TRY(scratch_take(stem_cpu_conv2d_scratch(p), "conv2d", &s));
    stem_cpu_conv2d_f32(p, s.ptr);
    scratch_give(&s);
    return STEM_OK;
}

static stem_status cpu_group_norm(stem_backend *be, const stem_group_norm_params *p) {
    REQUIRE_F32(p->dtype, "group_norm");
    if (p->groups <= 0 || p->c % p->groups != 0)
        return stem_fail(STEM_E_ARG, "group_norm: %lld channels do not split into %d groups", (long long)p->c,
                         p->groups);
    stem_cpu_group_norm_f32(p);
    return STEM_OK;
}

static stem_status cpu_layer_norm(stem_backend *be, const stem_layer_norm_params *p) {
    REQUIRE_F32(p->dtype, "layer_norm");
    stem_cpu_layer_norm_f32(p);
    return STEM_OK;
}

static stem_status cpu_softmax(stem_backend *be, const stem_softmax_params *p) {
    REQUIRE_F32(p->dtype, "softmax");
    stem_cpu_softmax_f32(p);
    return STEM_OK;
}

static stem_status cpu_unary(stem_backend *be, const stem_unary_params *p) {
    REQUIRE_F32(p->dtype, "unary");
    if ((unsigned)p->kind > STEM_UNARY_QUICK_GELU)
        return stem_fail(STEM_E_ARG, "unary: unknown activation kind %d", (int)p->kind);
    stem_cpu_unary_f32(p);
    return STEM_OK;
}

static stem_status cpu_geglu(stem_backend *be, const stem_geglu_params *p) {
    REQUIRE_F32(p->dtype, "geglu");
    stem_cpu_geglu_f32(p);
    return STEM_OK;
}

static stem_status cpu_binary(stem_backend *be, const stem_binary_params *p) {
    REQUIRE_F32(p->dtype, "binary");
    if (p->ndim < 0 || p->ndim > 6) return stem_fail(STEM_E_ARG, "binary: %d dimensions (at most 6)", p->ndim);
    if ((unsigned)p->kind > STEM_BINARY_DIV)
        return stem_fail(STEM_E_ARG, "binary: unknown operation %d", (int)p->kind);
    stem_cpu_binary_f32(p);
    return STEM_OK;
}

static stem_status cpu_affine(stem_backend *be, const stem_affine_params *p) {
    REQUIRE_F32(p->dtype, "affine");
    stem_cpu_affine_f32(p);
    return STEM_OK;
}

static stem_status cpu_upsample(stem_backend *be, const stem_upsample_params *p) {
    REQUIRE_F32(p->dtype, "upsample_nearest");
    if ((p->h == 0 || p->w == 0) && p->planes * p->h_out * p->w_out > 0)
        return stem_fail(STEM_E_SHAPE, "upsample_nearest: cannot resize an empty %lldx%lld plane",
                         (long long)p->h, (long long)p->w);
    stem_cpu_upsample_nearest_f32(p);
    return STEM_OK;
}

static stem_status cpu_copy2d(stem_backend *be, const stem_copy2d_params *p) {
    REQUIRE_F32(p->dtype, "copy2d");
    stem_cpu_copy2d_f32(p);
    return STEM_OK;
}

static stem_status cpu_permute(stem_backend *be, const stem_permute_params *p) {
    REQUIRE_F32(p->dtype, "permute");
    if (p->ndim < 0 || p->ndim > 6) return stem_fail(STEM_E_ARG, "permute: %d dimensions (at most 6)", p->ndim);
    unsigned seen = 0;
    for (int i = 0; i < p->ndim; i++) {
        if (p->perm[i] < 0 || p->perm[i] >= p->ndim || (seen >> p->perm[i] & 1u))
            return stem_fail(STEM_E_ARG, "permute: perm is not a permutation of 0..%d", p->ndim - 1);
        seen |= 1u << p->perm[i];
    }
    stem_cpu_permute_f32(p);
    return STEM_OK;
}

static stem_status cpu_timestep(stem_backend *be, const stem_timestep_params *p) {
    REQUIRE_F32(p->dtype, "timestep_embedding");
    stem_cpu_timestep_embedding_f32(p);
    return STEM_OK;
}

static stem_status cpu_attention(stem_backend *be, const stem_attention_params *p) {
    REQUIRE_F32(p->dtype, "attention");
    scratch s;
    STEM_TRY(scratch_take(stem_cpu_attention_scratch(p), "attention", &s));
    stem_cpu_attention_f32(p, s.ptr);
    scratch_give(&s);
    return STEM_OK;
}

static stem_status cpu_gather_rows(stem_backend *be, const stem_gather_params *p) {
    REQUIRE_F32(p->dtype, "gather_rows");
    for (int64_t i = 0; i < p->n_idx; i++)
        if (p->idx[i] < 0 || p->idx[i] >= p->n_src)
            return stem_fail(STEM_E_ARG, "gather_rows: index %d at position %lld is outside [0, %lld)",
                             (int)p->idx[i], (long long)i, (long long)p->n_src);
    stem_cpu_gather_rows_f32(p);
    return STEM_OK;
}

static stem_status cpu_argmax_cos(stem_backend *be, const stem_argmax_cos_params *p) {
    REQUIRE_F32(p->dtype, "argmax_cos");
    scratch s;
    STEM_TRY(scratch_take(stem_cpu_argmax_cos_scratch(p), "argmax_cos", &s));
    stem_cpu_argmax_cos_f32(p, s.ptr);
    scratch_give(&s);
    return STEM_OK;
}

static stem_status cpu_mean_std(stem_backend *be, const stem_mean_std_params *p) {
    REQUIRE_F32(p->dtype, "mean_std");
    stem_cpu_mean_std_f32(p);
    return STEM_OK;
}

static stem_status cpu_philox(stem_backend *be, const stem_philox_params *p) {
    REQUIRE_F32(p->dtype, "philox_normal");
    stem_cpu_philox_normal_f32(p);
    return STEM_OK;
}

static stem_status cpu_em_block(stem_backend *be, const stem_em_block_params *p) {
    REQUIRE_F32(p->dtype, "em_block");
    scratch s;
    STEM_TRY(scratch_take(stem_cpu_em_block_scratch(p), "em_block", &s));
    stem_cpu_em_block_f32(p, s.ptr);
    scratch_give(&s);
    return STEM_OK;
}

static stem_status cpu_freeu_filter(stem_backend *be, const stem_freeu_filter_params *p) {
    REQUIRE_F32(p->dtype, "freeu_filter");
    scratch s;
    STEM_TRY(scratch_take(stem_cpu_freeu_filter_scratch(p), "freeu_filter", &s));
    stem_cpu_freeu_filter_f32(p, s.ptr);
    scratch_give(&s);
    return STEM_OK;
}

static bool float_type(stem_dtype dt) { return dt == STEM_F32 || dt == STEM_F16 || dt == STEM_BF16; }

static stem_status cpu_convert(stem_backend *be, const stem_convert_params *p) {
    if (!float_type(p->src_dtype) || !float_type(p->dst_dtype))
        return stem_fail(STEM_E_DTYPE, "convert: only f32, f16 and bf16 convert (got %s -> %s)",
                         stem_dtype_name(p->src_dtype), stem_dtype_name(p->dst_dtype));
    stem_cpu_convert(p);
    return STEM_OK;
}

/* ---- facts ------------------------------------------------------------------------- */

static stem_status cpu_memory_info(stem_backend *be, size_t *available, size_t *total) {
    return stem_host_memory_info(available, total);
}

static const char *cpu_describe(stem_backend *be) {
    static _Thread_local char buf[160];
    snprintf(buf, sizeof buf, "cpu: %s kernels, %d threads, OpenBLAS %s", stem_cpu_isa_name(), stem_num_threads(),
             stem_blas_core_name());
    return buf;
}

static void cpu_destroy(stem_backend *be) { /* the singleton lives as long as the process */ }

static const stem_backend_ops cpu_ops = {
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .copy = cpu_copy,
    .memset0 = cpu_memset0,
    .synchronize = cpu_synchronize,
    .gemm = cpu_gemm,
    .conv2d = cpu_conv2d,
    .group_norm = cpu_group_norm,
    .layer_norm = cpu_layer_norm,
    .softmax = cpu_softmax,
    .unary = cpu_unary,
    .geglu = cpu_geglu,
    .binary = cpu_binary,
    .affine = cpu_affine,
    .upsample_nearest = cpu_upsample,
    .copy2d = cpu_copy2d,
    .permute = cpu_permute,
    .timestep_embedding = cpu_timestep,
    .attention = cpu_attention,
    .gather_rows = cpu_gather_rows,
    .argmax_cos = cpu_argmax_cos,
    .mean_std = cpu_mean_std,
    .philox_normal = cpu_philox,
    .convert = cpu_convert,
    .freeu_filter = cpu_freeu_filter,
    .describe = cpu_describe,
    .destroy = cpu_destroy,
    .em_block = cpu_em_block,
    .memory_info = cpu_memory_info,
};

/* The CPU backend is core's host backend with the kernels attached: host tensors and CPU
 * tensors are the same backend (core/host.h). */
static pthread_once_t attach_once = PTHREAD_ONCE_INIT;
static void attach(void) { stem_host_attach(&cpu_ops, "cpu"); }

stem_backend *stem_cpu_backend(void) {
    pthread_once(&attach_once, attach);
    return stem_host();
}
