/* Fused attention, flash style: out = softmax(scale * q k^T) v for every (outer, head),
 * streaming over key tiles with an online softmax in f32, never holding nq x nk.
 * Two kernels: f32 runs flash_attention_kernel (CUDA cores, f32 products: parity with
 * the CPU); f16 runs flash_attention_wmma_kernel (tensor cores through WMMA, f16
 * products with f32 accumulation, softmax statistics in f32), described further down.
 *
 * Kernel shape (flash_attention_kernel<T, CPL>, f32 and, as a fallback, f16):
 *   block  = 256 threads = 8 warps; a block owns kBQ = 64 consecutive queries of one
 *            (outer, head); each warp owns kQPW = 8 of those queries.
 *   grid.x = q_tiles * outer * heads (query tile fastest).
 *   Per key tile of kBK = 64 keys, all staged in shared memory as f32:
 *     sQ [64][dq]   queries of the block (loaded once), dq = d rounded up to 4
 *     sK [64][dkp]  keys, dkp = dq + 1 (odd pitch: lane j reading row j is conflict free)
 *     sV [64][vp]   values, vp = 32*CPL (dv rounded up to 32, zero padded)
 *     sP [64][64]   the tile's probabilities, one 8x64 slice per warp
 *   1. scores: lane l computes s[q][l] and s[q][l+32] for the warp's 8 queries
 *      (float4 broadcast reads of sQ, scalar reads of sK);
 *   2. online softmax per query row: tile max and sum by warp shuffles,
 *      m_new = max(m, tile max), acc and l rescaled by exp(m - m_new);
 *   3. acc[q][c] += sum_j p[q][j] v[j][c]: lane l owns output columns l + 32*i, i < CPL.
 *   Padding (queries >= nq, keys >= nk, columns >= d or dv) is zero in shared memory and
 *   keys >= nk get score -inf, so they contribute exp(-inf) = 0.
 * Shared memory: 4*(64*dq + 64*dkp + 64*vp + 64*64) bytes: 53 KiB for d = dv = 40,
 * 66 KiB for 64, 136 KiB for 160 (fits sm_80's 163 KiB and sm_90's 227 KiB). */
#include <mma.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/common.cuh"

using namespace stem_cuda;

namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * kWarp;
constexpr int kQPW = 8;              /* queries per warp */
constexpr int kBQ = kWarps * kQPW;   /* queries per block */
constexpr int kBK = 64;              /* keys per tile: two per lane */

struct AttnArgs {
    int64_t heads, nq, nk, q_tiles;
    int d, dv, dq, dkp;
    float scale;
    const void *q, *k, *v;
    void *out;
    int64_t q_os, q_hs, q_rs;
    int64_t k_os, k_hs, k_rs;
    int64_t v_os, v_hs, v_rs;
    int64_t o_os, o_hs, o_rs;
};

inline size_t attn_smem_bytes(int dq, int dkp, int vp) {
    return sizeof(float) * ((size_t)kBQ * dq + (size_t)kBK * dkp + (size_t)kBK * vp + (size_t)kBQ * kBK);
}

