/* The CUDA backend's op entries (cuda_internal.h): GEMMs through cuBLAS, every other
 * op a launcher of kernels/cuda; argument checks the kernels cannot make, chunking to
 * the scratch budgets, and errors as stem_status. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cuda_internal.h"
#include "kernels/cuda/em.h"
#include "kernels/cuda/kernels.h"

/* ---- GEMM ------------------------------------------------------------------------------------ */

static bool fits_int(int64_t v) { return v >= 0 && v <= INT32_MAX; }

/* Row-major C[b] = alpha op(A[b]) op(B[b]) + beta C[b] (core/backend.h) on
 * column-major cuBLAS.
 *
 * A row-major r x c matrix with leading dimension ld is, byte for byte, the
 * column-major c x r matrix (its transpose) with the same ld. So instead of
 * C = op(A) op(B) we ask cuBLAS for C^T = op(B)^T op(A)^T, all column-major:
 *   - C^T is n x m column-major with ldc: exactly row-major C (m x n, ldc).
 *   - cuBLAS's first operand is B. Not trans_b: B is row-major k x n (ldb), i.e.
 *     column-major n x k = op(B)^T already: CUBLAS_OP_N, cuBLAS wants ldb >= n, as we
 *     have. trans_b: B is row-major n x k, column-major k x n = op(B), whose
 *     transpose we need: CUBLAS_OP_T, cuBLAS wants ldb >= k, as we have.
 *   - cuBLAS's second operand is A, by the same argument: CUBLAS_OP_N unless
 *     trans_a (row-major m x k is column-major k x m = op(A)^T, ld >= k), else
 *     CUBLAS_OP_T (row-major k x m is column-major m x k = op(A), ld >= m).
 *   - cuBLAS sizes: m' = n, n' = m, k' = k; batch strides carry over unchanged (a
 *     stride of 0 broadcasts that operand).
 * Leading dimensions are raised to at least 1 (cuBLAS rejects 0 even when k == 0).
 * ab/c types: f32/f32 with CUBLAS_COMPUTE_32F_PEDANTIC (never TF32), f16/f16 or
 * f16/f32 with CUBLAS_COMPUTE_32F (tensor cores, f32 accumulation). alpha and beta
 * are f32 in both cases. */
static stem_status gemm_rowmajor(cuda_impl *im, const char *op, cudaDataType ab_type, cudaDataType c_type,
                                 bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, int64_t batch,
                                 float alpha, float beta, const void *a, int64_t lda, int64_t stride_a,
                                 const void *b, int64_t ldb, int64_t stride_b, void *c, int64_t ldc,
                                 int64_t stride_c) {
    if (m == 0 || n == 0 || batch == 0) return STEM_OK;
    if (!fits_int(m) || !fits_int(n) || !fits_int(k) || !fits_int(batch) || !fits_int(lda) || !fits_int(ldb) ||
        !fits_int(ldc))
        return stem_fail(STEM_E_UNSUPPORTED, "cuda: %s: GEMM sizes m=%lld n=%lld k=%lld (ld %lld/%lld/%lld) exceed cuBLAS's int range",
                         op, (long long)m, (long long)n, (long long)k, (long long)lda, (long long)ldb,
                         (long long)ldc);
    cublasComputeType_t compute = ab_type == CUDA_R_32F ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
    cublasOperation_t op_first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  /* applied to B */
    cublasOperation_t op_second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N; /* applied to A */
    int ld_first = ldb > 0 ? (int)ldb : 1, ld_second = lda > 0 ? (int)lda : 1, ld_c = ldc > 0 ? (int)ldc : 1;
    cublasStatus_t s = cublasGemmStridedBatchedEx(
        im->blas, op_first, op_second, (int)n, (int)m, (int)k, &alpha, b, ab_type, ld_first, (long long)stride_b, a,
        ab_type, ld_second, (long long)stride_a, &beta, c, c_type, ld_c, (long long)stride_c, (int)batch, compute,
        CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) return blas_fail(op, s);
    return STEM_OK;
}

static cudaDataType cuda_type(stem_dtype dt) { return dt == STEM_F16 ? CUDA_R_16F : CUDA_R_32F; }

