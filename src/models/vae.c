#include "models/vae.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ops.h"

#define COMPONENT "vae"
#define RESNET_EPS 1e-6f /* diffusers hard-codes it for the VAE's norms */

/* ---- config ------------------------------------------------------------------------ */

stem_status stem_vae_parse_config(const stem_config *c, stem_vae_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    int n = 0;
    STEM_TRY(stem_config_require(c, "block_out_channels"));
    STEM_TRY(stem_config_ints(c, "block_out_channels", cfg->block_out, STEM_VAE_MAX_LEVELS, &n));
    if (n < 1) return stem_fail(STEM_E_FORMAT, "%s: 'block_out_channels' is empty", c->path);
    cfg->levels = n;
    STEM_TRY(stem_config_require(c, "layers_per_block"));
    STEM_TRY(stem_config_int(c, "layers_per_block", 1, &cfg->layers_per_block));
    STEM_TRY(stem_config_require(c, "latent_channels"));
    STEM_TRY(stem_config_int(c, "latent_channels", 4, &cfg->latent_channels));
    STEM_TRY(stem_config_int(c, "in_channels", 3, &cfg->in_channels));
    STEM_TRY(stem_config_int(c, "out_channels", 3, &cfg->out_channels));
    STEM_TRY(stem_config_int(c, "norm_num_groups", 32, &cfg->groups));
    STEM_TRY(stem_config_float(c, "scaling_factor", 0.18215, &cfg->scaling_factor));
    if (cfg->layers_per_block < 1 || cfg->layers_per_block > STEM_VAE_MAX_RESNETS - 1) /* no +1: INT64_MAX overflowed */
        return stem_fail(STEM_E_UNSUPPORTED, "%s: layers_per_block %lld is outside 1..%d", c->path,
                         (long long)cfg->layers_per_block, STEM_VAE_MAX_RESNETS - 1);
    if (cfg->scaling_factor == 0) return stem_fail(STEM_E_FORMAT, "%s: scaling_factor is 0", c->path);
    /* checked before the channel counts are divided by it (0 was a SIGFPE, a negative count a failure at step 0) */
    if (cfg->groups < 1 || cfg->groups > (1 << 20))
        return stem_fail(STEM_E_FORMAT, "%s: norm_num_groups = %lld is out of range (1..%d)", c->path,
                         (long long)cfg->groups, 1 << 20);
    for (int i = 0; i < n; i++)
        if (cfg->block_out[i] < 1 || cfg->block_out[i] % cfg->groups)
            return stem_fail(STEM_E_FORMAT, "%s: block_out_channels[%d] = %lld does not split into %lld groups",
                             c->path, i, (long long)cfg->block_out[i], (long long)cfg->groups);
    if (cfg->in_channels < 1 || cfg->out_channels < 1 || cfg->latent_channels < 1 || cfg->groups < 1)
        return stem_fail(STEM_E_FORMAT, "%s: channel and group counts must be positive", c->path);
    const char *act;
    STEM_TRY(stem_config_string(c, "act_fn", "silu", &act));
    if (strcmp(act, "silu"))
        return stem_fail(STEM_E_UNSUPPORTED, "%s: act_fn '%s' is not supported (the SD VAE uses silu)", c->path, act);
    const char *types[STEM_VAE_MAX_LEVELS];
    int nt = 0;
    static const char *const keys[2] = {"down_block_types", "up_block_types"};
    static const char *const want[2] = {"DownEncoderBlock2D", "UpDecoderBlock2D"};
    for (int k = 0; k < 2; k++) {
        if (!stem_config_has(c, keys[k])) continue;
        STEM_TRY(stem_config_strings(c, keys[k], types, STEM_VAE_MAX_LEVELS, &nt));
        if (nt != n)
            return stem_fail(STEM_E_FORMAT, "%s: '%s' has %d entries, block_out_channels has %d", c->path, keys[k], nt, n);
        for (int i = 0; i < nt; i++)
            if (strcmp(types[i], want[k]))
                return stem_fail(STEM_E_UNSUPPORTED, "%s: %s[%d] is '%s', only %s is supported", c->path, keys[k], i,
                                 types[i], want[k]);
    }
    return STEM_OK;
}