template <typename T, int CPL>
__global__ void __launch_bounds__(kThreads) flash_attention_kernel(AttnArgs a) {
    extern __shared__ __align__(16) float smem[];
    constexpr int vp = kWarp * CPL;
    float *sQ = smem;                /* kBQ x dq  (dq % 4 == 0: float4 rows stay aligned) */
    float *sK = sQ + kBQ * a.dq;     /* kBK x dkp (offset a multiple of 4 floats) */
    float *sV = sK + kBK * a.dkp;    /* kBK x vp  (kBK*dkp is a multiple of 4) */
    float *sP = sV + kBK * vp;       /* kBQ x kBK */

    const int tid = threadIdx.x, warp = tid / kWarp, lane = tid % kWarp;
    const int64_t qt = blockIdx.x % a.q_tiles;
    const int64_t bh = blockIdx.x / a.q_tiles;
    const int64_t o = bh / a.heads, h = bh % a.heads;
    const int64_t q0 = qt * kBQ;
    const T *qg = (const T *)a.q + o * a.q_os + h * a.q_hs;
    const T *kg = (const T *)a.k + o * a.k_os + h * a.k_hs;
    const T *vg = (const T *)a.v + o * a.v_os + h * a.v_hs;
    T *og = (T *)a.out + o * a.o_os + h * a.o_hs;

    /* the block's queries, zero padded (made visible by the first __syncthreads below) */
    for (int i = tid; i < kBQ * a.dq; i += kThreads) {
        int r = i / a.dq, c = i - r * a.dq;
        int64_t qi = q0 + r;
        sQ[i] = (qi < a.nq && c < a.d) ? to_f32(qg[qi * a.q_rs + c]) : 0.f;
    }

    float m[kQPW], l[kQPW], acc[kQPW][CPL];
#pragma unroll
    for (int q = 0; q < kQPW; q++) {
        m[q] = -INFINITY;
        l[q] = 0.f;
#pragma unroll
        for (int j = 0; j < CPL; j++) acc[q][j] = 0.f;
    }
    const float *sQw = sQ + warp * kQPW * a.dq;
    float *sPw = sP + warp * kQPW * kBK;
    const float *krow0 = sK + lane * a.dkp, *krow1 = sK + (lane + kWarp) * a.dkp;

    for (int64_t k0 = 0; k0 < a.nk; k0 += kBK) {
        __syncthreads(); /* sQ written (first tile); every warp done with the previous sK/sV/sP */
        for (int i = tid; i < kBK * a.dq; i += kThreads) {
            int j = i / a.dq, c = i - j * a.dq;
            int64_t kj = k0 + j;
            sK[j * a.dkp + c] = (kj < a.nk && c < a.d) ? to_f32(kg[kj * a.k_rs + c]) : 0.f;
        }
        for (int i = tid; i < kBK * vp; i += kThreads) {
            int j = i / vp, c = i - j * vp;
            int64_t kj = k0 + j;
            sV[i] = (kj < a.nk && c < a.dv) ? to_f32(vg[kj * a.v_rs + c]) : 0.f;
        }
        __syncthreads();

        /* 1. raw scores of keys k0+lane and k0+lane+32 for the warp's queries */
        float s0[kQPW], s1[kQPW];
#pragma unroll
        for (int q = 0; q < kQPW; q++) s0[q] = s1[q] = 0.f;
        for (int c = 0; c < a.dq; c += 4) {
            float x0 = krow0[c], x1 = krow0[c + 1], x2 = krow0[c + 2], x3 = krow0[c + 3];
            float y0 = krow1[c], y1 = krow1[c + 1], y2 = krow1[c + 2], y3 = krow1[c + 3];
#pragma unroll
            for (int q = 0; q < kQPW; q++) {
                float4 qv = *reinterpret_cast<const float4 *>(sQw + q * a.dq + c);
                s0[q] += qv.x * x0 + qv.y * x1 + qv.z * x2 + qv.w * x3;
                s1[q] += qv.x * y0 + qv.y * y1 + qv.z * y2 + qv.w * y3;
            }
        }

        /* 2. online softmax update; probabilities to this warp's slice of sP */
        const bool valid0 = k0 + lane < a.nk, valid1 = k0 + lane + kWarp < a.nk;
#pragma unroll
        for (int q = 0; q < kQPW; q++) {
            float x0 = valid0 ? s0[q] * a.scale : -INFINITY;
            float x1 = valid1 ? s1[q] * a.scale : -INFINITY;
            float mn = fmaxf(m[q], warp_max(fmaxf(x0, x1))); /* finite: key k0 is valid */
            float alpha = expf(m[q] - mn);                      /* 0 on the first tile */
            float p0 = expf(x0 - mn), p1 = expf(x1 - mn);
            l[q] = l[q] * alpha + warp_sum(p0 + p1);
            m[q] = mn;
#pragma unroll
            for (int j = 0; j < CPL; j++) acc[q][j] *= alpha;
            sPw[q * kBK + lane] = p0;
            sPw[q * kBK + lane + kWarp] = p1;
        }
        __syncwarp();

        /* 3. acc += P V over the tile, four keys at a time */
#pragma unroll 2
        for (int kk = 0; kk < kBK; kk += 4) {
            float vv[4][CPL];
#pragma unroll
            for (int t = 0; t < 4; t++)
#pragma unroll
                for (int j = 0; j < CPL; j++) vv[t][j] = sV[(kk + t) * vp + lane + kWarp * j];
#pragma unroll
            for (int q = 0; q < kQPW; q++) {
                float4 pv = *reinterpret_cast<const float4 *>(sPw + q * kBK + kk);
#pragma unroll
                for (int j = 0; j < CPL; j++)
                    acc[q][j] += pv.x * vv[0][j] + pv.y * vv[1][j] + pv.z * vv[2][j] + pv.w * vv[3][j];
            }
        }
    }

    /* normalise and store the warp's rows (nk == 0 gives zeros, not 0/0) */
#pragma unroll
    for (int q = 0; q < kQPW; q++) {
        int64_t qi = q0 + warp * kQPW + q;
        if (qi >= a.nq) continue;
        float inv = l[q] > 0.f ? 1.f / l[q] : 0.f;
        T *orow = og + qi * a.o_rs;
#pragma unroll
        for (int j = 0; j < CPL; j++) {
            int c = lane + kWarp * j;
            if (c < a.dv) orow[c] = from_f32<T>(acc[q][j] * inv);
        }
    }
}

