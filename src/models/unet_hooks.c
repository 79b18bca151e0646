/* Hook dispatch: how the UNet calls a forward's list of hook sets (the composition
 * rules of unet_hooks.h), the attention probabilities, and spans. */
#include <string.h>

#include "core/ops.h"
#include "models/unet_internal.h"

stem_status stem_unet_span_branch(const stem_unet_span *span, const stem_tensor *x, int64_t branch,
                                  stem_tensor *rows) {
    if (branch < 0 || branch >= span->branches)
        return stem_fail(STEM_E_ARG, "unet span: branch %lld of %lld", (long long)branch, (long long)span->branches);
    if (x->ndim < 1 || x->shape[0] != span->branches * span->frames)
        return stem_fail(STEM_E_SHAPE, "unet span: a tensor of %lld rows for %lld branches x %lld frames",
                         x->ndim ? (long long)x->shape[0] : 0LL, (long long)span->branches, (long long)span->frames);
    return stem_tensor_narrow0(x, branch * span->frames, span->frames, rows);
}

stem_status stem_attention_default(void *user, const stem_attn_site *site, const stem_tensor *q,
                                   const stem_tensor *k, const stem_tensor *v, stem_tensor *out) {
    (void)user;
    return stem_attention_heads(q, k, v, (int)site->heads, site->scale, out);
}

static stem_attention_fn core_of(const stem_unet_hook_set *s, stem_attn_kind kind) {
    return kind == STEM_ATTN_SELF ? s->self_attention : s->cross_attention;
}

stem_status unet_hooks_check(const stem_unet_hooks *h, int64_t B) {
    if (h->branches < 0 || (h->branches > 1 && B % h->branches))
        return stem_fail(STEM_E_ARG, "unet: a batch of %lld samples does not split into %lld branches", (long long)B,
                         (long long)h->branches);
    if (h->n_sets < 0 || h->n_sets > STEM_UNET_MAX_HOOK_SETS || (h->n_sets > 0 && !h->sets))
        return stem_fail(STEM_E_ARG, "unet: %d hook sets (at most %d, in an array)", h->n_sets,
                         STEM_UNET_MAX_HOOK_SETS);
    int core = -1; /* the set whose attn1 core runs */
    for (int i = 0; i < h->n_sets; i++)
        if (h->sets[i].self_attention) core = i;
    for (int i = 0; i < h->n_sets; i++)
        if (h->sets[i].self_attention_collect && i != core)
            return stem_fail(STEM_E_ARG,
                             "unet: hook set %d has a self_attention_collect hook but %s: the collect hook needs "
                             "the self_attention hook that reads what it collected, in the last set that has one",
                             i, core < 0 ? "no set has a self_attention hook" : "another set's self_attention runs");
    return STEM_OK;
}

stem_status unet_forward_end(const stem_unet_hooks *h) {
    for (int i = 0; i < h->n_sets; i++)
        if (h->sets[i].forward_end) {
            stem_status s = h->sets[i].forward_end(h->sets[i].user);
            if (s != STEM_OK) return stem_error_context(s, "unet: end of the forward (hook set %d)", i);
        }
    return STEM_OK;
}

bool unet_tap_on(const unet_run *r, stem_unet_tap_kind kind) {
    for (int i = 0; i < r->hooks->n_sets; i++)
        if (r->hooks->sets[i].tap && (r->hooks->sets[i].tap_mask & STEM_TAP_BIT(kind))) return true;
    return false;
}

stem_status unet_tap(unet_run *r, stem_unet_tap *tap) {
    static const char *const kinds[STEM_TAP_KIND_COUNT] = {
        "norm1", "attn1 q", "attn1 k", "attn1 v", "attn1 out", "resnet residual", "skip concat",
        "norm2", "attn2 q", "attn2 k", "attn2 v", "attn2 out"};
    for (int i = 0; i < r->hooks->n_sets; i++) {
        const stem_unet_hook_set *set = &r->hooks->sets[i];
        if (!set->tap || !(set->tap_mask & STEM_TAP_BIT(tap->kind))) continue;
        stem_status s = set->tap(set->user, tap);
        if (s == STEM_OK) continue;
        if (tap->attn) return stem_error_context(s, "%s hook at %s", kinds[tap->kind], tap->attn->name);
        return stem_error_context(s, "%s hook", kinds[tap->kind]); /* the caller names the module */
    }
    return STEM_OK;
}