/* ---- loading ------------------------------------------------------------------------ */

/* A view of the placed tensor: stem_weights_get's pointer is only valid until the next get. */
static stem_status get_view(stem_weights *w, const char *name, int ndim, const int64_t *shape, stem_tensor *out) {
    const stem_tensor *t;
    STEM_TRY(stem_weights_get(w, name, ndim, shape, &t));
    *out = *t;
    out->owned = false;
    return STEM_OK;
}

static stem_status get_vec(stem_weights *w, const char *name, int64_t n, stem_tensor *out) {
    return get_view(w, name, 1, &n, out);
}

static stem_status get_conv(stem_weights *w, const char *prefix, int64_t c_out, int64_t c_in, int64_t k,
                            stem_tensor *wt, stem_tensor *b) {
    char n[256];
    int64_t shape[4] = {c_out, c_in, k, k};
    snprintf(n, sizeof n, "%s.weight", prefix);
    STEM_TRY(get_view(w, n, 4, shape, wt));
    snprintf(n, sizeof n, "%s.bias", prefix);
    return get_vec(w, n, c_out, b);
}

static stem_status get_norm(stem_weights *w, const char *prefix, int64_t c, stem_tensor *g, stem_tensor *b) {
    char n[256];
    snprintf(n, sizeof n, "%s.weight", prefix);
    STEM_TRY(get_vec(w, n, c, g));
    snprintf(n, sizeof n, "%s.bias", prefix);
    return get_vec(w, n, c, b);
}

static stem_status load_resnet(stem_weights *w, const char *prefix, int64_t c_in, int64_t c_out, stem_vae_resnet *r) {
    char p[224];
    r->c_in = c_in;
    r->c_out = c_out;
    snprintf(p, sizeof p, "%s.norm1", prefix);
    STEM_TRY(get_norm(w, p, c_in, &r->norm1_w, &r->norm1_b));
    snprintf(p, sizeof p, "%s.conv1", prefix);
    STEM_TRY(get_conv(w, p, c_out, c_in, 3, &r->conv1_w, &r->conv1_b));
    snprintf(p, sizeof p, "%s.norm2", prefix);
    STEM_TRY(get_norm(w, p, c_out, &r->norm2_w, &r->norm2_b));
    snprintf(p, sizeof p, "%s.conv2", prefix);
    STEM_TRY(get_conv(w, p, c_out, c_out, 3, &r->conv2_w, &r->conv2_b));
    memset(&r->shortcut_w, 0, sizeof r->shortcut_w);
    memset(&r->shortcut_b, 0, sizeof r->shortcut_b);
    if (c_in != c_out) {
        snprintf(p, sizeof p, "%s.conv_shortcut", prefix);
        STEM_TRY(get_conv(w, p, c_out, c_in, 1, &r->shortcut_w, &r->shortcut_b));
    }
    return STEM_OK;
}

/* A linear layer of the mid attention under its current name, or the name diffusers
 * used before 0.14 (query/key/value/proj_attn), which SD 1.5/2.1 VAE files still carry. */
static stem_status get_attn_linear(stem_weights *w, const char *prefix, const char *name, const char *old, int64_t c,
                                   stem_tensor *wt, stem_tensor *b) {
    char n[256];
    snprintf(n, sizeof n, "%s.%s.weight", prefix, name);
    if (!stem_weights_has(w, n)) {
        char o[256];
        snprintf(o, sizeof o, "%s.%s.weight", prefix, old);
        if (stem_weights_has(w, o)) name = old;
    }
    int64_t shape[2] = {c, c};
    snprintf(n, sizeof n, "%s.%s.weight", prefix, name);
    STEM_TRY(get_view(w, n, 2, shape, wt));
    snprintf(n, sizeof n, "%s.%s.bias", prefix, name);
    return get_vec(w, n, c, b);
}