template <typename T, int CPL>
cudaError_t launch_attention(const AttnArgs &a, int64_t blocks, cudaStream_t st) {
    size_t smem = attn_smem_bytes(a.dq, a.dkp, kWarp * CPL);
    /* Above 48 KiB a kernel must opt in (per device, hence on every launch: cheap). */
    if (smem > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(flash_attention_kernel<T, CPL>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
    }
    flash_attention_kernel<T, CPL><<<(unsigned)blocks, kThreads, smem, st>>>(a);
    return cudaGetLastError();
}

template <typename T>
cudaError_t dispatch_cpl(const AttnArgs &a, int64_t blocks, cudaStream_t st) {
    switch ((a.dv + kWarp - 1) / kWarp) {
    case 1: return launch_attention<T, 1>(a, blocks, st);
    case 2: return launch_attention<T, 2>(a, blocks, st);
    case 3: return launch_attention<T, 3>(a, blocks, st);
    case 4: return launch_attention<T, 4>(a, blocks, st);
    case 5: return launch_attention<T, 5>(a, blocks, st);
    default: return cudaErrorInvalidValue;
    }
}


/* ---- f16 on tensor cores ------------------------------------------------------------------
 * flash_attention_wmma_kernel: block = 4 warps (128 threads) owning kWBQ = 64 queries of
 * one (outer, head), 16 per warp; grid.x = q_tiles * outer * heads as above. Per key
 * tile of kBK = 64 keys, in shared memory (f16 unless noted; pitches padded by 8
 * halves / 4 floats, every 16x16 fragment pointer 32-byte aligned):
 *   sQ [64][dp+8]   the block's queries (dp = d rounded up to 16, zero padded)
 *   sK [64][dp+8]   keys, sV [64][dvp+8] values (dvp = dv rounded up to 16)
 *   sP [64][72]     this tile's probabilities, f16, a 16-row slice per warp
 *   sS [64][max(64,dvp)+4] f32 scratch per warp: first the scores, then P V
 *   sO [64][dvp+4]  f32 output accumulator per warp
 *   1. each warp: S (16 x 64) = Q_w K^T with 16x16x16 WMMA (f32 accumulate) -> sS;
 *   2. online softmax, lane l owning row l/2 and the columns c = l%2 + 2t: tile max
 *      (partner lane by shuffle), m_new, alpha = exp(m - m_new), p = exp(s - m_new)
 *      rounded to f16 into sP, l = l*alpha + sum of the rounded p (so the weights
 *      that are normalised are exactly the ones applied);
 *   3. PV (16 x dvp) = P V with WMMA -> sS; then sO = sO * alpha + PV per row.
 * Keys >= nk get p = 0 (and zero rows in sK/sV); rows >= nq are computed, not stored.
 * Shared memory for d = dv = 40: 61 KiB; 64: 81 KiB; 160: 154 KiB (< sm_80's 163). */
constexpr int kWWarps = 4;
constexpr int kWThreads = kWWarps * kWarp;
constexpr int kWBQ = kWWarps * 16;
static_assert(kWBQ == kBQ, "both attention kernels tile queries alike");

struct WmmaLayout {
    int dp, dvp, ldq, ldv, ldp, lds, ldo;
    size_t off_q, off_k, off_v, off_p, off_s, off_o, bytes;
};

inline WmmaLayout wmma_layout(int d, int dv) {
    WmmaLayout L;
    L.dp = (d + 15) / 16 * 16;
    L.dvp = (dv + 15) / 16 * 16;
    L.ldq = L.dp + 8;
    L.ldv = L.dvp + 8;
    L.ldp = kBK + 8;
    L.lds = (L.dvp > kBK ? L.dvp : kBK) + 4;
    L.ldo = L.dvp + 4;
    size_t off = 0;
    auto take = [&off](size_t bytes) {
        size_t at = off;
        off = (off + bytes + 127) / 128 * 128;
        return at;
    };
    L.off_q = take(sizeof(__half) * kWBQ * L.ldq);
    L.off_k = take(sizeof(__half) * kBK * L.ldq);
    L.off_v = take(sizeof(__half) * kBK * L.ldv);
    L.off_p = take(sizeof(__half) * kWBQ * L.ldp);
    L.off_s = take(sizeof(float) * kWBQ * L.lds);
    L.off_o = take(sizeof(float) * kWBQ * L.ldo);
    L.bytes = off;
    return L;
}

__global__ void __launch_bounds__(kWThreads) flash_attention_wmma_kernel(AttnArgs a, WmmaLayout L) {
    using namespace nvcuda;
    extern __shared__ __align__(128) float smem_w[];
    unsigned char *raw = reinterpret_cast<unsigned char *>(smem_w);
    __half *sQ = reinterpret_cast<__half *>(raw + L.off_q);
    __half *sK = reinterpret_cast<__half *>(raw + L.off_k);
    __half *sV = reinterpret_cast<__half *>(raw + L.off_v);
    __half *sP = reinterpret_cast<__half *>(raw + L.off_p);
    float *sS = reinterpret_cast<float *>(raw + L.off_s);
    float *sO = reinterpret_cast<float *>(raw + L.off_o);

    const int tid = threadIdx.x, warp = tid / kWarp, lane = tid % kWarp;
    const int64_t qt = blockIdx.x % a.q_tiles;
    const int64_t bh = blockIdx.x / a.q_tiles;
    const int64_t o = bh / a.heads, h = bh % a.heads;
    const int64_t q0 = qt * kWBQ;
    const __half *qg = (const __half *)a.q + o * a.q_os + h * a.q_hs;
    const __half *kg = (const __half *)a.k + o * a.k_os + h * a.k_hs;
    const __half *vg = (const __half *)a.v + o * a.v_os + h * a.v_hs;
    __half *og = (__half *)a.out + o * a.o_os + h * a.o_hs;
    const __half zero = __float2half(0.f);

    for (int i = tid; i < kWBQ * L.dp; i += kWThreads) {
        int r = i / L.dp, c = i - r * L.dp;
        int64_t qi = q0 + r;
        sQ[r * L.ldq + c] = (qi < a.nq && c < a.d) ? qg[qi * a.q_rs + c] : zero;
    }
    for (int i = tid; i < kWBQ * L.ldo; i += kWThreads) sO[i] = 0.f;

    const __half *sQw = sQ + warp * 16 * L.ldq;
    __half *sPw = sP + warp * 16 * L.ldp;
    float *sSw = sS + warp * 16 * L.lds;
    float *sOw = sO + warp * 16 * L.ldo;
    const int row = lane >> 1, half = lane & 1; /* this lane's row of the warp's 16 */
    float m = -INFINITY, l = 0.f;

    for (int64_t k0 = 0; k0 < a.nk; k0 += kBK) {
        __syncthreads(); /* sQ/sO written (first tile); everyone done with the last sK/sV */
        for (int i = tid; i < kBK * L.dp; i += kWThreads) {
            int j = i / L.dp, c = i - j * L.dp;
            int64_t kj = k0 + j;
            sK[j * L.ldq + c] = (kj < a.nk && c < a.d) ? kg[kj * a.k_rs + c] : zero;
        }
        for (int i = tid; i < kBK * L.dvp; i += kWThreads) {
            int j = i / L.dvp, c = i - j * L.dvp;
            int64_t kj = k0 + j;
            sV[j * L.ldv + c] = (kj < a.nk && c < a.dv) ? vg[kj * a.v_rs + c] : zero;
        }
        __syncthreads();

        /* 1. S = Q_w K^T: K row-major [key][c] is K^T column-major with the same pitch */
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kBK / 16];
#pragma unroll
        for (int jb = 0; jb < kBK / 16; jb++) wmma::fill_fragment(acc[jb], 0.f);
        for (int kb = 0; kb < L.dp; kb += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
            wmma::load_matrix_sync(fa, sQw + kb, L.ldq);
#pragma unroll
            for (int jb = 0; jb < kBK / 16; jb++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> fb;
                wmma::load_matrix_sync(fb, sK + jb * 16 * L.ldq + kb, L.ldq);
                wmma::mma_sync(acc[jb], fa, fb, acc[jb]);
            }
        }
#pragma unroll
        for (int jb = 0; jb < kBK / 16; jb++)
            wmma::store_matrix_sync(sSw + jb * 16, acc[jb], L.lds, wmma::mem_row_major);
        __syncwarp();

        /* 2. online softmax of row `row` over columns half, half+2, ... */
        const float *srow = sSw + row * L.lds;
        float tmax = -INFINITY;
        for (int c = half; c < kBK; c += 2)
            if (k0 + c < a.nk) tmax = fmaxf(tmax, srow[c] * a.scale);
        tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1));
        float mn = fmaxf(m, tmax); /* finite: key k0 is valid */
        float alpha = expf(m - mn);
        float psum = 0.f;
        for (int c = half; c < kBK; c += 2) {
            __half ph = k0 + c < a.nk ? __float2half_rn(expf(srow[c] * a.scale - mn)) : zero;
            sPw[row * L.ldp + c] = ph;
            psum += __half2float(ph);
        }
        psum += __shfl_xor_sync(0xffffffffu, psum, 1);
        l = l * alpha + psum;
        m = mn;
        __syncwarp(); /* sP complete; sS (scores) no longer needed */

        /* 3. PV = P V -> sS, then sO = sO * alpha + PV */
        for (int cb = 0; cb < L.dvp; cb += 16) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> pv;
            wmma::fill_fragment(pv, 0.f);
