/* Data movement: strided 2-D copy, permute (generic and tiled-transpose paths),
 * nearest-neighbour upsampling, row gather. These never look at values, so they
 * move raw elements of the dtype's size (f32, f16, bf16, i32, ...). */
#include "kernels/cuda/common.cuh"

using namespace stem_cuda;

namespace {

/* Largest power-of-two unit (16..1 bytes) dividing every given byte count/address. */
int pick_unit(const uint64_t *vals, int count) {
    for (int u = 16; u > 1; u /= 2) {
        bool ok = true;
        for (int i = 0; i < count; i++) ok = ok && vals[i] % (uint64_t)u == 0;
        if (ok) return u;
    }
    return 1;
}

/* ---- copy2d --------------------------------------------------------------------- */

/* dst[r*dst_pitch + c] = src[r*src_pitch + c] for r < rows, c < width, in units W
 * (the launcher picks the widest unit that keeps every access aligned).
 * Grid-stride over rows*width units. */
template <typename W>
__global__ void copy2d_kernel(int64_t rows, int64_t width, const W *src, int64_t src_pitch, W *dst, int64_t dst_pitch) {
    int64_t total = rows * width;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / width, c = i - r * width;
        dst[r * dst_pitch + c] = src[r * src_pitch + c];
    }
}

template <typename W>
void launch_copy2d(int64_t rows, int64_t width, const void *src, int64_t sp, void *dst, int64_t dp, cudaStream_t st) {
    copy2d_kernel<W><<<grid_for(rows * width, 256), 256, 0, st>>>(rows, width, (const W *)src, sp, (W *)dst, dp);
}

/* ---- gather_rows ------------------------------------------------------------------ */

/* y[i, :] = src[idx[i], :] in units W, width units per row; a row with an index
 * outside [0, n_src) is filled with zeros. Grid-stride over n_idx*width units. */
template <typename W>
__global__ void gather_kernel(int64_t n_idx, int64_t n_src, int64_t width, const W *src, const int32_t *idx, W *y) {
    int64_t total = n_idx * width;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / width, c = i - r * width;
        int64_t s = idx[r];
        W v = W(); /* value-initialised: zero */
        if (s >= 0 && s < n_src) v = src[s * width + c];
        y[i] = v;
    }
}

template <typename W>
void launch_gather(const stem_gather_params *p, int64_t width, cudaStream_t st) {
    gather_kernel<W><<<grid_for(p->n_idx * width, 256), 256, 0, st>>>(p->n_idx, p->n_src, width, (const W *)p->src,
                                                                      p->idx, (W *)p->y);
}

/* ---- upsample_nearest --------------------------------------------------------------- */

/* y[p][oy][ox] = x[p][sy][sx] with PyTorch's legacy nearest rule
 * sy = min(floor(oy * (float)(h / h_out)), h - 1) (the ratio and the product in float),
 * likewise sx. Grid-stride over planes*h_out*w_out outputs. */
template <typename E>
__global__ void upsample_nearest_kernel(int64_t planes, int64_t h, int64_t w, int64_t h_out, int64_t w_out,
                                        float scale_h, float scale_w, const E *x, E *y) {
    int64_t total = planes * h_out * w_out;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t ox = i % w_out;
        int64_t t = i / w_out;
        int64_t oy = t % h_out;
        int64_t pl = t / h_out;
        int64_t sy = (int64_t)floorf((float)oy * scale_h);
        int64_t sx = (int64_t)floorf((float)ox * scale_w);
        if (sy > h - 1) sy = h - 1;
        if (sx > w - 1) sx = w - 1;
        y[i] = x[(pl * h + sy) * w + sx];
    }
}

/* ---- permute -------------------------------------------------------------------------- */

struct PermuteShape {
    int ndim;
    int64_t out_shape[6];  /* y's shape */
    int64_t in_stride[6];  /* for y's axis i: x's element stride along that axis */
    int64_t out_stride[6]; /* y's contiguous strides */
};