static stem_status load_mid(stem_weights *w, const char *side, int64_t c, stem_vae_mid *m) {
    char p[224];
    snprintf(p, sizeof p, "%s.mid_block.resnets.0", side);
    STEM_TRY(load_resnet(w, p, c, c, &m->res0));
    snprintf(p, sizeof p, "%s.mid_block.resnets.1", side);
    STEM_TRY(load_resnet(w, p, c, c, &m->res1));
    stem_vae_attention *a = &m->attn;
    a->channels = c;
    snprintf(p, sizeof p, "%s.mid_block.attentions.0", side);
    char n[256];
    snprintf(n, sizeof n, "%s.group_norm", p);
    STEM_TRY(get_norm(w, n, c, &a->norm_w, &a->norm_b));
    STEM_TRY(get_attn_linear(w, p, "to_q", "query", c, &a->q_w, &a->q_b));
    STEM_TRY(get_attn_linear(w, p, "to_k", "key", c, &a->k_w, &a->k_b));
    STEM_TRY(get_attn_linear(w, p, "to_v", "value", c, &a->v_w, &a->v_b));
    return get_attn_linear(w, p, "to_out.0", "proj_attn", c, &a->out_w, &a->out_b);
}

static stem_status load_all(stem_vae *v) {
    stem_weights *w = &v->weights;
    const stem_vae_config *cfg = &v->cfg;
    const int64_t *bo = cfg->block_out, lc = cfg->latent_channels, L = cfg->layers_per_block;
    int nl = cfg->levels;
    char p[224];
    v->params = stem_weights_param_count(w);
    /* encoder */
    STEM_TRY(get_conv(w, "encoder.conv_in", bo[0], cfg->in_channels, 3, &v->enc_in_w, &v->enc_in_b));
    for (int i = 0; i < nl; i++) {
        stem_vae_level *lv = &v->down[i];
        int64_t c_prev = i ? bo[i - 1] : bo[0];
        lv->n_res = (int)L;
        for (int j = 0; j < L; j++) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.resnets.%d", i, j);
            STEM_TRY(load_resnet(w, p, j ? bo[i] : c_prev, bo[i], &lv->res[j]));
        }
        if (i < nl - 1) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.downsamplers.0.conv", i);
            STEM_TRY(get_conv(w, p, bo[i], bo[i], 3, &lv->sample_w, &lv->sample_b));
        }
    }
    STEM_TRY(load_mid(w, "encoder", bo[nl - 1], &v->enc_mid));
    STEM_TRY(get_norm(w, "encoder.conv_norm_out", bo[nl - 1], &v->enc_norm_w, &v->enc_norm_b));
    STEM_TRY(get_conv(w, "encoder.conv_out", 2 * lc, bo[nl - 1], 3, &v->enc_out_w, &v->enc_out_b));
    STEM_TRY(get_conv(w, "quant_conv", 2 * lc, 2 * lc, 1, &v->quant_w, &v->quant_b));
    /* decoder */
    STEM_TRY(get_conv(w, "post_quant_conv", lc, lc, 1, &v->post_quant_w, &v->post_quant_b));
    STEM_TRY(get_conv(w, "decoder.conv_in", bo[nl - 1], lc, 3, &v->dec_in_w, &v->dec_in_b));
    STEM_TRY(load_mid(w, "decoder", bo[nl - 1], &v->dec_mid));
    for (int i = 0; i < nl; i++) {
        stem_vae_level *lv = &v->up[i];
        int64_t c = bo[nl - 1 - i], c_prev = i ? bo[nl - i] : bo[nl - 1];
        lv->n_res = (int)L + 1;
        for (int j = 0; j <= L; j++) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
            STEM_TRY(load_resnet(w, p, j ? c : c_prev, c, &lv->res[j]));
        }
        if (i < nl - 1) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            STEM_TRY(get_conv(w, p, c, c, 3, &lv->sample_w, &lv->sample_b));
        }
    }
    STEM_TRY(get_norm(w, "decoder.conv_norm_out", bo[0], &v->dec_norm_w, &v->dec_norm_b));
    STEM_TRY(get_conv(w, "decoder.conv_out", cfg->out_channels, bo[0], 3, &v->dec_out_w, &v->dec_out_b));
    STEM_TRY(stem_weights_finish(w));
    for (int k = 0; k < 2; k++) STEM_TRY(stem_arena_create(v->be, 64u << 20, &v->arena[k]));
    return STEM_OK;
}