#pragma unroll
            for (int kb = 0; kb < kBK; kb += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fp;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> fv;
                wmma::load_matrix_sync(fp, sPw + kb, L.ldp);
                wmma::load_matrix_sync(fv, sV + kb * L.ldv + cb, L.ldv);
                wmma::mma_sync(pv, fp, fv, pv);
            }
            wmma::store_matrix_sync(sSw + cb, pv, L.lds, wmma::mem_row_major);
        }
        __syncwarp();
        for (int c = half; c < L.dvp; c += 2) sOw[row * L.ldo + c] = sOw[row * L.ldo + c] * alpha + sSw[row * L.lds + c];
        __syncwarp();
    }

    int64_t qi = q0 + warp * 16 + row;
    if (qi < a.nq) {
        float inv = l > 0.f ? 1.f / l : 0.f;
        __half *orow = og + qi * a.o_rs;
        for (int c = half; c < a.dv; c += 2) orow[c] = __float2half_rn(sOw[row * L.ldo + c] * inv);
    }
}

/* STEM_CUDA_ATTENTION=simt selects the CUDA-core kernel for f16 too (for comparisons). */
bool wmma_attention_enabled() {
    static int enabled = -1;
    if (enabled < 0) {
        const char *e = getenv("STEM_CUDA_ATTENTION");
        enabled = !(e && strcmp(e, "simt") == 0);
    }
    return enabled != 0;
}

