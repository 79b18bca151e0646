/* TokenFlow's UNet hooks (doc/algorithm.md §7): extended attention or STEM bases in the
 * pivotal pass, the keyframe caches, token flow in the normal pass, PnP injection. */
#include "edit/tokenflow.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/host.h"
#include "core/ops.h"
#include "stem/stem_attention.h"

const char *const stem_pnp_qk_sites[8] = {
    "up_blocks.1.attentions.1", "up_blocks.1.attentions.2", "up_blocks.2.attentions.0", "up_blocks.2.attentions.1",
    "up_blocks.2.attentions.2", "up_blocks.3.attentions.0", "up_blocks.3.attentions.1", "up_blocks.3.attentions.2",
};

bool stem_pnp_is_qk_site(const char *attn1_name) {
    static const char tail[] = ".transformer_blocks.0.attn1";
    const size_t n = strlen(attn1_name), t = sizeof tail - 1;
    if (n <= t || strcmp(attn1_name + n - t, tail) != 0) return false;
    for (int i = 0; i < 8; i++)
        if (strlen(stem_pnp_qk_sites[i]) == n - t && strncmp(attn1_name, stem_pnp_qk_sites[i], n - t) == 0) return true;
    return false;
}

/* One transformer block's keyframe caches. */
typedef struct block_cache {
    stem_tensor norm; /* [K, N, C]: the source branch's norm1 output of each keyframe */
    stem_tensor attn; /* [3 K, N, C]: attn1 output (after to_out), branch-major */
} block_cache;

/* Two-phase pivotal pass: one site's keys/values of all keyframes, reused by every site. */
typedef struct kv_store {
    stem_tensor k, v;           /* flat [3 K max(N C)]: [3 K, N, C] branch-major for the site */
    stem_tensor k_base, v_base; /* flat [3 M max C]: STEM bases per branch [3, M, C] */
    int site;                   /* the site the store holds, -1: none complete */
} kv_store;

struct stem_tokenflow {
    stem_tokenflow_config cfg;
    int n_blocks;
    block_cache *blocks;
    kv_store store;
    int step;
    bool qk, conv;
    bool pivotal;
    int64_t chunk, first, frames; /* normal pass: chunk i and its frames */
    stem_tokenflow_index_fn observe;
    void *observe_user;
};

/* ---- sizes ---------------------------------------------------------------------------------- */

/* Tokens and channels of transformer block `b` at h x w latents. */
static void block_size(const stem_unet *u, int b, int64_t h, int64_t w, int64_t *tokens, int64_t *channels) {
    int64_t hs[STEM_UNET_MAX_LEVELS], ws[STEM_UNET_MAX_LEVELS];
    stem_unet_level_sizes(u, h, w, hs, ws);
    const int level = stem_unet_attn1_level(u, b);
    *tokens = hs[level] * ws[level];
    *channels = stem_unet_attn1_channels(u, b);
}

size_t stem_tokenflow_cache_bytes(const stem_unet *u, int64_t keyframes, int64_t h, int64_t w) {
    size_t total = 0;
    for (int b = 0; b < stem_unet_attn1_count(u); b++) {
        int64_t N, C;
        block_size(u, b, h, w, &N, &C);
        total += (size_t)(4 * keyframes * N * C) * stem_dtype_size(stem_unet_dtype(u));
    }
    return total;
}

