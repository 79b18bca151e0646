/* The EM statistics of one token block on the GPU (core/backend.h,
 * stem_em_block_params), and the small kernels of the cuBLAS form of the same op
 * (backends/cuda/cuda_backend.c, em_block_by_gemm: the default).
 *
 * The fused kernel (STEM_CUDA_EM=fused): one warp per token row, kRowsPerWarp rows per warp.
 *   - each block first computes 1 / (||mu_j|| + eps) for its head's m bases (shared);
 *   - per row: lane l scores bases j = l, l+32, ... (<k_i, mu_j> * inv_norm_j, mu read
 *     through the read-only cache) into a shared row buffer, the warp takes the max,
 *     z_j = exp((s_j - max)/tau) for exponents above -60 (as the CPU kernel: smaller z
 *     move no basis by more than ~1e-16 |k|, see kernels/cpu/em.c), the warp sums them;
 *   - each non-zero z_j is added to zsum[j], z_j * k_i to zk[j, :] and z_j * v_i to
 *     zv[j, :] with float atomics, the 32 lanes splitting the d channels.
 * All arithmetic in f32. Checked against the CPU kernel by tests/test_cuda_parity
 * (the em and stem_attention golden files). */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/em.h"

using namespace stem_cuda;

namespace {

constexpr int kThreads = 128; /* 4 warps */
constexpr int kWarps = kThreads / kWarp;
constexpr int kRowsPerWarp = 8;
constexpr float kExpCutoff = 60.f;

template <typename T>
__global__ void __launch_bounds__(kThreads)
em_block_kernel(int64_t rows, int64_t m, int64_t d, float inv_tau, float norm_eps, const T *kp, int64_t k_head,
                int64_t k_row, const T *vp, int64_t v_head, int64_t v_row, const float *__restrict__ mu,
                float *zk, float *zsum, float *zv) {
    extern __shared__ float smem[];
    float *inv_norm = smem;                     /* [m] */
    float *scores = inv_norm + m;               /* [kWarps][m] */
    float *krow = scores + (int64_t)kWarps * m; /* [kWarps][d] */
    float *vrow = krow + (int64_t)kWarps * d;   /* [kWarps][d] (when zv) */
    const int64_t h = blockIdx.y;
    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    const float *muh = mu + h * m * d;

    for (int64_t j = threadIdx.x; j < m; j += kThreads) {
        const float *x = muh + j * d;
        float ss = 0.f;
        for (int64_t c = 0; c < d; c++) ss = fmaf(x[c], x[c], ss);
        inv_norm[j] = 1.f / (sqrtf(ss) + norm_eps);
    }
    __syncthreads();

    float *s = scores + (int64_t)warp * m;
    float *kr = krow + (int64_t)warp * d;
    float *vr = vrow + (int64_t)warp * d;
    const int64_t first = ((int64_t)blockIdx.x * kWarps + warp) * kRowsPerWarp;
    for (int64_t i = first; i < first + kRowsPerWarp && i < rows; i++) { /* uniform per warp */
        const T *ki = kp + h * k_head + i * k_row;
        for (int64_t c = lane; c < d; c += kWarp) kr[c] = to_f32(ki[c]);
        if (zv) {
            const T *vi = vp + h * v_head + i * v_row;
            for (int64_t c = lane; c < d; c += kWarp) vr[c] = to_f32(vi[c]);
        }
        __syncwarp();
        float mx = -INFINITY;
        for (int64_t j = lane; j < m; j += kWarp) {
            const float *x = muh + j * d;
            float acc = 0.f;
            for (int64_t c = 0; c < d; c++) acc = fmaf(__ldg(x + c), kr[c], acc);
            float sj = acc * inv_norm[j];
            s[j] = sj;
            mx = fmaxf(mx, sj);
        }
        mx = warp_max(mx);
        float sum = 0.f;
        for (int64_t j = lane; j < m; j += kWarp) {
            float x = (s[j] - mx) * inv_tau; /* the difference first: exact near the max */
            float e = x > -kExpCutoff ? expf(x) : 0.f;
            s[j] = e;
            sum += e;
        }
        sum = warp_sum(sum);
        const float inv = 1.f / sum;
        __syncwarp();
        /* scatter the non-zero responsibilities: rounds of 32 bases, one ballot each */
        for (int64_t j0 = 0; j0 < m; j0 += kWarp) {
            int64_t j = j0 + lane;
            float z = j < m ? s[j] * inv : 0.f;
            unsigned nz = __ballot_sync(0xffffffffu, z > 0.f);
            while (nz) {
                int b = __ffs(nz) - 1;
                nz &= nz - 1;
                float zb = __shfl_sync(0xffffffffu, z, b);
                int64_t jb = j0 + b;
                if (lane == 0) atomicAdd(zsum + h * m + jb, zb);
                float *ak = zk + (h * m + jb) * d;
                for (int64_t c = lane; c < d; c += kWarp) atomicAdd(ak + c, zb * kr[c]);
                if (zv) {
                    float *av = zv + (h * m + jb) * d;
                    for (int64_t c = lane; c < d; c += kWarp) atomicAdd(av + c, zb * vr[c]);
                }
            }
        }
        __syncwarp(); /* the row buffers are reused by the next row */
    }
}

template <typename T>
cudaError_t launch(const stem_em_block_params *p, size_t smem, cudaStream_t stream) {
    int64_t rows_per_block = (int64_t)kWarps * kRowsPerWarp;
    dim3 grid((unsigned)((p->rows + rows_per_block - 1) / rows_per_block), (unsigned)p->heads);
    if (smem > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(em_block_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
    }
    em_block_kernel<T><<<grid, kThreads, smem, stream>>>(
        p->rows, p->m, p->d, 1.f / p->tau, p->norm_eps, (const T *)p->k.ptr, p->k.head_stride, p->k.row_stride,
        (const T *)p->v.ptr, p->v.head_stride, p->v.row_stride, p->mu, p->zk, p->zsum, p->zv);
    return cudaGetLastError();
}

/* out[h, i, c] = f32(x[h*head + i*row + c]): a block of k or v as contiguous f32. */
template <typename T>
__global__ void gather_f32_kernel(int64_t heads, int64_t rows, int64_t d, const T *x, int64_t head, int64_t row,
                                  float *out) {
    const int64_t n = heads * rows * d;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t c = e % d, i = (e / d) % rows, h = e / (d * rows);
        out[e] = to_f32(x[h * head + i * row + c]);
    }
}

/* mu_hat[h, j, :] = mu[h, j, :] / (||mu[h, j, :]|| + eps), one warp per basis. */
__global__ void normalize_bases_kernel(int64_t bases, int64_t d, float eps, const float *mu, float *mu_hat) {
    int64_t j = (int64_t)blockIdx.x * (kThreads / kWarp) + threadIdx.x / kWarp;
    int lane = threadIdx.x % kWarp;
    if (j >= bases) return; /* uniform per warp */
    const float *x = mu + j * d;
    float ss = 0.f;
    for (int64_t c = lane; c < d; c += kWarp) ss = fmaf(x[c], x[c], ss);
    float inv = 1.f / (sqrtf(warp_sum(ss)) + eps);
    for (int64_t c = lane; c < d; c += kWarp) mu_hat[j * d + c] = x[c] * inv;
}

__global__ void fill_kernel(int64_t n, float value, float *x) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x)
        x[e] = value;
}

} // namespace

