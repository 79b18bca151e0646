#include "models/clip_text.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/host.h"

#define COMPONENT "text_encoder"

/* ---- config ------------------------------------------------------------------------ */

static stem_status require_int(const stem_config *c, const char *key, int64_t *out) {
    STEM_TRY(stem_config_require(c, key));
    STEM_TRY(stem_config_int(c, key, 0, out));
    if (*out < 1) return stem_fail(STEM_E_FORMAT, "%s: '%s' is %lld, expected a positive integer", c->path, key, (long long)*out);
    return STEM_OK;
}

stem_status stem_clip_text_parse_config(const stem_config *c, stem_clip_text_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    STEM_TRY(require_int(c, "hidden_size", &cfg->hidden));
    STEM_TRY(require_int(c, "num_hidden_layers", &cfg->layers));
    STEM_TRY(require_int(c, "num_attention_heads", &cfg->heads));
    STEM_TRY(require_int(c, "intermediate_size", &cfg->intermediate));
    STEM_TRY(require_int(c, "max_position_embeddings", &cfg->max_positions));
    STEM_TRY(require_int(c, "vocab_size", &cfg->vocab));
    STEM_TRY(stem_config_float(c, "layer_norm_eps", 1e-5, &cfg->ln_eps));
    const char *act;
    STEM_TRY(stem_config_string(c, "hidden_act", "quick_gelu", &act));
    snprintf(cfg->hidden_act, sizeof cfg->hidden_act, "%s", act);
    if (!strcmp(act, "quick_gelu"))
        cfg->act = STEM_UNARY_QUICK_GELU;
    else if (!strcmp(act, "gelu"))
        cfg->act = STEM_UNARY_GELU;
    else if (!strcmp(act, "gelu_new") || !strcmp(act, "gelu_pytorch_tanh"))
        cfg->act = STEM_UNARY_GELU_TANH;
    else
        return stem_fail(STEM_E_UNSUPPORTED,
                         "%s: hidden_act '%s' is not supported (expected quick_gelu, gelu, gelu_new or gelu_pytorch_tanh)",
                         c->path, act);
    if (cfg->hidden % cfg->heads)
        return stem_fail(STEM_E_FORMAT, "%s: hidden_size %lld is not a multiple of num_attention_heads %lld", c->path,
                         (long long)cfg->hidden, (long long)cfg->heads);
    return STEM_OK;
}

/* ---- loading ------------------------------------------------------------------------ */

/* transformers < 5 saves CLIPTextModel's tensors as "text_model.embeddings...",
 * transformers >= 5 as "embeddings..."; both load. Set once per load. */
static const char *name_prefix(stem_weights *w) {
    if (!stem_weights_has(w, "text_model.embeddings.token_embedding.weight") &&
        stem_weights_has(w, "embeddings.token_embedding.weight"))
        return "";
    return "text_model.";
}

/* A view of the placed tensor `prefix` + leaf (prefix: name_prefix);
 * stem_weights_get's pointer is only valid until the next get. */
static stem_status get_view(stem_weights *w, const char *leaf, int ndim, const int64_t *shape, stem_tensor *out) {
    const stem_tensor *t;
    char name[256];
    snprintf(name, sizeof name, "%s%s", name_prefix(w), leaf);
    STEM_TRY(stem_weights_get(w, name, ndim, shape, &t));
    *out = *t;
    out->owned = false;
    return STEM_OK;
}

static stem_status get1(stem_weights *w, const char *name, int64_t n, stem_tensor *out) {
    return get_view(w, name, 1, &n, out);
}

static stem_status get2(stem_weights *w, const char *name, int64_t r, int64_t c, stem_tensor *out) {
    int64_t shape[2] = {r, c};
    return get_view(w, name, 2, shape, out);
}

