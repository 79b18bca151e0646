/* Row softmax: y = softmax(scale * x) along rows of `cols`, in f32. One pass computes
 * the running (max, sum of exp) pair of each row (online softmax merge), a second
 * pass writes exp(s - max) / sum. Rows up to kWarpCols columns get one warp each;
 * longer rows get a whole 256-thread block. y may equal x: each thread writes only
 * the elements it read itself, after the statistics are complete. */
#include "kernels/cuda/common.cuh"

using namespace stem_cuda;

namespace {

constexpr int kThreads = 256;
constexpr int64_t kWarpCols = 2048;

/* Merges two (max, sum) pairs where sum is relative to its own max. */
__device__ __forceinline__ void ms_merge(float &m, float &s, float m2, float s2) {
    float mn = fmaxf(m, m2);
    if (mn == -INFINITY) return; /* both empty (or all -inf): keep (-inf, 0) */
    s = s * expf(m - mn) + s2 * expf(m2 - mn);
    m = mn;
}

__device__ __forceinline__ void warp_ms(float &m, float &s) {
    for (int off = kWarp / 2; off > 0; off /= 2) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, off);
        float s2 = __shfl_xor_sync(0xffffffffu, s, off);
        ms_merge(m, s, m2, s2);
    }
}

/* One thread's share of a row: elements c = first, first+step, ... */
template <typename T>
__device__ __forceinline__ void row_stats(const T *xr, int64_t cols, int64_t first, int64_t step, float scale,
                                          float &m, float &s) {
    m = -INFINITY;
    s = 0.f;
    for (int64_t c = first; c < cols; c += step) {
        float v = scale * to_f32(xr[c]);
        if (v > m) {
            s = s * expf(m - v) + 1.f; /* m == -inf the first time: exp(-inf) = 0 */
            m = v;
        } else if (m != -INFINITY) { /* skips -inf entries while the row max is still -inf */
            s += expf(v - m);
        }
    }
}

/* One warp per row: row = blockIdx.x * 8 + warp. */
template <typename T>
__global__ void __launch_bounds__(kThreads)
softmax_warp_kernel(int64_t rows, int64_t cols, float scale, const T *x, T *y) {
    int lane = threadIdx.x % kWarp;
    int64_t row = (int64_t)blockIdx.x * (kThreads / kWarp) + threadIdx.x / kWarp;
    if (row >= rows) return; /* uniform per warp */
    const T *xr = x + row * cols;
    T *yr = y + row * cols;
    float m, s;
    row_stats(xr, cols, lane, kWarp, scale, m, s);
    warp_ms(m, s);
    float inv = 1.f / s;
    for (int64_t c = lane; c < cols; c += kWarp) yr[c] = from_f32<T>(expf(scale * to_f32(xr[c]) - m) * inv);
}

/* One block of 256 threads per row (row = blockIdx.x), for long rows. */
template <typename T>
__global__ void __launch_bounds__(kThreads)
softmax_block_kernel(int64_t cols, float scale, const T *x, T *y) {
    __shared__ float sm[kThreads / kWarp], ss[kThreads / kWarp];
    __shared__ float row_m, row_inv;
    const T *xr = x + (int64_t)blockIdx.x * cols;
    T *yr = y + (int64_t)blockIdx.x * cols;
    int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    float m, s;
    row_stats(xr, cols, threadIdx.x, kThreads, scale, m, s);
    warp_ms(m, s);
    if (lane == 0) { sm[warp] = m; ss[warp] = s; }
    __syncthreads();
    if (warp == 0) {
        m = lane < kThreads / kWarp ? sm[lane] : -INFINITY;
        s = lane < kThreads / kWarp ? ss[lane] : 0.f;
        warp_ms(m, s);
        if (lane == 0) { row_m = m; row_inv = 1.f / s; }
    }
    __syncthreads();
    m = row_m;
    float inv = row_inv;
    for (int64_t c = threadIdx.x; c < cols; c += kThreads) yr[c] = from_f32<T>(expf(scale * to_f32(xr[c]) - m) * inv);
}

} /* namespace */

extern "C" cudaError_t stem_cuda_softmax(const stem_softmax_params *p, cudaStream_t st) {
    if (p->rows <= 0 || p->cols <= 0) return cudaSuccess;
    if (p->cols <= kWarpCols) {
        int64_t blocks = ceil_div(p->rows, kThreads / kWarp);
        if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
#define LAUNCH(T) \
    softmax_warp_kernel<T><<<(unsigned)blocks, kThreads, 0, st>>>(p->rows, p->cols, p->scale, (const T *)p->x, (T *)p->y)
        STEM_CUDA_DISPATCH_FLOAT(p->dtype, LAUNCH);
#undef LAUNCH
    } else {
        if (p->rows > 0x7fffffff) return cudaErrorInvalidValue;
#define LAUNCH(T) \
    softmax_block_kernel<T><<<(unsigned)p->rows, kThreads, 0, st>>>(p->cols, p->scale, (const T *)p->x, (T *)p->y)
        STEM_CUDA_DISPATCH_FLOAT(p->dtype, LAUNCH);
#undef LAUNCH
    }
    return cudaGetLastError();
}
