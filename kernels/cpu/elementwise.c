/* Elementwise binary ops with numpy broadcasting (element strides, 0 on broadcast
 * axes) and the affine map. The shape is first simplified — size-1 axes dropped,
 * adjacent axes merged where both operands are contiguous across them — so that
 * the common cases become one long run (same shape), runs against a repeated row,
 * or runs against one value per channel, each a vector loop in simd.h. */
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/simd.h"

#define SEG ((int64_t)1 << 14) /* elements per work item */

typedef struct bshape {
    int nd;
    int64_t size[6], sa[6], sb[6];
} bshape;

static bshape simplify(const stem_binary_params *p) {
    bshape s = {0};
    for (int i = 0; i < p->ndim; i++) {
        if (p->shape[i] == 1) continue;
        if (s.nd > 0) {
            int l = s.nd - 1;
            if (s.sa[l] == p->stride_a[i] * p->shape[i] && s.sb[l] == p->stride_b[i] * p->shape[i]) {
                s.size[l] *= p->shape[i]; /* merge into the previous (outer) axis */
                s.sa[l] = p->stride_a[i];
                s.sb[l] = p->stride_b[i];
                continue;
            }
        }
        s.size[s.nd] = p->shape[i];
        s.sa[s.nd] = p->stride_a[i];
        s.sb[s.nd] = p->stride_b[i];
        s.nd++;
    }
    if (s.nd == 0) { s.nd = 1; s.size[0] = 1; s.sa[0] = s.sb[0] = 0; }
    return s;
}

void stem_cpu_binary_f32(const stem_binary_params *p) {
    const stem_simd *simd = stem_simd_get();
    for (int i = 0; i < p->ndim; i++)
        if (p->shape[i] == 0) return;
    bshape s = simplify(p);
    const int last = s.nd - 1;
    const int64_t inner = s.size[last], segs = stem_ceil_div(inner, SEG);
    int64_t outer = 1;
    for (int i = 0; i < last; i++) outer *= s.size[i];
    const int64_t items = outer * segs;
    const float *a = p->a, *b = p->b;
    float *y = p->y;
#pragma omp parallel for schedule(static) if (items > 1 && outer * inner >= STEM_PAR_MIN_ELEMS)
    for (int64_t it = 0; it < items; it++) {
        int64_t row = it / segs, j0 = (it % segs) * SEG, len = stem_imin(SEG, inner - j0);
        int64_t oa = 0, ob = 0, rem = row;
        for (int i = last - 1; i >= 0; i--) {
            int64_t idx = rem % s.size[i];
            rem /= s.size[i];
            oa += idx * s.sa[i];
            ob += idx * s.sb[i];
        }
        oa += j0 * s.sa[last];
        ob += j0 * s.sb[last];
        simd->binary(p->kind, y + row * inner + j0, a + oa, s.sa[last], b + ob, s.sb[last], len);
    }
}

void stem_cpu_affine_f32(const stem_affine_params *p) {
    const stem_simd *s = stem_simd_get();
    const int64_t n = p->n, chunks = stem_ceil_div(n, SEG);
    const float *x = p->x;
    float *y = p->y;
#pragma omp parallel for schedule(static) if (n >= STEM_PAR_MIN_ELEMS)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t i0 = c * SEG;
        s->affine(y + i0, x + i0, stem_imin(SEG, n - i0), p->alpha, p->beta);
    }
}
