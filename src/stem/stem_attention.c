/* The three self-attention modes over frame scopes; see stem_attention.h. Everything is
 * token-major [frames, N, C] here: a scope of frames is a contiguous run of rows, so
 * chunks are views, and the attention op reads the heads with strides (no permutes). */
#include "stem/stem_attention.h"

#include <math.h>
#include <string.h>

#include "core/ops.h"

void stem_sa_options_default(stem_sa_options *o) {
    memset(o, 0, sizeof *o);
    o->mode = STEM_SA_STEM;
    o->scope = STEM_SCOPE_VIDEO;
    o->batch_size = 8;
    stem_em_options_default(&o->em);
}

stem_status stem_sa_mode_parse(const char *s, stem_sa_mode *out) {
    if (!strcmp(s, "stem")) *out = STEM_SA_STEM;
    else if (!strcmp(s, "frame")) *out = STEM_SA_FRAME;
    else if (!strcmp(s, "inflated")) *out = STEM_SA_INFLATED;
    else return stem_fail(STEM_E_ARG, "attention mode '%s' is not one of stem, frame, inflated", s);
    return STEM_OK;
}

stem_status stem_em_scope_parse(const char *s, stem_em_scope *out) {
    if (!strcmp(s, "video")) *out = STEM_SCOPE_VIDEO;
    else if (!strcmp(s, "chunk")) *out = STEM_SCOPE_CHUNK;
    else return stem_fail(STEM_E_ARG, "EM scope '%s' is not one of video, chunk", s);
    return STEM_OK;
}

const char *stem_sa_mode_name(stem_sa_mode m) {
    return m == STEM_SA_STEM ? "stem" : m == STEM_SA_FRAME ? "frame" : "inflated";
}

const char *stem_em_scope_name(stem_em_scope s) { return s == STEM_SCOPE_VIDEO ? "video" : "chunk"; }

/* x [F, N, C], frames f0 .. f0+count-1 as one sequence [1, count*N, C] (a view). */
static stem_status scope_view(const stem_tensor *x, int64_t f0, int64_t count, stem_tensor *out) {
    stem_tensor rows;
    STEM_TRY(stem_tensor_narrow0(x, f0, count, &rows));
    int64_t shape[3] = {1, count * x->shape[1], x->shape[2]};
    return stem_tensor_reshape(&rows, 3, shape, out);
}

/* A temporary like stem_tensor_new, from ws's arena when there is one. */
static stem_status sa_tensor(const stem_em_workspace *ws, stem_backend *be, stem_dtype dt, int ndim,
                             const int64_t *shape, stem_tensor *t) {
    if (ws && ws->arena) return stem_arena_tensor(ws->arena, dt, ndim, shape, t);
    return stem_tensor_new(be, dt, ndim, shape, t);
}

stem_status stem_sa_bases(const stem_tensor *k, const stem_tensor *v, int64_t heads, const stem_em_options *em,
                          const stem_em_workspace *ws, stem_tensor *k_base, stem_tensor *v_base) {
    char a[STEM_SHAPE_STR_LEN];
    const int64_t C = k->shape[k->ndim - 1], M = em->bases;
    if (heads < 1 || C % heads)
        return stem_fail(STEM_E_SHAPE, "stem bases: %lld channels do not split into %lld heads", (long long)C,
                         (long long)heads);
    const stem_tensor *outs[2] = {k_base, v_base};
    for (int i = 0; i < 2; i++)
        if (outs[i]->ndim != 3 || outs[i]->shape[0] != 1 || outs[i]->shape[1] != M || outs[i]->shape[2] != C)
            return stem_fail(STEM_E_SHAPE, "stem bases: %s_base has shape %s, expected [1, %lld, %lld]",
                             i ? "v" : "k", stem_shape_str(outs[i], a, sizeof a), (long long)M, (long long)C);
    STEM_TRY(stem_em_options_check(em));
    /* the EM gives head-major [H, M, d]; the attention wants token-major [1, M, C] like q */
    const int64_t d = C / heads;
    int64_t hmd[3] = {heads, M, d}, mhd[3] = {M, heads, d};
    stem_tensor kb = {0}, vb = {0}, kt, vt;
    stem_heads_view kv, vv;
    stem_status s = sa_tensor(ws, k->backend, k_base->dtype, 3, hmd, &kb);
    if (s == STEM_OK) s = sa_tensor(ws, k->backend, k_base->dtype, 3, hmd, &vb);
    if (s == STEM_OK) s = stem_heads_view_make(k, STEM_TOKENS_MAJOR, heads, "em: k", &kv);
    if (s == STEM_OK) s = stem_heads_view_make(v, STEM_TOKENS_MAJOR, heads, "em: v", &vv);
    if (s == STEM_OK) s = stem_em_bases_view(&kv, &vv, NULL, em, ws, &kb, &vb);
    static const int perm[3] = {1, 0, 2}; /* [H, M, d] -> [M, H, d] = [M, C] */
    if (s == STEM_OK) s = stem_tensor_reshape(k_base, 3, mhd, &kt);
    if (s == STEM_OK) s = stem_tensor_reshape(v_base, 3, mhd, &vt);
    if (s == STEM_OK) s = stem_permute(&kb, perm, &kt);
    if (s == STEM_OK) s = stem_permute(&vb, perm, &vt);
    stem_tensor_free(&kb);
    stem_tensor_free(&vb);
    return s;
}