/* y[o] = x[sum_i coord_i(o) * in_stride[i]], o the contiguous output index.
 * Used when the innermost axis stays innermost (reads and writes both coalesced). */
template <typename E>
__global__ void permute_generic_kernel(PermuteShape s, int64_t total, const E *x, E *y) {
    for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < total; o += (int64_t)gridDim.x * blockDim.x) {
        int64_t rem = o, off = 0;
        for (int d = s.ndim - 1; d >= 0; d--) {
            int64_t c = rem % s.out_shape[d];
            rem /= s.out_shape[d];
            off += c * s.in_stride[d];
        }
        y[o] = x[off];
    }
}

/* Transpose-like permutes, where x's innermost axis A (length n_a, stride 1 in x)
 * becomes a strided axis of y, and some other x axis B (length n_b, stride in_sb in x)
 * becomes y's innermost axis. Each 32x32 tile of (B, A) goes through shared memory:
 * read with threadIdx.x along A, written with threadIdx.x along B, so both sides are
 * coalesced. The remaining axes ("rest", up to 4) are batch: rest index r gives base
 * offsets into x and y. Block (32, 8); grid-stride over tiles_a*tiles_b*rest tiles. */
struct TransposeShape {
    int64_t n_a, n_b, in_sb, out_sa;
    int64_t tiles_a, tiles_b, rest;
    int nrest;
    int64_t rest_shape[4], rest_in[4], rest_out[4]; /* in y's axis order */
};

constexpr int kTile = 32;

template <typename E>
__global__ void __launch_bounds__(kTile * 8) permute_transpose_kernel(TransposeShape s, const E *x, E *y) {
    __shared__ E tile[kTile][kTile + 1];
    const int64_t ntiles = s.tiles_a * s.tiles_b * s.rest;
    for (int64_t bid = blockIdx.x; bid < ntiles; bid += gridDim.x) { /* uniform per block */
        int64_t ta = bid % s.tiles_a;
        int64_t t = bid / s.tiles_a;
        int64_t tb = t % s.tiles_b;
        int64_t r = t / s.tiles_b;
        int64_t in_base = 0, out_base = 0;
        for (int d = s.nrest - 1; d >= 0; d--) {
            int64_t c = r % s.rest_shape[d];
            r /= s.rest_shape[d];
            in_base += c * s.rest_in[d];
            out_base += c * s.rest_out[d];
        }
        int64_t a0 = ta * kTile, b0 = tb * kTile;
        for (int yy = threadIdx.y; yy < kTile; yy += 8) {
            int64_t b = b0 + yy, a = a0 + threadIdx.x;
            if (b < s.n_b && a < s.n_a) tile[yy][threadIdx.x] = x[in_base + b * s.in_sb + a];
        }
        __syncthreads();
        for (int yy = threadIdx.y; yy < kTile; yy += 8) {
            int64_t a = a0 + yy, b = b0 + threadIdx.x;
            if (a < s.n_a && b < s.n_b) y[out_base + a * s.out_sa + b] = tile[threadIdx.x][yy];
        }
        __syncthreads(); /* the tile is reused by the next iteration */
    }
}

/* Removes size-1 axes of x and merges x axes that stay adjacent and in order in y
 * (e.g. [2, 8, 4096, 40] with perm (0, 2, 1, 3) stays 4-D, but (0, 1, 3, 2) on
 * [2, 8, 64, 64] becomes [16, 64, 64] with perm (0, 2, 1)). Returns the new rank. */
