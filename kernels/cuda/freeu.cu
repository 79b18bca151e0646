/* FreeU's Fourier filter on the GPU: the closed form of kernels/cpu/freeu.c (read its
 * comment for the derivation). One block per h x w plane: its threads sum the seven
 * low-frequency coefficients T, Ax, Bx, Ay, By, P, Q over the plane's rows (double), a
 * block reduction, then every thread writes its pixels y = x - (1 - s) / (h w) * low. */
#include "kernels/cuda/common.cuh"

namespace stem_cuda {

constexpr int kFreeuThreads = 256;

/* cos and sin of 2 pi k / n in double */
__device__ __forceinline__ void twiddle(int64_t k, int64_t n, double *c, double *s) {
    sincospi(2.0 * (double)k / (double)n, s, c);
}

template <typename T>
__global__ void freeu_filter_kernel(int64_t h, int64_t w, float s, const T *x, T *y) {
    __shared__ double part[7][kFreeuThreads];
    const int64_t plane = blockIdx.x;
    const T *xp = x + plane * h * w;
    T *yp = y + plane * h * w;
    double acc[7] = {0, 0, 0, 0, 0, 0, 0}; /* T, Ax, Bx, Ay, By, P, Q */
    for (int64_t i = threadIdx.x; i < h; i += blockDim.x) {
        double r = 0.0, cr = 0.0, sr = 0.0, cy, sy;
        for (int64_t j = 0; j < w; j++) {
            double cx, sx, v = (double)to_f32(xp[i * w + j]);
            twiddle(j, w, &cx, &sx);
            r += v;
            cr += v * cx;
            sr += v * sx;
        }
        twiddle(i, h, &cy, &sy);
        acc[0] += r;
        acc[1] += cr;
        acc[2] += sr;
        acc[3] += r * cy;
        acc[4] += r * sy;
        acc[5] += cy * cr - sy * sr;
        acc[6] += sy * cr + cy * sr;
    }
    for (int k = 0; k < 7; k++) part[k][threadIdx.x] = acc[k];
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if ((int)threadIdx.x < stride)
            for (int k = 0; k < 7; k++) part[k][threadIdx.x] += part[k][threadIdx.x + stride];
        __syncthreads();
    }
    const double t = part[0][0], ax = part[1][0], bx = part[2][0], ay = part[3][0], by = part[4][0];
    const double p = part[5][0], q = part[6][0];
    const double k = (1.0 - (double)s) / ((double)h * (double)w);
    const bool fx = w > 1, fy = h > 1; /* -1 is a frequency of its own only when n > 1 */
    for (int64_t e = threadIdx.x; e < h * w; e += blockDim.x) {
        const int64_t i = e / w, j = e % w;
        double cy, sy, cx, sx;
        twiddle(i, h, &cy, &sy);
        twiddle(j, w, &cx, &sx);
        double low = t;
        if (fx) low += ax * cx + bx * sx;
        if (fy) low += ay * cy + by * sy;
        if (fx && fy) low += p * (cy * cx - sy * sx) + q * (sy * cx + cy * sx);
        /* every thread read x before the reduction's barriers, so y may equal x */
        yp[e] = from_f32<T>((float)((double)to_f32(xp[e]) - k * low));
    }
}

} /* namespace stem_cuda */

using namespace stem_cuda;

extern "C" cudaError_t stem_cuda_freeu_filter(const stem_freeu_filter_params *p, cudaStream_t st) {
    if (p->planes <= 0 || p->h <= 0 || p->w <= 0) return cudaSuccess;
    if (p->planes > 0x7fffffff) return cudaErrorInvalidValue;
#define LAUNCH(T)                                                                                     \
    freeu_filter_kernel<T><<<(unsigned)p->planes, kFreeuThreads, 0, st>>>(p->h, p->w, p->s, (const T *)p->x, \
                                                                          (T *)p->y)
    STEM_CUDA_DISPATCH_FLOAT(p->dtype, LAUNCH);
#undef LAUNCH
    return cudaGetLastError();
}