stem_status stem_tokenflow_create(stem_unet *u, const stem_tokenflow_config *cfg, int64_t h, int64_t w,
                                  stem_tokenflow **out) {
    *out = NULL;
    if (cfg->keyframes < 1 || cfg->batch_size < 1)
        return stem_fail(STEM_E_ARG, "token flow: %lld keyframes, batch size %lld (both must be >= 1)",
                         (long long)cfg->keyframes, (long long)cfg->batch_size);
    stem_tokenflow *tf = calloc(1, sizeof *tf);
    if (!tf) return stem_fail(STEM_E_NOMEM, "token flow: out of memory");
    tf->cfg = *cfg;
    tf->store.site = -1;
    tf->n_blocks = stem_unet_attn1_count(u);
    tf->blocks = calloc((size_t)(tf->n_blocks ? tf->n_blocks : 1), sizeof *tf->blocks);
    stem_status s = tf->blocks ? STEM_OK : stem_fail(STEM_E_NOMEM, "token flow: out of memory");
    stem_backend *cache_be = cfg->cache_on_host ? stem_host() : stem_unet_backend(u);
    const stem_dtype dt = stem_unet_dtype(u);
    int64_t most = 0, max_c = 0;
    for (int b = 0; b < tf->n_blocks && s == STEM_OK; b++) {
        int64_t N, C;
        block_size(u, b, h, w, &N, &C);
        if (N * C > most) most = N * C;
        if (C > max_c) max_c = C;
        int64_t norm[3] = {cfg->keyframes, N, C}, attn[3] = {3 * cfg->keyframes, N, C};
        s = stem_tensor_new(cache_be, dt, 3, norm, &tf->blocks[b].norm);
        if (s == STEM_OK) s = stem_tensor_new(cache_be, dt, 3, attn, &tf->blocks[b].attn);
        if (s != STEM_OK) stem_error_context(s, "token-flow caches of %s", stem_unet_attn1_name(u, b));
    }
    if (s == STEM_OK && cfg->two_phase) {
        int64_t kv = 3 * cfg->keyframes * most, bases = 3 * cfg->em.bases * max_c;
        s = stem_tensor_new(stem_unet_backend(u), dt, 1, &kv, &tf->store.k);
        if (s == STEM_OK) s = stem_tensor_new(stem_unet_backend(u), dt, 1, &kv, &tf->store.v);
        if (s == STEM_OK && cfg->stem_bases) s = stem_tensor_new(stem_unet_backend(u), dt, 1, &bases, &tf->store.k_base);
        if (s == STEM_OK && cfg->stem_bases) s = stem_tensor_new(stem_unet_backend(u), dt, 1, &bases, &tf->store.v_base);
        if (s != STEM_OK) stem_error_context(s, "the pivotal pass's key/value store");
    }
    if (s != STEM_OK) {
        stem_tokenflow_free(tf);
        return s;
    }
    *out = tf;
    return STEM_OK;
}

void stem_tokenflow_free(stem_tokenflow *tf) {
    if (!tf) return;
    for (int b = 0; tf->blocks && b < tf->n_blocks; b++) {
        stem_tensor_free(&tf->blocks[b].norm);
        stem_tensor_free(&tf->blocks[b].attn);
    }
    free(tf->blocks);
    stem_tensor_free(&tf->store.k);
    stem_tensor_free(&tf->store.v);
    stem_tensor_free(&tf->store.k_base);
    stem_tensor_free(&tf->store.v_base);
    free(tf);
}

void stem_tokenflow_set_step(stem_tokenflow *tf, int step, bool qk_injection, bool conv_injection) {
    tf->step = step;
    tf->qk = qk_injection;
    tf->conv = conv_injection;
}

void stem_tokenflow_set_pivotal(stem_tokenflow *tf) { tf->pivotal = true; }

void stem_tokenflow_set_chunk(stem_tokenflow *tf, int64_t chunk, int64_t first, int64_t frames) {
    tf->pivotal = false;
    tf->chunk = chunk;
    tf->first = first;
    tf->frames = frames;
}

void stem_tokenflow_set_observer(stem_tokenflow *tf, stem_tokenflow_index_fn fn, void *user) {
    tf->observe = fn;
    tf->observe_user = user;
}

/* ---- helpers ---------------------------------------------------------------------------------- */

/* rows [a, a + n) of a [rows, N, C] tensor, as [n * N, C] */
static stem_status rows_2d(const stem_tensor *x, int64_t a, int64_t n, stem_tensor *out) {
    stem_tensor r;
    STEM_TRY(stem_tensor_narrow0(x, a, n, &r));
    int64_t shape[2] = {n * x->shape[1], x->shape[2]};
    return stem_tensor_reshape(&r, 2, shape, out);
}

/* [n, N, C] -> [1, n * N, C]: all frames' tokens as one sequence */
static stem_status as_one_sequence(const stem_tensor *x, stem_tensor *out) {
    int64_t shape[3] = {1, x->shape[0] * x->shape[1], x->shape[2]};
    return stem_tensor_reshape(x, 3, shape, out);
}

