/* Elementwise kernels: unary activations, GEGLU, binary ops with general broadcast,
 * affine, dtype conversion. All are grid-stride loops over the output elements
 * (256 threads per block, grid from grid_for); values are computed in f32. */
#include "kernels/cuda/common.cuh"

using namespace stem_cuda;

namespace {

__device__ __forceinline__ float sigmoidf_(float x) { return 1.f / (1.f + expf(-x)); }
/* x * Phi(x), the exact erf form (torch's default gelu). */
__device__ __forceinline__ float gelu_erf(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }
/* torch gelu(approximate='tanh'). */
__device__ __forceinline__ float gelu_tanh(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.f + tanhf(k * (x + 0.044715f * x * x * x)));
}

/* y[i] = act(x[i]), i < n. y may equal x (each thread reads then writes its own i). */
template <typename T>
__global__ void unary_kernel(stem_unary_kind kind, int64_t n, const T *x, T *y) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = to_f32(x[i]), r;
        switch (kind) {
        case STEM_UNARY_SILU: r = v * sigmoidf_(v); break;
        case STEM_UNARY_GELU: r = gelu_erf(v); break;
        case STEM_UNARY_GELU_TANH: r = gelu_tanh(v); break;
        case STEM_UNARY_QUICK_GELU: r = v * sigmoidf_(1.702f * v); break;
        default: r = v; break;
        }
        y[i] = from_f32<T>(r);
    }
}

/* x[rows, 2*cols] = [hidden | gate] -> y[rows, cols] = hidden * gelu_erf(gate).
 * Grid-stride over rows*cols outputs. */
template <typename T>
__global__ void geglu_kernel(int64_t rows, int64_t cols, const T *x, T *y) {
    int64_t total = rows * cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / cols, c = i - r * cols;
        const T *row = x + r * 2 * cols;
        y[i] = from_f32<T>(to_f32(row[c]) * gelu_erf(to_f32(row[cols + c])));
    }
}

/* y = alpha * x + beta. */
template <typename T>
__global__ void affine_kernel(int64_t n, float alpha, float beta, const T *x, T *y) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = from_f32<T>(alpha * to_f32(x[i]) + beta);
}

__device__ __forceinline__ float binop(stem_binary_kind k, float a, float b) {
    switch (k) {
    case STEM_BINARY_ADD: return a + b;
    case STEM_BINARY_SUB: return a - b;
    case STEM_BINARY_MUL: return a * b;
    default: return a / b;
    }
}

/* Broadcast description after collapsing (see collapse_binary): at most 6 axes. */
struct BinaryShape {
    int ndim;
    int64_t shape[6];
    int64_t sa[6], sb[6];
};

/* y[i] = a[off_a(i)] OP b[off_b(i)] for the contiguous output index i; the offsets
 * come from i's coordinates over s.shape (last axis fastest) and the strides. */
template <typename T>
__global__ void binary_general_kernel(stem_binary_kind kind, BinaryShape s, int64_t n, const T *a, const T *b, T *y) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t rem = i, oa = 0, ob = 0;
        for (int d = s.ndim - 1; d >= 0; d--) {
            int64_t c = rem % s.shape[d];
            rem /= s.shape[d];
            oa += c * s.sa[d];
            ob += c * s.sb[d];
        }
        y[i] = from_f32<T>(binop(kind, to_f32(a[oa]), to_f32(b[ob])));
    }
}

/* Fast path: both operands contiguous with the output's shape, or one of them a
 * single broadcast scalar (stride 0 everywhere): a_step/b_step are 1 or 0. */
template <typename T>
__global__ void binary_flat_kernel(stem_binary_kind kind, int64_t n, const T *a, int a_step, const T *b, int b_step,
                                   T *y) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = from_f32<T>(binop(kind, to_f32(a[i * a_step]), to_f32(b[i * b_step])));
}

/* Fast path for the common "row vector" broadcast: after collapsing, shape is
 * [outer, inner] and one operand is [outer, inner] contiguous while the other is
 * [1, inner] (stride (0, 1)) or [outer, 1] (stride (1, 0)). Still one thread per
 * output element, but no division loop over six axes. */
template <typename T>
__global__ void binary_2d_kernel(stem_binary_kind kind, int64_t n, int64_t inner, const T *a, int64_t sa0, int64_t sa1,
                                 const T *b, int64_t sb0, int64_t sb1, T *y) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / inner, c = i - r * inner;
        y[i] = from_f32<T>(binop(kind, to_f32(a[r * sa0 + c * sa1]), to_f32(b[r * sb0 + c * sb1])));
    }
}

/* Drops size-1 axes and merges neighbouring axes that are contiguous with each other
 * in both operands (y is contiguous, so it never blocks a merge). A problem like
 * [2, 4096, 320] + [320] collapses to [8192, 320] with b strides (0, 1). */
