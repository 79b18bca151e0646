/* Launchers of the CUDA kernels, callable from C (backends/cuda/cuda_backend.c).
 *
 * Each launcher takes the op's parameter struct from core/backend.h (device
 * pointers), plus a workspace where the op needs one, and enqueues its kernels on
 * `stream`. It returns the launch status (cudaGetLastError after the last launch);
 * errors that happen while a kernel runs surface at the next synchronisation.
 * Zero-sized problems launch nothing and return cudaSuccess. A launcher given a
 * dtype it does not support returns cudaErrorInvalidValue: the backend checks dtypes
 * first and reports them properly. Launchers never allocate memory.
 *
 * Compute dtypes: f32 and f16 (f16 storage, f32 arithmetic). Data-movement ops
 * (copy2d, permute, gather_rows, upsample_nearest) move raw elements of any size. */
#ifndef STEM_KERNELS_CUDA_KERNELS_H
#define STEM_KERNELS_CUDA_KERNELS_H

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* elementwise.cu */
cudaError_t stem_cuda_unary(const stem_unary_params *p, cudaStream_t stream);
cudaError_t stem_cuda_geglu(const stem_geglu_params *p, cudaStream_t stream);
cudaError_t stem_cuda_binary(const stem_binary_params *p, cudaStream_t stream);
cudaError_t stem_cuda_affine(const stem_affine_params *p, cudaStream_t stream);
/* f32/f16/bf16 in any combination (same dtype: the backend copies instead). */
cudaError_t stem_cuda_convert(const stem_convert_params *p, cudaStream_t stream);

/* norm.cu. group_norm needs stem_cuda_group_norm_workspace(p) bytes of workspace. */
size_t stem_cuda_group_norm_workspace(const stem_group_norm_params *p);
cudaError_t stem_cuda_group_norm(const stem_group_norm_params *p, void *workspace, cudaStream_t stream);
cudaError_t stem_cuda_layer_norm(const stem_layer_norm_params *p, cudaStream_t stream);

/* softmax.cu */
cudaError_t stem_cuda_softmax(const stem_softmax_params *p, cudaStream_t stream);

/* conv2d.cu: the pieces of conv2d around the cuBLAS GEMM that the backend runs.
 * im2col writes col[b][k][j] for images img0 .. img0+images-1, k < c_in*kh*kw
 * (k = (ci*kh + ky)*kw + kx), j < rows*w_out: the patches of output rows
 * oy0 .. oy0+rows-1, zero where the window hangs over the padding. */
cudaError_t stem_cuda_im2col(const stem_conv2d_params *p, int64_t img0, int64_t images, int64_t oy0,
                             int64_t rows, void *col, cudaStream_t stream);
/* y[b, co, :, :] = bias[co] for every image (the GEMMs then accumulate with beta 1). */
cudaError_t stem_cuda_conv_bias_fill(const stem_conv2d_params *p, cudaStream_t stream);

/* layout.cu */
cudaError_t stem_cuda_copy2d(const stem_copy2d_params *p, cudaStream_t stream);
cudaError_t stem_cuda_permute(const stem_permute_params *p, cudaStream_t stream);
cudaError_t stem_cuda_upsample_nearest(const stem_upsample_params *p, cudaStream_t stream);
/* Indices outside [0, n_src) produce zero rows (the front end validates them). */
cudaError_t stem_cuda_gather_rows(const stem_gather_params *p, cudaStream_t stream);

/* attention.cu: fused flash-style attention; d <= 160 and dv <= 160. f32 on CUDA cores;
 * f16 on tensor cores (WMMA), or on CUDA cores with STEM_CUDA_ATTENTION=simt. */
#define STEM_CUDA_ATTENTION_MAX_D 160
cudaError_t stem_cuda_attention(const stem_attention_params *p, cudaStream_t stream);

/* freeu.cu: FreeU's Fourier filter, the closed form of kernels/cpu/freeu.c; y may equal x. */
cudaError_t stem_cuda_freeu_filter(const stem_freeu_filter_params *p, cudaStream_t stream);

/* misc.cu */
/* cudaSuccess when this build's kernels have an image (SASS or PTX) that runs on
 * the current device; cudaErrorInvalidDeviceFunction or similar when they do not. */
cudaError_t stem_cuda_probe(void);
cudaError_t stem_cuda_timestep_embedding(const stem_timestep_params *p, cudaStream_t stream);
/* mean/std outputs have dtype p->dtype (f32 accumulation inside). */
size_t stem_cuda_mean_std_workspace(const stem_mean_std_params *p);
cudaError_t stem_cuda_mean_std(const stem_mean_std_params *p, void *workspace, cudaStream_t stream);
/* y has dtype p->dtype; the numbers are computed in double exactly as on the CPU. */
cudaError_t stem_cuda_philox_normal(const stem_philox_params *p, cudaStream_t stream);
/* Pieces of argmax_cos around the cuBLAS similarity GEMM:
 * y[r, :] = x[r, :] / ||x[r, :]||_2 (no epsilon: a zero row becomes NaN, as on the CPU);
 * idx[r] = argmax_j sim[r * ld + j], j < cols, lowest j on ties, NaN counts as largest
 * (torch.argmax). */
cudaError_t stem_cuda_rows_l2_normalize(stem_dtype dtype, int64_t rows, int64_t cols, const void *x, void *y,
                                        cudaStream_t stream);
cudaError_t stem_cuda_rows_argmax(int64_t rows, int64_t cols, const float *sim, int64_t ld, int32_t *idx,
                                  cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