/* uncond and cond rows <- source rows (PnP injection) */
static stem_status copy_source_to_others(const stem_unet_span *span, const stem_tensor *x) {
    stem_tensor src, dst;
    STEM_TRY(stem_unet_span_branch(span, x, 0, &src));
    for (int64_t b = 1; b < span->branches; b++) {
        STEM_TRY(stem_unet_span_branch(span, x, b, &dst));
        STEM_TRY(stem_tensor_copy(&src, &dst));
    }
    return STEM_OK;
}

static stem_status check_block(const stem_tokenflow *tf, const stem_attn_site *site) {
    if (site->span.branches != 3)
        return stem_fail(STEM_E_ARG, "%s: token flow needs [source | uncond | cond] (the batch has %lld branches)",
                         site->name, (long long)site->span.branches);
    if (site->index < 0 || site->index >= tf->n_blocks ||
        stem_numel(&tf->blocks[site->index].norm) != tf->cfg.keyframes * site->tokens * site->channels)
        return stem_fail(STEM_E_ARG, "%s: not a block of the UNet and latent size the token-flow caches were made for",
                         site->name);
    if (tf->pivotal && site->span.frames_total != tf->cfg.keyframes)
        return stem_fail(STEM_E_ARG, "%s: the pivotal pass has %lld frames per branch, not the %lld keyframes",
                         site->name, (long long)site->span.frames_total, (long long)tf->cfg.keyframes);
    return STEM_OK;
}

/* ---- pivotal pass: the caches and PnP Q/K ------------------------------------------------------ */

static stem_status cache_tap(stem_tokenflow *tf, const stem_unet_tap *tap) {
    const stem_attn_site *site = tap->attn;
    const stem_unet_span *sp = &tap->span;
    STEM_TRY(check_block(tf, site));
    block_cache *c = &tf->blocks[site->index];
    stem_tensor src, dst;
    if (tap->kind == STEM_TAP_NORM1) { /* the source branch's features of these keyframes */
        STEM_TRY(stem_unet_span_branch(sp, tap->x, 0, &src));
        STEM_TRY(stem_tensor_narrow0(&c->norm, sp->frame0, sp->frames, &dst));
        return stem_tensor_copy(&src, &dst);
    }
    for (int64_t b = 0; b < 3; b++) { /* STEM_TAP_ATTN1_OUT: every branch's attn1 output */
        STEM_TRY(stem_unet_span_branch(sp, tap->x, b, &src));
        STEM_TRY(stem_tensor_narrow0(&c->attn, b * tf->cfg.keyframes + sp->frame0, sp->frames, &dst));
        STEM_TRY(stem_tensor_copy(&src, &dst));
    }
    return STEM_OK;
}

static stem_status tap_hook(void *user, const stem_unet_tap *tap) {
    stem_tokenflow *tf = user;
    stem_status s = STEM_OK;
    switch (tap->kind) {
    case STEM_TAP_RESNET_RESIDUAL:
        if (tf->conv && strcmp(tap->name, STEM_PNP_CONV_SITE) == 0) s = copy_source_to_others(&tap->span, tap->x);
        break;
    case STEM_TAP_ATTN1_Q:
    case STEM_TAP_ATTN1_K:
        if (tf->pivotal && tf->qk && stem_pnp_is_qk_site(tap->attn->name)) s = copy_source_to_others(&tap->span, tap->x);
        break;
    case STEM_TAP_NORM1:
    case STEM_TAP_ATTN1_OUT:
        if (tf->pivotal) s = cache_tap(tf, tap);
        break;
    default:
        break;
    }
    if (s != STEM_OK) return stem_error_context(s, "token flow at %s", tap->name);
    return STEM_OK;
}

/* Branch b's STEM bases over its keyframes' tokens kb, vb [K, N, C] -> k_base, v_base
 * [1, M, C]: one EM scope per branch, counter word chunk = branch (doc/algorithm.md §6). */
static stem_status branch_bases(const stem_tokenflow *tf, const stem_attn_site *site, int64_t b,
                                const stem_tensor *kb, const stem_tensor *vb, stem_tensor *k_base,
                                stem_tensor *v_base) {
    stem_em_options em = tf->cfg.em;
    em.layer = (uint32_t)site->index;
    em.phase = STEM_PHASE_EDITING;
    em.step = (uint32_t)tf->step;
    em.chunk = (uint32_t)b;
    const stem_em_workspace ws = {.arena = site->arena};
    return stem_sa_bases(kb, vb, site->heads, &em, &ws, k_base, v_base);
}