int collapse_permute(const stem_permute_params *p, int64_t *shape, int *perm) {
    int nd = 0, remap[6];
    for (int d = 0; d < p->ndim; d++) {
        if (p->shape[d] == 1) { remap[d] = -1; continue; }
        remap[d] = nd;
        shape[nd++] = p->shape[d];
    }
    int np = 0;
    for (int i = 0; i < p->ndim; i++)
        if (remap[p->perm[i]] >= 0) perm[np++] = remap[p->perm[i]];
    /* merge y-adjacent pairs perm[i], perm[i+1] == perm[i] + 1 */
    bool merged = true;
    while (merged) {
        merged = false;
        for (int i = 0; i + 1 < nd; i++) {
            if (perm[i + 1] != perm[i] + 1) continue;
            int a = perm[i];
            shape[a] *= shape[a + 1];
            for (int d = a + 1; d + 1 < nd; d++) shape[d] = shape[d + 1];
            for (int j = i + 1; j + 1 < nd; j++) perm[j] = perm[j + 1];
            nd--;
            for (int j = 0; j < nd; j++)
                if (perm[j] > a) perm[j]--;
            merged = true;
            break;
        }
    }
    return nd;
}

template <typename E>
cudaError_t launch_permute(const stem_permute_params *p, cudaStream_t st) {
    int64_t total = 1;
    for (int d = 0; d < p->ndim; d++) total *= p->shape[d];
    if (total <= 0) return cudaSuccess;
    int64_t shape[6];
    int perm[6];
    int nd = collapse_permute(p, shape, perm);
    const E *x = (const E *)p->x;
    E *y = (E *)p->y;
    if (nd <= 1) { /* identity after collapsing */
        return cudaMemcpyAsync(y, x, (size_t)total * sizeof(E), cudaMemcpyDeviceToDevice, st);
    }
    int64_t in_stride[6], out_stride[6], out_shape[6];
    in_stride[nd - 1] = 1;
    for (int d = nd - 2; d >= 0; d--) in_stride[d] = in_stride[d + 1] * shape[d + 1];
    for (int i = 0; i < nd; i++) out_shape[i] = shape[perm[i]];
    out_stride[nd - 1] = 1;
    for (int i = nd - 2; i >= 0; i--) out_stride[i] = out_stride[i + 1] * out_shape[i + 1];

    if (perm[nd - 1] == nd - 1) {
        PermuteShape s;
        s.ndim = nd;
        for (int i = 0; i < nd; i++) {
            s.out_shape[i] = out_shape[i];
            s.in_stride[i] = in_stride[perm[i]];
            s.out_stride[i] = out_stride[i];
        }
        permute_generic_kernel<E><<<grid_for(total, 256), 256, 0, st>>>(s, total, x, y);
        return cudaGetLastError();
    }
    TransposeShape s;
    int qa = 0; /* y position of x's innermost axis */
    for (int i = 0; i < nd; i++)
        if (perm[i] == nd - 1) qa = i;
    int b_axis = perm[nd - 1];
    s.n_a = shape[nd - 1];
    s.n_b = shape[b_axis];
    s.in_sb = in_stride[b_axis];
    s.out_sa = out_stride[qa];
    s.tiles_a = ceil_div(s.n_a, kTile);
    s.tiles_b = ceil_div(s.n_b, kTile);
    s.nrest = 0;
    s.rest = 1;
    for (int i = 0; i < nd - 1; i++) {
        if (i == qa) continue;
        s.rest_shape[s.nrest] = out_shape[i];
        s.rest_in[s.nrest] = in_stride[perm[i]];
        s.rest_out[s.nrest] = out_stride[i];
        s.rest *= out_shape[i];
        s.nrest++;
    }
    int64_t ntiles = s.tiles_a * s.tiles_b * s.rest;
    unsigned grid = (unsigned)(ntiles < 65536 ? ntiles : 65536);
    permute_transpose_kernel<E><<<grid, dim3(kTile, 8), 0, st>>>(s, x, y);
    return cudaGetLastError();
}

} /* namespace */

