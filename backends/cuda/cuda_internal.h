/* The CUDA backend's internals, shared by its two files:
 *   cuda_backend.c  device, stream, cuBLAS handle, memory, the shared workspace, the op
 *                   table, creation and teardown
 *   cuda_ops.c      the op entries: GEMMs through cuBLAS (gemm, conv2d as im2col + GEMM,
 *                   argmax_cos, the wide-head attention and EM paths), every other op a
 *                   kernel launcher of kernels/cuda
 * See cuda_backend.c for the execution model and precision. */
#ifndef STEM_BACKENDS_CUDA_INTERNAL_H
#define STEM_BACKENDS_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/backend.h"

/* Scratch budgets: conv2d's im2col block and argmax_cos's similarity block are
 * chunked to stay within these (they only bound the chunk size, not correctness;
 * tests may define smaller ones to exercise the chunking). */
#ifndef EM_SCORES_BYTES /* em_block's per-chunk scores and f32 k/v copies */
#define EM_SCORES_BYTES ((size_t)256 << 20)
#endif
#ifndef ATTENTION_SCORES_BYTES /* scores of the wide-head attention path, per chunk */
#define ATTENTION_SCORES_BYTES ((size_t)256 << 20)
#endif
#ifndef CONV_WORKSPACE_BYTES
#define CONV_WORKSPACE_BYTES ((size_t)256 << 20)
#endif
#ifndef ARGMAX_SIM_BYTES
#define ARGMAX_SIM_BYTES ((size_t)256 << 20)
#endif

typedef struct cuda_impl {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *ws; /* shared scratch, see the header comment */
    size_t ws_bytes;
    /* read once from the environment, for comparisons: STEM_CUDA_EM=fused (the atomic
     * EM kernel), STEM_CUDA_ATTENTION=gemm (every attention through cuBLAS) */
    bool em_fused, attention_gemm;
    char desc[512];
} cuda_impl;

static inline cuda_impl *impl_of(stem_backend *be) { return (cuda_impl *)be->impl; }

/* ---- errors ------------------------------------------------------------------------ */

/* Every CUDA failure becomes STEM_E_BACKEND "cuda: <op>: <reason>". The runtime's
 * last-error slot is cleared so a non-sticky failure (a bad launch configuration,
 * an allocation) is not reported again by the next op's launch check. */
static inline stem_status cuda_fail(const char *op, cudaError_t e) {
    (void)cudaGetLastError();
    return stem_fail(STEM_E_BACKEND, "cuda: %s: %s", op, cudaGetErrorString(e));
}

static inline stem_status blas_fail(const char *op, cublasStatus_t s) {
    return stem_fail(STEM_E_BACKEND, "cuda: %s: cuBLAS %s (%s)", op, cublasGetStatusName(s), cublasGetStatusString(s));
}

#define CU(op, call)                                      \
    do {                                                  \
        cudaError_t cu_e_ = (call);                       \
        if (cu_e_ != cudaSuccess) return cuda_fail(op, cu_e_); \
    } while (0)

/* For launchers: cudaErrorInvalidValue there means sizes this backend cannot launch
 * (a grid over 2^31 blocks, an attention head wider than supported). */
static inline stem_status launched(const char *op, cudaError_t e) {
    if (e == cudaSuccess) return STEM_OK;
    if (e == cudaErrorInvalidValue) {
        (void)cudaGetLastError();
        return stem_fail(STEM_E_UNSUPPORTED, "cuda: %s: sizes or dtype outside what the CUDA kernels support", op);
    }
    return cuda_fail(op, e);
}

/* The device is per host thread in the CUDA runtime: bind ours before each entry
 * point, so a backend created on one thread works from another. */
#define BIND(be, op) CU(op, cudaSetDevice(impl_of(be)->device))

static inline stem_status need_float(const char *op, stem_dtype dt) {
    if (dt == STEM_F32 || dt == STEM_F16) return STEM_OK;
    return stem_fail(STEM_E_DTYPE, "cuda: %s: dtype %s is not supported (f32 or f16)", op, stem_dtype_name(dt));
}

static inline stem_status need_sized(const char *op, stem_dtype dt) {
    if (stem_dtype_size(dt) > 0) return STEM_OK;
    return stem_fail(STEM_E_DTYPE, "cuda: %s: unknown dtype %d", op, (int)dt);
}

static inline size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

/* The shared workspace, grown to at least `bytes` (cuda_backend.c). */
stem_status stem_cuda_backend_ws_reserve(cuda_impl *im, size_t bytes, const char *op, void **out);

/* The op entries (cuda_ops.c). */
stem_status stem_cuda_backend_gemm(stem_backend *be, const stem_gemm_params *p);
stem_status stem_cuda_backend_conv2d(stem_backend *be, const stem_conv2d_params *p);
stem_status stem_cuda_backend_group_norm(stem_backend *be, const stem_group_norm_params *p);
stem_status stem_cuda_backend_layer_norm(stem_backend *be, const stem_layer_norm_params *p);
stem_status stem_cuda_backend_softmax(stem_backend *be, const stem_softmax_params *p);
stem_status stem_cuda_backend_unary(stem_backend *be, const stem_unary_params *p);
stem_status stem_cuda_backend_geglu(stem_backend *be, const stem_geglu_params *p);
stem_status stem_cuda_backend_binary(stem_backend *be, const stem_binary_params *p);
stem_status stem_cuda_backend_affine(stem_backend *be, const stem_affine_params *p);
stem_status stem_cuda_backend_upsample_nearest(stem_backend *be, const stem_upsample_params *p);
stem_status stem_cuda_backend_copy2d(stem_backend *be, const stem_copy2d_params *p);
stem_status stem_cuda_backend_permute(stem_backend *be, const stem_permute_params *p);
stem_status stem_cuda_backend_timestep_embedding(stem_backend *be, const stem_timestep_params *p);
stem_status stem_cuda_backend_attention(stem_backend *be, const stem_attention_params *p);
stem_status stem_cuda_backend_gather_rows(stem_backend *be, const stem_gather_params *p);
stem_status stem_cuda_backend_argmax_cos(stem_backend *be, const stem_argmax_cos_params *p);
stem_status stem_cuda_backend_mean_std(stem_backend *be, const stem_mean_std_params *p);
stem_status stem_cuda_backend_freeu_filter(stem_backend *be, const stem_freeu_filter_params *p);
stem_status stem_cuda_backend_philox_normal(stem_backend *be, const stem_philox_params *p);
stem_status stem_cuda_backend_convert(stem_backend *be, const stem_convert_params *p);
stem_status stem_cuda_backend_em_block(stem_backend *be, const stem_em_block_params *p);

#endif