/* Branch b's STEM bases in the store: [1, M, C] views. */
static stem_status stored_bases(const stem_tokenflow *tf, const stem_attn_site *site, int64_t b, stem_tensor *kb,
                                stem_tensor *vb) {
    const int64_t M = tf->cfg.em.bases, C = site->channels;
    stem_tensor kr, vr; /* branch b's M x C entries of the flat stores */
    STEM_TRY(stem_tensor_narrow0(&tf->store.k_base, b * M * C, M * C, &kr));
    STEM_TRY(stem_tensor_narrow0(&tf->store.v_base, b * M * C, M * C, &vr));
    STEM_TRY(stem_tensor_flat_view(&kr, 1, M, C, kb));
    return stem_tensor_flat_view(&vr, 1, M, C, vb);
}

/* Phase 1 of a two-phase pivotal pass: the slice's k, v [3 n, N, C] into the store
 * [3 K, N, C]; after the last slice, the STEM bases of each branch. */
static stem_status collect_keyframes(void *user, const stem_attn_site *site, const stem_tensor *k,
                                     const stem_tensor *v) {
    stem_tokenflow *tf = user;
    STEM_TRY(check_block(tf, site));
    const stem_unet_span *sp = &site->span;
    const int64_t K = tf->cfg.keyframes, N = site->tokens, C = site->channels;
    if (3 * K * N * C > stem_numel(&tf->store.k))
        return stem_fail(STEM_E_ARG, "%s: the key/value store was not made for this pass", site->name);
    stem_tensor k_all, v_all, src, dst;
    STEM_TRY(stem_tensor_flat_view(&tf->store.k, 3 * K, N, C, &k_all));
    STEM_TRY(stem_tensor_flat_view(&tf->store.v, 3 * K, N, C, &v_all));
    for (int64_t b = 0; b < 3; b++) {
        STEM_TRY(stem_unet_span_branch(sp, k, b, &src));
        STEM_TRY(stem_tensor_narrow0(&k_all, b * K + sp->frame0, sp->frames, &dst));
        STEM_TRY(stem_tensor_copy(&src, &dst));
        STEM_TRY(stem_unet_span_branch(sp, v, b, &src));
        STEM_TRY(stem_tensor_narrow0(&v_all, b * K + sp->frame0, sp->frames, &dst));
        STEM_TRY(stem_tensor_copy(&src, &dst));
    }
    tf->store.site = -1;
    if (sp->frame0 + sp->frames < K) return STEM_OK;
    for (int64_t b = 0; tf->cfg.stem_bases && b < 3; b++) {
        stem_tensor kb, vb, k_base, v_base;
        STEM_TRY(stem_tensor_narrow0(&k_all, b * K, K, &kb));
        STEM_TRY(stem_tensor_narrow0(&v_all, b * K, K, &vb));
        STEM_TRY(stored_bases(tf, site, b, &k_base, &v_base));
        STEM_TRY(branch_bases(tf, site, b, &kb, &vb, &k_base, &v_base));
    }
    tf->store.site = site->index;
    return STEM_OK;
}

/* The pivotal pass's attn1 core: q [3 n, N, C] of this call's keyframes -> out; k, v the
 * same rows' (one phase: all K keyframes in the call) or NULL (phase 2: the store). */