stem_status stem_cuda_backend_gemm(stem_backend *be, const stem_gemm_params *p) {
    STEM_TRY(need_float("gemm", p->dtype));
    BIND(be, "gemm");
    cudaDataType t = cuda_type(p->dtype);
    return gemm_rowmajor(impl_of(be), "gemm", t, t, p->trans_a, p->trans_b, p->m, p->n, p->k, p->batch, p->alpha,
                         p->beta, p->a, p->lda, p->stride_a, p->b, p->ldb, p->stride_b, p->c, p->ldc, p->stride_c);
}

/* ---- conv2d: im2col + GEMM --------------------------------------------------------------- */

/* Per image, y (c_out x h_out*w_out) = W (c_out x K) @ col (K x h_out*w_out), K =
 * c_in*kh*kw, where col holds the input patches (kernels/cuda/conv2d.cu). y starts
 * as the bias (beta = 1) or is overwritten (beta = 0). col is built in chunks that
 * fit CONV_WORKSPACE_BYTES: several whole images per batched GEMM when one image's
 * col fits, else bands of output rows of one image; a band's outputs are the
 * columns [oy0*w_out, (oy0+rows)*w_out) of y's c_out x h_out*w_out matrix, i.e. a
 * sub-matrix with leading dimension h_out*w_out. A 1x1, stride-1, unpadded conv
 * needs no col at all: col is x itself. */
stem_status stem_cuda_backend_conv2d(stem_backend *be, const stem_conv2d_params *p) {
    STEM_TRY(need_float("conv2d", p->dtype));
    BIND(be, "conv2d");
    cuda_impl *im = impl_of(be);
    int64_t hw = p->h_out * p->w_out;
    if (p->n == 0 || p->c_out == 0 || hw == 0) return STEM_OK;
    size_t es = stem_dtype_size(p->dtype);
    cudaDataType t = cuda_type(p->dtype);
    int64_t kdim = p->c_in * p->kh * p->kw;
    float beta = 0.f;
    if (p->bias) {
        STEM_TRY(launched("conv2d", stem_cuda_conv_bias_fill(p, im->stream)));
        beta = 1.f;
    }
    if (kdim == 0) { /* no inputs: y is the bias, or zero */
        if (!p->bias) CU("conv2d", cudaMemsetAsync(p->y, 0, (size_t)(p->n * p->c_out * hw) * es, im->stream));
        return STEM_OK;
    }
    if (p->kh == 1 && p->kw == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_top == 0 && p->pad_bottom == 0 &&
        p->pad_left == 0 && p->pad_right == 0 && p->h_out == p->h && p->w_out == p->w) {
        return gemm_rowmajor(im, "conv2d", t, t, false, false, p->c_out, hw, p->c_in, p->n, 1.f, beta, p->weight,
                             p->c_in, 0, p->x, hw, p->c_in * hw, p->y, hw, p->c_out * hw);
    }
    int64_t budget = (int64_t)(CONV_WORKSPACE_BYTES / es);
    int64_t images, rows;
    if (kdim * hw <= budget) {
        images = budget / (kdim * hw);
        if (images > p->n) images = p->n;
        rows = p->h_out;
    } else {
        images = 1;
        rows = budget / (kdim * p->w_out);
        if (rows < 1) rows = 1;
        if (rows > p->h_out) rows = p->h_out;
    }
    void *col;
    STEM_TRY(stem_cuda_backend_ws_reserve(im, (size_t)(images * kdim * rows * p->w_out) * es, "conv2d", &col));
    for (int64_t img0 = 0; img0 < p->n; img0 += images) {
        int64_t nimg = p->n - img0 < images ? p->n - img0 : images;
        for (int64_t oy0 = 0; oy0 < p->h_out; oy0 += rows) {
            int64_t nrows = p->h_out - oy0 < rows ? p->h_out - oy0 : rows;
            int64_t pcols = nrows * p->w_out;
            STEM_TRY(launched("conv2d", stem_cuda_im2col(p, img0, nimg, oy0, nrows, col, im->stream)));
            char *y0 = (char *)p->y + (size_t)(img0 * p->c_out * hw + oy0 * p->w_out) * es;
            STEM_TRY(gemm_rowmajor(im, "conv2d", t, t, false, false, p->c_out, pcols, kdim, nimg, 1.f, beta,
                                   p->weight, kdim, 0, col, pcols, kdim * pcols, y0, hw, p->c_out * hw));
        }
    }
    return STEM_OK;
}

