/* The backend interface: a table of function pointers that every backend (cpu, cuda)
 * fills. Model and algorithm code never calls these directly: it calls the tensor
 * front ends in core/ops.h, which check shapes once and then dispatch here. Every
 * compute entry takes a parameter struct of raw pointers (in the backend's memory),
 * sizes and strides; all sizes are in elements, all layouts row-major.
 *
 * Adding an op: a params struct and entry here, the front end in core/ops.c (it
 * dispatches through DISPATCH, which reports a NULL entry as "not supported by backend
 * X", so an op may land on one backend first), a kernel in kernels/cpu and/or
 * kernels/cuda, its wiring in backends/cpu/cpu_backend.c and/or
 * backends/cuda/cuda_backend.c, a registry entry in core/op_defs.c (or
 * src/stem/stem_ops.c for an algorithm op) so that `stem op NAME` runs it, and a
 * golden generator in refdata/gen/gen_ops.py (tests/test_ops_golden fails while any
 * op in the catalog, src/check/op_catalog.c, has no golden file). */
#ifndef STEM_CORE_BACKEND_H
#define STEM_CORE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/error.h"

/* C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b], b < batch, row-major.
 * op(A) is m x k: A is stored m x k (lda >= k), or k x m when trans_a (lda >= m).
 * op(B) is k x n: B is stored k x n (ldb >= n), or n x k when trans_b (ldb >= k).
 * stride_* is the element distance between batch entries (0 broadcasts). */
typedef struct stem_gemm_params {
    stem_dtype dtype; /* of A, B and C; accumulation is always f32 */
    bool trans_a, trans_b;
    int64_t m, n, k, batch;
    float alpha, beta;
    const void *a; int64_t lda, stride_a;
    const void *b; int64_t ldb, stride_b;
    void *c;       int64_t ldc, stride_c;
} stem_gemm_params;

/* y[n, c_out, h_out, w_out] = conv(x[n, c_in, h, w], w[c_out, c_in, kh, kw]) + bias.
 * Zero padding, possibly asymmetric; dilation 1; groups 1. */
typedef struct stem_conv2d_params {
    stem_dtype dtype;
    int64_t n, c_in, h, w, c_out, kh, kw;
    int stride_h, stride_w;
    int pad_top, pad_bottom, pad_left, pad_right;
    int64_t h_out, w_out;
    const void *x, *weight, *bias; /* bias may be NULL */
    void *y;
} stem_conv2d_params;

/* x[n, c, spatial] normalised over (c/groups, spatial) per group; then
 * y = xhat * gamma[c] + beta[c] (gamma/beta may be NULL), then SiLU if `silu`. */
typedef struct stem_group_norm_params {
    stem_dtype dtype;
    int64_t n, c, spatial;
    int groups;
    float eps;
    bool silu;
    const void *x, *gamma, *beta;
    void *y;
} stem_group_norm_params;

/* Each of `rows` rows of `cols`: y = (x - mean) / sqrt(var + eps) * gamma + beta (biased var). */
typedef struct stem_layer_norm_params {
    stem_dtype dtype;
    int64_t rows, cols;
    float eps;
    const void *x, *gamma, *beta; /* gamma/beta may be NULL */
    void *y;
} stem_layer_norm_params;

/* y = softmax(scale * x) along each row of `cols` (max subtracted first). */
typedef struct stem_softmax_params {
    stem_dtype dtype;
    int64_t rows, cols;
    float scale;
    const void *x;
    void *y; /* may equal x */
} stem_softmax_params;

typedef enum stem_unary_kind {
    STEM_UNARY_SILU,       /* x * sigmoid(x) */
    STEM_UNARY_GELU,       /* x * Phi(x), exact erf form (torch default) */
    STEM_UNARY_GELU_TANH,  /* tanh approximation */
    STEM_UNARY_QUICK_GELU, /* x * sigmoid(1.702 x), CLIP ViT-L/14 (SD 1.x) */
} stem_unary_kind;

