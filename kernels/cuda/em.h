/* The CUDA launcher of the em_block op (core/backend.h, stem_em_block_params),
 * callable from C (backends/cuda/cuda_backend.c). k and v: f32, f16 or bf16; mu and
 * the statistics: f32. Needs no workspace; accumulates with float atomics, so the
 * summation order (and the last bits) can vary from run to run. Bases per call are
 * limited by shared memory: STEM_CUDA_EM_MAX_BASES. */
#ifndef STEM_KERNELS_CUDA_EM_H
#define STEM_KERNELS_CUDA_EM_H

#include <cuda_runtime_api.h>

#include "core/backend.h"

#define STEM_CUDA_EM_MAX_BASES 2048
#define STEM_CUDA_EM_MAX_D 512

#ifdef __cplusplus
extern "C" {
#endif

cudaError_t stem_cuda_em_block(const stem_em_block_params *p, cudaStream_t stream);

/* Pieces of the cuBLAS form (backends/cuda/cuda_backend.c):
 * out [heads, rows, d] f32 = the operand's block (token i of head h at
 * ptr + h*head_stride + i*row_stride, elements of `dtype`); */
cudaError_t stem_cuda_em_gather_f32(stem_dtype dtype, const stem_attn_operand *x, int64_t heads, int64_t rows,
                                    int64_t d, float *out, cudaStream_t stream);
/* mu_hat [bases, d] = mu / (||mu|| + eps) row by row; */
cudaError_t stem_cuda_em_normalize_bases(int64_t bases, int64_t d, float eps, const float *mu, float *mu_hat,
                                         cudaStream_t stream);
/* x[0..n) = value. */
cudaError_t stem_cuda_fill_f32(int64_t n, float value, float *x, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