/* ---- kernels with no host logic -------------------------------------------------------------- */

stem_status stem_cuda_backend_group_norm(stem_backend *be, const stem_group_norm_params *p) {
    STEM_TRY(need_float("group_norm", p->dtype));
    if (p->groups <= 0 || p->c % p->groups != 0)
        return stem_fail(STEM_E_SHAPE, "cuda: group_norm: %lld channels do not split into %d groups",
                         (long long)p->c, p->groups);
    BIND(be, "group_norm");
    cuda_impl *im = impl_of(be);
    void *ws = NULL;
    size_t need = stem_cuda_group_norm_workspace(p);
    if (need) STEM_TRY(stem_cuda_backend_ws_reserve(im, need, "group_norm", &ws));
    return launched("group_norm", stem_cuda_group_norm(p, ws, im->stream));
}

stem_status stem_cuda_backend_layer_norm(stem_backend *be, const stem_layer_norm_params *p) {
    STEM_TRY(need_float("layer_norm", p->dtype));
    BIND(be, "layer_norm");
    return launched("layer_norm", stem_cuda_layer_norm(p, impl_of(be)->stream));
}

stem_status stem_cuda_backend_softmax(stem_backend *be, const stem_softmax_params *p) {
    STEM_TRY(need_float("softmax", p->dtype));
    BIND(be, "softmax");
    return launched("softmax", stem_cuda_softmax(p, impl_of(be)->stream));
}

stem_status stem_cuda_backend_unary(stem_backend *be, const stem_unary_params *p) {
    STEM_TRY(need_float("unary", p->dtype));
    BIND(be, "unary");
    return launched("unary", stem_cuda_unary(p, impl_of(be)->stream));
}

stem_status stem_cuda_backend_geglu(stem_backend *be, const stem_geglu_params *p) {
    STEM_TRY(need_float("geglu", p->dtype));
    BIND(be, "geglu");
    return launched("geglu", stem_cuda_geglu(p, impl_of(be)->stream));
}

stem_status stem_cuda_backend_binary(stem_backend *be, const stem_binary_params *p) {
    STEM_TRY(need_float("binary", p->dtype));
    if (p->ndim < 0 || p->ndim > 6) return stem_fail(STEM_E_SHAPE, "cuda: binary: rank %d outside 0..6", p->ndim);
    BIND(be, "binary");
    return launched("binary", stem_cuda_binary(p, impl_of(be)->stream));
}

stem_status stem_cuda_backend_affine(stem_backend *be, const stem_affine_params *p) {
    STEM_TRY(need_float("affine", p->dtype));
    BIND(be, "affine");
    return launched("affine", stem_cuda_affine(p, impl_of(be)->stream));
}

stem_status stem_cuda_backend_upsample_nearest(stem_backend *be, const stem_upsample_params *p) {
    STEM_TRY(need_sized("upsample_nearest", p->dtype));
    BIND(be, "upsample_nearest");
    return launched("upsample_nearest", stem_cuda_upsample_nearest(p, impl_of(be)->stream));
}

stem_status stem_cuda_backend_copy2d(stem_backend *be, const stem_copy2d_params *p) {
    STEM_TRY(need_sized("copy2d", p->dtype));
    BIND(be, "copy2d");
    return launched("copy2d", stem_cuda_copy2d(p, impl_of(be)->stream));
}

stem_status stem_cuda_backend_permute(stem_backend *be, const stem_permute_params *p) {
    STEM_TRY(need_sized("permute", p->dtype));
    if (p->ndim < 0 || p->ndim > 6) return stem_fail(STEM_E_SHAPE, "cuda: permute: rank %d outside 0..6", p->ndim);
    BIND(be, "permute");
    return launched("permute", stem_cuda_permute(p, impl_of(be)->stream));
}