stem_status stem_sa_attend(const stem_tensor *q, const stem_tensor *k_scope, const stem_tensor *v_scope,
                           int64_t heads, stem_tensor *out) {
    char a[STEM_SHAPE_STR_LEN], b[STEM_SHAPE_STR_LEN];
    if (q->ndim != 3 || !stem_same_shape(q, out))
        return stem_fail(STEM_E_SHAPE, "self-attention: q %s and out %s must be the same [frames, tokens, channels]",
                         stem_shape_str(q, a, sizeof a), stem_shape_str(out, b, sizeof b));
    const int64_t C = q->shape[2];
    if (heads < 1 || C % heads)
        return stem_fail(STEM_E_SHAPE, "self-attention: %lld channels do not split into %lld heads", (long long)C,
                         (long long)heads);
    /* every query row attends to the same keys: q as one sequence [1, frames*N, C] */
    stem_tensor qs, os;
    STEM_TRY(scope_view(q, 0, q->shape[0], &qs));
    STEM_TRY(scope_view(out, 0, out->shape[0], &os));
    const float scale = (float)(1.0 / sqrt((double)(C / heads)));
    return stem_attention_heads(&qs, k_scope, v_scope, (int)heads, scale, &os);
}

/* STEM-SA on one scope: q, k, v, out [1, n, C]. */
static stem_status stem_scope(const stem_tensor *q, const stem_tensor *k, const stem_tensor *v, int64_t heads,
                              const stem_em_options *em, const stem_em_workspace *ws, stem_tensor *out) {
    int64_t one_mc[3] = {1, em->bases, q->shape[2]};
    stem_tensor kb = {0}, vb = {0};
    stem_status s = sa_tensor(ws, q->backend, q->dtype, 3, one_mc, &kb);
    if (s == STEM_OK) s = sa_tensor(ws, q->backend, q->dtype, 3, one_mc, &vb);
    if (s == STEM_OK) s = stem_sa_bases(k, v, heads, em, ws, &kb, &vb);
    if (s == STEM_OK) s = stem_sa_attend(q, &kb, &vb, heads, out);
    stem_tensor_free(&kb);
    stem_tensor_free(&vb);
    return s;
}

stem_status stem_self_attention(const stem_tensor *q, const stem_tensor *k, const stem_tensor *v, int64_t heads,
                                const stem_sa_options *o, stem_tensor *out) {
    return stem_self_attention_ws(q, k, v, heads, o, NULL, out);
}

