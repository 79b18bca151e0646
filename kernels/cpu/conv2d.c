/* conv2d as GEMM. The output of one image is y[c_out, P] (P = h_out * w_out):
 *   y[:, cols] = W[c_out, K] @ col[K, cols] + bias,   K = c_in * kh * kw,
 * where col is the im2col matrix of a tile of output pixels (row r = (ci, ky, kx),
 * zero where the window hangs over the padding). A 1x1, stride-1, unpadded
 * convolution needs no im2col: col is the image itself.
 *
 * Tiles: large images are cut into column tiles of about TILE_COLS pixels; small
 * images (the low-resolution UNet levels) are grouped, several whole images per
 * tile, so that the weights are streamed once per group rather than once per image;
 * a grouped tile's GEMM writes to scratch and is then scattered to the images.
 *
 * Threading: with enough tiles, each thread builds its own tiles and runs
 * single-threaded GEMMs on them (no synchronisation at all); with too few (one small
 * image), tiles go one at a time, the im2col split over threads and the GEMM
 * threaded by OpenBLAS. */
#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "kernels/cpu/kernels.h"

/* Columns per tile: large enough that re-reading the weights per tile is cheap,
 * small enough that a tile of col stays in cache. */
#define TILE_COLS 384
/* Column bound of the one-tile-at-a-time mode: col stays below ~32 MiB. */
#define SERIAL_COL_FLOATS ((int64_t)8 << 20)

typedef struct conv_plan {
    bool direct;     /* 1x1, stride 1, no padding: GEMM straight on x */
    bool per_thread; /* tiles spread over threads, single-threaded GEMMs */
    int64_t K, P;    /* GEMM depth, output pixels per image */
    int64_t imgs;    /* images per tile (> 1: grouped whole images) */
    int64_t nc;      /* columns per tile (within one image when imgs == 1) */
    int64_t tiles;   /* tiles per image (imgs == 1) or image groups (imgs > 1) */
    int threads;
} conv_plan;

static conv_plan make_plan(const stem_conv2d_params *p) {
    conv_plan pl;
    pl.direct = p->kh == 1 && p->kw == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_top == 0 &&
                p->pad_bottom == 0 && p->pad_left == 0 && p->pad_right == 0;
    pl.K = p->c_in * p->kh * p->kw;
    pl.P = p->h_out * p->w_out;
    pl.threads = omp_get_max_threads();
    pl.imgs = 1;
    if (pl.P > 0 && pl.P < TILE_COLS / 2 && p->n > 1) { /* group small images */
        int64_t want = stem_imax(1, TILE_COLS / pl.P);
        int64_t fair = stem_ceil_div(p->n, pl.threads); /* keep every thread busy */
        pl.imgs = stem_imin(want, fair);
    }
    if (pl.imgs > 1) {
        pl.nc = pl.imgs * pl.P;
        pl.tiles = stem_ceil_div(p->n, pl.imgs);
        pl.per_thread = pl.threads > 1 && pl.tiles >= pl.threads;
        if (!pl.per_thread) { pl.imgs = 1; } /* few images: fall through to the plain modes */
        else return pl;
    }
    int64_t tiles = stem_imax(1, (pl.P + TILE_COLS / 2) / TILE_COLS);
    int64_t nc = stem_ceil_div(stem_imax(pl.P, 1), tiles);
    nc = stem_imin(pl.P, (nc + 15) & ~(int64_t)15);
    tiles = stem_ceil_div(pl.P, stem_imax(nc, 1));
    int64_t total = p->n * tiles;
    pl.per_thread = pl.threads > 1 && total >= pl.threads && (total % pl.threads == 0 || total >= 4 * pl.threads);
    if (!pl.per_thread) {
        nc = pl.direct ? pl.P : stem_imax(16, stem_imin(pl.P, SERIAL_COL_FLOATS / stem_imax(pl.K, 1)));
        tiles = stem_ceil_div(pl.P, stem_imax(nc, 1));
    }
    pl.nc = stem_imax(nc, 1);
    pl.tiles = tiles;
    return pl;
}