stem_status stem_vae_load_weights(const stem_vae_config *cfg, stem_weights *w, stem_vae *v) {
    memset(v, 0, sizeof *v);
    v->cfg = *cfg;
    v->weights = *w;
    memset(w, 0, sizeof *w);
    v->be = v->weights.be;
    v->dtype = v->weights.dtype;
    v->mem_budget = (size_t)2 << 30;
    stem_status s = load_all(v);
    if (s != STEM_OK) stem_vae_free(v);
    return s;
}

stem_status stem_vae_load(const char *dir, stem_backend *be, stem_dtype dtype, stem_vae *v) {
    memset(v, 0, sizeof *v);
    stem_config c;
    stem_weights w;
    STEM_TRY(stem_component_open(dir, COMPONENT, be, dtype, &c, &w));
    stem_vae_config cfg;
    stem_status s = stem_vae_parse_config(&c, &cfg);
    stem_config_free(&c);
    if (s != STEM_OK) {
        stem_weights_close(&w);
        return stem_error_context(s, COMPONENT);
    }
    return stem_vae_load_weights(&cfg, &w, v);
}

void stem_vae_free(stem_vae *v) {
    for (int k = 0; k < 2; k++) stem_arena_destroy(v->arena[k]);
    stem_weights_close(&v->weights);
    memset(v, 0, sizeof *v);
}

/* ---- sizes --------------------------------------------------------------------------- */

void stem_vae_latent_size(const stem_vae *v, int64_t H, int64_t W, int64_t *h, int64_t *w) {
    for (int i = 0; i < v->cfg.levels - 1; i++) {
        H = stem_conv_out_size(H, 3, 2, 0, 1);
        W = stem_conv_out_size(W, 3, 2, 0, 1);
    }
    *h = H;
    *w = W;
}

void stem_vae_frame_size(const stem_vae *v, int64_t h, int64_t w, int64_t *H, int64_t *W) {
    *H = h << (v->cfg.levels - 1);
    *W = w << (v->cfg.levels - 1);
}

/* ---- stages ----------------------------------------------------------------------------
 * Every stage reads x (in one arena) and writes a new y into arena `a`, which the caller
 * has emptied; its temporaries follow y in `a` and are released before it returns. */

static stem_status new_act(stem_vae *v, stem_arena *a, int64_t n, int64_t c, int64_t h, int64_t w, stem_tensor *t) {
    int64_t shape[4] = {n, c, h, w};
    return stem_arena_tensor(a, v->dtype, 4, shape, t);
}

static stem_status conv(const stem_tensor *x, const stem_tensor *w, const stem_tensor *b, int stride, const int pad[4],
                        stem_vae *v, stem_arena *a, stem_tensor *y) {
    int64_t k = w->shape[2];
    STEM_TRY(new_act(v, a, x->shape[0], w->shape[0], stem_conv_out_size(x->shape[2], k, stride, pad[0], pad[1]),
                     stem_conv_out_size(x->shape[3], k, stride, pad[2], pad[3]), y));
    return stem_conv2d(x, w, b, stride, stride, pad, y);
}

static const int PAD0[4] = {0, 0, 0, 0}, PAD1[4] = {1, 1, 1, 1}, PAD_DOWN[4] = {0, 1, 0, 1};

typedef struct conv_stage {
    const stem_tensor *norm_w, *norm_b; /* group norm + SiLU first, when set */
    const stem_tensor *w, *b;
    int stride;
    const int *pad;
    bool upsample; /* nearest 2x first */
} conv_stage;

