/* Streaming ("flash") attention: out = softmax(scale * q k^T) v without forming the
 * nq x nk matrix. Work items are (outer, head, block of BQ queries), spread over
 * threads. For each block of BK keys a thread computes the scores S of its queries
 * against those keys and folds them into running per-query statistics (online
 * softmax):
 *   m' = max(m, max_j S),  P = exp(S - m'),  l' = l e^(m - m') + sum_j P,
 *   O' = O e^(m - m') + P V_blk
 * and finally writes out = O / l. Operands are read in place through their
 * (outer, head, row) strides, so multi-head attention on token-major [n, heads*d]
 * tensors needs no permute copies.
 *
 * Two implementations of the block step:
 * - reference (portable table): S = scale Q K^T and O += P V are sgemm calls on the
 *   strided blocks, the softmax runs along rows of S;
 * - fused (AVX2/AVX-512 tables): queries live on the vector lanes. The query block is
 *   packed once, transposed and pre-scaled (Qt[d][BQ]); the micro-kernels of simd.h
 *   produce S^T[key][query] with its per-query maxima, exponentiate it in place, and
 *   accumulate O^T[channel][query] += V^T P^T, so the running statistics are plain
 *   vectors and no horizontal reductions or packing of K and V are needed. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/simd.h"

#define BQ 128 /* queries per work item (a multiple of every attn_cols) */
#define BK 256 /* keys per block */

/* Per-thread scratch: 4 vectors of BQ (m, l, and two temporaries) and three
 * matrices: S (BK x BQ), O (BQ x dv or dv x BQ) and, for the fused path, Qt (d x BQ). */
static size_t per_thread_bytes(const stem_attention_params *p) {
    size_t vec = stem_round64(BQ * sizeof(float));
    return 4 * vec + stem_round64((size_t)BK * BQ * sizeof(float)) +
           stem_round64((size_t)BQ * (size_t)p->dv * sizeof(float)) +
           stem_round64((size_t)BQ * (size_t)p->d * sizeof(float));
}

size_t stem_cpu_attention_scratch(const stem_attention_params *p) {
    return per_thread_bytes(p) * (size_t)omp_get_max_threads();
}

typedef struct attn_work {
    float *m, *l, *t1, *t2; /* [BQ] */
    float *s;               /* [BK * BQ] */
    float *o;               /* [BQ * dv] */
    float *qt;              /* [d * BQ] */
} attn_work;

static attn_work work_for(const stem_attention_params *p, void *scratch, int thread) {
    char *b = (char *)scratch + per_thread_bytes(p) * (size_t)thread;
    size_t vec = stem_round64(BQ * sizeof(float));
    attn_work w;
    w.m = (float *)b;
    w.l = (float *)(b + vec);
    w.t1 = (float *)(b + 2 * vec);
    w.t2 = (float *)(b + 3 * vec);
    b += 4 * vec;
    w.s = (float *)b;
    b += stem_round64((size_t)BK * BQ * sizeof(float));
    w.o = (float *)b;
    b += stem_round64((size_t)BQ * (size_t)p->dv * sizeof(float));
    w.qt = (float *)b;
    return w;
}

/* Reference block step on sgemm; S is [nqb][BK], O is [nqb][dv]. */
static void attend_blas(const stem_simd *simd, const stem_attention_params *p, const float *q, const float *k,
                        const float *v, float *out, int64_t nqb, attn_work *w) {
    const int64_t nk = p->nk, d = p->d, dv = p->dv;
    const int64_t qrs = p->q.row_stride, krs = p->k.row_stride, vrs = p->v.row_stride;
    float *S = w->s, *O = w->o, *m = w->m, *l = w->l;
    for (int64_t k0 = 0; k0 < nk; k0 += BK) {
        const int64_t nkb = stem_imin(BK, nk - k0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)nqb, (blasint)nkb, (blasint)d, p->scale, q,
                    (blasint)stem_imax(qrs, 1), k + k0 * krs, (blasint)stem_imax(krs, 1), 0.0f, S, BK);
        for (int64_t i = 0; i < nqb; i++) {
            float *Si = S + i * BK;
            float mx = simd->max_scaled(Si, nkb, 1.0f);
            if (k0 == 0) {
                m[i] = mx;
                l[i] = simd->exp_sum(Si, Si, nkb, 1.0f, mx);
            } else {
                float m_new = mx > m[i] ? mx : m[i];
                float corr = expf(m[i] - m_new);
                l[i] = l[i] * corr + simd->exp_sum(Si, Si, nkb, 1.0f, m_new);
                if (corr != 1.0f) simd->scale(O + i * dv, O + i * dv, dv, corr);
                m[i] = m_new;
            }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)nqb, (blasint)dv, (blasint)nkb, 1.0f, S, BK,
                    v + k0 * vrs, (blasint)stem_imax(vrs, 1), k0 == 0 ? 0.0f : 1.0f, O, (blasint)dv);
    }
    for (int64_t i = 0; i < nqb; i++) simd->scale(out + i * p->out_row_stride, O + i * dv, dv, 1.0f / l[i]);
}

