/* The EM statistics of one token block (core/backend.h, stem_em_block_params), fused:
 * per head and per tile of rows,
 *   1. scores S[i, j] = <k_i, mu_hat_j> for all m bases;
 *   2. per row: the maximum, then the few j whose exponent (S - max)/tau exceeds -60
 *      (with tau = 0.01: scores within 0.6 of the row's best); the softmax and the M-step
 *      statistics only touch those entries, typically a few per row out of 256 bases.
 *      A dropped entry has z < e^-60 = 8.8e-27 (the row's sum is >= 1), so over even
 *      n = 491,520 tokens the dropped mass moves a basis mu_j = sum z k / (sum z + 1e-4)
 *      by less than n e^-60 |k| / 1e-4 ~ 1e-16 |k|: far below f32 rounding. (The dense
 *      f32 softmax itself flushes these to denormals and zero from e^-87 on.)
 *   3. zk[j] += z k_i, zsum[j] += z, zv[j] += z v_i for those entries.
 * S is a tile in scratch (L2-sized), so no tokens x bases matrix ever exists.
 *
 * Step 1 is the only O(rows m d) work: an AVX-512 kernel (8 rows x 32 bases of
 * accumulators, mu_hat transposed once per head, keys read in place, the row maximum
 * taken from the accumulators on the way out) at ~85 % of the FMA peak; OpenBLAS sgemm
 * plus a max pass on other CPUs. Steps 2-3 cost O(rows m) compares plus
 * O(rows x candidates x d). (Screening with bf16 scores, vdpbf16ps at twice the f32
 * rate, and rescoring the survivors in f32 was tried: converting the keys and rescoring
 * cost more than the cheaper GEMM saved, so it is not here.)
 *
 * Threads: work items are (head, row chunk). With at least twice as many heads as
 * threads each head is one item that accumulates straight into the outputs; otherwise
 * each head's rows are split into chunks with private accumulators in scratch, summed
 * per head at the end (in a fixed order, so results do not depend on scheduling). */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#ifdef STEM_HAVE_AVX512
#include <immintrin.h>
#endif

#include "core/cpu_info.h"
#include "kernels/cpu/em.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/simd.h"

#define EXP_CUTOFF 60.0f /* exponents below -EXP_CUTOFF are taken as z = 0 (see above) */

/* ---- plan and scratch ----------------------------------------------------------------- */

typedef struct em_plan {
    int threads;
    int64_t chunks_per_head, items, tile, cand_len;
    size_t thread_bytes, slot_floats, slots_bytes;
    int64_t mp;                                                  /* bases rounded up to 32 (the AVX-512 scores) */
    bool own_scores;                                             /* the AVX-512 score kernel instead of sgemm */
    size_t off_mu_hat, off_mu_t, off_rowmax, off_cand, off_e, off_idx; /* per-thread offsets */
} em_plan;

static em_plan make_plan(const stem_em_block_params *p) {
    em_plan pl;
    memset(&pl, 0, sizeof pl);
    pl.threads = omp_get_max_threads();
    if (pl.threads < 1) pl.threads = 1;
    pl.chunks_per_head = p->heads >= 2 * pl.threads ? 1 : stem_ceil_div(2 * pl.threads, p->heads);
    if (pl.chunks_per_head > 1 && p->rows < 4 * pl.chunks_per_head) pl.chunks_per_head = 1; /* too few rows to split */
    pl.items = p->heads * pl.chunks_per_head;
    /* rows per tile: the score tile (rows x m floats) stays around 256 KiB */
    pl.own_scores = stem_cpu_isa_level() >= 2;
#ifndef STEM_HAVE_AVX512
    pl.own_scores = false;
#endif
    pl.mp = pl.own_scores ? stem_ceil_div(p->m, 32) * 32 : p->m;
    pl.tile = stem_imax(16, stem_imin(1024, (int64_t)65536 / stem_imax(pl.mp, 1)));
    pl.cand_len = p->m + 16; /* vector stores may write up to 15 past the last candidate */
    size_t off = stem_round64((size_t)(pl.tile * pl.mp) * sizeof(float)); /* scores */
    pl.off_mu_hat = off;
    off += stem_round64((size_t)(p->m * p->d) * sizeof(float)); /* the current head's mu_hat */
    pl.off_mu_t = off;
    if (pl.own_scores) off += stem_round64((size_t)(p->d * pl.mp) * sizeof(float)); /* its transpose, padded */
    pl.off_rowmax = off;
    off += stem_round64((size_t)pl.tile * sizeof(float));
    pl.off_cand = off;
    off += stem_round64((size_t)pl.cand_len * sizeof(float));
    pl.off_e = off;
    off += stem_round64((size_t)pl.cand_len * sizeof(float));
    pl.off_idx = off;
    off += stem_round64((size_t)pl.cand_len * sizeof(int32_t));
    pl.thread_bytes = off;
    pl.slot_floats = (size_t)(p->m * p->d * (p->zv ? 2 : 1) + p->m);
    pl.slots_bytes = pl.chunks_per_head > 1 ? stem_round64((size_t)pl.items * pl.slot_floats * sizeof(float)) : 0;
    return pl;
}

