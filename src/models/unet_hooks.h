/* The UNet's hook contract: how variants of the UNet (STEM self-attention, frame and
 * inflated attention, TokenFlow's extended attention, PnP injection, token flow, FreeU,
 * FateZero's attention fusion) plug into one forward without touching the UNet.
 *
 * Batch. A forward's batch is branches x frames, branch-major:
 *     [branch 0's F frames | branch 1's F frames | ...]      B = branches * F
 * (1 branch for inversion; 3 for TokenFlow's source | uncond | cond). Slicing
 * (stem_unet_forward_sliced) cuts frames only: a call holds the same frames
 * frame0 .. frame0 + frames - 1 of EVERY branch, so a hook always sees a frame of each
 * branch together (PnP copies source into uncond/cond within one call). Tensors handed
 * to hooks have branches * frames rows, row (b, f) at b * frames + (f - frame0)
 * (stem_unet_span_branch gives one branch's rows as a view). Unsliced, frame0 = 0 and
 * frames = F. With one branch a slice is a view of the batch; with several, the
 * modules run on a gathered copy of the slice's rows (written back after the module).
 *
 * Hook sets. A forward runs a list of hook sets, each with its own `user` state,
 * in list order. Composition:
 *   - taps: every set whose tap_mask has the kind is called, in order; a later set sees
 *     what an earlier one wrote;
 *   - replace_*: asked in order; the first set that replaces a call provides its output
 *     and the later sets are not asked for that call;
 *   - self_attention / cross_attention (the attention core): the LAST set that provides
 *     it runs it (NULL in every set: stem_attention_default). self_attention_collect
 *     belongs to that set (a collect in any other set is an error);
 *   - attention_probs: every set that asks gets them (wants_probs is asked once per
 *     call; NULL: every call);
 *   - forward_end: every set, in order, after the last module of a forward that
 *     succeeded (e.g. checks deferred from inside the forward).
 *
 * Per transformer block (BasicTransformerBlock), for attn1 (self) and attn2 (cross):
 *     n = norm(hidden)                                       tap NORM1 / NORM2
 *     replace?(site, n) -> out: skip q/k/v, core and to_out  (tap OUT still fires)
 *     q = n Wq; k, v = (attn1: n, attn2: context) Wk, Wv     taps Q, K, V
 *     probs: softmax(q_h k_h^T * scale) per sample, when some set asks
 *     a = core(q, k, v); out = to_out(a)                     tap OUT
 *     hidden += out
 * Two-phase attn1 (the core's set has self_attention_collect; stem_unet_forward_sliced
 * with keys/values of ALL frames, e.g. STEM's EM over the whole video): every block runs
 *     phase 1 per slice: norm1 -> k, v -> self_attention_collect(k, v)  (taps NORM1, K, V)
 *     phase 2 per slice: norm1 -> replace? -> q -> self_attention(q, NULL, NULL) -> to_out
 *                        (taps Q, OUT; norm1 is recomputed, so a NORM1 override reaches
 *                        k and v only), then attn2 and the feed-forward.
 * Replaced calls in phase 2 still had their keys/values collected in phase 1. There are
 * no probabilities in two phases (the keys are the collect hook's): asking is an error.
 *
 * Memory and lifetime. Tensors handed to hooks live in the forward's arena and are valid
 * only during the call. Scratch comes from site->arena / tap->arena and is released when
 * the enclosing module finishes its slice; what a hook keeps across calls is its own.
 * The probabilities of one sample, [heads, tokens, kv_tokens] in the UNet's dtype, are
 * computed only when some set asks, one sample at a time, from the arena: the scores
 * and the probabilities, 2 x heads x tokens x kv_tokens elements (attn1 at 64x64
 * latents, 8 heads, f32: 2 x 512 MiB; attn2 there: 2 x 9.6 MiB), so ask only for the
 * sites you need. Hooks run on the host thread, in execution order; a hook returning an error
 * aborts the forward with it (add context with stem_error_context). */