static stem_status load_layer(stem_clip_text *m, int i) {
    stem_weights *w = &m->weights;
    stem_clip_layer *L = &m->layer[i];
    int64_t C = m->cfg.hidden, I = m->cfg.intermediate;
    char p[160], n[224];
    snprintf(p, sizeof p, "encoder.layers.%d.", i);
#define W2(field, name, r, c) (snprintf(n, sizeof n, "%s%s", p, name), get2(w, n, r, c, &L->field))
#define W1(field, name, len) (snprintf(n, sizeof n, "%s%s", p, name), get1(w, n, len, &L->field))
    STEM_TRY(W1(ln1_w, "layer_norm1.weight", C));
    STEM_TRY(W1(ln1_b, "layer_norm1.bias", C));
    STEM_TRY(W2(q_w, "self_attn.q_proj.weight", C, C));
    STEM_TRY(W1(q_b, "self_attn.q_proj.bias", C));
    STEM_TRY(W2(k_w, "self_attn.k_proj.weight", C, C));
    STEM_TRY(W1(k_b, "self_attn.k_proj.bias", C));
    STEM_TRY(W2(v_w, "self_attn.v_proj.weight", C, C));
    STEM_TRY(W1(v_b, "self_attn.v_proj.bias", C));
    STEM_TRY(W2(o_w, "self_attn.out_proj.weight", C, C));
    STEM_TRY(W1(o_b, "self_attn.out_proj.bias", C));
    STEM_TRY(W1(ln2_w, "layer_norm2.weight", C));
    STEM_TRY(W1(ln2_b, "layer_norm2.bias", C));
    STEM_TRY(W2(fc1_w, "mlp.fc1.weight", I, C));
    STEM_TRY(W1(fc1_b, "mlp.fc1.bias", I));
    STEM_TRY(W2(fc2_w, "mlp.fc2.weight", C, I));
    STEM_TRY(W1(fc2_b, "mlp.fc2.bias", C));
#undef W1
#undef W2
    return STEM_OK;
}

static stem_status load_all(stem_clip_text *m) {
    stem_weights *w = &m->weights;
    const stem_clip_text_config *cfg = &m->cfg;
    m->params = stem_weights_param_count(w);
    STEM_TRY(get2(w, "embeddings.token_embedding.weight", cfg->vocab, cfg->hidden, &m->tok_emb));
    STEM_TRY(get2(w, "embeddings.position_embedding.weight", cfg->max_positions, cfg->hidden, &m->pos_emb));
    /* a buffer that older transformers versions saved; not a parameter */
    const stem_tensor *pos_ids;
    int64_t pos_shape[2] = {1, cfg->max_positions};
    char pos_ids_name[64];
    snprintf(pos_ids_name, sizeof pos_ids_name, "%sembeddings.position_ids", name_prefix(w));
    STEM_TRY(stem_weights_get_optional(w, pos_ids_name, 2, pos_shape, &pos_ids));
    if (pos_ids) m->params -= stem_numel(pos_ids);
    m->layer = calloc((size_t)cfg->layers, sizeof *m->layer);
    if (!m->layer) return stem_fail(STEM_E_NOMEM, "out of memory");
    for (int i = 0; i < cfg->layers; i++) STEM_TRY(load_layer(m, i));
    STEM_TRY(get1(w, "final_layer_norm.weight", cfg->hidden, &m->final_ln_w));
    STEM_TRY(get1(w, "final_layer_norm.bias", cfg->hidden, &m->final_ln_b));
    STEM_TRY(stem_weights_finish(w));
    return stem_arena_create(m->be, 8u << 20, &m->arena);
}

stem_status stem_clip_text_load_weights(const stem_clip_text_config *cfg, stem_weights *w, stem_clip_text *m) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->weights = *w;
    memset(w, 0, sizeof *w);
    m->be = m->weights.be;
    m->dtype = m->weights.dtype;
    stem_status s = load_all(m);
    if (s != STEM_OK) stem_clip_text_free(m);
    return s;
}