typedef struct stem_unary_params {
    stem_dtype dtype;
    stem_unary_kind kind;
    int64_t n;
    const void *x;
    void *y; /* may equal x */
} stem_unary_params;

/* diffusers GEGLU after its projection: x[rows, 2*cols] = [hidden | gate],
 * y[rows, cols] = hidden * gelu(gate) (exact gelu). */
typedef struct stem_geglu_params {
    stem_dtype dtype;
    int64_t rows, cols;
    const void *x;
    void *y;
} stem_geglu_params;

typedef enum stem_binary_kind { STEM_BINARY_ADD, STEM_BINARY_SUB, STEM_BINARY_MUL, STEM_BINARY_DIV } stem_binary_kind;

/* y[i] = a[i'] OP b[i''] over the output shape, with numpy broadcasting expressed as
 * element strides (0 on a broadcast axis). y is contiguous. */
typedef struct stem_binary_params {
    stem_dtype dtype;
    stem_binary_kind kind;
    int ndim;
    int64_t shape[6];
    int64_t stride_a[6], stride_b[6];
    const void *a, *b;
    void *y; /* may equal a when a is not broadcast */
} stem_binary_params;

/* y = alpha * x + beta, elementwise. */
typedef struct stem_affine_params {
    stem_dtype dtype;
    int64_t n;
    float alpha, beta;
    const void *x;
    void *y;
} stem_affine_params;

/* Nearest-neighbour resize of planes[planes, h, w] to [planes, h_out, w_out] with
 * PyTorch's legacy "nearest" rule: src = min(floor(dst * (in / out)), in - 1),
 * the ratio computed in float. */
typedef struct stem_upsample_params {
    stem_dtype dtype;
    int64_t planes, h, w, h_out, w_out;
    const void *x;
    void *y;
} stem_upsample_params;

/* 2-D strided copy: rows x cols elements; the building block of concat/slice/split. */
typedef struct stem_copy2d_params {
    stem_dtype dtype;
    int64_t rows, cols;
    const void *src; int64_t src_stride;
    void *dst;       int64_t dst_stride;
} stem_copy2d_params;

/* y = x.permute(perm): x has shape[ndim]; y's axis i is x's axis perm[i]. */
typedef struct stem_permute_params {
    stem_dtype dtype;
    int ndim;
    int64_t shape[6];
    int perm[6];
    const void *x;
    void *y;
} stem_permute_params;

/* diffusers get_timestep_embedding: half = dim/2,
 * freq_j = exp(-ln(max_period) * j / (half - freq_shift)), arg = t * freq_j,
 * y = [sin(arg), cos(arg)] (or [cos, sin] when flip_sin_to_cos); zero-pad odd dim. */
typedef struct stem_timestep_params {
    stem_dtype dtype; /* of y; t is always f32 */
    int64_t n, dim;
    bool flip_sin_to_cos;
    float freq_shift, max_period;
    const float *t;
    void *y;
} stem_timestep_params;

/* Per-row element strides for one attention operand. The operand for batch index
 * (o, h), o < outer, h < heads, row i, channel c sits at
 * base + o*outer_stride + h*head_stride + i*row_stride + c. */
typedef struct stem_attn_operand {
    const void *ptr;
    int64_t outer_stride, head_stride, row_stride;
} stem_attn_operand;

/* out = softmax(scale * q k^T) v per (outer, head), without materialising nq x nk.
 * q: nq x d, k: nk x d, v: nk x dv, out: nq x dv. Softmax in f32. */
typedef struct stem_attention_params {
    stem_dtype dtype;
    int64_t outer, heads, nq, nk, d, dv;
    float scale;
    stem_attn_operand q, k, v;
    void *out; int64_t out_outer_stride, out_head_stride, out_row_stride;
} stem_attention_params;