stem_status stem_cuda_backend_timestep_embedding(stem_backend *be, const stem_timestep_params *p) {
    STEM_TRY(need_float("timestep_embedding", p->dtype));
    BIND(be, "timestep_embedding");
    return launched("timestep_embedding", stem_cuda_timestep_embedding(p, impl_of(be)->stream));
}

/* Heads wider than the fused kernel takes (the VAE's one 512-wide head): per (outer,
 * head) and per chunk of queries, S = scale q k^T in f32 (cuBLAS), a row softmax in
 * f32, P in the dtype, out = P v (cuBLAS). Holds chunk x nk scores (at most
 * ATTENTION_SCORES_BYTES), never nq x nk. */
static stem_status attention_by_gemm(cuda_impl *im, const stem_attention_params *p) {
    const size_t es = stem_dtype_size(p->dtype);
    const bool f16 = p->dtype == STEM_F16;
    const size_t row_bytes = (size_t)p->nk * (sizeof(float) + (f16 ? es : 0)); /* S row (+ P row) */
    int64_t chunk = (int64_t)(ATTENTION_SCORES_BYTES / row_bytes);
    if (chunk < 1) chunk = 1;
    if (chunk > p->nq) chunk = p->nq;
    void *ws;
    STEM_TRY(stem_cuda_backend_ws_reserve(im, (size_t)chunk * row_bytes, "attention", &ws));
    float *scores = ws;                                                    /* [chunk, nk] f32 */
    void *probs = f16 ? (void *)((char *)ws + (size_t)chunk * p->nk * sizeof(float)) : ws; /* [chunk, nk] */
    const cudaDataType t = cuda_type(p->dtype);
    for (int64_t o = 0; o < p->outer; o++)
        for (int64_t h = 0; h < p->heads; h++)
            for (int64_t q0 = 0; q0 < p->nq; q0 += chunk) {
                int64_t rows = p->nq - q0 < chunk ? p->nq - q0 : chunk;
                const char *q = (const char *)p->q.ptr + (size_t)(o * p->q.outer_stride + h * p->q.head_stride + q0 * p->q.row_stride) * es;
                const char *k = (const char *)p->k.ptr + (size_t)(o * p->k.outer_stride + h * p->k.head_stride) * es;
                const char *v = (const char *)p->v.ptr + (size_t)(o * p->v.outer_stride + h * p->v.head_stride) * es;
                char *out = (char *)p->out + (size_t)(o * p->out_outer_stride + h * p->out_head_stride + q0 * p->out_row_stride) * es;
                STEM_TRY(gemm_rowmajor(im, "attention", t, CUDA_R_32F, false, true, rows, p->nk, p->d, 1, p->scale, 0.f,
                                       q, p->q.row_stride, 0, k, p->k.row_stride, 0, scores, p->nk, 0));
                stem_softmax_params sp = {.dtype = STEM_F32, .rows = rows, .cols = p->nk, .scale = 1.f, .x = scores, .y = scores};
                STEM_TRY(launched("attention", stem_cuda_softmax(&sp, im->stream)));
                if (f16) {
                    stem_convert_params cp = {.n = rows * p->nk, .src_dtype = STEM_F32, .dst_dtype = STEM_F16,
                                              .src = scores, .dst = probs};
                    STEM_TRY(launched("attention", stem_cuda_convert(&cp, im->stream)));
                }
                STEM_TRY(gemm_rowmajor(im, "attention", t, t, false, false, rows, p->dv, p->nk, 1, 1.f, 0.f, probs, p->nk, 0,
                                       v, p->v.row_stride, 0, out, p->out_row_stride, 0));
            }
    return STEM_OK;
}

