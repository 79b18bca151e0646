/* TokenFlow's UNet hooks (doc/algorithm.md §7) over a batch of three branches,
 * [source | uncond | cond] x frames, in one hook set:
 *
 *   pivotal pass (the keyframes, one per chunk):
 *     attn1 core   source: per-frame attention; uncond/cond: every keyframe's queries over
 *                  the keys/values of ALL keyframes of the branch (extended attention, fused:
 *                  no n x n matrix), or STEM bases per branch over its keyframes' tokens;
 *     NORM1 tap    caches the source branch's features   norm[block]   [K, N, C]
 *     ATTN1_OUT    caches every branch's attn1 output     attn[block]   [3, K, N, C]
 *     ATTN1_Q / K  PnP: uncond/cond <- source at the PnP sites while Q/K injection is on;
 *   normal pass (one chunk i):
 *     attn1        REPLACED by token flow: idx1 = argmax_j cos(f, norm[i]_j) for the source
 *                  branch's features f of the chunk's frames, out = attn[b, i][idx1] for every
 *                  branch b; from chunk 1 on blended with keyframe i - 1's by
 *                  w = sigmoid(|s - p2| / (|s - p1| + |s - p2|)) per frame s;
 *   both passes:   RESNET_RESIDUAL tap of up_blocks.1.resnets.1: uncond/cond <- source while
 *                  conv injection is on.
 * The caches are sized once for the UNet's transformer blocks at h x w latents. */
#ifndef STEM_EDIT_TOKENFLOW_H
#define STEM_EDIT_TOKENFLOW_H

#include "models/unet.h"
#include "stem/em.h"

typedef struct stem_tokenflow stem_tokenflow;

typedef struct stem_tokenflow_config {
    int64_t keyframes;      /* K: one per chunk */
    int64_t batch_size;     /* B: the nominal chunk length (chunk centres B i + B / 2) */
    bool stem_bases;        /* pivotal attn1: STEM bases instead of extended attention */
    stem_em_options em;     /* stem_bases: bases, iters, tau, seed (counter words set per call) */
    bool cache_on_host;     /* caches in host memory; a normal pass copies keyframes i, i-1 over */
    bool two_phase;         /* the pivotal pass runs over slices of keyframes (layer-major): attn1
                               collects all keyframes' keys/values first (unet_hooks.h) */
} stem_tokenflow_config;

/* An observer of the token-flow indices: idx [n * N] (I32, on the UNet's backend) of block
 * `block` for the chunk's frames first .. first + n - 1 against keyframe i (which 0) or
 * i - 1 (which 1). It may overwrite idx. */
typedef stem_status (*stem_tokenflow_index_fn)(void *user, int step, int block, int64_t first, int64_t frames,
                                               int which, stem_tensor *idx);

/* Caches on the UNet's backend for K keyframes of h x w latents. */
stem_status stem_tokenflow_create(stem_unet *u, const stem_tokenflow_config *cfg, int64_t h, int64_t w,
                                  stem_tokenflow **out);
void stem_tokenflow_free(stem_tokenflow *tf);
/* Bytes of the caches for K keyframes of h x w latents (the memory plan). */
size_t stem_tokenflow_cache_bytes(const stem_unet *u, int64_t keyframes, int64_t h, int64_t w);

/* The editing step s and which injections are on in it. */
void stem_tokenflow_set_step(stem_tokenflow *tf, int step, bool qk_injection, bool conv_injection);
/* The next forward is the pivotal pass (its batch: 3 x K keyframes, in chunk order). */
void stem_tokenflow_set_pivotal(stem_tokenflow *tf);
/* The next forward is chunk i's normal pass: frames first .. first + frames - 1. */
void stem_tokenflow_set_chunk(stem_tokenflow *tf, int64_t chunk, int64_t first, int64_t frames);
void stem_tokenflow_set_observer(stem_tokenflow *tf, stem_tokenflow_index_fn fn, void *user);

/* The hook set for the next forward (the pivotal pass's is two-phase with cfg.two_phase):
 * take it after stem_tokenflow_set_pivotal / _set_chunk. */
stem_unet_hook_set stem_tokenflow_hook_set(stem_tokenflow *tf);

/* SD 1.5's PnP sites (doc/algorithm.md §7): Q/K injection in transformer_blocks.0.attn1 of
 * these attentions (those the UNet has), conv injection in this resnet. */
extern const char *const stem_pnp_qk_sites[8];
#define STEM_PNP_CONV_SITE "up_blocks.1.resnets.1"
/* Whether the attn1 site `name` ("up_blocks.1.attentions.1.transformer_blocks.0.attn1") is
 * a Q/K injection site. */
bool stem_pnp_is_qk_site(const char *attn1_name);

#endif