static stem_status conv_stage_run(stem_vae *v, const void *blk, const stem_tensor *x, stem_arena *a, stem_tensor *y) {
    const conv_stage *cs = blk;
    int64_t k = cs->w->shape[2], n = x->shape[0], H = x->shape[2] * (cs->upsample ? 2 : 1),
            W = x->shape[3] * (cs->upsample ? 2 : 1);
    STEM_TRY(new_act(v, a, n, cs->w->shape[0], stem_conv_out_size(H, k, cs->stride, cs->pad[0], cs->pad[1]),
                     stem_conv_out_size(W, k, cs->stride, cs->pad[2], cs->pad[3]), y));
    size_t mark = stem_arena_mark(a);
    const stem_tensor *in = x;
    stem_tensor t1, t2;
    if (cs->norm_w) {
        STEM_TRY(new_act(v, a, n, x->shape[1], x->shape[2], x->shape[3], &t1));
        STEM_TRY(stem_group_norm(in, cs->norm_w, cs->norm_b, (int)v->cfg.groups, RESNET_EPS, true, &t1));
        in = &t1;
    }
    if (cs->upsample) {
        STEM_TRY(new_act(v, a, n, x->shape[1], H, W, &t2));
        STEM_TRY(stem_upsample_nearest(in, &t2));
        in = &t2;
    }
    STEM_TRY(stem_conv2d(in, cs->w, cs->b, cs->stride, cs->stride, cs->pad, y));
    stem_arena_reset(a, mark);
    return STEM_OK;
}

static stem_status resnet_run(stem_vae *v, const void *blk, const stem_tensor *x, stem_arena *a, stem_tensor *y) {
    const stem_vae_resnet *r = blk;
    int64_t n = x->shape[0], H = x->shape[2], W = x->shape[3];
    int groups = (int)v->cfg.groups;
    STEM_TRY(new_act(v, a, n, r->c_out, H, W, y));
    size_t mark = stem_arena_mark(a);
    stem_tensor h1, h2, h3, sc;
    STEM_TRY(new_act(v, a, n, r->c_in, H, W, &h1));
    STEM_TRY(stem_group_norm(x, &r->norm1_w, &r->norm1_b, groups, RESNET_EPS, true, &h1));
    STEM_TRY(conv(&h1, &r->conv1_w, &r->conv1_b, 1, PAD1, v, a, &h2));
    if (r->c_in == r->c_out) /* h1 is free again and has h2's shape */
        h3 = h1;
    else
        STEM_TRY(new_act(v, a, n, r->c_out, H, W, &h3));
    STEM_TRY(stem_group_norm(&h2, &r->norm2_w, &r->norm2_b, groups, RESNET_EPS, true, &h3));
    STEM_TRY(stem_conv2d(&h3, &r->conv2_w, &r->conv2_b, 1, 1, PAD1, y));
    if (r->shortcut_w.data) {
        STEM_TRY(conv(x, &r->shortcut_w, &r->shortcut_b, 1, PAD0, v, a, &sc));
        STEM_TRY(stem_binary(STEM_BINARY_ADD, y, &sc, y));
    } else {
        STEM_TRY(stem_binary(STEM_BINARY_ADD, y, x, y));
    }
    stem_arena_reset(a, mark);
    return STEM_OK;
}

/* y = x + to_out(attention(q, k, v)) over the H*W tokens of each frame, one head. */
static stem_status attention_run(stem_vae *v, const void *blk, const stem_tensor *x, stem_arena *a, stem_tensor *y) {
    const stem_vae_attention *at = blk;
    int64_t n = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], T = H * W;
    STEM_TRY(new_act(v, a, n, C, H, W, y));
    size_t mark = stem_arena_mark(a);
    int64_t nct[3] = {n, C, T}, ntc[3] = {n, T, C};
    static const int swap[3] = {0, 2, 1};
    stem_tensor g, gt, q, k, val, o, p, view;
    STEM_TRY(new_act(v, a, n, C, H, W, &g));
    STEM_TRY(stem_group_norm(x, &at->norm_w, &at->norm_b, (int)v->cfg.groups, RESNET_EPS, false, &g));
    STEM_TRY(stem_arena_tensor(a, v->dtype, 3, ntc, &gt));
    STEM_TRY(stem_tensor_reshape(&g, 3, nct, &view));
    STEM_TRY(stem_permute(&view, swap, &gt));
    STEM_TRY(stem_arena_tensor(a, v->dtype, 3, ntc, &q));
    STEM_TRY(stem_arena_tensor(a, v->dtype, 3, ntc, &k));
    STEM_TRY(stem_arena_tensor(a, v->dtype, 3, ntc, &val));
    STEM_TRY(stem_linear(&gt, &at->q_w, &at->q_b, &q));
    STEM_TRY(stem_linear(&gt, &at->k_w, &at->k_b, &k));
    STEM_TRY(stem_linear(&gt, &at->v_w, &at->v_b, &val));
    STEM_TRY(stem_tensor_reshape(&g, 3, ntc, &o)); /* g and gt are dead: reuse them */
    STEM_TRY(stem_attention(&q, &k, &val, (float)(1.0 / sqrt((double)C)), &o));
    p = gt;
    STEM_TRY(stem_linear(&o, &at->out_w, &at->out_b, &p));
    STEM_TRY(stem_tensor_reshape(y, 3, nct, &view));
    STEM_TRY(stem_permute(&p, swap, &view));
    STEM_TRY(stem_binary(STEM_BINARY_ADD, y, x, y));
    stem_arena_reset(a, mark);
    return STEM_OK;
}

