/* Tensor-level ops: the only compute API that model and algorithm code uses.
 * Each checks shapes, dtypes and backends once (a clear STEM_E_SHAPE message naming
 * the op and the shapes), then dispatches to the tensors' backend. Outputs are
 * caller-allocated tensors of the documented shape on the same backend. */
#ifndef STEM_CORE_OPS_H
#define STEM_CORE_OPS_H

#include "core/backend.h"
#include "core/tensor.h"

/* c[..., m, n] = alpha * op(a)[..., m, k] @ op(b)[..., k, n] + beta * c.
 * Batch dims of a and c must match; b may be 2-D (shared by all batches). */
stem_status stem_matmul(const stem_tensor *a, const stem_tensor *b, bool trans_a, bool trans_b,
                        float alpha, float beta, stem_tensor *c);
/* y[..., n] = x[..., k] @ w[n, k]^T + bias[n] (bias may be NULL): torch Linear. */
stem_status stem_linear(const stem_tensor *x, const stem_tensor *w, const stem_tensor *bias,
                        stem_tensor *y);
/* y[n, c_out, h_out, w_out]; pad = {top, bottom, left, right}. */
stem_status stem_conv2d(const stem_tensor *x, const stem_tensor *w, const stem_tensor *bias,
                        int stride_h, int stride_w, const int pad[4], stem_tensor *y);
int64_t stem_conv_out_size(int64_t in, int64_t k, int stride, int pad_lo, int pad_hi);
/* x[n, c, ...]; gamma/beta [c] or NULL. */
stem_status stem_group_norm(const stem_tensor *x, const stem_tensor *gamma, const stem_tensor *beta,
                            int groups, float eps, bool silu, stem_tensor *y);
/* over the last axis; gamma/beta [cols] or NULL. */
stem_status stem_layer_norm(const stem_tensor *x, const stem_tensor *gamma, const stem_tensor *beta,
                            float eps, stem_tensor *y);
/* over the last axis of scale * x. */
stem_status stem_softmax(const stem_tensor *x, float scale, stem_tensor *y);
stem_status stem_unary(stem_unary_kind kind, const stem_tensor *x, stem_tensor *y);
/* x[..., 2h] -> y[..., h] */
stem_status stem_geglu(const stem_tensor *x, stem_tensor *y);
/* numpy broadcasting; y has the broadcast shape. */
stem_status stem_binary(stem_binary_kind kind, const stem_tensor *a, const stem_tensor *b, stem_tensor *y);
stem_status stem_affine(const stem_tensor *x, float alpha, float beta, stem_tensor *y);
/* x[..., h, w] -> y[..., h_out, w_out] */
stem_status stem_upsample_nearest(const stem_tensor *x, stem_tensor *y);
/* y = cat(xs, axis) */
stem_status stem_concat(const stem_tensor *const *xs, int count, int axis, stem_tensor *y);
/* y = x[..., start:start+len, ...] along axis (y has len there). */
stem_status stem_slice(const stem_tensor *x, int axis, int64_t start, stem_tensor *y);
stem_status stem_permute(const stem_tensor *x, const int *perm, stem_tensor *y);
/* t[n] (f32) -> y[n, dim] */
stem_status stem_timestep_embedding(const stem_tensor *t, bool flip_sin_to_cos, float freq_shift,
                                    float max_period, stem_tensor *y);
/* q[b, nq, d], k[b, nk, d], v[b, nk, dv] -> out[b, nq, dv]; b may be several axes. */
stem_status stem_attention(const stem_tensor *q, const stem_tensor *k, const stem_tensor *v,
                           float scale, stem_tensor *out);
/* Multi-head attention on token-major tensors without head permutes:
 * q[outer, nq, heads*d], k[outer, nk, heads*d], v[outer, nk, heads*dv] -> out[outer, nq, heads*dv]. */
stem_status stem_attention_heads(const stem_tensor *q, const stem_tensor *k, const stem_tensor *v,
                                 int heads, float scale, stem_tensor *out);
/* src[n_src, cols], idx[n_idx] (I32) -> y[n_idx, cols] */
stem_status stem_gather_rows(const stem_tensor *src, const stem_tensor *idx, stem_tensor *y);
/* a[b, n, c], ref[b, m, c] -> idx[b, n] (I32); 2-D inputs mean b = 1. */
stem_status stem_argmax_cos(const stem_tensor *a, const stem_tensor *ref, stem_tensor *idx);
/* mean and unbiased std along `axis`; outputs have that axis removed. std may be NULL. */
stem_status stem_mean_std(const stem_tensor *x, int axis, stem_tensor *mean, stem_tensor *std);
/* Fills y (any shape) with normals from the Philox stream (doc/algorithm.md §6). */
stem_status stem_philox_normal(uint64_t seed, uint32_t w1, uint32_t w2, uint32_t w3, stem_tensor *y);
/* FreeU's Fourier filter (doc/algorithm.md §7): x[..., h, w] -> y of the same shape, the
 * four DFT coefficients at (k_y, k_x) in {0, -1}^2 of every h x w plane scaled by s. */
stem_status stem_freeu_filter(const stem_tensor *x, float s, stem_tensor *y);
/* Elementwise dtype conversion between f32/f16/bf16 tensors of equal shape. */
stem_status stem_cast(const stem_tensor *x, stem_tensor *y);

#endif
