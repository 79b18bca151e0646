/* The tensor front end of the one backend op the STEM algorithm adds: the EM
 * statistics of a block of tokens (core/backend.h, stem_em_block_params). It checks
 * shapes once and dispatches, like the front ends in core/ops.h. */
#ifndef STEM_STEM_EM_OPS_H
#define STEM_STEM_EM_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/tensor.h"

/* How per-head keys/values are laid out in a tensor:
 *   head-major  [heads, n, d]            (the `em` op's inputs)
 *   token-major [n, heads*d], or [..., heads*d] with the leading axes flattened
 *               (what a UNet attention layer produces: [frames, N, C]). */
typedef enum stem_head_layout { STEM_HEADS_MAJOR, STEM_TOKENS_MAJOR } stem_head_layout;

/* A tensor read as `heads` heads of `n` tokens of width `d`, without copying. */
typedef struct stem_heads_view {
    const stem_tensor *t;
    stem_head_layout layout;
    int64_t heads, n, d;
} stem_heads_view;

/* Describes `t` as heads; STEM_E_SHAPE naming `what` when it does not split
 * (token-major: the channel count must be heads * d). heads = 0 with head-major
 * takes t's first axis. */
stem_status stem_heads_view_make(const stem_tensor *t, stem_head_layout layout, int64_t heads, const char *what,
                                 stem_heads_view *out);

/* For tokens row0 .. row0+rows-1 of every head of k (and v when zv is not NULL):
 *   z = softmax_j(<k_i, mu_hat_j> / tau),  mu_hat_j = mu_j / (||mu_j|| + norm_eps),
 *   zk[h] (+)= z^T k,  zsum[h] (+)= z^T 1,  zv[h] (+)= z^T v
 * (`=` when overwrite). mu, zk, zv: f32 [heads, m, d]; zsum: f32 [heads, m]. k and v
 * share layout, head count and token count; their dtype is the backend's compute
 * dtype, the statistics are always f32. */
stem_status stem_em_block(const stem_heads_view *k, const stem_heads_view *v, int64_t row0, int64_t rows,
                          const stem_tensor *mu, float tau, float norm_eps, bool overwrite, stem_tensor *zk,
                          stem_tensor *zsum, stem_tensor *zv);

#endif
