/* EM bases per attention head (doc/algorithm.md §5): the "256 bases" of STEM inversion.
 *
 * For each head h, with K_h, V_h the head's n x d keys and values (rows frame-major):
 *   init    mu_j ~ Normal(mean(K_h), std(K_h)) per channel (unbiased std), j < M, drawn
 *           from the Philox stream of doc/algorithm.md §6 with counter (block, h, layer, w3); or an
 *           explicit initial-bases tensor;
 *   E-step  mu_hat_j = mu_j / (||mu_j||_2 + 1e-4);  z_nj = softmax_j(<mu_hat_j, k_n> / tau)
 *   M-step  zbar_nj = z_nj / (sum_n' z_n'j + 1e-4);  mu_j = sum_n zbar_nj k_n
 *   R times (E then M); K_base = mu (not re-normalised), V_base_j = sum_n zbar_nj v_n with
 *   the last zbar.
 *
 * Streaming, and why it is exact: z_n depends only on token n and the current bases, and
 * the M-step needs the tokens only through three sums over n: sum z_nj k_n, sum z_nj and
 * (last iteration) sum z_nj v_n. So the tokens go through the em_block op in blocks; each
 * block adds its part of the three sums to f32 accumulators of size M x d; after the last
 * block the iteration is finished with the dense formula, mu_j = (sum z k) / (sum z +
 * 1e-4). Only the order of the additions differs from the dense evaluation, so the result
 * equals it to float rounding, and no n x M responsibility matrix ever exists: extra
 * memory is O(M*d) per head plus the kernel's L2-sized tile, whatever n is (491,520
 * tokens at the top UNet level for 120 frames).
 *
 * Edge cases (defined, never NaN):
 *   n = 1     the unbiased std is undefined; it is taken as 0, so all initial bases equal
 *             the token (then every z is 1/M and every basis stays equal);
 *   zero-variance channels: that channel of every initial basis is the mean;
 *   n < M, M = 1: nothing special (M = 1 gives z = 1: K_base = the mean * n/(n+1e-4));
 *   R = 0     K_base = the initial bases, V_base = sum_n zbar_nj v_n with the initial
 *             bases' responsibilities (one E-step and the value half of an M-step);
 *   a basis no token chooses keeps sum z ~ 0 and becomes ~0 (the 1e-4 keeps it finite);
 *   NaN/Inf in k, v or init: STEM_E_ARG naming the tensor; heads x d != C: STEM_E_SHAPE. */
#ifndef STEM_STEM_EM_H
#define STEM_STEM_EM_H

#include <stdint.h>

#include "core/arena.h"
#include "core/tensor.h"
#include "stem/em_ops.h"

#define STEM_EM_NORM_EPS 1e-4f /* in mu / (||mu|| + eps) */
#define STEM_EM_SUM_EPS 1e-4f  /* in z / (sum z + eps) */

typedef enum stem_phase { STEM_PHASE_INVERSION = 0, STEM_PHASE_RECONSTRUCTION = 1, STEM_PHASE_EDITING = 2 } stem_phase;

typedef struct stem_em_options {
    int64_t bases;  /* M, default 256 */
    int64_t iters;  /* R, default 5 */
    float tau;      /* softmax temperature, default 0.01 */
    int64_t block;  /* tokens per em_block call, default 65536 (memory does not depend on it: the
                     * kernels tile internally; fewer calls mean fewer thread barriers) */
    uint64_t seed;  /* Philox key */
    /* counter words of the initial draw (doc/algorithm.md §6): w2 = layer, w3 = phase<<24 | step<<12 | chunk */
    uint32_t layer; /* attention-layer index in execution order within one UNet evaluation */
    uint32_t phase; /* stem_phase, < 256 */
    uint32_t step;  /* timestep index within the phase, < 4096 */
    uint32_t chunk; /* chunk index (0 with scope video), < 4096 */
} stem_em_options;

void stem_em_options_default(stem_em_options *o);
/* STEM_E_ARG when an option is out of range (M < 1, R < 0, tau <= 0, block < 1, ...). */
stem_status stem_em_options_check(const stem_em_options *o);
/* w3 = phase << 24 | step << 12 | chunk. */
uint32_t stem_em_counter_w3(const stem_em_options *o);

/* Where one EM takes its temporaries and how it checks its inputs, for callers inside
 * a UNet evaluation (stem/stem_sa.c), which must neither allocate device memory nor
 * wait for the device:
 *   arena   the temporaries (f32 [H, M, d] x 4, [H, d] x 3, ...) come from here and stay
 *           until the caller resets it (NULL: allocated and freed per call);
 *   check   deferred non-finite check: k's per-channel mean and std and v's mean are
 *           added to the rows of check [3, C] (f32, on k's backend; the first EM into it,
 *           *check_used false, copies and sets it) instead of being copied to the host
 *           and tested now; a NaN/Inf in k or v makes its channel non-finite there and
 *           the caller tests check later (NULL: tested now). init is always tested now. */
typedef struct stem_em_workspace {
    stem_arena *arena;
    stem_tensor *check;
    bool *check_used;
} stem_em_workspace;

/* EM bases of k and v, both viewed as heads (see stem/em_ops.h: head-major
 * [heads, n, d] or token-major [n, heads*d]). init: [heads, M, d] or NULL (Philox draw).
 * k_base, v_base: caller-allocated [heads, M, d] on k's backend, f32 or k's dtype.
 * ws may be NULL (see stem_em_workspace). */
stem_status stem_em_bases_view(const stem_heads_view *k, const stem_heads_view *v, const stem_tensor *init,
                               const stem_em_options *o, const stem_em_workspace *ws, stem_tensor *k_base,
                               stem_tensor *v_base);

/* Head-major convenience: k, v [heads, n, d]. */
stem_status stem_em_bases(const stem_tensor *k, const stem_tensor *v, const stem_tensor *init,
                          const stem_em_options *o, stem_tensor *k_base, stem_tensor *v_base);

/* Token-major convenience: k, v [n, C] or [frames, N, C] with C = heads * d. */
stem_status stem_em_bases_tokens(const stem_tensor *k, const stem_tensor *v, int64_t heads, const stem_tensor *init,
                                 const stem_em_options *o, stem_tensor *k_base, stem_tensor *v_base);

#endif