/* Scratch of one worker: col [K x nc] unless direct with single images, and the
 * GEMM output [c_out x nc] of grouped tiles. */
static size_t worker_bytes(const stem_conv2d_params *p, const conv_plan *pl) {
    size_t col = (pl->direct && pl->imgs == 1) ? 0 : stem_round64((size_t)pl->K * (size_t)pl->nc * sizeof(float));
    size_t out = pl->imgs > 1 ? stem_round64((size_t)p->c_out * (size_t)pl->nc * sizeof(float)) : 0;
    return col + out;
}

size_t stem_cpu_conv2d_scratch(const stem_conv2d_params *p) {
    conv_plan pl = make_plan(p);
    if (pl.P == 0 || pl.K == 0) return 0;
    return worker_bytes(p, &pl) * (size_t)(pl.per_thread ? pl.threads : 1);
}

/* col[r, j] (ld ldc) for rows r in [r0, r1) and output pixels p0 + j, j < nc, of
 * the image x. */
static void im2col_rows(const stem_conv2d_params *p, const float *x, int64_t p0, int64_t nc, int64_t r0,
                        int64_t r1, float *col, int64_t ldc) {
    const int64_t kk = p->kh * p->kw, h = p->h, w = p->w, w_out = p->w_out;
    const int sh = p->stride_h, sw = p->stride_w, pt = p->pad_top, pleft = p->pad_left;
    for (int64_t r = r0; r < r1; r++) {
        int64_t ci = r / kk, ky = (r % kk) / p->kw, kx = r % p->kw;
        const float *plane = x + ci * h * w;
        float *dst = col + r * ldc;
        int64_t j = 0, pix = p0;
        while (j < nc) {
            int64_t oy = pix / w_out, ox0 = pix % w_out, cnt = stem_imin(w_out - ox0, nc - j);
            int64_t iy = oy * sh - pt + ky;
            float *d = dst + j;
            if (iy < 0 || iy >= h) {
                memset(d, 0, (size_t)cnt * sizeof(float));
            } else {
                const float *src = plane + iy * w;
                int64_t off = kx - pleft; /* ix = ox * sw + off */
                if (sw == 1) {
                    /* valid ox: 0 <= ox + off < w */
                    int64_t lo = stem_imin(stem_imax(-off, ox0), ox0 + cnt);
                    int64_t hi = stem_imax(stem_imin(w - off, ox0 + cnt), lo);
                    memset(d, 0, (size_t)(lo - ox0) * sizeof(float));
                    memcpy(d + (lo - ox0), src + lo + off, (size_t)(hi - lo) * sizeof(float));
                    memset(d + (hi - ox0), 0, (size_t)(ox0 + cnt - hi) * sizeof(float));
                } else {
                    for (int64_t t = 0; t < cnt; t++) {
                        int64_t ix = (ox0 + t) * sw + off;
                        d[t] = (ix >= 0 && ix < w) ? src[ix] : 0.0f;
                    }
                }
            }
            j += cnt;
            pix += cnt;
        }
    }
}

/* c[co, j] (ld ldc) = bias[co] for j < nc, so that the GEMM can accumulate (beta 1). */
static void fill_bias(const stem_conv2d_params *p, float *c, int64_t ldc, int64_t nc) {
    const float *bias = p->bias;
    for (int64_t co = 0; co < p->c_out; co++) {
        float *row = c + co * ldc, b = bias[co];
        for (int64_t j = 0; j < nc; j++) row[j] = b;
    }
}

/* c[c_out x nc] (ld ldc) = W @ b[K x nc] (ld ldb) (+ bias). */
static void gemm_w(const stem_conv2d_params *p, const conv_plan *pl, const float *b, int64_t ldb, float *c,
                   int64_t ldc, int64_t nc) {
    if (p->bias) fill_bias(p, c, ldc, nc);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)p->c_out, (blasint)nc, (blasint)pl->K, 1.0f,
                (const float *)p->weight, (blasint)pl->K, b, (blasint)stem_imax(ldb, 1), p->bias ? 1.0f : 0.0f, c,
                (blasint)stem_imax(ldc, 1));
}

