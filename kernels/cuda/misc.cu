/* The remaining kernels: diffusers' timestep embedding, mean/unbiased std along an
 * axis, Philox normals (the same header code as the CPU, so the same numbers), and
 * the two pieces of argmax_cos around its cuBLAS GEMM (row L2 normalisation, row
 * argmax). */
#include "core/philox.h"
#include "kernels/cuda/common.cuh"

using namespace stem_cuda;

namespace {

/* ---- timestep embedding ----------------------------------------------------------- */

/* y[r, j], r < n, j < dim: with half = dim/2 and jj = j mod half,
 *   freq = exp(-ln(max_period) * jj / (half - freq_shift)),  arg = t[r] * freq,
 *   the first half sin(arg) and the second cos(arg) ([cos | sin] when flip),
 *   and a trailing zero column when dim is odd. Each step in f32 as torch does.
 * Grid-stride over n*dim outputs. */
template <typename T>
__global__ void timestep_kernel(int64_t n, int64_t dim, bool flip, float neg_log_period, float denom, const float *t,
                                T *y) {
    const int64_t half = dim / 2;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n * dim; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / dim, j = i - r * dim;
        float v = 0.f;
        if (j < 2 * half) {
            bool second = j >= half;
            int64_t jj = second ? j - half : j;
            float exponent = neg_log_period * (float)jj / denom;
            float arg = t[r] * expf(exponent);
            bool use_cos = second != flip; /* [sin | cos], or [cos | sin] when flipped */
            v = use_cos ? cosf(arg) : sinf(arg);
        }
        y[i] = from_f32<T>(v);
    }
}

/* ---- mean and unbiased std along the middle axis of [outer, n, inner] ------------- */

constexpr int kMsCols = 32, kMsRows = 8;

struct MeanStdPlan {
    int64_t col_tiles, splits, rows_per_split;
};

MeanStdPlan mean_std_plan(const stem_mean_std_params *p) {
    MeanStdPlan pl;
    pl.col_tiles = ceil_div(p->inner, kMsCols);
    int64_t col_blocks = pl.col_tiles * p->outer;
    int64_t want = 1024 / (col_blocks > 0 ? col_blocks : 1); /* aim for ~1024 blocks in all */
    if (want < 1) want = 1;
    int64_t splits = ceil_div(p->n, 64); /* at least 64 rows per split (8 per thread) */
    if (splits > want) splits = want;
    if (splits > 65535) splits = 65535;
    if (splits < 1) splits = 1;
    pl.rows_per_split = ceil_div(p->n, splits);
    pl.splits = ceil_div(p->n, pl.rows_per_split); /* no empty splits */
    if (pl.splits < 1) pl.splits = 1;
    return pl;
}

/* Partial Welford statistics. Block (32, 8), grid (col_tiles*outer, splits):
 * column col = tile*32 + threadIdx.x of slab o, rows [split*rps, +rps) with the 8
 * thread rows interleaved; the 8 partials of a column merge in shared memory and go
 * to part_{n,mean,m2}[(o*splits + split)*inner + col]. Reads are coalesced along
 * the contiguous inner axis. */
template <typename T>
__global__ void __launch_bounds__(kMsCols *kMsRows)
mean_std_partial_kernel(int64_t n, int64_t inner, int64_t col_tiles, int64_t splits, int64_t rps, const T *x,
                        float *part_n, float *part_mean, float *part_m2) {
    __shared__ Welford sw[kMsRows][kMsCols];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int64_t o = blockIdx.x / col_tiles, col = (blockIdx.x % col_tiles) * kMsCols + tx;
    const int64_t split = blockIdx.y;
    const int64_t r0 = split * rps, r1 = r0 + rps < n ? r0 + rps : n;
    Welford w = welford_empty();
    if (col < inner) {
        const T *xs = x + o * n * inner + col;
        for (int64_t r = r0 + ty; r < r1; r += kMsRows) welford_push(w, to_f32(xs[r * inner]));
    }
    sw[ty][tx] = w;
    __syncthreads();
    if (ty == 0 && col < inner) {
        for (int k = 1; k < kMsRows; k++) w = welford_merge(w, sw[k][tx]);
        int64_t at = (o * splits + split) * inner + col;
        part_n[at] = w.n;
        part_mean[at] = w.mean;
        part_m2[at] = w.m2;
    }
}

/* One thread per (o, col): merges the splits' partials in order; std = sqrt(M2/(n-1)),
 * 0 when n == 1. Grid-stride over outer*inner. */