stem_status stem_clip_text_load(const char *dir, stem_backend *be, stem_dtype dtype, stem_clip_text *m) {
    memset(m, 0, sizeof *m);
    stem_config c;
    stem_weights w;
    STEM_TRY(stem_component_open(dir, COMPONENT, be, dtype, &c, &w));
    stem_clip_text_config cfg;
    stem_status s = stem_clip_text_parse_config(&c, &cfg);
    stem_config_free(&c);
    if (s != STEM_OK) {
        stem_weights_close(&w);
        return stem_error_context(s, COMPONENT);
    }
    return stem_clip_text_load_weights(&cfg, &w, m);
}

void stem_clip_text_free(stem_clip_text *m) {
    stem_tensor_free(&m->mask);
    stem_arena_destroy(m->arena);
    free(m->layer);
    stem_weights_close(&m->weights);
    memset(m, 0, sizeof *m);
}

/* ---- forward ------------------------------------------------------------------------- */

static stem_status act_tensor(stem_clip_text *m, int ndim, const int64_t *shape, stem_tensor *t) {
    return stem_arena_tensor(m->arena, m->dtype, ndim, shape, t);
}

/* The [L, L] additive causal mask: 0 where j <= i, -inf above the diagonal. */
static stem_status ensure_mask(stem_clip_text *m, int64_t L) {
    if (m->mask_len == L) return STEM_OK;
    stem_tensor_free(&m->mask);
    m->mask_len = 0;
    float *host = malloc((size_t)(L * L) * sizeof *host);
    if (!host) return stem_fail(STEM_E_NOMEM, "out of memory");
    for (int64_t i = 0; i < L; i++)
        for (int64_t j = 0; j < L; j++) host[i * L + j] = j <= i ? 0.0f : -INFINITY;
    int64_t shape[2] = {L, L};
    stem_tensor h = stem_tensor_wrap(stem_host(), STEM_F32, 2, shape, host);
    stem_status s = stem_tensor_to(&h, m->be, m->dtype, &m->mask);
    free(host);
    if (s == STEM_OK) m->mask_len = L;
    return s;
}

/* Copies src into dst across backends and float dtypes; staging memory comes from
 * the arena (on the model's backend, where one of the two lives). */
static stem_status transfer(stem_arena *a, stem_backend *be, const stem_tensor *src, stem_tensor *dst) {
    if (src->dtype == dst->dtype) return stem_tensor_copy(src, dst);
    if (src->backend == dst->backend) return stem_cast(src, dst);
    size_t mark = stem_arena_mark(a);
    stem_tensor stage;
    stem_status s;
    if (dst->backend == be) {
        s = stem_arena_tensor(a, src->dtype, src->ndim, src->shape, &stage);
        if (s == STEM_OK) s = stem_tensor_copy(src, &stage);
        if (s == STEM_OK) s = stem_cast(&stage, dst);
    } else {
        s = stem_arena_tensor(a, dst->dtype, src->ndim, src->shape, &stage);
        if (s == STEM_OK) s = stem_cast(src, &stage);
        if (s == STEM_OK) s = stem_tensor_copy(&stage, dst);
    }
    stem_arena_reset(a, mark);
    return s;
}

