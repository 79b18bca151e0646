/* Philox4x32-10 normals (doc/algorithm.md §6): element e is stem_philox_normal_at(..., e).
 * Each counter block gives four normals, so blocks are computed once and split over
 * threads; the Box-Muller arithmetic is the same double-precision code, so every
 * value is bit-identical to stem_philox_normal_at. */
#include <math.h>

#include "core/philox.h"
#include "kernels/cpu/kernels.h"

void stem_cpu_philox_normal_f32(const stem_philox_params *p) {
    const int64_t n = p->n, blocks = n / 4;
    const uint32_t k0 = (uint32_t)p->seed, k1 = (uint32_t)(p->seed >> 32);
    float *y = p->y;
#pragma omp parallel for schedule(static) if (blocks >= 4096)
    for (int64_t b = 0; b < blocks; b++) {
        stem_philox4 ctr = {{(uint32_t)b, p->w1, p->w2, p->w3}};
        stem_philox4 r = stem_philox4x32_10(ctr, k0, k1);
        for (int pair = 0; pair < 4; pair += 2) {
            double ua = stem_philox_uniform(r.v[pair]), ub = stem_philox_uniform(r.v[pair + 1]);
            double rad = sqrt(-2.0 * log(ua)), ang = 6.283185307179586 * ub;
            y[4 * b + pair] = (float)(rad * cos(ang));
            y[4 * b + pair + 1] = (float)(rad * sin(ang));
        }
    }
    for (int64_t e = blocks * 4; e < n; e++) y[e] = stem_philox_normal_at(p->seed, p->w1, p->w2, p->w3, (uint64_t)e);
}