/* y[i, :] = src[idx[i], :], i < n_idx; idx int32 in [0, n_src). */
typedef struct stem_gather_params {
    stem_dtype dtype;
    int64_t n_idx, n_src, cols;
    const void *src;
    const int32_t *idx;
    void *y;
} stem_gather_params;

/* idx[b, i] = argmax_j cos(a[b, i, :], ref[b, j, :]) (x / ||x||, no epsilon;
 * ties pick the lowest j, like torch.argmax). */
typedef struct stem_argmax_cos_params {
    stem_dtype dtype;
    int64_t batch, n, m, c;
    const void *a, *ref;
    int32_t *idx;
} stem_argmax_cos_params;

/* Over x viewed as [outer, n, inner]: mean and unbiased (n-1) std along n, both
 * [outer, inner]. n == 1 gives std 0 (torch gives nan; see doc/algorithm.md §5).
 * mean/std are in out_dtype: x's dtype, or f32 (f16 input, statistics kept in f32). */
typedef struct stem_mean_std_params {
    stem_dtype dtype, out_dtype;
    int64_t outer, n, inner;
    const void *x;
    void *mean, *std; /* std may be NULL */
} stem_mean_std_params;

/* y[e] = standard normal number e of the Philox4x32-10 stream of doc/algorithm.md §6:
 * key = (seed & 0xffffffff, seed >> 32), counter = (e / 4, w1, w2, w3). */
typedef struct stem_philox_params {
    stem_dtype dtype;
    int64_t n;
    uint64_t seed;
    uint32_t w1, w2, w3;
    void *y;
} stem_philox_params;

/* FreeU's Fourier filter on each of `planes` planes x[h, w] (doc/algorithm.md §7):
 * y = x - (1 - s) * Re(sum of the DFT components at (k_y, k_x) in {0, -1} x {0, -1}),
 * i.e. the four lowest frequencies scaled by s (for n = 1, -1 and 0 are one frequency).
 * O(h*w) per plane; kernels/cpu/freeu.c derives the closed form. y may equal x. */
typedef struct stem_freeu_filter_params {
    stem_dtype dtype;
    int64_t planes, h, w;
    float s;
    const void *x;
    void *y;
} stem_freeu_filter_params;

typedef struct stem_convert_params {
    int64_t n;
    stem_dtype src_dtype, dst_dtype;
    const void *src;
    void *dst;
} stem_convert_params;

typedef struct stem_backend stem_backend;

/* The EM statistics of doc/algorithm.md §5 over one block of `rows` tokens, for each head
 * h < heads (src/stem/em.c streams the tokens through this in blocks):
 *   mu_hat[j] = mu[h, j, :] / (||mu[h, j, :]||_2 + norm_eps)                 j < m
 *   z[i, j]   = softmax_j(<k_i, mu_hat[j]> / tau)                            i < rows
 *   zk[h, j, :] += sum_i z[i, j] k_i;   zsum[h, j] += sum_i z[i, j];
 *   zv[h, j, :] += sum_i z[i, j] v_i    (only when zv is not NULL)
 * or `=` instead of `+=` when `overwrite`. Token i of head h is read at
 * ptr + h*head_stride + i*row_stride (outer_stride is unused), so token-major
 * [rows, heads*d] and head-major [heads, rows, d] blocks are read in place. mu and
 * the accumulators are f32 whatever `dtype` is (doc/algorithm.md §5: EM statistics in f32).
 * z is never stored; a z whose exponent (s - max)/tau is under -60 (z < 8.8e-27)
 * may be treated as exactly 0: even over 491,520 tokens that moves no basis by more
 * than ~1e-16 |k| (kernels/cpu/em.c); the dense f32 softmax flushes from e^-87 on. */