extern "C" cudaError_t stem_cuda_copy2d(const stem_copy2d_params *p, cudaStream_t st) {
    size_t es = dtype_bytes(p->dtype);
    if (es == 0) return cudaErrorInvalidValue;
    if (p->rows <= 0 || p->cols <= 0) return cudaSuccess;
    uint64_t vals[5] = {(uint64_t)p->cols * es, (uint64_t)p->src_stride * es, (uint64_t)p->dst_stride * es,
                        (uint64_t)(uintptr_t)p->src, (uint64_t)(uintptr_t)p->dst};
    int u = pick_unit(vals, 5);
    int64_t width = p->cols * (int64_t)es / u, sp = p->src_stride * (int64_t)es / u, dp = p->dst_stride * (int64_t)es / u;
    switch (u) {
    case 16: launch_copy2d<uint4>(p->rows, width, p->src, sp, p->dst, dp, st); break;
    case 8: launch_copy2d<uint64_t>(p->rows, width, p->src, sp, p->dst, dp, st); break;
    case 4: launch_copy2d<uint32_t>(p->rows, width, p->src, sp, p->dst, dp, st); break;
    case 2: launch_copy2d<uint16_t>(p->rows, width, p->src, sp, p->dst, dp, st); break;
    default: launch_copy2d<uint8_t>(p->rows, width, p->src, sp, p->dst, dp, st); break;
    }
    return cudaGetLastError();
}

extern "C" cudaError_t stem_cuda_gather_rows(const stem_gather_params *p, cudaStream_t st) {
    size_t es = dtype_bytes(p->dtype);
    if (es == 0) return cudaErrorInvalidValue;
    if (p->n_idx <= 0 || p->cols <= 0) return cudaSuccess;
    uint64_t vals[3] = {(uint64_t)p->cols * es, (uint64_t)(uintptr_t)p->src, (uint64_t)(uintptr_t)p->y};
    int u = pick_unit(vals, 3);
    int64_t width = p->cols * (int64_t)es / u;
    switch (u) {
    case 16: launch_gather<uint4>(p, width, st); break;
    case 8: launch_gather<uint64_t>(p, width, st); break;
    case 4: launch_gather<uint32_t>(p, width, st); break;
    case 2: launch_gather<uint16_t>(p, width, st); break;
    default: launch_gather<uint8_t>(p, width, st); break;
    }
    return cudaGetLastError();
}

extern "C" cudaError_t stem_cuda_upsample_nearest(const stem_upsample_params *p, cudaStream_t st) {
    int64_t total = p->planes * p->h_out * p->w_out;
    if (total <= 0 || p->h <= 0 || p->w <= 0) return cudaSuccess;
    float scale_h = (float)p->h / (float)p->h_out, scale_w = (float)p->w / (float)p->w_out;
    unsigned grid = grid_for(total, 256);
#define LAUNCH(E)                                                                                                  \
    upsample_nearest_kernel<E><<<grid, 256, 0, st>>>(p->planes, p->h, p->w, p->h_out, p->w_out, scale_h, scale_w, \
                                                     (const E *)p->x, (E *)p->y)
    switch (dtype_bytes(p->dtype)) {
    case 1: LAUNCH(uint8_t); break;
    case 2: LAUNCH(uint16_t); break;
    case 4: LAUNCH(uint32_t); break;
    case 8: LAUNCH(uint64_t); break;
    default: return cudaErrorInvalidValue;
    }
#undef LAUNCH
    return cudaGetLastError();
}

extern "C" cudaError_t stem_cuda_permute(const stem_permute_params *p, cudaStream_t st) {
    if (p->ndim < 0 || p->ndim > 6) return cudaErrorInvalidValue;
    for (int i = 0; i < p->ndim; i++)
        if (p->perm[i] < 0 || p->perm[i] >= p->ndim) return cudaErrorInvalidValue;
    switch (dtype_bytes(p->dtype)) {
    case 1: return launch_permute<uint8_t>(p, st);
    case 2: return launch_permute<uint16_t>(p, st);
    case 4: return launch_permute<uint32_t>(p, st);
    case 8: return launch_permute<uint64_t>(p, st);
    default: return cudaErrorInvalidValue;
    }
}