/* posterior mean x scaling_factor: y = moments[:, :latent] * sf */
static stem_status mean_run(stem_vae *v, const void *blk, const stem_tensor *x, stem_arena *a, stem_tensor *y) {
    (void)blk;
    STEM_TRY(new_act(v, a, x->shape[0], v->cfg.latent_channels, x->shape[2], x->shape[3], y));
    STEM_TRY(stem_slice(x, 1, 0, y));
    return stem_affine(y, (float)v->cfg.scaling_factor, 0.0f, y);
}

static stem_status unscale_run(stem_vae *v, const void *blk, const stem_tensor *x, stem_arena *a, stem_tensor *y) {
    (void)blk;
    STEM_TRY(new_act(v, a, x->shape[0], x->shape[1], x->shape[2], x->shape[3], y));
    return stem_affine(x, (float)(1.0 / v->cfg.scaling_factor), 0.0f, y);
}

typedef stem_status (*stage_fn)(stem_vae *v, const void *blk, const stem_tensor *x, stem_arena *a, stem_tensor *y);

/* Runs one stage from arena[*cur] into the other arena and makes its output current. */
static stem_status step(stem_vae *v, int *cur, stage_fn f, const void *blk, stem_tensor *x) {
    stem_arena *a = v->arena[1 - *cur];
    stem_arena_reset(a, 0);
    stem_tensor y;
    STEM_TRY(f(v, blk, x, a, &y));
    *x = y;
    *cur = 1 - *cur;
    return STEM_OK;
}

static stem_status mid_run(stem_vae *v, const stem_vae_mid *m, int *cur, stem_tensor *x) {
    STEM_TRY(step(v, cur, resnet_run, &m->res0, x));
    STEM_TRY(step(v, cur, attention_run, &m->attn, x));
    return step(v, cur, resnet_run, &m->res1, x);
}

/* ---- chunked drivers ----------------------------------------------------------------- */

/* Copies src into dst across backends and float dtypes; staging memory from arena a
 * (on the model's backend, where one of the two lives). */