static stem_status pivotal_attention(void *user, const stem_attn_site *site, const stem_tensor *q,
                                     const stem_tensor *k, const stem_tensor *v, stem_tensor *out) {
    stem_tokenflow *tf = user;
    if (!tf->pivotal)
        return stem_fail(STEM_E_ARG, "%s: attn1 ran in a normal pass (token flow replaces it)", site->name);
    STEM_TRY(check_block(tf, site));
    const stem_unet_span *sp = &site->span;
    const int64_t K = tf->cfg.keyframes, N = site->tokens, C = site->channels;
    const bool stored = k == NULL;
    if (stored && tf->store.site != site->index)
        return stem_fail(STEM_E_ARG, "%s: queries before all keyframes' keys/values were collected", site->name);
    if (!stored && sp->frames != K)
        return stem_fail(STEM_E_ARG, "%s: a pivotal pass over slices of keyframes needs the two-phase hook set",
                         site->name);
    stem_tensor k_all = {0}, v_all = {0};
    if (stored) {
        STEM_TRY(stem_tensor_flat_view(&tf->store.k, 3 * K, N, C, &k_all));
        STEM_TRY(stem_tensor_flat_view(&tf->store.v, 3 * K, N, C, &v_all));
    }
    for (int64_t b = 0; b < 3; b++) {
        stem_tensor qb, kb, vb, ob, q1, k1, v1, o1;
        STEM_TRY(stem_unet_span_branch(sp, q, b, &qb));
        STEM_TRY(stem_unet_span_branch(sp, out, b, &ob));
        if (stored) { /* [K, N, C]: all keyframes of branch b */
            STEM_TRY(stem_tensor_narrow0(&k_all, b * K, K, &kb));
            STEM_TRY(stem_tensor_narrow0(&v_all, b * K, K, &vb));
        } else {
            STEM_TRY(stem_unet_span_branch(sp, k, b, &kb));
            STEM_TRY(stem_unet_span_branch(sp, v, b, &vb));
        }
        if (tf->cfg.stem_bases) {
            stem_tensor k_base, v_base;
            if (stored) {
                STEM_TRY(stored_bases(tf, site, b, &k_base, &v_base));
            } else {
                int64_t shape[3] = {1, tf->cfg.em.bases, C};
                STEM_TRY(stem_arena_tensor(site->arena, q->dtype, 3, shape, &k_base));
                STEM_TRY(stem_arena_tensor(site->arena, q->dtype, 3, shape, &v_base));
                STEM_TRY(branch_bases(tf, site, b, &kb, &vb, &k_base, &v_base));
            }
            STEM_TRY(stem_sa_attend(&qb, &k_base, &v_base, site->heads, &ob));
        } else if (b == 0) { /* source: each keyframe attends to itself */
            stem_tensor ks = kb, vs = vb;
            if (stored) {
                STEM_TRY(stem_tensor_narrow0(&kb, sp->frame0, sp->frames, &ks));
                STEM_TRY(stem_tensor_narrow0(&vb, sp->frame0, sp->frames, &vs));
            }
            STEM_TRY(stem_attention_heads(&qb, &ks, &vs, (int)site->heads, site->scale, &ob));
        } else { /* extended: every keyframe's queries over all keyframes' tokens (fused) */
            STEM_TRY(as_one_sequence(&qb, &q1));
            STEM_TRY(as_one_sequence(&kb, &k1));
            STEM_TRY(as_one_sequence(&vb, &v1));
            STEM_TRY(as_one_sequence(&ob, &o1));
            STEM_TRY(stem_attention_heads(&q1, &k1, &v1, (int)site->heads, site->scale, &o1));
        }
    }
    return STEM_OK;
}

/* ---- normal pass: token flow ------------------------------------------------------------------- */

/* A cached keyframe's rows where the ops run: the cache itself, or (caches on the host) a
 * copy in the site's arena. */
static stem_status on_device(const stem_tokenflow *tf, const stem_attn_site *site, const stem_tensor *cached,
                             stem_tensor *out) {
    if (!tf->cfg.cache_on_host) {
        *out = *cached;
        return STEM_OK;
    }
    STEM_TRY(stem_arena_tensor(site->arena, cached->dtype, cached->ndim, cached->shape, out));
    return stem_tensor_copy(cached, out);
}

/* idx [n N] <- nearest token (cosine of norm1 features) of keyframe `key` for f [n N, C];
 * then every branch's rows of `dst` [3 n, N, C] (viewed per branch) <- the cached attn1
 * output of keyframe `key` at idx. */