cudaError_t launch_attention_wmma(const AttnArgs &a, int64_t blocks, cudaStream_t st) {
    WmmaLayout L = wmma_layout(a.d, a.dv);
    if (L.bytes > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(flash_attention_wmma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)L.bytes);
        if (e != cudaSuccess) return e;
    }
    flash_attention_wmma_kernel<<<(unsigned)blocks, kWThreads, L.bytes, st>>>(a, L);
    return cudaGetLastError();
}

} /* namespace */

extern "C" cudaError_t stem_cuda_attention(const stem_attention_params *p, cudaStream_t st) {
    if (p->d <= 0 || p->d > STEM_CUDA_ATTENTION_MAX_D || p->dv <= 0 || p->dv > STEM_CUDA_ATTENTION_MAX_D)
        return cudaErrorInvalidValue;
    if (p->outer <= 0 || p->heads <= 0 || p->nq <= 0) return cudaSuccess;
    AttnArgs a;
    a.heads = p->heads;
    a.nq = p->nq;
    a.nk = p->nk;
    a.q_tiles = ceil_div(p->nq, kBQ);
    a.d = (int)p->d;
    a.dv = (int)p->dv;
    a.dq = (a.d + 3) / 4 * 4;
    a.dkp = a.dq + 1;
    a.scale = p->scale;
    a.q = p->q.ptr;
    a.k = p->k.ptr;
    a.v = p->v.ptr;
    a.out = p->out;
    a.q_os = p->q.outer_stride; a.q_hs = p->q.head_stride; a.q_rs = p->q.row_stride;
    a.k_os = p->k.outer_stride; a.k_hs = p->k.head_stride; a.k_rs = p->k.row_stride;
    a.v_os = p->v.outer_stride; a.v_hs = p->v.head_stride; a.v_rs = p->v.row_stride;
    a.o_os = p->out_outer_stride; a.o_hs = p->out_head_stride; a.o_rs = p->out_row_stride;
    int64_t blocks = a.q_tiles * p->outer * p->heads;
    if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
    switch (p->dtype) {
    case STEM_F32: return dispatch_cpl<float>(a, blocks, st);
    case STEM_F16:
        /* both kernels tile queries by 64 (kBQ == kWBQ), so q_tiles and blocks agree */
        if (wmma_attention_enabled()) return launch_attention_wmma(a, blocks, st);
        return dispatch_cpl<__half>(a, blocks, st);
    default: return cudaErrorInvalidValue;
    }
}