#ifndef STEM_MODELS_UNET_HOOKS_H
#define STEM_MODELS_UNET_HOOKS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/tensor.h"

typedef enum stem_unet_part { STEM_UNET_DOWN, STEM_UNET_MID, STEM_UNET_UP } stem_unet_part;

/* Which rows of the batch a call holds (see "Batch" above). */
typedef struct stem_unet_span {
    int64_t branches;       /* every branch of the forward (each call holds all of them) */
    int64_t frame0, frames; /* the frames of each branch in this call */
    int64_t frames_total;   /* F: frames per branch in the forward */
} stem_unet_span;

/* Branch b's rows of a hook tensor x [branches * frames, ...]: a view [frames, ...]. */
stem_status stem_unet_span_branch(const stem_unet_span *span, const stem_tensor *x, int64_t branch,
                                  stem_tensor *rows);

typedef enum stem_attn_kind { STEM_ATTN_SELF, STEM_ATTN_CROSS } stem_attn_kind;

/* One attention call site: attn1 (self) or attn2 (cross) of a transformer block. */
typedef struct stem_attn_site {
    stem_attn_kind kind;
    int index;          /* the block's index in execution order, 0-based (0..15 in SD 1.5);
                           attn1 and attn2 of a block share it */
    const char *name;   /* "down_blocks.0.attentions.0.transformer_blocks.0.attn1" (.attn2) */
    stem_unet_part part;
    int block;          /* index in down_blocks / up_blocks (0 for the mid block) */
    int attention;      /* index in that block's attentions */
    int transformer_block; /* index in transformer_blocks */
    int level;          /* resolution level: 0 = latent size, 1 = half, ... */
    stem_unet_span span; /* rows of q: span.branches * span.frames */
    int64_t tokens;     /* queries per sample: height * width */
    int64_t height, width;
    int64_t kv_tokens;  /* keys per sample: tokens (attn1) or the context length (attn2) */
    int64_t channels;   /* heads * head_dim */
    int64_t heads, head_dim;
    float scale;        /* head_dim^-1/2 */
    stem_arena *arena;  /* scratch for the hook, released after the block's slice */
} stem_attn_site;

/* The attention core: q [rows, tokens, C], k, v [rows, kv_tokens, C] (token-major, heads
 * interleaved as channel = head * head_dim + j: diffusers' head split) -> out [rows,
 * tokens, C] before to_out. The hook may modify q, k, v (not used afterwards). In phase
 * 2 of a two-phase attn1, k and v are NULL (the hook has them from phase 1). */
typedef stem_status (*stem_attention_fn)(void *user, const stem_attn_site *site, const stem_tensor *q,
                                         const stem_tensor *k, const stem_tensor *v, stem_tensor *out);

/* Phase 1 of a two-phase attn1: k, v [rows, tokens, C] of this call's span, valid only
 * during the call (copy what you keep). Called for the slices in order; the last has
 * span.frame0 + span.frames == span.frames_total. */
typedef stem_status (*stem_attention_collect_fn)(void *user, const stem_attn_site *site, const stem_tensor *k,
                                                 const stem_tensor *v);

/* Replaces a whole attention call: x = the norm's output [rows, tokens, C]. Either leave
 * *replaced false (the block computes the call) or write out [rows, tokens, C] — what
 * to_out would have given, added to the residual — and set *replaced. */
typedef stem_status (*stem_attention_replace_fn)(void *user, const stem_attn_site *site, const stem_tensor *x,
                                                 stem_tensor *out, bool *replaced);

/* Attention probabilities of sample `row` of the call (0 .. rows - 1, see the span):
 * p [heads, tokens, kv_tokens] = softmax(q_h k_h^T * scale), from the q and k the core
 * receives. Read-only, valid during the call. */
typedef stem_status (*stem_attention_probs_fn)(void *user, const stem_attn_site *site, int64_t row,
                                               const stem_tensor *p);