/* x [B, L, C] -> y [B, L, C]: softmax(q k^T / sqrt(d) + causal) v per head. */
static stem_status causal_self_attention(stem_clip_text *m, const stem_clip_layer *lw, const stem_tensor *x,
                                         stem_tensor *y) {
    int64_t B = x->shape[0], L = x->shape[1], C = m->cfg.hidden, H = m->cfg.heads, d = C / H;
    size_t mark = stem_arena_mark(m->arena);
    stem_tensor q, k, v, qh, kh, vh, scores, ctx, ctx_tok;
    int64_t bld[3] = {B, L, C}, blhd[4] = {B, L, H, d}, bhld[4] = {B, H, L, d}, bhll[4] = {B, H, L, L};
    static const int to_heads[4] = {0, 2, 1, 3}; /* [B, L, H, d] <-> [B, H, L, d] */
    STEM_TRY(act_tensor(m, 3, bld, &q));
    STEM_TRY(act_tensor(m, 3, bld, &k));
    STEM_TRY(act_tensor(m, 3, bld, &v));
    STEM_TRY(stem_linear(x, &lw->q_w, &lw->q_b, &q));
    STEM_TRY(stem_linear(x, &lw->k_w, &lw->k_b, &k));
    STEM_TRY(stem_linear(x, &lw->v_w, &lw->v_b, &v));
    STEM_TRY(act_tensor(m, 4, bhld, &qh));
    STEM_TRY(act_tensor(m, 4, bhld, &kh));
    STEM_TRY(act_tensor(m, 4, bhld, &vh));
    stem_tensor view;
    STEM_TRY(stem_tensor_reshape(&q, 4, blhd, &view));
    STEM_TRY(stem_permute(&view, to_heads, &qh));
    STEM_TRY(stem_tensor_reshape(&k, 4, blhd, &view));
    STEM_TRY(stem_permute(&view, to_heads, &kh));
    STEM_TRY(stem_tensor_reshape(&v, 4, blhd, &view));
    STEM_TRY(stem_permute(&view, to_heads, &vh));
    STEM_TRY(act_tensor(m, 4, bhll, &scores));
    STEM_TRY(stem_matmul(&qh, &kh, false, true, (float)(1.0 / sqrt((double)d)), 0.0f, &scores));
    STEM_TRY(stem_binary(STEM_BINARY_ADD, &scores, &m->mask, &scores));
    STEM_TRY(stem_softmax(&scores, 1.0f, &scores));
    STEM_TRY(act_tensor(m, 4, bhld, &ctx));
    STEM_TRY(stem_matmul(&scores, &vh, false, false, 1.0f, 0.0f, &ctx));
    STEM_TRY(act_tensor(m, 4, blhd, &ctx_tok));
    STEM_TRY(stem_permute(&ctx, to_heads, &ctx_tok));
    STEM_TRY(stem_tensor_reshape(&ctx_tok, 3, bld, &view));
    STEM_TRY(stem_linear(&view, &lw->o_w, &lw->o_b, y));
    stem_arena_reset(m->arena, mark);
    return STEM_OK;
}

/* h += attn(ln1(h)); h += fc2(act(fc1(ln2(h)))) */
static stem_status encoder_layer(stem_clip_text *m, const stem_clip_layer *lw, stem_tensor *h) {
    int64_t B = h->shape[0], L = h->shape[1], C = m->cfg.hidden, I = m->cfg.intermediate;
    float eps = (float)m->cfg.ln_eps;
    size_t mark = stem_arena_mark(m->arena);
    int64_t bld[3] = {B, L, C}, bli[3] = {B, L, I};
    stem_tensor t, o, f;
    STEM_TRY(act_tensor(m, 3, bld, &t));
    STEM_TRY(act_tensor(m, 3, bld, &o));
    STEM_TRY(stem_layer_norm(h, &lw->ln1_w, &lw->ln1_b, eps, &t));
    STEM_TRY(causal_self_attention(m, lw, &t, &o));
    STEM_TRY(stem_binary(STEM_BINARY_ADD, h, &o, h));
    STEM_TRY(stem_layer_norm(h, &lw->ln2_w, &lw->ln2_b, eps, &t));
    STEM_TRY(act_tensor(m, 3, bli, &f));
    STEM_TRY(stem_linear(&t, &lw->fc1_w, &lw->fc1_b, &f));
    STEM_TRY(stem_unary(m->cfg.act, &f, &f));
    STEM_TRY(stem_linear(&f, &lw->fc2_w, &lw->fc2_b, &o));
    STEM_TRY(stem_binary(STEM_BINARY_ADD, h, &o, h));
    stem_arena_reset(m->arena, mark);
    return STEM_OK;
}

