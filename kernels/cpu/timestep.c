/* diffusers get_timestep_embedding, in float32 operation by operation as torch does:
 *   exponent_j = (-ln(max_period) * j) / (half - freq_shift)
 *   arg = t * exp(exponent_j);  y = [sin(arg), cos(arg)]  ([cos, sin] if flipped),
 * one zero column appended when dim is odd. */
#include <math.h>

#include "kernels/cpu/kernels.h"

void stem_cpu_timestep_embedding_f32(const stem_timestep_params *p) {
    const int64_t half = p->dim / 2;
    const float neg_log = (float)(-log((double)p->max_period));
    const float denom = (float)((double)half - (double)p->freq_shift);
    float *y = p->y;
    for (int64_t i = 0; i < p->n; i++) {
        const float t = p->t[i];
        float *row = y + i * p->dim;
        for (int64_t j = 0; j < half; j++) {
            float e = (neg_log * (float)j) / denom;
            float arg = t * expf(e);
            float sn = sinf(arg), cs = cosf(arg);
            row[j] = p->flip_sin_to_cos ? cs : sn;
            row[half + j] = p->flip_sin_to_cos ? sn : cs;
        }
        if (p->dim % 2) row[p->dim - 1] = 0.0f;
    }
}
