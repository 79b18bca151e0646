/* Data movement: nearest upsampling, strided 2-D copies, permutes (via blocked
 * transposes when the innermost axis moves), parallel memcpy/memset and dtype
 * conversion. All memory-bound: the aim is memcpy bandwidth. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/dtype.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/simd.h"

#define BYTE_CHUNK ((size_t)1 << 20)

void stem_cpu_copy_bytes(void *dst, const void *src, size_t bytes) {
    if (dst == src || bytes == 0) return;
    if (bytes < 4 * BYTE_CHUNK || omp_get_max_threads() == 1) { memcpy(dst, src, bytes); return; }
    int64_t chunks = (int64_t)((bytes + BYTE_CHUNK - 1) / BYTE_CHUNK);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
        size_t off = (size_t)c * BYTE_CHUNK, len = bytes - off < BYTE_CHUNK ? bytes - off : BYTE_CHUNK;
        memcpy((char *)dst + off, (const char *)src + off, len);
    }
}

void stem_cpu_zero_bytes(void *dst, size_t bytes) {
    if (bytes == 0) return;
    if (bytes < 4 * BYTE_CHUNK || omp_get_max_threads() == 1) { memset(dst, 0, bytes); return; }
    int64_t chunks = (int64_t)((bytes + BYTE_CHUNK - 1) / BYTE_CHUNK);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
        size_t off = (size_t)c * BYTE_CHUNK, len = bytes - off < BYTE_CHUNK ? bytes - off : BYTE_CHUNK;
        memset((char *)dst + off, 0, len);
    }
}

/* ---- nearest upsampling ------------------------------------------------------------ */

/* PyTorch's legacy "nearest": src = min(floor(dst * (float)(in / out)), in - 1). */
static inline int64_t nearest_src(int64_t dst, float scale, int64_t in) {
    return stem_imin((int64_t)floorf((float)dst * scale), in - 1);
}

void stem_cpu_upsample_nearest_f32(const stem_upsample_params *p) {
    const stem_simd *s = stem_simd_get();
    const int64_t h = p->h, w = p->w, ho = p->h_out, wo = p->w_out;
    if (p->planes == 0 || ho == 0 || wo == 0) return;
    const float sh = (float)h / (float)ho, sw = (float)w / (float)wo;
    const bool twice = wo == 2 * w;
    const float *x = p->x;
    float *y = p->y;
#pragma omp parallel for schedule(static) if (p->planes > 1 && p->planes * ho * wo >= STEM_PAR_MIN_ELEMS)
    for (int64_t pl = 0; pl < p->planes; pl++) {
        const float *xp = x + pl * h * w;
        float *yp = y + pl * ho * wo;
        int64_t prev_iy = -1;
        for (int64_t oy = 0; oy < ho; oy++) {
            int64_t iy = nearest_src(oy, sh, h);
            float *yr = yp + oy * wo;
            if (iy == prev_iy) { /* same source row as the row above: copy it */
                memcpy(yr, yr - wo, (size_t)wo * sizeof(float));
                continue;
            }
            prev_iy = iy;
            const float *xr = xp + iy * w;
            if (twice) {
                s->dup2(yr, xr, w);
            } else {
                for (int64_t ox = 0; ox < wo; ox++) yr[ox] = xr[nearest_src(ox, sw, w)];
            }
        }
    }
}

/* ---- strided 2-D copy ---------------------------------------------------------------- */

void stem_cpu_copy2d_f32(const stem_copy2d_params *p) {
    const int64_t rows = p->rows, cols = p->cols;
    if (rows <= 0 || cols <= 0) return;
    const float *src = p->src;
    float *dst = p->dst;
    if ((p->src_stride == cols && p->dst_stride == cols) || rows == 1) {
        stem_cpu_copy_bytes(dst, src, (size_t)(rows * cols) * sizeof(float));
        return;
    }
#pragma omp parallel for schedule(static) if (rows > 1 && rows * cols >= STEM_PAR_MIN_ELEMS)
    for (int64_t r = 0; r < rows; r++)
        memcpy(dst + r * p->dst_stride, src + r * p->src_stride, (size_t)cols * sizeof(float));
}

