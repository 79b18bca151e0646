/* Normalisation kernels: group norm (two statistics passes + apply pass) and layer norm
 * (one warp per row). Statistics in f32 with Welford/Chan merges or two passes over
 * the row, biased variance (divide by the count), like torch. */
#include "kernels/cuda/common.cuh"

using namespace stem_cuda;

namespace {

constexpr int kGnStatThreads = 512;

/* Group statistics, pass 1. The group g is the contiguous run of count =
 * (c/groups)*spatial elements at g*count; it is cut into `splits` slices of `slice`
 * elements so that a few large groups (one VAE image: 32 groups of a million) still
 * fill the GPU. One block per (group, slice) = blockIdx.x (slice fastest): each
 * thread folds a strided subset with Welford, warps merge by shuffles, warp 0 merges
 * the warps and writes the slice's (n, mean, M2) to part[3*blockIdx.x ...]. */
template <typename T>
__global__ void __launch_bounds__(kGnStatThreads)
group_norm_partial_kernel(int64_t count, int64_t splits, int64_t slice, const T *x, float *part) {
    __shared__ Welford partial[kGnStatThreads / kWarp];
    const int64_t g = blockIdx.x / splits, s = blockIdx.x % splits;
    const int64_t lo = s * slice, hi = lo + slice < count ? lo + slice : count;
    const T *gx = x + g * count;
    Welford w = welford_empty();
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) welford_push(w, to_f32(gx[i]));
    w = warp_welford(w);
    int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    if (lane == 0) partial[warp] = w;
    __syncthreads();
    if (warp == 0) {
        int nwarps = blockDim.x / kWarp;
        w = lane < nwarps ? partial[lane] : welford_empty();
        w = warp_welford(w);
        if (lane == 0) {
            part[3 * (int64_t)blockIdx.x] = w.n;
            part[3 * (int64_t)blockIdx.x + 1] = w.mean;
            part[3 * (int64_t)blockIdx.x + 2] = w.m2;
        }
    }
}

/* Group statistics, pass 2: one thread per group merges its slices in order and
 * writes stats[2g] = mean, stats[2g+1] = 1/sqrt(biased var + eps). */
__global__ void group_norm_final_kernel(int64_t ngroups, int64_t splits, float eps, const float *part, float *stats) {
    for (int64_t g = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; g < ngroups; g += (int64_t)gridDim.x * blockDim.x) {
        Welford w = welford_empty();
        for (int64_t s = 0; s < splits; s++) {
            const float *p = part + 3 * (g * splits + s);
            w = welford_merge(w, Welford{p[0], p[1], p[2]});
        }
        float var = w.n > 0.f ? w.m2 / w.n : 0.f;
        stats[2 * g] = w.mean;
        stats[2 * g + 1] = rsqrtf(var + eps);
    }
}

/* Slices per group: enough blocks for ~4 per SM of a large GPU, slices of at least
 * 4096 elements. */
int64_t group_norm_splits(const stem_group_norm_params *p) {
    int64_t ngroups = p->n * p->groups, count = p->c / p->groups * p->spatial;
    if (ngroups <= 0 || count <= 0) return 1;
    int64_t want = ceil_div(512, ngroups);
    int64_t most = ceil_div(count, 4096);
    int64_t s = want < most ? want : most;
    return s < 1 ? 1 : s;
}

/* y = (x - mean) * rstd * gamma[ch] + beta[ch], then SiLU if asked. Grid-stride over
 * all n*c*spatial elements; row = i / spatial is (image, channel), its group is
 * row / (c/groups) (groups of one image are consecutive, so this also counts images). */
template <typename T>
__global__ void group_norm_apply_kernel(int64_t total, int64_t spatial, int64_t c, int64_t cpg, bool silu,
                                        const T *x, const float *stats, const T *gamma, const T *beta, T *y) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t row = i / spatial;
        int64_t ch = row % c;
        int64_t grp = row / cpg;
        float v = (to_f32(x[i]) - stats[2 * grp]) * stats[2 * grp + 1];
        if (gamma) v *= to_f32(gamma[ch]);
        if (beta) v += to_f32(beta[ch]);
        if (silu) v = v / (1.f + expf(-v));
        y[i] = from_f32<T>(v);
    }
}

constexpr int kLnThreads = 256; /* 8 warps, one row each */

