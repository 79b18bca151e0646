/* Shared device helpers for the CUDA kernels: f32/f16/bf16 loads and stores (all
 * arithmetic is f32), warp reductions, Welford/Chan merges for mean and variance,
 * grid sizing, and the dtype dispatch macro. Included only by the .cu files. */
#ifndef STEM_KERNELS_CUDA_COMMON_CUH
#define STEM_KERNELS_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/kernels.h"

namespace stem_cuda {

constexpr int kWarp = 32;

/* ---- element conversion: storage type <-> f32 --------------------------------- */
__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

/* ---- warp reductions (all 32 lanes take part and all receive the result) ------ */
__device__ __forceinline__ float warp_sum(float v) {
    for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int off = kWarp / 2; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

/* ---- Welford running statistics, merged with Chan et al.'s pairwise formula ---- *
 * Count is kept in float: exact up to 2^24 per partial, and each partial covers far
 * fewer elements than that (merged partials only use count in ratios). */
struct Welford {
    float n, mean, m2;
};
__device__ __forceinline__ Welford welford_empty() { return Welford{0.f, 0.f, 0.f}; }
__device__ __forceinline__ void welford_push(Welford &w, float x) {
    w.n += 1.f;
    float d = x - w.mean;
    w.mean += d / w.n;
    w.m2 += d * (x - w.mean);
}
__device__ __forceinline__ Welford welford_merge(Welford a, Welford b) {
    if (b.n == 0.f) return a;
    if (a.n == 0.f) return b;
    float n = a.n + b.n;
    float d = b.mean - a.mean;
    float fb = b.n / n;
    Welford r;
    r.n = n;
    r.mean = a.mean + d * fb;
    r.m2 = a.m2 + b.m2 + d * d * a.n * fb;
    return r;
}
__device__ __forceinline__ Welford warp_welford(Welford w) {
    for (int off = kWarp / 2; off > 0; off /= 2) {
        Welford o;
        o.n = __shfl_xor_sync(0xffffffffu, w.n, off);
        o.mean = __shfl_xor_sync(0xffffffffu, w.mean, off);
        o.m2 = __shfl_xor_sync(0xffffffffu, w.m2, off);
        w = welford_merge(w, o);
    }
    return w;
}

/* ---- launch helpers ------------------------------------------------------------ */
/* Blocks for a grid-stride loop over n items: enough to fill any current GPU, never
 * more than the items need. */
inline unsigned grid_for(int64_t n, int threads) {
    int64_t blocks = (n + threads - 1) / threads;
    const int64_t cap = 65536; /* 132 SMs x 2048 threads / 256 is ~1056; cap leaves headroom */
    if (blocks > cap) blocks = cap;
    if (blocks < 1) blocks = 1;
    return (unsigned)blocks;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline size_t dtype_bytes(stem_dtype dt) {
    switch (dt) {
    case STEM_F32: case STEM_I32: return 4;
    case STEM_F16: case STEM_BF16: return 2;
    case STEM_I64: return 8;
    case STEM_U8: return 1;
    default: return 0;
    }
}

/* Plain unsigned type of a given byte size, for dtype-agnostic data movement. */
template <int Bytes> struct Raw;
template <> struct Raw<1> { typedef uint8_t type; };
template <> struct Raw<2> { typedef uint16_t type; };
template <> struct Raw<4> { typedef uint32_t type; };
template <> struct Raw<8> { typedef uint64_t type; };
template <> struct Raw<16> { typedef uint4 type; };

} /* namespace stem_cuda */

/* Calls LAUNCH(T) with T the storage type of DT (f32 or f16); other dtypes return
 * cudaErrorInvalidValue (the backend checks dtypes first, with a clear message). */
#define STEM_CUDA_DISPATCH_FLOAT(DT, LAUNCH)            \
    do {                                                \
        switch (DT) {                                   \
        case STEM_F32: { LAUNCH(float); break; }        \
        case STEM_F16: { LAUNCH(__half); break; }       \
        default: return cudaErrorInvalidValue;          \
        }                                               \
    } while (0)

#endif