/* ---- permute ----------------------------------------------------------------------- */

void stem_cpu_permute_f32(const stem_permute_params *p) {
    const stem_simd *simd = stem_simd_get();
    int64_t in_stride[6], total = 1;
    for (int i = p->ndim - 1; i >= 0; i--) {
        in_stride[i] = total;
        total *= p->shape[i];
    }
    if (total == 0) return;
    /* output axes (size, source stride), size-1 axes dropped, mergeable ones merged */
    int nd = 0;
    int64_t size[6], ss[6];
    for (int i = 0; i < p->ndim; i++) {
        int64_t n = p->shape[p->perm[i]], st = in_stride[p->perm[i]];
        if (n == 1) continue;
        if (nd > 0 && ss[nd - 1] == st * n) {
            size[nd - 1] *= n;
            ss[nd - 1] = st;
            continue;
        }
        size[nd] = n;
        ss[nd] = st;
        nd++;
    }
    const float *x = p->x;
    float *y = p->y;
    if (nd <= 1) { /* the identity, up to size-1 axes */
        stem_cpu_copy_bytes(y, x, (size_t)total * sizeof(float));
        return;
    }
    int64_t ds[6]; /* output strides */
    ds[nd - 1] = 1;
    for (int i = nd - 2; i >= 0; i--) ds[i] = ds[i + 1] * size[i + 1];
    const int last = nd - 1;

    if (ss[last] == 1) { /* the innermost axis stays innermost: copy contiguous runs */
        const int64_t run = size[last], runs = total / run;
#pragma omp parallel for schedule(static) if (total >= STEM_PAR_MIN_ELEMS)
        for (int64_t r = 0; r < runs; r++) {
            int64_t off = 0, rem = r;
            for (int i = last - 1; i >= 0; i--) {
                off += (rem % size[i]) * ss[i];
                rem /= size[i];
            }
            memcpy(y + r * run, x + off, (size_t)run * sizeof(float));
        }
        return;
    }

    /* Otherwise some output axis j reads with stride 1: transpose (j, last) in blocks,
     * looping over all other axes. */
    int j = 0;
    while (j < last && ss[j] != 1) j++;
    const int64_t A = size[j], B = size[last];
    enum { BLK = 256 };
    const int64_t ablk = stem_ceil_div(A, BLK), bblk = stem_ceil_div(B, BLK);
    int64_t outer = total / (A * B);
    const int64_t items = outer * ablk * bblk;
#pragma omp parallel for schedule(static) if (total >= STEM_PAR_MIN_ELEMS)
    for (int64_t it = 0; it < items; it++) {
        int64_t o = it / (ablk * bblk), ab = (it / bblk) % ablk, bb = it % bblk;
        int64_t soff = 0, doff = 0, rem = o;
        for (int i = last - 1; i >= 0; i--) {
            if (i == j) continue;
            int64_t idx = rem % size[i];
            rem /= size[i];
            soff += idx * ss[i];
            doff += idx * ds[i];
        }
        int64_t a0 = ab * BLK, b0 = bb * BLK;
        /* element (a, b) sits at x[soff + a + b*ss[last]] and goes to y[doff + a*ds[j] + b] */
        simd->transpose(y + doff + a0 * ds[j] + b0, ds[j], x + soff + a0 + b0 * ss[last], ss[last],
                        stem_imin(BLK, B - b0), stem_imin(BLK, A - a0));
    }
}

/* ---- dtype conversion ---------------------------------------------------------------- */

void stem_cpu_convert(const stem_convert_params *p) {
    const int64_t n = p->n, chunk = (int64_t)1 << 16, chunks = stem_ceil_div(n, chunk);
    const size_t ss = stem_dtype_size(p->src_dtype), ds = stem_dtype_size(p->dst_dtype);
#pragma omp parallel for schedule(static) if (n >= STEM_PAR_MIN_ELEMS)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t i0 = c * chunk, len = stem_imin(chunk, n - i0);
        stem_convert((char *)p->dst + (size_t)i0 * ds, p->dst_dtype, (const char *)p->src + (size_t)i0 * ss,
                     p->src_dtype, (size_t)len);
    }
}