stem_status stem_cuda_backend_attention(stem_backend *be, const stem_attention_params *p) {
    STEM_TRY(need_float("attention", p->dtype));
    if (p->d < 1 || p->dv < 1)
        return stem_fail(STEM_E_SHAPE, "cuda: attention: head widths d=%lld dv=%lld", (long long)p->d, (long long)p->dv);
    BIND(be, "attention");
    if (p->outer == 0 || p->heads == 0 || p->nq == 0) return STEM_OK;
    if (p->d > STEM_CUDA_ATTENTION_MAX_D || p->dv > STEM_CUDA_ATTENTION_MAX_D || impl_of(be)->attention_gemm)
        return attention_by_gemm(impl_of(be), p);
    return launched("attention", stem_cuda_attention(p, impl_of(be)->stream));
}

stem_status stem_cuda_backend_gather_rows(stem_backend *be, const stem_gather_params *p) {
    STEM_TRY(need_sized("gather_rows", p->dtype));
    BIND(be, "gather_rows");
    return launched("gather_rows", stem_cuda_gather_rows(p, impl_of(be)->stream));
}

stem_status stem_cuda_backend_freeu_filter(stem_backend *be, const stem_freeu_filter_params *p) {
    STEM_TRY(need_float("freeu_filter", p->dtype));
    BIND(be, "freeu_filter");
    return launched("freeu_filter", stem_cuda_freeu_filter(p, impl_of(be)->stream));
}

stem_status stem_cuda_backend_mean_std(stem_backend *be, const stem_mean_std_params *p) {
    STEM_TRY(need_float("mean_std", p->dtype));
    if (p->outer == 0 || p->inner == 0) return STEM_OK;
    if (p->n <= 0) return stem_fail(STEM_E_SHAPE, "cuda: mean_std: the reduced axis is empty");
    BIND(be, "mean_std");
    cuda_impl *im = impl_of(be);
    void *ws;
    STEM_TRY(stem_cuda_backend_ws_reserve(im, stem_cuda_mean_std_workspace(p), "mean_std", &ws));
    return launched("mean_std", stem_cuda_mean_std(p, ws, im->stream));
}

stem_status stem_cuda_backend_philox_normal(stem_backend *be, const stem_philox_params *p) {
    STEM_TRY(need_float("philox_normal", p->dtype));
    BIND(be, "philox_normal");
    return launched("philox_normal", stem_cuda_philox_normal(p, impl_of(be)->stream));
}

static bool is_float_dtype(stem_dtype dt) { return dt == STEM_F32 || dt == STEM_F16 || dt == STEM_BF16; }

stem_status stem_cuda_backend_convert(stem_backend *be, const stem_convert_params *p) {
    if (!is_float_dtype(p->src_dtype) || !is_float_dtype(p->dst_dtype)) {
        if (p->src_dtype != p->dst_dtype)
            return stem_fail(STEM_E_DTYPE, "cuda: convert: %s to %s is not supported", stem_dtype_name(p->src_dtype),
                             stem_dtype_name(p->dst_dtype));
        STEM_TRY(need_sized("convert", p->src_dtype));
    }
    if (p->n <= 0) return STEM_OK;
    BIND(be, "convert");
    cuda_impl *im = impl_of(be);
    if (p->src_dtype == p->dst_dtype) {
        if (p->dst != p->src)
            CU("convert", cudaMemcpyAsync(p->dst, p->src, (size_t)p->n * stem_dtype_size(p->src_dtype),
                                          cudaMemcpyDeviceToDevice, im->stream));
        return STEM_OK;
    }
    return launched("convert", stem_cuda_convert(p, im->stream));
}

/* ---- argmax_cos: normalise, similarity GEMM, row argmax ------------------------------------ */

/* Per batch entry b: an = a[b] and rn = ref[b] with unit rows (no epsilon, as on
 * the CPU), then sim = an rn^T in blocks of rows that fit ARGMAX_SIM_BYTES (f32
 * output; f16 inputs use tensor cores), then the argmax of each row of sim. Only a
 * rows x m block of similarities ever exists. */