static stem_status transfer(stem_vae *v, stem_arena *a, const stem_tensor *src, stem_tensor *dst) {
    if (src->dtype == dst->dtype) return stem_tensor_copy(src, dst);
    if (src->backend == dst->backend) return stem_cast(src, dst);
    size_t mark = stem_arena_mark(a);
    stem_tensor stage;
    stem_status s;
    if (dst->backend == v->be) {
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

/* Frames per chunk: chunk_frames, or what fits mem_budget. The largest activations
 * are at full resolution with up to max(block_out[0], block_out[1]) channels; a stage
 * holds about five such planes (input, output, three temporaries). */
static int64_t chunk_size(const stem_vae *v, int64_t H, int64_t W, int64_t frames) {
    if (v->chunk_frames > 0) return v->chunk_frames < frames ? v->chunk_frames : frames;
    int64_t c = v->cfg.block_out[0];
    if (v->cfg.levels > 1 && v->cfg.block_out[1] > c) c = v->cfg.block_out[1];
    size_t per_frame = (size_t)(5 * c * H * W) * stem_dtype_size(v->dtype);
    int64_t n = per_frame ? (int64_t)(v->mem_budget / per_frame) : frames;
    if (n < 1) n = 1;
    return n < frames ? n : frames;
}

static stem_status check_io(const char *what, const stem_tensor *t, int64_t frames, int64_t c, int64_t h, int64_t w) {
    int64_t shape[4] = {frames, c, h, w};
    stem_tensor want = stem_tensor_wrap(NULL, t->dtype, 4, shape, NULL);
    if (!stem_same_shape(t, &want)) {
        char a[STEM_SHAPE_STR_LEN], b[STEM_SHAPE_STR_LEN];
        return stem_fail(STEM_E_SHAPE, "%s: %s have shape %s, expected %s", COMPONENT, what,
                         stem_shape_str(t, a, sizeof a), stem_shape_str(&want, b, sizeof b));
    }
    if (t->dtype != STEM_F32 && t->dtype != STEM_F16 && t->dtype != STEM_BF16)
        return stem_fail(STEM_E_DTYPE, "%s: %s are %s, expected a float tensor", COMPONENT, what,
                         stem_dtype_name(t->dtype));
    return STEM_OK;
}

static stem_status encode_chunk(stem_vae *v, const stem_tensor *frames, stem_tensor *latents) {
    int cur = 0;
    stem_arena_reset(v->arena[0], 0);
    stem_tensor x;
    STEM_TRY(new_act(v, v->arena[0], frames->shape[0], frames->shape[1], frames->shape[2], frames->shape[3], &x));
    STEM_TRY(transfer(v, v->arena[0], frames, &x));
    conv_stage in = {.w = &v->enc_in_w, .b = &v->enc_in_b, .stride = 1, .pad = PAD1};
    STEM_TRY(step(v, &cur, conv_stage_run, &in, &x));
    for (int i = 0; i < v->cfg.levels; i++) {
        const stem_vae_level *lv = &v->down[i];
        for (int j = 0; j < lv->n_res; j++) STEM_TRY(step(v, &cur, resnet_run, &lv->res[j], &x));
        if (lv->sample_w.data) {
            conv_stage down = {.w = &lv->sample_w, .b = &lv->sample_b, .stride = 2, .pad = PAD_DOWN};
            STEM_TRY(step(v, &cur, conv_stage_run, &down, &x));
        }
    }
    STEM_TRY(mid_run(v, &v->enc_mid, &cur, &x));
    conv_stage out = {.norm_w = &v->enc_norm_w, .norm_b = &v->enc_norm_b, .w = &v->enc_out_w, .b = &v->enc_out_b,
                      .stride = 1, .pad = PAD1};
    STEM_TRY(step(v, &cur, conv_stage_run, &out, &x));
    conv_stage quant = {.w = &v->quant_w, .b = &v->quant_b, .stride = 1, .pad = PAD0};
    STEM_TRY(step(v, &cur, conv_stage_run, &quant, &x));
    STEM_TRY(step(v, &cur, mean_run, NULL, &x));
    return transfer(v, v->arena[cur], &x, latents);
}

static stem_status decode_chunk(stem_vae *v, const stem_tensor *latents, stem_tensor *frames) {
    int cur = 0;
    stem_arena_reset(v->arena[0], 0);
    stem_tensor x;
    STEM_TRY(new_act(v, v->arena[0], latents->shape[0], latents->shape[1], latents->shape[2], latents->shape[3], &x));
    STEM_TRY(transfer(v, v->arena[0], latents, &x));
    STEM_TRY(step(v, &cur, unscale_run, NULL, &x));
    conv_stage pq = {.w = &v->post_quant_w, .b = &v->post_quant_b, .stride = 1, .pad = PAD0};
    STEM_TRY(step(v, &cur, conv_stage_run, &pq, &x));
    conv_stage in = {.w = &v->dec_in_w, .b = &v->dec_in_b, .stride = 1, .pad = PAD1};
    STEM_TRY(step(v, &cur, conv_stage_run, &in, &x));
    STEM_TRY(mid_run(v, &v->dec_mid, &cur, &x));
    for (int i = 0; i < v->cfg.levels; i++) {
        const stem_vae_level *lv = &v->up[i];
        for (int j = 0; j < lv->n_res; j++) STEM_TRY(step(v, &cur, resnet_run, &lv->res[j], &x));
        if (lv->sample_w.data) {
            conv_stage up = {.w = &lv->sample_w, .b = &lv->sample_b, .stride = 1, .pad = PAD1, .upsample = true};
            STEM_TRY(step(v, &cur, conv_stage_run, &up, &x));
        }
    }
    conv_stage out = {.norm_w = &v->dec_norm_w, .norm_b = &v->dec_norm_b, .w = &v->dec_out_w, .b = &v->dec_out_b,
                      .stride = 1, .pad = PAD1};
    STEM_TRY(step(v, &cur, conv_stage_run, &out, &x));
    return transfer(v, v->arena[cur], &x, frames);
}

typedef stem_status (*chunk_fn)(stem_vae *v, const stem_tensor *in, stem_tensor *out);

static stem_status run_chunks(stem_vae *v, chunk_fn f, const char *what, const stem_tensor *in, stem_tensor *out,
                              int64_t chunk) {
    int64_t frames = in->shape[0];
    stem_status s = STEM_OK;
    for (int64_t start = 0; start < frames && s == STEM_OK; start += chunk) {
        int64_t n = frames - start < chunk ? frames - start : chunk;
        stem_tensor a, b;
        s = stem_tensor_narrow0(in, start, n, &a);
        if (s == STEM_OK) s = stem_tensor_narrow0(out, start, n, &b);
        if (s == STEM_OK) s = f(v, &a, &b);
        if (s != STEM_OK)
            s = stem_error_context(s, "%s %s frames %lld..%lld", COMPONENT, what, (long long)start,
                                   (long long)(start + n - 1));
    }
    for (int k = 0; k < 2; k++) stem_arena_reset(v->arena[k], 0);
    return s;
}

stem_status stem_vae_encode(stem_vae *v, const stem_tensor *frames, stem_tensor *latents) {
    if (frames->ndim != 4) {
        char a[STEM_SHAPE_STR_LEN];
        return stem_fail(STEM_E_SHAPE, "%s: frames have shape %s, expected [frames, %lld, height, width]", COMPONENT,
                         stem_shape_str(frames, a, sizeof a), (long long)v->cfg.in_channels);
    }
    int64_t F = frames->shape[0], H = frames->shape[2], W = frames->shape[3], h, w;
    STEM_TRY(check_io("frames", frames, F, v->cfg.in_channels, H, W));
    if (H < 1 || W < 1) return stem_fail(STEM_E_SHAPE, "%s: empty frames", COMPONENT);
    stem_vae_latent_size(v, H, W, &h, &w);
    if (h < 1 || w < 1)
        return stem_fail(STEM_E_SHAPE, "%s: %lldx%lld frames are too small for %d downsampling steps", COMPONENT,
                         (long long)W, (long long)H, v->cfg.levels - 1);
    STEM_TRY(check_io("latents", latents, F, v->cfg.latent_channels, h, w));
    if (F == 0) return STEM_OK;
    return run_chunks(v, encode_chunk, "encode", frames, latents, chunk_size(v, H, W, F));
}

stem_status stem_vae_decode(stem_vae *v, const stem_tensor *latents, stem_tensor *frames) {
    if (latents->ndim != 4) {
        char a[STEM_SHAPE_STR_LEN];
        return stem_fail(STEM_E_SHAPE, "%s: latents have shape %s, expected [frames, %lld, height, width]", COMPONENT,
                         stem_shape_str(latents, a, sizeof a), (long long)v->cfg.latent_channels);
    }
    int64_t F = latents->shape[0], h = latents->shape[2], w = latents->shape[3], H, W;
    STEM_TRY(check_io("latents", latents, F, v->cfg.latent_channels, h, w));
    if (h < 1 || w < 1) return stem_fail(STEM_E_SHAPE, "%s: empty latents", COMPONENT);
    stem_vae_frame_size(v, h, w, &H, &W);
    STEM_TRY(check_io("frames", frames, F, v->cfg.out_channels, H, W));
    if (F == 0) return STEM_OK;
    return run_chunks(v, decode_chunk, "decode", latents, frames, chunk_size(v, H, W, F));
}
