/* The CPU kernels: f32 only, raw host pointers, the parameter structs of
 * core/backend.h. backends/cpu/cpu_backend.c checks dtypes, allocates scratch and
 * calls these; a kernel never allocates. Kernels that need working memory say how
 * much with a *_scratch() function (bytes, for the current OpenMP thread count)
 * and take it as an argument. Threads: OpenMP for our loops, OpenBLAS's own
 * threads for large single GEMMs (OpenBLAS runs single-threaded when called inside
 * one of our parallel regions). */
#ifndef STEM_KERNELS_CPU_KERNELS_H
#define STEM_KERNELS_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"

/* gemm.c: cblas_sgemm per batch entry (stride 0 broadcasts). */
void stem_cpu_gemm_f32(const stem_gemm_params *p);

/* conv2d.c: 1x1/stride-1/unpadded = one GEMM per image; otherwise im2col of column
 * tiles into scratch, then GEMM; bias fused. */
size_t stem_cpu_conv2d_scratch(const stem_conv2d_params *p);
void stem_cpu_conv2d_f32(const stem_conv2d_params *p, void *scratch);

/* norm.c */
void stem_cpu_group_norm_f32(const stem_group_norm_params *p);
void stem_cpu_layer_norm_f32(const stem_layer_norm_params *p);

/* softmax.c */
void stem_cpu_softmax_f32(const stem_softmax_params *p);

/* activation.c */
void stem_cpu_unary_f32(const stem_unary_params *p);
void stem_cpu_geglu_f32(const stem_geglu_params *p);

/* elementwise.c */
void stem_cpu_binary_f32(const stem_binary_params *p);
void stem_cpu_affine_f32(const stem_affine_params *p);

/* layout.c */
void stem_cpu_upsample_nearest_f32(const stem_upsample_params *p);
void stem_cpu_copy2d_f32(const stem_copy2d_params *p);
void stem_cpu_permute_f32(const stem_permute_params *p);
/* memcpy / memset 0, split over threads when large. */
void stem_cpu_copy_bytes(void *dst, const void *src, size_t bytes);
void stem_cpu_zero_bytes(void *dst, size_t bytes);

/* timestep.c */
void stem_cpu_timestep_embedding_f32(const stem_timestep_params *p);

/* attention.c: streaming (flash-style) attention over query x key blocks. */
size_t stem_cpu_attention_scratch(const stem_attention_params *p);
void stem_cpu_attention_f32(const stem_attention_params *p, void *scratch);

/* gather.c */
void stem_cpu_gather_rows_f32(const stem_gather_params *p);
size_t stem_cpu_argmax_cos_scratch(const stem_argmax_cos_params *p);
void stem_cpu_argmax_cos_f32(const stem_argmax_cos_params *p, void *scratch);

/* reduce.c */
void stem_cpu_mean_std_f32(const stem_mean_std_params *p);

/* philox.c */
void stem_cpu_philox_normal_f32(const stem_philox_params *p);

/* freeu.c: FreeU's Fourier filter in closed form, O(h*w) per plane; scratch holds the
 * cos/sin tables. */
size_t stem_cpu_freeu_filter_scratch(const stem_freeu_filter_params *p);
void stem_cpu_freeu_filter_f32(const stem_freeu_filter_params *p, void *scratch);

/* Element-type conversion (f32/f16/bf16) in parallel chunks; lives in layout.c. */
void stem_cpu_convert(const stem_convert_params *p);

/* Shared helpers for the kernel files. */
static inline int64_t stem_imin(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t stem_imax(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t stem_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
/* Scratch slices are rounded to 64 bytes so that each thread's part is aligned. */
static inline size_t stem_round64(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

/* Below this many elements a memory-bound loop runs on one thread. */
#define STEM_PAR_MIN_ELEMS ((int64_t)1 << 15)

#endif