template <typename T>
__global__ void mean_std_final_kernel(int64_t outer, int64_t n, int64_t inner, int64_t splits, const float *part_n,
                                      const float *part_mean, const float *part_m2, T *mean, T *std) { /* T: out dtype */
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < outer * inner;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t o = i / inner, col = i - o * inner;
        Welford w = welford_empty();
        for (int64_t s = 0; s < splits; s++) {
            int64_t at = (o * splits + s) * inner + col;
            w = welford_merge(w, Welford{part_n[at], part_mean[at], part_m2[at]});
        }
        mean[i] = from_f32<T>(w.mean);
        if (std) std[i] = from_f32<T>(n > 1 ? sqrtf(w.m2 / (float)(n - 1)) : 0.f);
    }
}

/* ---- Philox normals ------------------------------------------------------------------- */

/* y[e] = stem_philox_normal_at(seed, w1, w2, w3, e): the CPU's own code (core/philox.h),
 * Box-Muller in double, so both backends produce the same floats. Grid-stride over n. */
template <typename T>
__global__ void philox_normal_kernel(uint64_t n, uint64_t seed, uint32_t w1, uint32_t w2, uint32_t w3, T *y) {
    for (uint64_t e = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; e < n; e += (uint64_t)gridDim.x * blockDim.x)
        y[e] = from_f32<T>(stem_philox_normal_at(seed, w1, w2, w3, e));
}

/* ---- argmax_cos pieces ---------------------------------------------------------------- */

constexpr int kRowThreads = 256; /* 8 warps, one row each */

/* y[r, :] = x[r, :] / sqrt(sum x^2) (f32 sum), one warp per row. */
template <typename T>
__global__ void __launch_bounds__(kRowThreads) l2_normalize_kernel(int64_t rows, int64_t cols, const T *x, T *y) {
    int lane = threadIdx.x % kWarp;
    int64_t r = (int64_t)blockIdx.x * (kRowThreads / kWarp) + threadIdx.x / kWarp;
    if (r >= rows) return; /* uniform per warp */
    const T *xr = x + r * cols;
    T *yr = y + r * cols;
    float ss = 0.f;
    for (int64_t c = lane; c < cols; c += kWarp) {
        float v = to_f32(xr[c]);
        ss += v * v;
    }
    float norm = sqrtf(warp_sum(ss));
    for (int64_t c = lane; c < cols; c += kWarp) yr[c] = from_f32<T>(to_f32(xr[c]) / norm);
}

/* (v, j) beats (bv, bj) in torch.argmax order: NaN is the largest value, and among
 * equal values (or NaNs) the lower index wins. */
__device__ __forceinline__ bool argmax_better(float v, int64_t j, float bv, int64_t bj) {
    bool vn = isnan(v), bn = isnan(bv);
    if (vn || bn) return vn && (!bn || j < bj);
    return v > bv || (v == bv && j < bj);
}

/* idx[r] = argmax_j sim[r*ld + j], one warp per row: each lane scans j = lane,
 * lane+32, ... (ascending, so keeping strict improvements keeps its lowest index),
 * then the lanes merge by shuffles with the same order. */
__global__ void __launch_bounds__(kRowThreads)
row_argmax_kernel(int64_t rows, int64_t cols, const float *sim, int64_t ld, int32_t *idx) {
    int lane = threadIdx.x % kWarp;
    int64_t r = (int64_t)blockIdx.x * (kRowThreads / kWarp) + threadIdx.x / kWarp;
    if (r >= rows) return; /* uniform per warp */
    const float *sr = sim + r * ld;
    float bv = -INFINITY;
    int64_t bj = INT64_MAX;
    for (int64_t j = lane; j < cols; j += kWarp) {
        float v = sr[j];
        if (bj == INT64_MAX || argmax_better(v, j, bv, bj)) { bv = v; bj = j; }
    }
    for (int off = kWarp / 2; off > 0; off /= 2) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, off);
        int64_t oj = __shfl_xor_sync(0xffffffffu, bj, off);
        if (oj != INT64_MAX && (bj == INT64_MAX || argmax_better(ov, oj, bv, bj))) { bv = ov; bj = oj; }
    }
    if (lane == 0) idx[r] = (int32_t)(bj == INT64_MAX ? 0 : bj);
}

} /* namespace */

