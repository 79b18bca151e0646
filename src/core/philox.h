/* Philox4x32-10 (Salmon et al., SC'11; Random123) and the normal transform of
 * doc/algorithm.md §6. Header-only and free of host-only calls so that the CPU kernels, the
 * CUDA kernels (compiled as __host__ __device__) and the tests share one definition. */
#ifndef STEM_CORE_PHILOX_H
#define STEM_CORE_PHILOX_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define STEM_HD __host__ __device__ static inline
#else
#define STEM_HD static inline
#endif

#define STEM_PHILOX_M0 0xD2511F53u
#define STEM_PHILOX_M1 0xCD9E8D57u
#define STEM_PHILOX_W0 0x9E3779B9u /* golden ratio */
#define STEM_PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */

typedef struct stem_philox4 { uint32_t v[4]; } stem_philox4;

STEM_HD stem_philox4 stem_philox_round(stem_philox4 c, uint32_t k0, uint32_t k1) {
    uint64_t p0 = (uint64_t)STEM_PHILOX_M0 * c.v[0];
    uint64_t p1 = (uint64_t)STEM_PHILOX_M1 * c.v[2];
    stem_philox4 r;
    r.v[0] = (uint32_t)(p1 >> 32) ^ c.v[1] ^ k0;
    r.v[1] = (uint32_t)p1;
    r.v[2] = (uint32_t)(p0 >> 32) ^ c.v[3] ^ k1;
    r.v[3] = (uint32_t)p0;
    return r;
}

/* Ten rounds with the key bumped between rounds, exactly as Random123's philox4x32_R(10). */
STEM_HD stem_philox4 stem_philox4x32_10(stem_philox4 ctr, uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; round++) {
        if (round > 0) { k0 += STEM_PHILOX_W0; k1 += STEM_PHILOX_W1; }
        ctr = stem_philox_round(ctr, k0, k1);
    }
    return ctr;
}

/* u = (word + 0.5) * 2^-32, in (0, 1): never 0, so log(u) is finite. */
STEM_HD double stem_philox_uniform(uint32_t word) { return ((double)word + 0.5) * 2.3283064365386963e-10; }

/* Normal number e of the stream (seed; counter words w1..w3): block e/4, Box-Muller
 * on word pairs (0,1) and (2,3), in double, rounded to float. */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline float stem_philox_normal_at(uint64_t seed, uint32_t w1, uint32_t w2, uint32_t w3,
                                          uint64_t e) {
    stem_philox4 ctr = {{(uint32_t)(e >> 2), w1, w2, w3}};
    stem_philox4 r = stem_philox4x32_10(ctr, (uint32_t)seed, (uint32_t)(seed >> 32));
    int pair = (int)(e & 2);
    double ua = stem_philox_uniform(r.v[pair]), ub = stem_philox_uniform(r.v[pair + 1]);
    double rad = sqrt(-2.0 * log(ua)), ang = 6.283185307179586 * ub;
    return (float)((e & 1) ? rad * sin(ang) : rad * cos(ang));
}

#endif