extern "C" cudaError_t stem_cuda_em_gather_f32(stem_dtype dtype, const stem_attn_operand *x, int64_t heads,
                                               int64_t rows, int64_t d, float *out, cudaStream_t stream) {
    if (heads <= 0 || rows <= 0 || d <= 0) return cudaSuccess;
    unsigned grid = grid_for(heads * rows * d, 256);
#define LAUNCH(T) \
    gather_f32_kernel<T><<<grid, 256, 0, stream>>>(heads, rows, d, (const T *)x->ptr, x->head_stride, x->row_stride, out)
    switch (dtype) {
    case STEM_F32: LAUNCH(float); break;
    case STEM_F16: LAUNCH(__half); break;
    case STEM_BF16: LAUNCH(__nv_bfloat16); break;
    default: return cudaErrorInvalidValue;
    }
#undef LAUNCH
    return cudaGetLastError();
}

extern "C" cudaError_t stem_cuda_em_normalize_bases(int64_t bases, int64_t d, float eps, const float *mu, float *mu_hat,
                                                    cudaStream_t stream) {
    if (bases <= 0 || d <= 0) return cudaSuccess;
    int64_t per_block = kThreads / kWarp;
    normalize_bases_kernel<<<(unsigned)((bases + per_block - 1) / per_block), kThreads, 0, stream>>>(bases, d, eps, mu,
                                                                                                   mu_hat);
    return cudaGetLastError();
}

extern "C" cudaError_t stem_cuda_fill_f32(int64_t n, float value, float *x, cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    fill_kernel<<<grid_for(n, 256), 256, 0, stream>>>(n, value, x);
    return cudaGetLastError();
}

extern "C" cudaError_t stem_cuda_em_block(const stem_em_block_params *p, cudaStream_t stream) {
    if (p->m > STEM_CUDA_EM_MAX_BASES || p->d > STEM_CUDA_EM_MAX_D || p->heads > 65535) return cudaErrorInvalidValue;
    if (p->overwrite) {
        size_t md = (size_t)(p->heads * p->m * p->d) * sizeof(float);
        cudaError_t e = cudaMemsetAsync(p->zk, 0, md, stream);
        if (e == cudaSuccess) e = cudaMemsetAsync(p->zsum, 0, (size_t)(p->heads * p->m) * sizeof(float), stream);
        if (e == cudaSuccess && p->zv) e = cudaMemsetAsync(p->zv, 0, md, stream);
        if (e != cudaSuccess) return e;
    }
    if (p->rows <= 0 || p->heads <= 0) return cudaSuccess;
    size_t smem = (size_t)(p->m + (int64_t)kWarps * p->m + 2 * (int64_t)kWarps * p->d) * sizeof(float);
    switch (p->dtype) {
    case STEM_F32: return launch<float>(p, smem, stream);
    case STEM_F16: return launch<__half>(p, smem, stream);
    case STEM_BF16: return launch<__nv_bfloat16>(p, smem, stream);
    default: return cudaErrorInvalidValue;
    }
}