/* Fused block step; S^T is [BK][BQ], O^T is [dv][BQ], both with row stride BQ, and
 * only the first nqp = nqb rounded up to attn_cols query columns are computed. */
static void attend_fused(const stem_simd *simd, const stem_attention_params *p, const float *q, const float *k,
                         const float *v, float *out, int64_t nqb, attn_work *w) {
    const int64_t nk = p->nk, d = p->d, dv = p->dv, qrs = p->q.row_stride;
    const int64_t nqp = stem_ceil_div(nqb, simd->attn_cols) * simd->attn_cols;
    float *S = w->s, *O = w->o, *m = w->m, *l = w->l, *bmax = w->t1, *bsum = w->t2;
    /* Qt[c][i] = scale * q[i][c]; padding columns are zero (finite scores, never written) */
    simd->transpose(w->qt, BQ, q, qrs, nqb, d);
    for (int64_t c = 0; c < d; c++) {
        float *row = w->qt + c * BQ;
        simd->scale(row, row, nqb, p->scale);
        memset(row + nqb, 0, (size_t)(nqp - nqb) * sizeof(float));
    }
    for (int64_t k0 = 0; k0 < nk; k0 += BK) {
        const int64_t nkb = stem_imin(BK, nk - k0);
        simd->attn_qk(S, bmax, w->qt, BQ, k + k0 * p->k.row_stride, p->k.row_stride, nkb, d, nqp);
        if (k0 == 0) {
            memcpy(m, bmax, (size_t)nqp * sizeof(float));
            simd->attn_exp(S, BQ, nkb, m, l, nqp);
            for (int64_t c = 0; c < dv; c++) memset(O + c * BQ, 0, (size_t)nqp * sizeof(float));
        } else {
            float *corr = bmax; /* reused: bmax[i] becomes e^(m - m') */
            bool rescale = false;
            for (int64_t i = 0; i < nqp; i++) {
                float m_new = bmax[i] > m[i] ? bmax[i] : m[i];
                corr[i] = expf(m[i] - m_new);
                rescale |= corr[i] != 1.0f;
                m[i] = m_new;
            }
            simd->attn_exp(S, BQ, nkb, m, bsum, nqp);
            for (int64_t i = 0; i < nqp; i++) l[i] = l[i] * corr[i] + bsum[i];
            if (rescale)
                for (int64_t c = 0; c < dv; c++)
                    simd->binary(STEM_BINARY_MUL, O + c * BQ, O + c * BQ, 1, corr, 1, nqp);
        }
        simd->attn_pv(O, S, BQ, v + k0 * p->v.row_stride, p->v.row_stride, nkb, dv, nqp);
    }
    /* out[i][c] = O^T[c][i] / l[i] */
    for (int64_t i = 0; i < nqp; i++) bsum[i] = 1.0f / l[i];
    for (int64_t c = 0; c < dv; c++) simd->binary(STEM_BINARY_MUL, O + c * BQ, O + c * BQ, 1, bsum, 1, nqp);
    simd->transpose(out, p->out_row_stride, O, BQ, dv, nqb);
}

void stem_cpu_attention_f32(const stem_attention_params *p, void *scratch) {
    const stem_simd *simd = stem_simd_get();
    const int64_t heads = p->heads, qblocks = stem_ceil_div(p->nq, BQ);
    const int64_t items = p->outer * heads * qblocks;
    if (items == 0 || p->dv == 0) return;
    const bool fused = simd->attn_qk != NULL;
#pragma omp parallel for schedule(dynamic, 1) if (items > 1)
    for (int64_t it = 0; it < items; it++) {
        const int64_t o = it / (heads * qblocks), h = (it / qblocks) % heads, q0 = (it % qblocks) * BQ;
        const int64_t nqb = stem_imin(BQ, p->nq - q0);
        const float *q = (const float *)p->q.ptr + o * p->q.outer_stride + h * p->q.head_stride + q0 * p->q.row_stride;
        const float *k = (const float *)p->k.ptr + o * p->k.outer_stride + h * p->k.head_stride;
        const float *v = (const float *)p->v.ptr + o * p->v.outer_stride + h * p->v.head_stride;
        float *out = (float *)p->out + o * p->out_outer_stride + h * p->out_head_stride + q0 * p->out_row_stride;
        if (p->nk == 0) { /* softmax over nothing, times nothing: zeros, as torch's matmul gives */
            for (int64_t i = 0; i < nqb; i++) memset(out + i * p->out_row_stride, 0, (size_t)p->dv * sizeof(float));
            continue;
        }
        attn_work w = work_for(p, scratch, omp_get_thread_num());
        if (fused) attend_fused(simd, p, q, k, v, out, nqb, &w);
        else attend_blas(simd, p, q, k, v, out, nqb, &w);
    }
}