stem_status stem_cuda_backend_argmax_cos(stem_backend *be, const stem_argmax_cos_params *p) {
    STEM_TRY(need_float("argmax_cos", p->dtype));
    if (p->batch == 0 || p->n == 0) return STEM_OK;
    BIND(be, "argmax_cos");
    cuda_impl *im = impl_of(be);
    if (p->m == 0) return stem_fail(STEM_E_SHAPE, "cuda: argmax_cos: no reference rows to choose from");
    size_t es = stem_dtype_size(p->dtype);
    int64_t rows = (int64_t)(ARGMAX_SIM_BYTES / sizeof(float)) / p->m;
    if (rows < 1) rows = 1;
    if (rows > p->n) rows = p->n;
    size_t a_bytes = align256((size_t)(p->n * p->c) * es), r_bytes = align256((size_t)(p->m * p->c) * es);
    void *ws;
    STEM_TRY(stem_cuda_backend_ws_reserve(im, a_bytes + r_bytes + (size_t)(rows * p->m) * sizeof(float), "argmax_cos", &ws));
    char *an = (char *)ws, *rn = an + a_bytes;
    float *sim = (float *)(rn + r_bytes);
    cudaDataType t = cuda_type(p->dtype);
    for (int64_t b = 0; b < p->batch; b++) {
        const char *ab = (const char *)p->a + (size_t)(b * p->n * p->c) * es;
        const char *rb = (const char *)p->ref + (size_t)(b * p->m * p->c) * es;
        STEM_TRY(launched("argmax_cos", stem_cuda_rows_l2_normalize(p->dtype, p->n, p->c, ab, an, im->stream)));
        STEM_TRY(launched("argmax_cos", stem_cuda_rows_l2_normalize(p->dtype, p->m, p->c, rb, rn, im->stream)));
        for (int64_t r0 = 0; r0 < p->n; r0 += rows) {
            int64_t nr = p->n - r0 < rows ? p->n - r0 : rows;
            /* sim (nr x m) = an[r0 : r0+nr] (nr x c) @ rn^T, rn stored m x c */
            STEM_TRY(gemm_rowmajor(im, "argmax_cos", t, CUDA_R_32F, false, true, nr, p->m, p->c, 1, 1.f, 0.f,
                                   an + (size_t)(r0 * p->c) * es, p->c, 0, rn, p->c, 0, sim, p->m, 0));
            STEM_TRY(launched("argmax_cos",
                              stem_cuda_rows_argmax(nr, p->m, sim, p->m, p->idx + b * p->n + r0, im->stream)));
        }
    }
    return STEM_OK;
}

/* ---- em_block: the EM statistics kernel (kernels/cuda/em.cu, its own launcher) ---------- */

/* em_block as f32 GEMMs (the default; STEM_CUDA_EM=fused picks the atomic kernel of
 * kernels/cuda/em.cu). Per chunk of the block's rows, for all heads at once (batched):
 *   K [H, r, d] = f32(k block);  mu_hat [H, m, d] = mu / (||mu|| + eps)
 *   Z [H, r, m] = softmax_rows(K mu_hat^T / tau)          (cuBLAS SGEMM, no TF32)
 *   zsum [H, m] += 1^T Z;  zk [H, m, d] += Z^T K;  zv += Z^T V
 * The chunk keeps the scores under EM_SCORES_BYTES. Same sums as the fused kernel in
 * another order, and no atomics (run to run deterministic); exponents below -87
 * underflow to 0 where the fused kernel cuts at -60 (both negligible, see backend.h). */