BinaryShape collapse_binary(const stem_binary_params *p) {
    BinaryShape s;
    s.ndim = 0;
    for (int d = 0; d < p->ndim; d++) {
        if (p->shape[d] == 1) continue;
        if (s.ndim > 0) {
            int last = s.ndim - 1;
            if (s.sa[last] == p->stride_a[d] * p->shape[d] && s.sb[last] == p->stride_b[d] * p->shape[d]) {
                s.shape[last] *= p->shape[d];
                s.sa[last] = p->stride_a[d];
                s.sb[last] = p->stride_b[d];
                continue;
            }
        }
        s.shape[s.ndim] = p->shape[d];
        s.sa[s.ndim] = p->stride_a[d];
        s.sb[s.ndim] = p->stride_b[d];
        s.ndim++;
    }
    return s;
}

template <typename T>
cudaError_t launch_binary(const stem_binary_params *p, cudaStream_t st) {
    int64_t n = 1;
    for (int d = 0; d < p->ndim; d++) n *= p->shape[d];
    if (n == 0) return cudaSuccess;
    const T *a = (const T *)p->a, *b = (const T *)p->b;
    T *y = (T *)p->y;
    BinaryShape s = collapse_binary(p);
    unsigned grid = grid_for(n, 256);
    if (s.ndim == 0) { /* a single element */
        binary_flat_kernel<T><<<1, 32, 0, st>>>(p->kind, 1, a, 0, b, 0, y);
    } else if (s.ndim == 1 && (s.sa[0] == 1 || s.sa[0] == 0) && (s.sb[0] == 1 || s.sb[0] == 0)) {
        binary_flat_kernel<T><<<grid, 256, 0, st>>>(p->kind, n, a, (int)s.sa[0], b, (int)s.sb[0], y);
    } else if (s.ndim == 2) {
        binary_2d_kernel<T><<<grid, 256, 0, st>>>(p->kind, n, s.shape[1], a, s.sa[0], s.sa[1], b, s.sb[0], s.sb[1], y);
    } else {
        binary_general_kernel<T><<<grid, 256, 0, st>>>(p->kind, s, n, a, b, y);
    }
    return cudaGetLastError();
}

/* dst[i] = convert(src[i]) between f32, f16 and bf16 (round to nearest even). */
template <typename S, typename D>
__global__ void convert_kernel(int64_t n, const S *src, D *dst) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = from_f32<D>(to_f32(src[i]));
}

template <typename S>
cudaError_t launch_convert_from(const stem_convert_params *p, cudaStream_t st) {
    unsigned grid = grid_for(p->n, 256);
    const S *src = (const S *)p->src;
    switch (p->dst_dtype) {
    case STEM_F32: convert_kernel<S, float><<<grid, 256, 0, st>>>(p->n, src, (float *)p->dst); break;
    case STEM_F16: convert_kernel<S, __half><<<grid, 256, 0, st>>>(p->n, src, (__half *)p->dst); break;
    case STEM_BF16:
        convert_kernel<S, __nv_bfloat16><<<grid, 256, 0, st>>>(p->n, src, (__nv_bfloat16 *)p->dst);
        break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

} /* namespace */

extern "C" cudaError_t stem_cuda_unary(const stem_unary_params *p, cudaStream_t st) {
    if (p->n <= 0) return cudaSuccess;
#define LAUNCH(T) unary_kernel<T><<<grid_for(p->n, 256), 256, 0, st>>>(p->kind, p->n, (const T *)p->x, (T *)p->y)
    STEM_CUDA_DISPATCH_FLOAT(p->dtype, LAUNCH);
#undef LAUNCH
    return cudaGetLastError();
}

extern "C" cudaError_t stem_cuda_geglu(const stem_geglu_params *p, cudaStream_t st) {
    if (p->rows <= 0 || p->cols <= 0) return cudaSuccess;
#define LAUNCH(T) \
    geglu_kernel<T><<<grid_for(p->rows * p->cols, 256), 256, 0, st>>>(p->rows, p->cols, (const T *)p->x, (T *)p->y)
    STEM_CUDA_DISPATCH_FLOAT(p->dtype, LAUNCH);
#undef LAUNCH
    return cudaGetLastError();
}

extern "C" cudaError_t stem_cuda_affine(const stem_affine_params *p, cudaStream_t st) {
    if (p->n <= 0) return cudaSuccess;
#define LAUNCH(T) \
    affine_kernel<T><<<grid_for(p->n, 256), 256, 0, st>>>(p->n, p->alpha, p->beta, (const T *)p->x, (T *)p->y)
    STEM_CUDA_DISPATCH_FLOAT(p->dtype, LAUNCH);
#undef LAUNCH
    return cudaGetLastError();
}

extern "C" cudaError_t stem_cuda_binary(const stem_binary_params *p, cudaStream_t st) {
    if (p->ndim < 0 || p->ndim > 6) return cudaErrorInvalidValue;
    switch (p->dtype) {
    case STEM_F32: return launch_binary<float>(p, st);
    case STEM_F16: return launch_binary<__half>(p, st);
    default: return cudaErrorInvalidValue;
    }
}

extern "C" cudaError_t stem_cuda_convert(const stem_convert_params *p, cudaStream_t st) {
    if (p->n <= 0) return cudaSuccess;
    switch (p->src_dtype) {
    case STEM_F32: return launch_convert_from<float>(p, st);
    case STEM_F16: return launch_convert_from<__half>(p, st);
    case STEM_BF16: return launch_convert_from<__nv_bfloat16>(p, st);
    default: return cudaErrorInvalidValue;
    }
}