extern "C" cudaError_t stem_cuda_timestep_embedding(const stem_timestep_params *p, cudaStream_t st) {
    if (p->n <= 0 || p->dim <= 0) return cudaSuccess;
    int64_t half = p->dim / 2;
    float neg_log_period = (float)(-log((double)p->max_period));
    float denom = (float)((double)half - (double)p->freq_shift);
#define LAUNCH(T)                                                                                          \
    timestep_kernel<T><<<grid_for(p->n * p->dim, 256), 256, 0, st>>>(p->n, p->dim, p->flip_sin_to_cos,   \
                                                                     neg_log_period, denom, p->t, (T *)p->y)
    STEM_CUDA_DISPATCH_FLOAT(p->dtype, LAUNCH);
#undef LAUNCH
    return cudaGetLastError();
}

extern "C" size_t stem_cuda_mean_std_workspace(const stem_mean_std_params *p) {
    if (p->outer <= 0 || p->n <= 0 || p->inner <= 0) return 0;
    MeanStdPlan pl = mean_std_plan(p);
    return 3 * sizeof(float) * (size_t)(p->outer * pl.splits * p->inner);
}

extern "C" cudaError_t stem_cuda_mean_std(const stem_mean_std_params *p, void *workspace, cudaStream_t st) {
    if (p->outer <= 0 || p->inner <= 0) return cudaSuccess;
    if (p->n <= 0) return cudaErrorInvalidValue; /* the front end refuses an empty axis */
    MeanStdPlan pl = mean_std_plan(p);
    int64_t grid_x = pl.col_tiles * p->outer;
    if (grid_x > 0x7fffffff) return cudaErrorInvalidValue;
    size_t part = (size_t)(p->outer * pl.splits * p->inner);
    float *pn = (float *)workspace, *pm = pn + part, *pm2 = pm + part;
    dim3 grid((unsigned)grid_x, (unsigned)pl.splits), block(kMsCols, kMsRows);
#define LAUNCH(T)                                                                                            \
    do {                                                                                                     \
        mean_std_partial_kernel<T><<<grid, block, 0, st>>>(p->n, p->inner, pl.col_tiles, pl.splits,          \
                                                           pl.rows_per_split, (const T *)p->x, pn, pm, pm2); \
        if (p->out_dtype == STEM_F32)                                                                        \
            mean_std_final_kernel<float><<<grid_for(p->outer * p->inner, 256), 256, 0, st>>>(                \
                p->outer, p->n, p->inner, pl.splits, pn, pm, pm2, (float *)p->mean, (float *)p->std);        \
        else                                                                                                 \
            mean_std_final_kernel<T><<<grid_for(p->outer * p->inner, 256), 256, 0, st>>>(                    \
                p->outer, p->n, p->inner, pl.splits, pn, pm, pm2, (T *)p->mean, (T *)p->std);                \
    } while (0)
    STEM_CUDA_DISPATCH_FLOAT(p->dtype, LAUNCH);
#undef LAUNCH
    return cudaGetLastError();
}

extern "C" cudaError_t stem_cuda_philox_normal(const stem_philox_params *p, cudaStream_t st) {
    if (p->n <= 0) return cudaSuccess;
#define LAUNCH(T)                                                                                               \
    philox_normal_kernel<T><<<grid_for(p->n, 256), 256, 0, st>>>((uint64_t)p->n, p->seed, p->w1, p->w2, p->w3, \
                                                                 (T *)p->y)
    STEM_CUDA_DISPATCH_FLOAT(p->dtype, LAUNCH);
#undef LAUNCH
    return cudaGetLastError();
}

extern "C" cudaError_t stem_cuda_rows_l2_normalize(stem_dtype dtype, int64_t rows, int64_t cols, const void *x,
                                                   void *y, cudaStream_t st) {
    if (rows <= 0 || cols <= 0) return cudaSuccess;
    int64_t blocks = ceil_div(rows, kRowThreads / kWarp);
    if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
#define LAUNCH(T) \
    l2_normalize_kernel<T><<<(unsigned)blocks, kRowThreads, 0, st>>>(rows, cols, (const T *)x, (T *)y)
    STEM_CUDA_DISPATCH_FLOAT(dtype, LAUNCH);
#undef LAUNCH
    return cudaGetLastError();
}

extern "C" cudaError_t stem_cuda_rows_argmax(int64_t rows, int64_t cols, const float *sim, int64_t ld, int32_t *idx,
                                             cudaStream_t st) {
    if (rows <= 0) return cudaSuccess;
    int64_t blocks = ceil_div(rows, kRowThreads / kWarp);
    if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
    row_argmax_kernel<<<(unsigned)blocks, kRowThreads, 0, st>>>(rows, cols, sim, ld, idx);
    return cudaGetLastError();
}

extern "C" cudaError_t stem_cuda_probe(void) {
    cudaFuncAttributes attr;
    return cudaFuncGetAttributes(&attr, row_argmax_kernel);
}