typedef struct stem_em_block_params {
    stem_dtype dtype; /* of k and v */
    int64_t heads, rows, m, d;
    float tau, norm_eps;
    bool overwrite;
    stem_attn_operand k, v; /* v.ptr is ignored when zv is NULL */
    const float *mu;        /* [heads, m, d] */
    float *zk;              /* [heads, m, d] */
    float *zsum;            /* [heads, m] */
    float *zv;              /* [heads, m, d] or NULL */
} stem_em_block_params;

typedef struct stem_backend_ops {
    /* memory */
    stem_status (*alloc)(stem_backend *be, size_t bytes, void **out);
    void (*free)(stem_backend *be, void *ptr);
    stem_status (*upload)(stem_backend *be, void *dst, const void *host_src, size_t bytes);
    stem_status (*download)(stem_backend *be, void *host_dst, const void *src, size_t bytes);
    stem_status (*copy)(stem_backend *be, void *dst, const void *src, size_t bytes);
    stem_status (*memset0)(stem_backend *be, void *dst, size_t bytes);
    stem_status (*synchronize)(stem_backend *be);
    /* compute */
    stem_status (*gemm)(stem_backend *be, const stem_gemm_params *p);
    stem_status (*conv2d)(stem_backend *be, const stem_conv2d_params *p);
    stem_status (*group_norm)(stem_backend *be, const stem_group_norm_params *p);
    stem_status (*layer_norm)(stem_backend *be, const stem_layer_norm_params *p);
    stem_status (*softmax)(stem_backend *be, const stem_softmax_params *p);
    stem_status (*unary)(stem_backend *be, const stem_unary_params *p);
    stem_status (*geglu)(stem_backend *be, const stem_geglu_params *p);
    stem_status (*binary)(stem_backend *be, const stem_binary_params *p);
    stem_status (*affine)(stem_backend *be, const stem_affine_params *p);
    stem_status (*upsample_nearest)(stem_backend *be, const stem_upsample_params *p);
    stem_status (*copy2d)(stem_backend *be, const stem_copy2d_params *p);
    stem_status (*permute)(stem_backend *be, const stem_permute_params *p);
    stem_status (*timestep_embedding)(stem_backend *be, const stem_timestep_params *p);
    stem_status (*attention)(stem_backend *be, const stem_attention_params *p);
    stem_status (*gather_rows)(stem_backend *be, const stem_gather_params *p);
    stem_status (*argmax_cos)(stem_backend *be, const stem_argmax_cos_params *p);
    stem_status (*mean_std)(stem_backend *be, const stem_mean_std_params *p);
    stem_status (*philox_normal)(stem_backend *be, const stem_philox_params *p);
    stem_status (*convert)(stem_backend *be, const stem_convert_params *p);
    stem_status (*freeu_filter)(stem_backend *be, const stem_freeu_filter_params *p);
    /* facts for logs and bench: "cpu: AVX-512, 2 threads, OpenBLAS SkylakeX" */
    const char *(*describe)(stem_backend *be);
    void (*destroy)(stem_backend *be);
    /* algorithm ops (front ends in src/stem): EM statistics of one token block */
    stem_status (*em_block)(stem_backend *be, const stem_em_block_params *p);
    /* memory the backend can still allocate, and its total: MemAvailable/MemTotal for
     * the CPU, cudaMemGetInfo for CUDA (sizes memory budgets such as --mem-limit) */
    stem_status (*memory_info)(stem_backend *be, size_t *available, size_t *total);
} stem_backend_ops;

typedef enum stem_backend_kind { STEM_BACKEND_CPU, STEM_BACKEND_CUDA } stem_backend_kind;

struct stem_backend {
    const stem_backend_ops *ops;
    stem_backend_kind kind;
    const char *name; /* "cpu" or "cuda" */
    bool host_memory; /* data pointers are dereferenceable on the host */
    void *impl;       /* backend-private state */
};

/* Host memory and the backend of host tensors: core/host.h. The CPU backend and opening
 * a backend by name are above core: backends/backends.h. */

#endif
