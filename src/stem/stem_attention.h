/* Self-attention modes of the inversion UNet (doc/algorithm.md §5, "Baselines"), over a scope of
 * frames:
 *   stem      every query attends to the scope's EM bases:
 *             o = softmax(Q K_base^T d^-1/2) V_base, K_base/V_base from stem/em.h;
 *   frame     ordinary per-frame self-attention (classic DDIM inversion);
 *   inflated  every frame's queries attend to the keys/values of all frames in scope,
 *             through the streaming attention op (no (F*N)^2 matrix).
 * Scope: `video` = all frames in one problem (EM counter word chunk = 0); `chunk` =
 * consecutive chunks of batch_size frames (the last may be shorter), chunk index c in
 * the counter word of its EM draw (the original's per-8-frame bases). Frame mode
 * ignores the scope. With scope chunk, em.chunk is the index of q's first chunk, so a
 * caller may process the video in slices of whole chunks (0: q starts the video). */
#ifndef STEM_STEM_ATTENTION_H
#define STEM_STEM_ATTENTION_H

#include "stem/em.h"

typedef enum stem_sa_mode { STEM_SA_STEM, STEM_SA_FRAME, STEM_SA_INFLATED } stem_sa_mode;
typedef enum stem_em_scope { STEM_SCOPE_VIDEO, STEM_SCOPE_CHUNK } stem_em_scope;

typedef struct stem_sa_options {
    stem_sa_mode mode;     /* default stem */
    stem_em_scope scope;   /* default video */
    int64_t batch_size;    /* frames per chunk with scope chunk, default 8 */
    stem_em_options em;    /* EM options; em.chunk = index of the first chunk in q (see above) */
} stem_sa_options;

void stem_sa_options_default(stem_sa_options *o);
/* "stem" | "frame" | "inflated", "video" | "chunk"; STEM_E_ARG naming the value otherwise. */
stem_status stem_sa_mode_parse(const char *s, stem_sa_mode *out);
stem_status stem_em_scope_parse(const char *s, stem_em_scope *out);
const char *stem_sa_mode_name(stem_sa_mode m);
const char *stem_em_scope_name(stem_em_scope s);

/* Token-major, as the UNet produces them: q, k, v [frames, N, C] with C = heads * d
 * (projections already applied, heads not split); out [frames, N, C] (before to_out). */
stem_status stem_self_attention(const stem_tensor *q, const stem_tensor *k, const stem_tensor *v, int64_t heads,
                                const stem_sa_options *o, stem_tensor *out);
/* The same with the EM's workspace (stem/em.h: temporaries from an arena, deferred
 * non-finite checks; ws->check is shared by every chunk's EM), for callers inside a UNet
 * evaluation. ws NULL: stem_self_attention. */
stem_status stem_self_attention_ws(const stem_tensor *q, const stem_tensor *k, const stem_tensor *v, int64_t heads,
                                   const stem_sa_options *o, const stem_em_workspace *ws, stem_tensor *out);

/* The two halves of stem mode, for callers that gather a scope's keys/values in
 * pieces (the layer-major UNet, stem/stem_sa.c):
 *   stem_sa_bases   k, v [frames, N, C] (the whole scope) -> the EM bases, token-major
 *                   k_base, v_base [1, M, C] (caller-allocated; em's counter words as
 *                   stem_self_attention sets them; ws may be NULL, see stem/em.h);
 *   stem_sa_attend  q [frames, N, C] (any frames) attends to k_scope, v_scope [1, m, C]
 *                   (the bases, or every frame's tokens for inflated): out [frames, N, C].
 * stem_self_attention(stem) on one scope = stem_sa_bases then stem_sa_attend. */
stem_status stem_sa_bases(const stem_tensor *k, const stem_tensor *v, int64_t heads, const stem_em_options *em,
                          const stem_em_workspace *ws, stem_tensor *k_base, stem_tensor *v_base);
stem_status stem_sa_attend(const stem_tensor *q, const stem_tensor *k_scope, const stem_tensor *v_scope,
                           int64_t heads, stem_tensor *out);

/* Head-major (the `stem_attention` op): q, k, v [heads, frames*N, d], rows frame-major;
 * out [heads, frames*N, d]. */
stem_status stem_self_attention_heads(const stem_tensor *q, const stem_tensor *k, const stem_tensor *v,
                                      int64_t frames, const stem_sa_options *o, stem_tensor *out);

#endif