/* The default core: out[r] = MHA(q[r], k[r], v[r]) per sample (stem_attention_heads). */
stem_status stem_attention_default(void *user, const stem_attn_site *site, const stem_tensor *q,
                                   const stem_tensor *k, const stem_tensor *v, stem_tensor *out);

typedef enum stem_unet_tap_kind {
    /* attn1 of a transformer block (tap->attn is the attn1 site; x is [rows, N, C]): */
    STEM_TAP_NORM1 = 0,  /* norm1 output = attn1 input (TokenFlow: token-flow features) */
    STEM_TAP_ATTN1_Q,    /* after to_q, before the core (PnP Q injection) */
    STEM_TAP_ATTN1_K,    /* after to_k (PnP K injection) */
    STEM_TAP_ATTN1_V,    /* after to_v */
    STEM_TAP_ATTN1_OUT,  /* after to_out (+bias), or a replacement, before the residual add
                            (token flow reads it on keyframes) */
    /* ResnetBlock2D (every resnet; tap->attn is NULL): */
    STEM_TAP_RESNET_RESIDUAL, /* x [rows, C_out, H, W]: conv2 output, before the shortcut
                                 add (PnP conv injection in up_blocks.1.resnets.1) */
    /* Up blocks, before each resnet's skip concat (FreeU): x = hidden state
     * [rows, C_h, H, W], skip = the skip connection [rows, C_s, H, W]; both writable,
     * the writes reach the concat. */
    STEM_TAP_UP_CONCAT,
    /* attn2 (tap->attn is the attn2 site; K and V are [rows, context tokens, C]): */
    STEM_TAP_NORM2,
    STEM_TAP_ATTN2_Q,
    STEM_TAP_ATTN2_K,
    STEM_TAP_ATTN2_V,
    STEM_TAP_ATTN2_OUT,
    STEM_TAP_KIND_COUNT
} stem_unet_tap_kind;

#define STEM_TAP_BIT(kind) (1u << (kind))

typedef struct stem_unet_tap {
    stem_unet_tap_kind kind;
    const char *name;   /* the module: "up_blocks.1.resnets.1",
                           "mid_block.attentions.0.transformer_blocks.0" */
    stem_unet_part part;
    int block, layer;   /* block index; resnet/attention index inside it */
    int level;
    const stem_attn_site *attn; /* attention kinds; NULL otherwise */
    stem_unet_span span; /* rows of x (and skip) */
    stem_tensor *x;
    stem_tensor *skip;  /* STEM_TAP_UP_CONCAT only */
    stem_arena *arena;  /* scratch, released after the enclosing module's slice */
} stem_unet_tap;

typedef stem_status (*stem_unet_tap_fn)(void *user, const stem_unet_tap *tap);

/* One concern's hooks; every callback gets `user`. Any member may be NULL. */
typedef struct stem_unet_hook_set {
    void *user;
    stem_unet_tap_fn tap;
    unsigned tap_mask;                               /* STEM_TAP_BIT(kind) | ... */
    stem_attention_fn self_attention;                /* attn1 core */
    stem_attention_collect_fn self_attention_collect; /* makes attn1 two-phase */
    stem_attention_replace_fn replace_self_attention;
    stem_attention_fn cross_attention;               /* attn2 core */
    stem_attention_replace_fn replace_cross_attention;
    stem_attention_probs_fn attention_probs;
    bool (*wants_probs)(void *user, const stem_attn_site *site); /* NULL: every site */
    stem_status (*forward_end)(void *user);
} stem_unet_hook_set;

#define STEM_UNET_MAX_HOOK_SETS 64

/* What a forward runs: its batch's branch count and the hook sets, in order. */
typedef struct stem_unet_hooks {
    int64_t branches;                /* 0 or 1: one branch; B must be a multiple */
    const stem_unet_hook_set *sets;  /* n_sets (<= STEM_UNET_MAX_HOOK_SETS) of them */
    int n_sets;
} stem_unet_hooks;

#endif