size_t stem_cpu_em_block_scratch(const stem_em_block_params *p) {
    em_plan pl = make_plan(p);
    return (size_t)pl.threads * pl.thread_bytes + pl.slots_bytes;
}

/* ---- scores ---------------------------------------------------------------------------- */

#ifdef STEM_HAVE_AVX512
#define AVX512_TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))

/* S[r, j] = <k_r, mu_hat_j> for r < rows, j < mp, and rowmax[r] = max_{j < m} S[r, j].
 * mt: mu_hat transposed, [d, mp], zero beyond m; k rows at k + r*ldk. Eight rows by 32
 * bases per step: 16 accumulators, two loads of mt and eight broadcasts per channel, so
 * the FMA units stay busy and no operand is ever packed. The row maximum is taken from
 * the accumulators on the way out (the padding lanes masked off). */
#define EM_FMA_ROW(q)                                                       \
    do {                                                                    \
        __m512 a_ = _mm512_set1_ps(kr##q[c]);                               \
        acc##q##0 = _mm512_fmadd_ps(a_, _mm512_loadu_ps(b + c * mp), acc##q##0);      \
        acc##q##1 = _mm512_fmadd_ps(a_, _mm512_loadu_ps(b + c * mp + 16), acc##q##1); \
    } while (0)
#define EM_STORE_ROW(q)                                                     \
    do {                                                                    \
        _mm512_storeu_ps(S + (r + q) * mp + j, acc##q##0);                  \
        _mm512_storeu_ps(S + (r + q) * mp + j + 16, acc##q##1);             \
        mx##q = _mm512_mask_max_ps(mx##q, m0, mx##q, acc##q##0);            \
        mx##q = _mm512_mask_max_ps(mx##q, m1, mx##q, acc##q##1);            \
    } while (0)

AVX512_TARGET static void scores_avx512(const float *k, int64_t ldk, int64_t rows, int64_t d, const float *mt,
                                        int64_t m, int64_t mp, float *S, float *rowmax) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    int64_t r = 0;
    for (; r + 8 <= rows; r += 8) {
        const float *kr0 = k + r * ldk, *kr1 = kr0 + ldk, *kr2 = kr1 + ldk, *kr3 = kr2 + ldk, *kr4 = kr3 + ldk,
                    *kr5 = kr4 + ldk, *kr6 = kr5 + ldk, *kr7 = kr6 + ldk;
        __m512 mx0 = ninf, mx1 = ninf, mx2 = ninf, mx3 = ninf, mx4 = ninf, mx5 = ninf, mx6 = ninf, mx7 = ninf;
        for (int64_t j = 0; j < mp; j += 32) {
            __m512 acc00 = _mm512_setzero_ps(), acc01 = acc00, acc10 = acc00, acc11 = acc00, acc20 = acc00,
                   acc21 = acc00, acc30 = acc00, acc31 = acc00, acc40 = acc00, acc41 = acc00, acc50 = acc00,
                   acc51 = acc00, acc60 = acc00, acc61 = acc00, acc70 = acc00, acc71 = acc00;
            const float *b = mt + j;
            for (int64_t c = 0; c < d; c++) {
                EM_FMA_ROW(0); EM_FMA_ROW(1); EM_FMA_ROW(2); EM_FMA_ROW(3);
                EM_FMA_ROW(4); EM_FMA_ROW(5); EM_FMA_ROW(6); EM_FMA_ROW(7);
            }
            int64_t valid = m - j; /* lanes j .. j+31 that are real bases */
            __mmask16 m0 = valid >= 16 ? 0xffff : (__mmask16)((1u << (valid > 0 ? valid : 0)) - 1u);
            __mmask16 m1 = valid >= 32 ? 0xffff : valid <= 16 ? 0 : (__mmask16)((1u << (valid - 16)) - 1u);
            EM_STORE_ROW(0); EM_STORE_ROW(1); EM_STORE_ROW(2); EM_STORE_ROW(3);
            EM_STORE_ROW(4); EM_STORE_ROW(5); EM_STORE_ROW(6); EM_STORE_ROW(7);
        }
        rowmax[r + 0] = _mm512_reduce_max_ps(mx0);
        rowmax[r + 1] = _mm512_reduce_max_ps(mx1);
        rowmax[r + 2] = _mm512_reduce_max_ps(mx2);
        rowmax[r + 3] = _mm512_reduce_max_ps(mx3);
        rowmax[r + 4] = _mm512_reduce_max_ps(mx4);
        rowmax[r + 5] = _mm512_reduce_max_ps(mx5);
        rowmax[r + 6] = _mm512_reduce_max_ps(mx6);
        rowmax[r + 7] = _mm512_reduce_max_ps(mx7);
    }
    for (; r < rows; r++) { /* the last rows one at a time */
        const float *kr0 = k + r * ldk;
        __m512 mx0 = ninf;
        for (int64_t j = 0; j < mp; j += 32) {
            __m512 acc00 = _mm512_setzero_ps(), acc01 = acc00;
            const float *b = mt + j;
            for (int64_t c = 0; c < d; c++) EM_FMA_ROW(0);
            int64_t valid = m - j;
            __mmask16 m0 = valid >= 16 ? 0xffff : (__mmask16)((1u << (valid > 0 ? valid : 0)) - 1u);
            __mmask16 m1 = valid >= 32 ? 0xffff : valid <= 16 ? 0 : (__mmask16)((1u << (valid - 16)) - 1u);
            EM_STORE_ROW(0);
        }
        rowmax[r] = _mm512_reduce_max_ps(mx0);
    }
}
#undef EM_FMA_ROW
#undef EM_STORE_ROW
#endif

/* ---- candidate selection: indices j < m with s[j] > thr, their scores compacted ---- */

static int64_t select_portable(const float *restrict s, int64_t m, float thr, float *restrict cand,
                               int32_t *restrict idx) {
    int64_t cnt = 0;
    for (int64_t j = 0; j < m; j++) { /* branch-free: write always, advance when selected */
        idx[cnt] = (int32_t)j;
        cand[cnt] = s[j];
        cnt += s[j] > thr;
    }
    return cnt;
}

#ifdef STEM_HAVE_AVX512
/* 16 compares per instruction into a bitmap, then the set bits one by one: a row has
 * only a few candidates, and nothing here waits on the previous chunk's count. */
__attribute__((target("avx512f,bmi,bmi2,popcnt"))) static int64_t select_avx512(const float *restrict s, int64_t m,
                                                                                 float thr, float *restrict cand,
                                                                                 int32_t *restrict idx) {
    const __m512 vt = _mm512_set1_ps(thr);
    int64_t cnt = 0, j0 = 0;
    for (; j0 + 64 <= m; j0 += 64) {
        uint64_t w = (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(s + j0), vt, _CMP_GT_OQ) |
                     (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(s + j0 + 16), vt, _CMP_GT_OQ) << 16 |
                     (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(s + j0 + 32), vt, _CMP_GT_OQ) << 32 |
                     (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(s + j0 + 48), vt, _CMP_GT_OQ) << 48;
        while (w) {
            int64_t j = j0 + (int64_t)__builtin_ctzll(w);
            w &= w - 1;
            idx[cnt] = (int32_t)j;
            cand[cnt++] = s[j];
        }
    }
    for (int64_t j = j0; j < m; j++) {
        idx[cnt] = (int32_t)j;
        cand[cnt] = s[j];
        cnt += s[j] > thr;
    }
    return cnt;
}
#endif

static int64_t select_candidates(const float *s, int64_t m, float thr, float *cand, int32_t *idx, bool avx512) {
#ifdef STEM_HAVE_AVX512
    if (avx512) return select_avx512(s, m, thr, cand, idx);
#endif
    (void)avx512;
    return select_portable(s, m, thr, cand, idx);
}

/* ---- one tile of rows: softmax over the candidates and the M-step statistics ---- */

typedef struct em_tile {
    const float *s;      /* [rows, lds] scores */
    int64_t lds;
    const float *rowmax; /* [rows] max_j s, or NULL: take it here */
    const float *k, *v; /* row i at k + i*ldk (f32) */
    int64_t ldk, ldv, rows, m, d;
    float inv_tau;
    float *zk, *zsum, *zv; /* this item's accumulators for the head: [m, d], [m], [m, d] */
    float *cand, *e;
    int32_t *idx;
} em_tile;

static inline __attribute__((always_inline)) void accumulate(float *restrict a, const float *restrict x, float z,
                                                             int64_t d) {
#pragma omp simd
    for (int64_t c = 0; c < d; c++) a[c] += z * x[c];
}

/* The body of a tile, inlined into a baseline and an AVX-512 version below. */
static inline __attribute__((always_inline)) void tile_rows_body(const em_tile *t, const stem_simd *simd,
                                                                 bool avx512) {
    const float gap = EXP_CUTOFF / t->inv_tau;
    for (int64_t i = 0; i < t->rows; i++) {
        const float *s = t->s + i * t->lds;
        const float *kr = t->k + i * t->ldk;
        float smax = t->rowmax ? t->rowmax[i] : simd->max_scaled(s, t->m, 1.0f);
        int64_t cnt = select_candidates(s, t->m, smax - gap, t->cand, t->idx, avx512);
        if (cnt == 0) /* only when smax - gap rounds to smax (huge scores): keep the maxima */
            cnt = select_candidates(s, t->m, nextafterf(smax, -INFINITY), t->cand, t->idx, avx512);
        /* exponent (s - max) / tau: the difference first (exact near the max), so the
         * large s / tau ~ 10^3 is never rounded */
        for (int64_t q = 0; q < cnt; q++) t->cand[q] -= smax;
        float sum = simd->exp_sum(t->e, t->cand, cnt, t->inv_tau, 0.0f);
        float inv = 1.0f / sum;
        const float *vr = t->zv ? t->v + i * t->ldv : NULL;
        for (int64_t q = 0; q < cnt; q++) {
            float z = t->e[q] * inv;
            int64_t j = t->idx[q];
            t->zsum[j] += z;
            accumulate(t->zk + j * t->d, kr, z, t->d);
            if (vr) accumulate(t->zv + j * t->d, vr, z, t->d);
        }
    }
}

static void tile_rows_portable(const em_tile *t, const stem_simd *simd) { tile_rows_body(t, simd, false); }

#ifdef STEM_HAVE_AVX512
__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"))) static void
tile_rows_avx512(const em_tile *t, const stem_simd *simd) {
    tile_rows_body(t, simd, true);
}
#endif

static void tile_rows_run(const em_tile *t, const stem_simd *simd, bool avx512) {
#ifdef STEM_HAVE_AVX512
    if (avx512) {
        tile_rows_avx512(t, simd);
        return;
    }
#endif
    (void)avx512;
    tile_rows_portable(t, simd);
}

/* ---- the kernel --------------------------------------------------------------------------- */

void stem_cpu_em_block_f32(const stem_em_block_params *p, void *scratch) {
    const int64_t H = p->heads, m = p->m, d = p->d, rows = p->rows;
    em_plan pl = make_plan(p);
    char *thread_base = scratch;
    float *slots = (float *)(thread_base + (size_t)pl.threads * pl.thread_bytes);
    const stem_simd *simd = stem_simd_get();
    bool avx512 = stem_cpu_isa_level() >= 2;
    const float inv_tau = 1.0f / p->tau;
    const int64_t md = m * d;
    const bool direct = pl.chunks_per_head == 1;

    /* One parallel loop over the work items and no other barrier (with a busy machine
     * every barrier can cost a scheduler time slice): each item normalises its head's
     * bases and zeroes its own accumulators itself. */
#pragma omp parallel num_threads(pl.threads)
    {
        char *mine = thread_base + (size_t)omp_get_thread_num() * pl.thread_bytes;
        float *S = (float *)mine;
        float *mu_hat = (float *)(mine + pl.off_mu_hat);
        float *mu_t = (float *)(mine + pl.off_mu_t);
        float *rowmax = (float *)(mine + pl.off_rowmax);
        float *cand = (float *)(mine + pl.off_cand);
        float *e = (float *)(mine + pl.off_e);
        int32_t *idx = (int32_t *)(mine + pl.off_idx);
        const int64_t chunk = stem_ceil_div(rows, pl.chunks_per_head);
        int64_t have_head = -1; /* the head whose mu_hat this thread holds */

#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < pl.items; it++) {
            int64_t h = it / pl.chunks_per_head, c = it % pl.chunks_per_head;
            int64_t r0 = c * chunk, r1 = stem_imin(rows, r0 + chunk);
            if (h != have_head) { /* mu_hat = mu / (||mu|| + eps), row by row (norms in double) */
                for (int64_t j = 0; j < m; j++) {
                    const float *x = p->mu + (h * m + j) * d;
                    double ss = 0.0;
                    for (int64_t q = 0; q < d; q++) ss += (double)x[q] * x[q];
                    float scale = (float)(1.0 / (sqrt(ss) + (double)p->norm_eps));
                    for (int64_t q = 0; q < d; q++) mu_hat[j * d + q] = x[q] * scale;
                }
                if (pl.own_scores) /* transposed [d, mp], zero in the padding */
                    for (int64_t q = 0; q < d; q++)
                        for (int64_t j = 0; j < pl.mp; j++) mu_t[q * pl.mp + j] = j < m ? mu_hat[j * d + q] : 0.0f;
                have_head = h;
            }
            float *zk, *zs, *zv;
            if (direct) {
                zk = p->zk + h * md;
                zs = p->zsum + h * m;
                zv = p->zv ? p->zv + h * md : NULL;
                if (p->overwrite) {
                    memset(zk, 0, (size_t)md * sizeof(float));
                    memset(zs, 0, (size_t)m * sizeof(float));
                    if (zv) memset(zv, 0, (size_t)md * sizeof(float));
                }
            } else {
                float *slot = slots + it * pl.slot_floats;
                memset(slot, 0, pl.slot_floats * sizeof(float));
                zk = slot;
                zs = slot + md;
                zv = p->zv ? slot + md + m : NULL;
            }
            const float *kh = (const float *)p->k.ptr + h * p->k.head_stride;
            const float *vh = p->zv ? (const float *)p->v.ptr + h * p->v.head_stride : NULL;
            for (int64_t i0 = r0; i0 < r1; i0 += pl.tile) {
                int64_t n = stem_imin(pl.tile, r1 - i0);
                const float *kt = kh + i0 * p->k.row_stride;
#ifdef STEM_HAVE_AVX512
                if (pl.own_scores)
                    scores_avx512(kt, p->k.row_stride, n, d, mu_t, m, pl.mp, S, rowmax);
                else
#endif
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, (blasint)m, (blasint)d, 1.0f,
                                kt, (blasint)p->k.row_stride, mu_hat, (blasint)d, 0.0f, S, (blasint)m);
                em_tile t = {.s = S, .lds = pl.mp, .rowmax = pl.own_scores ? rowmax : NULL, .k = kt, .v = vh ? vh + i0 * p->v.row_stride : NULL, .ldk = p->k.row_stride,
                             .ldv = p->v.row_stride, .rows = n, .m = m, .d = d, .inv_tau = inv_tau, .zk = zk,
                             .zsum = zs, .zv = zv, .cand = cand, .e = e, .idx = idx};
                tile_rows_run(&t, simd, avx512);
            }
        }

        if (!direct) { /* sum each head's chunks, in chunk order, into the outputs */
            const int64_t per_head = (int64_t)pl.slot_floats;
#pragma omp for schedule(static)
            for (int64_t x = 0; x < H * per_head; x++) {
                int64_t h = x / per_head, off = x % per_head;
                float acc = 0.0f;
                for (int64_t c = 0; c < pl.chunks_per_head; c++) acc += slots[(h * pl.chunks_per_head + c) * pl.slot_floats + off];
                float *dst = off < md ? p->zk + h * md + off
                             : off < md + m ? p->zsum + h * m + (off - md)
                                            : p->zv + h * md + (off - md - m);
                *dst = p->overwrite ? acc : *dst + acc;
            }
        }
    }
}