static stem_status flow_from(stem_tokenflow *tf, const stem_attn_site *site, const stem_tensor *f, int64_t key,
                             int which, int64_t first, int64_t n, const stem_tensor *dst) {
    const block_cache *c = &tf->blocks[site->index];
    const int64_t N = site->tokens;
    int64_t nn = n * N;
    stem_tensor idx, ref, src, rows, cached;
    STEM_TRY(stem_arena_tensor(site->arena, STEM_I32, 1, &nn, &idx));
    STEM_TRY(rows_2d(&c->norm, key, 1, &cached));
    STEM_TRY(on_device(tf, site, &cached, &ref));
    STEM_TRY(stem_argmax_cos(f, &ref, &idx));
    if (tf->observe) STEM_TRY(tf->observe(tf->observe_user, tf->step, site->index, first, n, which, &idx));
    for (int64_t b = 0; b < 3; b++) {
        STEM_TRY(rows_2d(&c->attn, b * tf->cfg.keyframes + key, 1, &cached));
        STEM_TRY(on_device(tf, site, &cached, &src));
        STEM_TRY(rows_2d(dst, b * n, n, &rows));
        STEM_TRY(stem_gather_rows(&src, &idx, &rows));
    }
    return STEM_OK;
}

/* attn1 of the chunk's frames: x = norm1 output [3 n, N, C] -> out [3 n, N, C]. */
static stem_status token_flow(void *user, const stem_attn_site *site, const stem_tensor *x, stem_tensor *out,
                              bool *replaced) {
    stem_tokenflow *tf = user;
    *replaced = false;
    if (tf->pivotal) return STEM_OK;
    STEM_TRY(check_block(tf, site));
    const stem_unet_span *sp = &site->span;
    const int64_t n = sp->frames, first = tf->first + sp->frame0, i = tf->chunk, B = tf->cfg.batch_size;
    if (i >= tf->cfg.keyframes)
        return stem_fail(STEM_E_ARG, "%s: chunk %lld has no keyframe (%lld cached)", site->name, (long long)i,
                         (long long)tf->cfg.keyframes);
    stem_tensor src, f;
    STEM_TRY(stem_unet_span_branch(sp, x, 0, &src));
    STEM_TRY(rows_2d(&src, 0, n, &f)); /* [n N, C]: the source branch's features */
    STEM_TRY(flow_from(tf, site, &f, i, 0, first, n, out));
    if (i > 0) { /* blend with keyframe i - 1: out = w A_i[idx1] + (1 - w) A_{i-1}[idx2] */
        stem_tensor prev;
        STEM_TRY(stem_arena_tensor(site->arena, out->dtype, out->ndim, out->shape, &prev));
        STEM_TRY(flow_from(tf, site, &f, i - 1, 1, first, n, &prev));
        const double p1 = (double)(B * i + B / 2), p2 = (double)(B * (i - 1) + B / 2);
        for (int64_t j = 0; j < n; j++) {
            const double s = (double)(first + j), d1 = fabs(s - p1), d2 = fabs(s - p2);
            const float w = (float)(1.0 / (1.0 + exp(-d2 / (d1 + d2))));
            for (int64_t b = 0; b < 3; b++) {
                stem_tensor a, a2;
                STEM_TRY(stem_tensor_narrow0(out, b * n + j, 1, &a));
                STEM_TRY(stem_tensor_narrow0(&prev, b * n + j, 1, &a2));
                STEM_TRY(stem_affine(&a, w, 0.0f, &a));
                STEM_TRY(stem_affine(&a2, 1.0f - w, 0.0f, &a2));
                STEM_TRY(stem_binary(STEM_BINARY_ADD, &a, &a2, &a));
            }
        }
    }
    *replaced = true;
    return STEM_OK;
}

stem_unet_hook_set stem_tokenflow_hook_set(stem_tokenflow *tf) {
    return (stem_unet_hook_set){
        .self_attention_collect = tf->pivotal && tf->cfg.two_phase ? collect_keyframes : NULL,
        .user = tf,
        .tap = tap_hook,
        .tap_mask = STEM_TAP_BIT(STEM_TAP_NORM1) | STEM_TAP_BIT(STEM_TAP_ATTN1_Q) | STEM_TAP_BIT(STEM_TAP_ATTN1_K) |
                    STEM_TAP_BIT(STEM_TAP_ATTN1_OUT) | STEM_TAP_BIT(STEM_TAP_RESNET_RESIDUAL),
        .self_attention = pivotal_attention,
        .replace_self_attention = token_flow,
    };
}