/* Tile t of a single-image plan, on one thread, with the given scratch. */
static void run_tile(const stem_conv2d_params *p, const conv_plan *pl, int64_t t, float *col) {
    const int64_t img = t / pl->tiles, p0 = (t % pl->tiles) * pl->nc, nc = stem_imin(pl->nc, pl->P - p0);
    const float *xi = (const float *)p->x + img * p->c_in * p->h * p->w;
    float *yi = (float *)p->y + img * p->c_out * pl->P;
    if (pl->direct) {
        gemm_w(p, pl, xi + p0, pl->P, yi + p0, pl->P, nc);
    } else {
        im2col_rows(p, xi, p0, nc, 0, pl->K, col, nc);
        gemm_w(p, pl, col, nc, yi + p0, pl->P, nc);
    }
}

/* Image group g of a grouped plan: im2col of each image side by side, one GEMM,
 * then each image's block of the result copied to y. */
static void run_group(const stem_conv2d_params *p, const conv_plan *pl, int64_t g, float *col, float *out) {
    const int64_t img0 = g * pl->imgs, nimg = stem_imin(pl->imgs, p->n - img0), P = pl->P, nc = nimg * P;
    for (int64_t i = 0; i < nimg; i++)
        im2col_rows(p, (const float *)p->x + (img0 + i) * p->c_in * p->h * p->w, 0, P, 0, pl->K, col + i * P, nc);
    gemm_w(p, pl, col, nc, out, nc, nc);
    for (int64_t i = 0; i < nimg; i++) {
        float *yi = (float *)p->y + (img0 + i) * p->c_out * P;
        for (int64_t co = 0; co < p->c_out; co++) memcpy(yi + co * P, out + co * nc + i * P, (size_t)P * sizeof(float));
    }
}

void stem_cpu_conv2d_f32(const stem_conv2d_params *p, void *scratch) {
    conv_plan pl = make_plan(p);
    if (pl.P == 0 || p->c_out == 0 || p->n == 0) return;
    const int64_t out_img = p->c_out * pl.P;
    float *y = p->y;

    if (pl.K == 0) { /* no input channels: the output is the bias */
        for (int64_t img = 0; img < p->n; img++) {
            if (p->bias) fill_bias(p, y + img * out_img, pl.P, pl.P);
            else memset(y + img * out_img, 0, (size_t)out_img * sizeof(float));
        }
        return;
    }

    const size_t per = worker_bytes(p, &pl);
    if (pl.imgs > 1) { /* grouped images, one group per thread at a time */
        const size_t col_bytes = stem_round64((size_t)pl.K * (size_t)pl.nc * sizeof(float));
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t g = 0; g < pl.tiles; g++) {
            char *w = (char *)scratch + per * (size_t)omp_get_thread_num(); /* per > 0 here: im2col columns */
            run_group(p, &pl, g, (float *)w, (float *)(w + col_bytes));
        }
        return;
    }
    if (pl.per_thread) {
        const int64_t total = p->n * pl.tiles;
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t t = 0; t < total; t++)
            run_tile(p, &pl, t, per ? (float *)((char *)scratch + per * (size_t)omp_get_thread_num()) : NULL); /* no scratch: NULL + 0 is UB */
        return;
    }
    /* few tiles: one at a time, threads inside (parallel im2col, OpenBLAS threads) */
    for (int64_t img = 0; img < p->n; img++) {
        const float *xi = (const float *)p->x + img * p->c_in * p->h * p->w;
        float *yi = y + img * out_img;
        for (int64_t p0 = 0; p0 < pl.P; p0 += pl.nc) {
            const int64_t nc = stem_imin(pl.nc, pl.P - p0);
            if (pl.direct) {
                gemm_w(p, &pl, xi + p0, pl.P, yi + p0, pl.P, nc);
                continue;
            }
            float *col = scratch;
            const int64_t K = pl.K;
#pragma omp parallel for schedule(static) if (K * nc >= STEM_PAR_MIN_ELEMS)
            for (int64_t r = 0; r < K; r++) im2col_rows(p, xi, p0, nc, r, r + 1, col, nc);
            gemm_w(p, &pl, col, nc, yi + p0, pl.P, nc);
        }
    }
}