const stem_unet_hook_set *unet_core_set(const unet_run *r, stem_attn_kind kind) {
    for (int i = r->hooks->n_sets - 1; i >= 0; i--)
        if (core_of(&r->hooks->sets[i], kind)) return &r->hooks->sets[i];
    return NULL;
}

stem_status unet_replace(unet_run *r, const stem_attn_site *site, const stem_tensor *x, stem_tensor *out,
                         bool *replaced) {
    *replaced = false;
    for (int i = 0; i < r->hooks->n_sets && !*replaced; i++) {
        const stem_unet_hook_set *set = &r->hooks->sets[i];
        stem_attention_replace_fn fn =
            site->kind == STEM_ATTN_SELF ? set->replace_self_attention : set->replace_cross_attention;
        if (!fn) continue;
        stem_status s = fn(set->user, site, x, out, replaced);
        if (s != STEM_OK) return stem_error_context(s, "replace hook at %s", site->name);
    }
    return STEM_OK;
}

static bool set_wants_probs(const stem_unet_hook_set *set, const stem_attn_site *site) {
    return set->attention_probs && (!set->wants_probs || set->wants_probs(set->user, site));
}

/* x [n, C] of one sample -> [heads, n, head_dim] */
static stem_status split_heads(unet_run *r, const stem_attn_site *site, const stem_tensor *x, stem_tensor *out) {
    static const int perm[3] = {1, 0, 2};
    int64_t nhd[3] = {x->shape[0], site->heads, site->head_dim}, hnd[3] = {site->heads, x->shape[0], site->head_dim};
    stem_tensor v;
    STEM_TRY(stem_tensor_reshape(x, 3, nhd, &v));
    STEM_TRY(unet_tmp(r, 3, hnd, out));
    return stem_permute(&v, perm, out);
}

stem_status unet_probs(unet_run *r, const stem_attn_site *site, const stem_tensor *q, const stem_tensor *k) {
    uint64_t want = 0; /* the sets that ask, each asked once per call */
    for (int i = 0; i < r->hooks->n_sets; i++)
        if (set_wants_probs(&r->hooks->sets[i], site)) want |= (uint64_t)1 << i;
    if (!want) return STEM_OK;
    if (!k)
        return stem_fail(STEM_E_ARG, "%s: attention probabilities asked for in a two-phase attn1 (the keys are the "
                                     "collect hook's)", site->name);
    for (int64_t row = 0; row < q->shape[0]; row++) {
        size_t mark = stem_arena_mark(r->arena);
        stem_tensor q1, k1, q2, k2, qh, kh, scores, p;
        int64_t hqk[3] = {site->heads, q->shape[1], k->shape[1]};
        int64_t sq[2] = {q->shape[1], q->shape[2]}, sk[2] = {k->shape[1], k->shape[2]};
        /* sample `row`: q [tokens, C], k [kv_tokens, C] */
        stem_status s = stem_tensor_narrow0(q, row, 1, &q1);
        if (s == STEM_OK) s = stem_tensor_narrow0(k, row, 1, &k1);
        if (s == STEM_OK) s = stem_tensor_reshape(&q1, 2, sq, &q2);
        if (s == STEM_OK) s = stem_tensor_reshape(&k1, 2, sk, &k2);
        if (s == STEM_OK) s = split_heads(r, site, &q2, &qh);
        if (s == STEM_OK) s = split_heads(r, site, &k2, &kh);
        /* p = softmax(scale * q_h k_h^T)   [heads, tokens, kv_tokens] */
        if (s == STEM_OK) s = unet_tmp(r, 3, hqk, &scores);
        if (s == STEM_OK) s = stem_matmul(&qh, &kh, false, true, 1.0f, 0.0f, &scores);
        if (s == STEM_OK) s = unet_tmp(r, 3, hqk, &p);
        if (s == STEM_OK) s = stem_softmax(&scores, site->scale, &p);
        for (int i = 0; i < r->hooks->n_sets && s == STEM_OK; i++)
            if (want & ((uint64_t)1 << i)) s = r->hooks->sets[i].attention_probs(r->hooks->sets[i].user, site, row, &p);
        stem_arena_reset(r->arena, mark);
        if (s != STEM_OK) return stem_error_context(s, "attention probabilities at %s", site->name);
    }
    return STEM_OK;
}