static stem_status forward(stem_clip_text *m, const stem_tensor *ids, stem_tensor *out) {
    const stem_clip_text_config *cfg = &m->cfg;
    char s1[STEM_SHAPE_STR_LEN], s2[STEM_SHAPE_STR_LEN];
    if (ids->dtype != STEM_I32 || ids->ndim != 2)
        return stem_fail(STEM_E_ARG, "%s: token ids must be int32 [batch, tokens], got %s %s", COMPONENT,
                         stem_dtype_name(ids->dtype), stem_shape_str(ids, s1, sizeof s1));
    int64_t B = ids->shape[0], L = ids->shape[1], C = cfg->hidden;
    if (L < 1 || L > cfg->max_positions)
        return stem_fail(STEM_E_ARG, "%s: %lld tokens per prompt, the model has %lld positions", COMPONENT,
                         (long long)L, (long long)cfg->max_positions);
    int64_t want[3] = {B, L, C};
    stem_tensor want_t = stem_tensor_wrap(NULL, out->dtype, 3, want, NULL);
    if (!stem_same_shape(out, &want_t))
        return stem_fail(STEM_E_SHAPE, "%s: output has shape %s, expected %s", COMPONENT,
                         stem_shape_str(out, s1, sizeof s1), stem_shape_str(&want_t, s2, sizeof s2));
    if (B == 0) return STEM_OK;

    /* ids to the host (they are few), checked, then to the backend */
    int32_t *host_ids = malloc((size_t)(B * L) * sizeof *host_ids);
    if (!host_ids) return stem_fail(STEM_E_NOMEM, "out of memory");
    int64_t flat[1] = {B * L};
    stem_tensor h_ids = stem_tensor_wrap(stem_host(), STEM_I32, 2, ids->shape, host_ids);
    stem_status s = stem_tensor_copy(ids, &h_ids);
    for (int64_t i = 0; s == STEM_OK && i < B * L; i++)
        if (host_ids[i] < 0 || host_ids[i] >= cfg->vocab)
            s = stem_fail(STEM_E_ARG, "%s: token id %d at [%lld, %lld] is outside the vocabulary 0..%lld", COMPONENT,
                          host_ids[i], (long long)(i / L), (long long)(i % L), (long long)cfg->vocab - 1);
    stem_tensor d_ids = {0};
    if (s == STEM_OK) s = stem_arena_tensor(m->arena, STEM_I32, 1, flat, &d_ids);
    if (s == STEM_OK) {
        h_ids = stem_tensor_wrap(stem_host(), STEM_I32, 1, flat, host_ids);
        s = stem_tensor_copy(&h_ids, &d_ids);
    }
    free(host_ids);
    STEM_TRY(s);

    /* embeddings: token rows + the first L position rows */
    stem_tensor h, h2, pos, t;
    int64_t rows[2] = {B * L, C}, bld[3] = {B, L, C};
    STEM_TRY(act_tensor(m, 2, rows, &h2));
    STEM_TRY(stem_gather_rows(&m->tok_emb, &d_ids, &h2));
    STEM_TRY(stem_tensor_reshape(&h2, 3, bld, &h));
    STEM_TRY(stem_tensor_narrow0(&m->pos_emb, 0, L, &pos));
    STEM_TRY(stem_binary(STEM_BINARY_ADD, &h, &pos, &h));

    STEM_TRY(ensure_mask(m, L));
    for (int64_t i = 0; i < cfg->layers; i++) {
        s = encoder_layer(m, &m->layer[i], &h);
        if (s != STEM_OK) return stem_error_context(s, "%s layer %lld", COMPONENT, (long long)i);
    }
    if (out->backend == m->be && out->dtype == m->dtype)
        return stem_layer_norm(&h, &m->final_ln_w, &m->final_ln_b, (float)cfg->ln_eps, out);
    STEM_TRY(act_tensor(m, 3, bld, &t));
    STEM_TRY(stem_layer_norm(&h, &m->final_ln_w, &m->final_ln_b, (float)cfg->ln_eps, &t));
    return transfer(m->arena, m->be, &t, out);
}

stem_status stem_clip_text_forward(stem_clip_text *m, const stem_tensor *ids, stem_tensor *out) {
    stem_arena_reset(m->arena, 0);
    stem_status s = forward(m, ids, out);
    stem_arena_reset(m->arena, 0);
    return s;
}