stem_status stem_self_attention_ws(const stem_tensor *q, const stem_tensor *k, const stem_tensor *v, int64_t heads,
                                   const stem_sa_options *o, const stem_em_workspace *ws, stem_tensor *out) {
    char a[STEM_SHAPE_STR_LEN], b[STEM_SHAPE_STR_LEN];
    const stem_tensor *all[4] = {q, k, v, out};
    static const char *names[4] = {"q", "k", "v", "out"};
    for (int i = 0; i < 4; i++) {
        if (all[i]->ndim != 3)
            return stem_fail(STEM_E_SHAPE, "self-attention: %s has shape %s, expected [frames, tokens, channels]",
                             names[i], stem_shape_str(all[i], a, sizeof a));
        if (!stem_same_shape(all[i], q))
            return stem_fail(STEM_E_SHAPE, "self-attention: %s %s differs from q %s", names[i],
                             stem_shape_str(all[i], a, sizeof a), stem_shape_str(q, b, sizeof b));
    }
    const int64_t F = q->shape[0], C = q->shape[2];
    if (heads < 1 || C % heads)
        return stem_fail(STEM_E_SHAPE, "self-attention: %lld channels do not split into %lld heads (channels must be heads x head_dim)",
                         (long long)C, (long long)heads);
    if (heads > 1024) return stem_fail(STEM_E_ARG, "self-attention: %lld heads is too many", (long long)heads);
    if (o->scope == STEM_SCOPE_CHUNK && o->batch_size < 1)
        return stem_fail(STEM_E_ARG, "self-attention: batch_size must be >= 1 with scope chunk (got %lld)", (long long)o->batch_size);
    if (o->mode == STEM_SA_STEM) STEM_TRY(stem_em_options_check(&o->em));
    const float scale = (float)(1.0 / sqrt((double)(C / heads)));
    if (F == 0) return STEM_OK;

    if (o->mode == STEM_SA_FRAME) return stem_attention_heads(q, k, v, (int)heads, scale, out);

    const int64_t per = o->scope == STEM_SCOPE_CHUNK ? o->batch_size : F;
    const int64_t chunks = (F + per - 1) / per;
    if (o->mode == STEM_SA_STEM && o->em.chunk + chunks > 4096)
        return stem_fail(STEM_E_ARG, "self-attention: %lld chunks do not fit the 12-bit chunk counter", (long long)chunks);
    for (int64_t c = 0; c < chunks; c++) {
        int64_t f0 = c * per, count = F - f0 < per ? F - f0 : per;
        stem_tensor qs, ks, vs, os;
        STEM_TRY(scope_view(q, f0, count, &qs));
        STEM_TRY(scope_view(k, f0, count, &ks));
        STEM_TRY(scope_view(v, f0, count, &vs));
        STEM_TRY(scope_view(out, f0, count, &os));
        if (o->mode == STEM_SA_INFLATED) {
            STEM_TRY(stem_attention_heads(&qs, &ks, &vs, (int)heads, scale, &os));
        } else {
            stem_em_options em = o->em;
            /* o->em.chunk is the index of the first chunk in q (non-zero when the caller
             * runs the video in slices of whole chunks) */
            em.chunk = o->scope == STEM_SCOPE_CHUNK ? o->em.chunk + (uint32_t)c : 0;
            size_t mark = ws && ws->arena ? stem_arena_mark(ws->arena) : 0;
            stem_status s = stem_scope(&qs, &ks, &vs, heads, &em, ws, &os);
            if (ws && ws->arena) stem_arena_reset(ws->arena, mark); /* each chunk's temporaries */
            if (s != STEM_OK) return s;
        }
    }
    return STEM_OK;
}

stem_status stem_self_attention_heads(const stem_tensor *q, const stem_tensor *k, const stem_tensor *v,
                                      int64_t frames, const stem_sa_options *o, stem_tensor *out) {
    char a[STEM_SHAPE_STR_LEN], b[STEM_SHAPE_STR_LEN];
    const stem_tensor *all[4] = {q, k, v, out};
    static const char *names[4] = {"q", "k", "v", "out"};
    for (int i = 0; i < 4; i++) {
        if (all[i]->ndim != 3)
            return stem_fail(STEM_E_SHAPE, "stem_attention: %s has shape %s, expected [heads, frames*tokens, head_dim]",
                             names[i], stem_shape_str(all[i], a, sizeof a));
        if (!stem_same_shape(all[i], q))
            return stem_fail(STEM_E_SHAPE, "stem_attention: %s %s differs from q %s", names[i],
                             stem_shape_str(all[i], a, sizeof a), stem_shape_str(q, b, sizeof b));
    }
    const int64_t H = q->shape[0], n = q->shape[1], d = q->shape[2];
    if (frames < 1 || n % frames)
        return stem_fail(STEM_E_SHAPE, "stem_attention: %lld tokens do not split into %lld frames", (long long)n,
                         (long long)frames);
    /* to token-major [F, N, C] and back: [H, n, d] -> [n, H, d] */
    stem_backend *be = q->backend;
    int64_t tm[3] = {n, H, d}, fnc[3] = {frames, n / frames, H * d};
    static const int perm[3] = {1, 0, 2};
    stem_tensor t[4] = {{0}};
    stem_status s = STEM_OK;
    for (int i = 0; i < 4 && s == STEM_OK; i++) s = stem_tensor_new(be, q->dtype, 3, tm, &t[i]);
    for (int i = 0; i < 3 && s == STEM_OK; i++) s = stem_permute(all[i], perm, &t[i]);
    stem_tensor view[4];
    for (int i = 0; i < 4 && s == STEM_OK; i++) s = stem_tensor_reshape(&t[i], 3, fnc, &view[i]);
    if (s == STEM_OK) s = stem_self_attention(&view[0], &view[1], &view[2], H, o, &view[3]);
    if (s == STEM_OK) s = stem_permute(&t[3], perm, out);
    for (int i = 0; i < 4; i++) stem_tensor_free(&t[i]);
    return s;
}
