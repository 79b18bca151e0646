/* The kernels around conv2d's GEMM (the backend runs the GEMM with cuBLAS):
 * im2col, which lays out the input patches of a band of output rows as the K x P
 * right-hand matrix, and the bias broadcast that initialises y. */
#include "kernels/cuda/common.cuh"

using namespace stem_cuda;

namespace {

struct Im2colArgs {
    int64_t c_in, h, w, kh, kw, w_out;
    int64_t stride_h, stride_w, pad_top, pad_left;
    int64_t oy0;   /* first output row of the band */
    int64_t kdim;  /* c_in*kh*kw */
    int64_t pcols; /* band rows * w_out */
    int64_t total; /* images * kdim * pcols */
};

/* col[b][k][j] = x[b][ci][iy][ix] (zero outside the image) with
 *   k = (ci*kh + ky)*kw + kx,  j = (oy - oy0)*w_out + ox,
 *   iy = oy*stride_h - pad_top + ky,  ix = ox*stride_w - pad_left + kx.
 * Grid-stride over all col elements in memory order, so writes are coalesced and
 * reads walk along an input row (stride_w apart). x points at the chunk's first image. */
template <typename T, typename I>
__global__ void im2col_kernel(Im2colArgs args, const T *x, T *col) {
    /* Index math in I (int32 when everything fits, see the launcher): the divisions
     * dominate this kernel's cost. */
    const I pcols = (I)args.pcols, kdim = (I)args.kdim, w_out = (I)args.w_out, kw = (I)args.kw, kh = (I)args.kh;
    const I h = (I)args.h, w = (I)args.w, c_in = (I)args.c_in, total = (I)args.total;
    const I sh = (I)args.stride_h, sw = (I)args.stride_w, pt = (I)args.pad_top, pl = (I)args.pad_left, oy0 = (I)args.oy0;
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
        I j = i % pcols;
        I t = i / pcols;
        I k = t % kdim;
        I b = t / kdim;
        I ox = j % w_out;
        I oy = oy0 + j / w_out;
        I kx = k % kw;
        I t2 = k / kw;
        I ky = t2 % kh;
        I ci = t2 / kh;
        I iy = oy * sh - pt + ky;
        I ix = ox * sw - pl + kx;
        T v = from_f32<T>(0.f);
        if (iy >= 0 && iy < h && ix >= 0 && ix < w) v = x[((b * c_in + ci) * h + iy) * w + ix];
        col[i] = v;
    }
}

/* y[i] = bias[(i / plane) % c_out] over all n*c_out*plane outputs. */
template <typename T>
__global__ void bias_fill_kernel(int64_t total, int64_t plane, int64_t c_out, const T *bias, T *y) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = bias[(i / plane) % c_out];
}

} /* namespace */

extern "C" cudaError_t stem_cuda_im2col(const stem_conv2d_params *p, int64_t img0, int64_t images, int64_t oy0,
                                        int64_t rows, void *col, cudaStream_t st) {
    Im2colArgs a;
    a.c_in = p->c_in; a.h = p->h; a.w = p->w; a.kh = p->kh; a.kw = p->kw; a.w_out = p->w_out;
    a.stride_h = p->stride_h; a.stride_w = p->stride_w; a.pad_top = p->pad_top; a.pad_left = p->pad_left;
    a.oy0 = oy0;
    a.kdim = p->c_in * p->kh * p->kw;
    a.pcols = rows * p->w_out;
    a.total = images * a.kdim * a.pcols;
    if (a.total <= 0) return cudaSuccess;
    int64_t img_elems = p->c_in * p->h * p->w;
    /* int32 indices when the col chunk and the input chunk both stay below 2^30
     * elements (always, with the backend's workspace budget): the grid-stride step
     * (< 2^25) then cannot overflow, and intermediates like oy*stride + ky are
     * bounded by the input size. */
    const int64_t lim = (int64_t)1 << 30;
    bool small = a.total < lim && images * img_elems < lim && p->h_out * p->stride_h + p->kh < lim &&
                 p->w_out * p->stride_w + p->kw < lim;
#define LAUNCH(T)                                                                                         \
    do {                                                                                                  \
        const T *x0 = (const T *)p->x + img0 * img_elems;                                                 \
        if (small)                                                                                        \
            im2col_kernel<T, int32_t><<<grid_for(a.total, 256), 256, 0, st>>>(a, x0, (T *)col);           \
        else                                                                                              \
            im2col_kernel<T, int64_t><<<grid_for(a.total, 256), 256, 0, st>>>(a, x0, (T *)col);           \
    } while (0)
    STEM_CUDA_DISPATCH_FLOAT(p->dtype, LAUNCH);
#undef LAUNCH
    return cudaGetLastError();
}

extern "C" cudaError_t stem_cuda_conv_bias_fill(const stem_conv2d_params *p, cudaStream_t st) {
    int64_t plane = p->h_out * p->w_out;
    int64_t total = p->n * p->c_out * plane;
    if (total <= 0 || !p->bias) return cudaSuccess;
#define LAUNCH(T) \
    bias_fill_kernel<T><<<grid_for(total, 256), 256, 0, st>>>(total, plane, p->c_out, (const T *)p->bias, (T *)p->y)
    STEM_CUDA_DISPATCH_FLOAT(p->dtype, LAUNCH);
#undef LAUNCH
    return cudaGetLastError();
}