static stem_status em_block_by_gemm(cuda_impl *im, const stem_em_block_params *p) {
    const int64_t H = p->heads, m = p->m, d = p->d;
    if (p->overwrite) {
        CU("em_block", cudaMemsetAsync(p->zk, 0, (size_t)(H * m * d) * sizeof(float), im->stream));
        CU("em_block", cudaMemsetAsync(p->zsum, 0, (size_t)(H * m) * sizeof(float), im->stream));
        if (p->zv) CU("em_block", cudaMemsetAsync(p->zv, 0, (size_t)(H * m * d) * sizeof(float), im->stream));
    }
    if (p->rows <= 0 || H <= 0) return STEM_OK;
    const int64_t per_row = H * (m + 2 * d) + 1; /* floats per row of a chunk: Z, K, V, one */
    int64_t chunk = (int64_t)(EM_SCORES_BYTES / (sizeof(float) * (size_t)per_row));
    if (chunk < 1) chunk = 1;
    if (chunk > p->rows) chunk = p->rows;
    float *ws;
    STEM_TRY(stem_cuda_backend_ws_reserve(im, sizeof(float) * (size_t)(H * m * d + chunk * per_row), "em_block", (void **)&ws));
    float *mu_hat = ws, *z = mu_hat + H * m * d, *kf = z + H * chunk * m, *vf = kf + H * chunk * d,
          *ones = vf + H * chunk * d;
    STEM_TRY(launched("em_block", stem_cuda_em_normalize_bases(H * m, d, p->norm_eps, p->mu, mu_hat, im->stream)));
    STEM_TRY(launched("em_block", stem_cuda_fill_f32(chunk, 1.f, ones, im->stream)));
    const size_t es = stem_dtype_size(p->dtype);
    for (int64_t r0 = 0; r0 < p->rows; r0 += chunk) {
        const int64_t r = p->rows - r0 < chunk ? p->rows - r0 : chunk;
        stem_attn_operand k = p->k, v = p->v;
        k.ptr = (const char *)k.ptr + (size_t)(r0 * k.row_stride) * es;
        STEM_TRY(launched("em_block", stem_cuda_em_gather_f32(p->dtype, &k, H, r, d, kf, im->stream)));
        if (p->zv) {
            v.ptr = (const char *)v.ptr + (size_t)(r0 * v.row_stride) * es;
            STEM_TRY(launched("em_block", stem_cuda_em_gather_f32(p->dtype, &v, H, r, d, vf, im->stream)));
        }
        /* Z = K mu_hat^T: [r, d] x [m, d]^T per head */
        STEM_TRY(gemm_rowmajor(im, "em_block", CUDA_R_32F, CUDA_R_32F, false, true, r, m, d, H, 1.f, 0.f, kf, d, r * d,
                               mu_hat, d, m * d, z, m, r * m));
        stem_softmax_params sp = {.dtype = STEM_F32, .rows = H * r, .cols = m, .scale = 1.f / p->tau, .x = z, .y = z};
        STEM_TRY(launched("em_block", stem_cuda_softmax(&sp, im->stream)));
        /* zsum += 1^T Z: [1, r] x [r, m];  zk += Z^T K: [r, m]^T x [r, d];  zv += Z^T V */
        STEM_TRY(gemm_rowmajor(im, "em_block", CUDA_R_32F, CUDA_R_32F, false, false, 1, m, r, H, 1.f, 1.f, ones, r, 0,
                               z, m, r * m, p->zsum, m, m));
        STEM_TRY(gemm_rowmajor(im, "em_block", CUDA_R_32F, CUDA_R_32F, true, false, m, d, r, H, 1.f, 1.f, z, m, r * m,
                               kf, d, r * d, p->zk, d, m * d));
        if (p->zv)
            STEM_TRY(gemm_rowmajor(im, "em_block", CUDA_R_32F, CUDA_R_32F, true, false, m, d, r, H, 1.f, 1.f, z, m,
                                   r * m, vf, d, r * d, p->zv, d, m * d));
    }
    return STEM_OK;
}

stem_status stem_cuda_backend_em_block(stem_backend *be, const stem_em_block_params *p) {
    if (p->dtype != STEM_F32 && p->dtype != STEM_F16 && p->dtype != STEM_BF16)
        return stem_fail(STEM_E_DTYPE, "cuda: em_block: dtype %s is not supported (f32, f16 or bf16)",
                         stem_dtype_name(p->dtype));
    if (!impl_of(be)->em_fused) {
        BIND(be, "em_block");
        return em_block_by_gemm(impl_of(be), p);
    }
    if (p->m > STEM_CUDA_EM_MAX_BASES || p->d > STEM_CUDA_EM_MAX_D)
        return stem_fail(STEM_E_UNSUPPORTED, "cuda: em_block: %lld bases of width %lld (the CUDA kernel takes up to %d of width %d)",
                         (long long)p->m, (long long)p->d, STEM_CUDA_EM_MAX_BASES, STEM_CUDA_EM_MAX_D);
    BIND(be, "em_block");
    return launched("em_block", stem_cuda_em_block(p, impl_of(be)->stream));
}