/* Layer norm, one warp per row (rows = blockIdx.x * 8 + warp): pass 1 the mean,
 * pass 2 the biased variance of the deviations, pass 3 the output. The row is read
 * three times; after the first pass it comes from L1/L2. y may equal x: every lane
 * reads and writes only its own columns, and the write pass is last. */
template <typename T>
__global__ void __launch_bounds__(kLnThreads)
layer_norm_kernel(int64_t rows, int64_t cols, float eps, const T *x, const T *gamma, const T *beta, T *y) {
    int lane = threadIdx.x % kWarp;
    int64_t row = (int64_t)blockIdx.x * (kLnThreads / kWarp) + threadIdx.x / kWarp;
    if (row >= rows) return; /* whole warp leaves together */
    const T *xr = x + row * cols;
    T *yr = y + row * cols;
    float s = 0.f;
    for (int64_t c = lane; c < cols; c += kWarp) s += to_f32(xr[c]);
    float mean = warp_sum(s) / (float)cols;
    float q = 0.f;
    for (int64_t c = lane; c < cols; c += kWarp) {
        float d = to_f32(xr[c]) - mean;
        q += d * d;
    }
    float rstd = rsqrtf(warp_sum(q) / (float)cols + eps);
    for (int64_t c = lane; c < cols; c += kWarp) {
        float v = (to_f32(xr[c]) - mean) * rstd;
        if (gamma) v *= to_f32(gamma[c]);
        if (beta) v += to_f32(beta[c]);
        yr[c] = from_f32<T>(v);
    }
}

} /* namespace */

/* Workspace: stats [ngroups][2], then the slice partials [ngroups][splits][3]. */
extern "C" size_t stem_cuda_group_norm_workspace(const stem_group_norm_params *p) {
    if (p->n <= 0 || p->groups <= 0) return 0;
    size_t ngroups = (size_t)p->n * (size_t)p->groups;
    return ngroups * sizeof(float) * (2 + 3 * (size_t)group_norm_splits(p));
}

extern "C" cudaError_t stem_cuda_group_norm(const stem_group_norm_params *p, void *workspace, cudaStream_t st) {
    if (p->groups <= 0 || p->c % p->groups != 0) return cudaErrorInvalidValue;
    int64_t total = p->n * p->c * p->spatial;
    if (total <= 0) return cudaSuccess;
    int64_t cpg = p->c / p->groups;
    int64_t ngroups = p->n * p->groups, count = cpg * p->spatial;
    int64_t splits = group_norm_splits(p), slice = ceil_div(count, splits);
    if (ngroups * splits > 0x7fffffff) return cudaErrorInvalidValue;
    float *stats = (float *)workspace, *part = stats + 2 * ngroups;
#define LAUNCH(T)                                                                                              \
    do {                                                                                                       \
        group_norm_partial_kernel<T><<<(unsigned)(ngroups * splits), kGnStatThreads, 0, st>>>(                 \
            count, splits, slice, (const T *)p->x, part);                                                      \
        group_norm_final_kernel<<<grid_for(ngroups, 256), 256, 0, st>>>(ngroups, splits, p->eps, part, stats); \
        group_norm_apply_kernel<T><<<grid_for(total, 256), 256, 0, st>>>(                                      \
            total, p->spatial, p->c, cpg, p->silu, (const T *)p->x, stats, (const T *)p->gamma,                \
            (const T *)p->beta, (T *)p->y);                                                                    \
    } while (0)
    STEM_CUDA_DISPATCH_FLOAT(p->dtype, LAUNCH);
#undef LAUNCH
    return cudaGetLastError();
}

extern "C" cudaError_t stem_cuda_layer_norm(const stem_layer_norm_params *p, cudaStream_t st) {
    if (p->rows <= 0 || p->cols <= 0) return cudaSuccess;
    int64_t rows_per_block = kLnThreads / kWarp;
    int64_t blocks = ceil_div(p->rows, rows_per_block);
    if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
#define LAUNCH(T)                                                                                                 \
    layer_norm_kernel<T><<<(unsigned)blocks, kLnThreads, 0, st>>>(p->rows, p->cols, p->eps, (const T *)p->x,   \
                                                                  (const T *)p->gamma, (const T *)p->beta,      \
                                                                  (T *)p->y)
    STEM_CUDA_DISPATCH_FLOAT(p->dtype, LAUNCH);
#undef LAUNCH
    return cudaGetLastError();
}
