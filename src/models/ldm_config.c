/* Diffusers configs from an LDM checkpoint's tensor shapes (see ldm_config.h). */
#include "models/ldm_config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define UNET "model.diffusion_model."
#define VAE "first_stage_model."

typedef struct deriver {
    const char *path;
    const stem_tensor_map *m;
    const stem_ldm_layout *lay;
    stem_config *c;
    stem_ldm_unfit *unfit;
} deriver;

/* The tensor P+name of `ndim` axes (the size it gives is `what`'s). */
static stem_status need(const deriver *d, const char *prefix, const char *name, int ndim, const char *what,
                        const stem_tensor **out) {
    char full[320];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    const stem_tensor *t = stem_tensor_map_get(d->m, full);
    if (!t)
        return stem_fail(STEM_E_FORMAT, "%s: tensor '%s' is missing (it gives the %s of the config)", d->path, full,
                         what);
    if (t->ndim != ndim) {
        char s[STEM_SHAPE_STR_LEN];
        return stem_fail(STEM_E_SHAPE, "%s: tensor '%s' has shape %s, expected %d axes (it gives the %s)", d->path,
                         full, stem_shape_str(t, s, sizeof s), ndim, what);
    }
    *out = t;
    return STEM_OK;
}

static bool has(const deriver *d, const char *fmt, ...) STEM_PRINTF(2, 3);
static bool has(const deriver *d, const char *fmt, ...) {
    char name[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return stem_tensor_map_get(d->m, name) != NULL;
}

static stem_status set(deriver *d, const char *key, const char *fmt, ...) STEM_PRINTF(3, 4);
static stem_status set(deriver *d, const char *key, const char *fmt, ...) {
    char v[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof v, fmt, ap);
    va_end(ap);
    return stem_config_set_json(d->c, key, v);
}

static void unfit(deriver *d, const char *key, const char *fmt, ...) STEM_PRINTF(3, 4);
static void unfit(deriver *d, const char *key, const char *fmt, ...) {
    stem_ldm_unfit *u = d->unfit;
    if (u->n == STEM_LDM_MAX_UNFIT) return;
    snprintf(u->key[u->n], sizeof u->key[0], "%s", key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(u->why[u->n], sizeof u->why[0], fmt, ap);
    va_end(ap);
    u->n++;
}

/* "[16, 32, 32]" */
static void int_list(const int64_t *v, int n, char *buf, size_t cap) {
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && len < cap; i++) len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? ", " : "", (long long)v[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

static void type_list(const char *a, const char *b, const bool *which, int n, char *buf, size_t cap) {
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && len < cap; i++) len += (size_t)snprintf(buf + len, cap - len, "%s\"%s\"", i ? ", " : "", which[i] ? a : b);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

/* GroupNorm32 of the original code, when 32 divides every level's channels. */
static stem_status groups32(deriver *d, const int64_t *ch, int n, const char *component) {
    for (int i = 0; i < n; i++)
        if (ch[i] % 32) {
            char l[128];
            int_list(ch, n, l, sizeof l);
            unfit(d, "norm_num_groups", "the %s's GroupNorm of SD (32 groups) does not divide block_out_channels %s",
                  component, l);
            return STEM_OK;
        }
    return set(d, "norm_num_groups", "32");
}

/* ---- UNet ----------------------------------------------------------------------------- */

#define MAXL 8

static stem_status derive_unet(deriver *d) {
    const stem_ldm_layout *lay = d->lay;
    int levels = lay->unet_levels, per = lay->unet_layers_per_block + 1;
    if (levels < 1 || levels > MAXL || lay->unet_layers_per_block < 1)
        return stem_fail(STEM_E_FORMAT, "%s: no UNet levels found under '%sinput_blocks.'", d->path, UNET);
    const stem_tensor *t;
    STEM_TRY(need(d, UNET, "input_blocks.0.0.weight", 4, "in_channels and block_out_channels[0]", &t));
    STEM_TRY(set(d, "in_channels", "%lld", (long long)t->shape[1]));
    STEM_TRY(set(d, "conv_in_kernel", "%lld", (long long)t->shape[2]));
    int64_t c0 = t->shape[0];
    STEM_TRY(need(d, UNET, "out.2.weight", 4, "out_channels", &t));
    STEM_TRY(set(d, "out_channels", "%lld", (long long)t->shape[0]));
    STEM_TRY(set(d, "conv_out_kernel", "%lld", (long long)t->shape[2]));
    STEM_TRY(need(d, UNET, "time_embed.0.weight", 2, "time_embedding_dim", &t));
    if (t->shape[0] != 4 * c0) STEM_TRY(set(d, "time_embedding_dim", "%lld", (long long)t->shape[0]));

    int64_t ch[MAXL], depth[MAXL];
    bool down_attn[MAXL], up_attn[MAXL], linear = false;
    int64_t context = 0;
    for (int b = 0; b < levels; b++) {
        char name[160];
        int i = 1 + per * b;
        snprintf(name, sizeof name, "input_blocks.%d.0.in_layers.2.weight", i);
        STEM_TRY(need(d, UNET, name, 4, "block_out_channels", &t));
        ch[b] = t->shape[0];
        down_attn[b] = has(d, UNET "input_blocks.%d.1.proj_in.weight", i);
        up_attn[b] = has(d, UNET "output_blocks.%d.1.proj_in.weight", per * b);
        depth[b] = 1;
        if (!down_attn[b]) continue;
        while (depth[b] < 64 && has(d, UNET "input_blocks.%d.1.transformer_blocks.%lld.attn1.to_q.weight", i, (long long)depth[b]))
            depth[b]++;
        if (!context) { /* the first transformer's proj_in (found above) and attn2 */
            snprintf(name, sizeof name, UNET "input_blocks.%d.1.proj_in.weight", i);
            linear = stem_tensor_map_get(d->m, name)->ndim == 2;
            snprintf(name, sizeof name, "input_blocks.%d.1.transformer_blocks.0.attn2.to_k.weight", i);
            STEM_TRY(need(d, UNET, name, 2, "cross_attention_dim", &t));
            context = t->shape[1];
        }
    }
    /* the mid block always cross-attends in SD: its attn2 sizes the context when no level does */
    if (!context) {
        STEM_TRY(need(d, UNET, "middle_block.1.transformer_blocks.0.attn2.to_k.weight", 2, "cross_attention_dim", &t));
        context = t->shape[1];
        const stem_tensor *p = stem_tensor_map_get(d->m, UNET "middle_block.1.proj_in.weight");
        linear = p && p->ndim == 2;
    }
    char buf[256];
    int_list(ch, levels, buf, sizeof buf);
    STEM_TRY(set(d, "block_out_channels", "%s", buf));
    STEM_TRY(set(d, "layers_per_block", "%d", lay->unet_layers_per_block));
    type_list("CrossAttnDownBlock2D", "DownBlock2D", down_attn, levels, buf, sizeof buf);
    STEM_TRY(set(d, "down_block_types", "%s", buf));
    type_list("CrossAttnUpBlock2D", "UpBlock2D", up_attn, levels, buf, sizeof buf);
    STEM_TRY(set(d, "up_block_types", "%s", buf));
    bool same_depth = true;
    for (int b = 0; b < levels; b++) same_depth &= depth[b] == depth[0];
    if (same_depth) STEM_TRY(set(d, "transformer_layers_per_block", "%lld", (long long)depth[0]));
    else {
        int_list(depth, levels, buf, sizeof buf);
        STEM_TRY(set(d, "transformer_layers_per_block", "%s", buf));
    }
    STEM_TRY(set(d, "cross_attention_dim", "%lld", (long long)context));
    STEM_TRY(set(d, "use_linear_projection", "%s", linear ? "true" : "false"));
    STEM_TRY(groups32(d, ch, levels, "UNet"));
    /* heads: SD 1.x num_heads 8; SD 2.x num_head_channels 64 (diffusers: heads = channels / 64) */
    int64_t heads[MAXL];
    for (int b = 0; b < levels; b++) {
        heads[b] = linear ? ch[b] / 64 : 8;
        if ((linear && ch[b] % 64) || ch[b] % heads[b] || heads[b] < 1) {
            int_list(ch, levels, buf, sizeof buf);
            unfit(d, "attention_head_dim", "%s does not divide block_out_channels %s",
                  linear ? "SD 2.x's 64 channels a head" : "SD 1.x's 8 heads", buf);
            return STEM_OK;
        }
    }
    if (linear) {
        int_list(heads, levels, buf, sizeof buf);
        return set(d, "attention_head_dim", "%s", buf);
    }
    return set(d, "attention_head_dim", "8");
}

/* ---- VAE ------------------------------------------------------------------------------ */

static stem_status derive_vae(deriver *d) {
    int levels = d->lay->vae_levels;
    if (levels < 1 || levels > MAXL)
        return stem_fail(STEM_E_FORMAT, "%s: no VAE levels found under '%sdecoder.up.'", d->path, VAE);
    const stem_tensor *t;
    STEM_TRY(need(d, VAE, "encoder.conv_in.weight", 4, "VAE's in_channels", &t));
    STEM_TRY(set(d, "in_channels", "%lld", (long long)t->shape[1]));
    STEM_TRY(need(d, VAE, "decoder.conv_out.weight", 4, "VAE's out_channels", &t));
    STEM_TRY(set(d, "out_channels", "%lld", (long long)t->shape[0]));
    STEM_TRY(need(d, VAE, "decoder.conv_in.weight", 4, "VAE's latent_channels", &t));
    STEM_TRY(set(d, "latent_channels", "%lld", (long long)t->shape[1]));
    int64_t ch[MAXL];
    for (int i = 0; i < levels; i++) {
        char name[96];
        snprintf(name, sizeof name, "encoder.down.%d.block.0.conv1.weight", i);
        STEM_TRY(need(d, VAE, name, 4, "VAE's block_out_channels", &t));
        ch[i] = t->shape[0];
    }
    int res = 0;
    while (res < 64 && has(d, VAE "encoder.down.0.block.%d.conv1.weight", res)) res++;
    char buf[256];
    int_list(ch, levels, buf, sizeof buf);
    STEM_TRY(set(d, "block_out_channels", "%s", buf));
    STEM_TRY(set(d, "layers_per_block", "%d", res));
    bool all[MAXL];
    for (int i = 0; i < levels; i++) all[i] = true;
    type_list("DownEncoderBlock2D", "", all, levels, buf, sizeof buf);
    STEM_TRY(set(d, "down_block_types", "%s", buf));
    type_list("UpDecoderBlock2D", "", all, levels, buf, sizeof buf);
    STEM_TRY(set(d, "up_block_types", "%s", buf));
    STEM_TRY(set(d, "scaling_factor", "0.18215"));
    return groups32(d, ch, levels, "VAE");
}

/* ---- text encoder --------------------------------------------------------------------- */

static stem_status derive_text(deriver *d) {
    const stem_ldm_layout *lay = d->lay;
    const stem_tensor *tok, *pos, *fc1;
    if (lay->text_kind == STEM_LDM_TEXT_CLIP) {
        const char *pre = has(d, "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight")
                              ? "cond_stage_model.transformer.text_model."
                              : "cond_stage_model.transformer.";
        STEM_TRY(need(d, pre, "embeddings.token_embedding.weight", 2, "text encoder's vocab_size and hidden_size", &tok));
        STEM_TRY(need(d, pre, "embeddings.position_embedding.weight", 2, "text encoder's max_position_embeddings", &pos));
        STEM_TRY(need(d, pre, "encoder.layers.0.mlp.fc1.weight", 2, "text encoder's intermediate_size", &fc1));
        STEM_TRY(set(d, "hidden_act", "\"quick_gelu\""));
    } else if (lay->text_kind == STEM_LDM_TEXT_OPENCLIP) {
        const char *pre = "cond_stage_model.model.";
        STEM_TRY(need(d, pre, "token_embedding.weight", 2, "text encoder's vocab_size and hidden_size", &tok));
        STEM_TRY(need(d, pre, "positional_embedding", 2, "text encoder's max_position_embeddings", &pos));
        STEM_TRY(need(d, pre, "transformer.resblocks.0.mlp.c_fc.weight", 2, "text encoder's intermediate_size", &fc1));
        STEM_TRY(set(d, "hidden_act", "\"gelu\""));
    } else {
        return stem_fail(STEM_E_FORMAT, "%s: no text encoder tensors (cond_stage_model.transformer.* or "
                         "cond_stage_model.model.*)", d->path);
    }
    int64_t hidden = tok->shape[1];
    STEM_TRY(set(d, "vocab_size", "%lld", (long long)tok->shape[0]));
    STEM_TRY(set(d, "hidden_size", "%lld", (long long)hidden));
    STEM_TRY(set(d, "max_position_embeddings", "%lld", (long long)pos->shape[0]));
    STEM_TRY(set(d, "intermediate_size", "%lld", (long long)fc1->shape[0]));
    STEM_TRY(set(d, "num_hidden_layers", "%d", lay->text_layers));
    STEM_TRY(set(d, "layer_norm_eps", "1e-05"));
    if (hidden % 64 || hidden < 64)
        unfit(d, "num_attention_heads", "CLIP's 64 channels a head do not divide the text encoder's hidden_size %lld",
              (long long)hidden);
    else
        STEM_TRY(set(d, "num_attention_heads", "%lld", (long long)(hidden / 64)));
    return STEM_OK;
}

stem_status stem_ldm_derive_config(const char *path, const stem_tensor_map *m, const stem_ldm_layout *lay,
                                   stem_ldm_component comp, stem_config *c, stem_ldm_unfit *u) {
    memset(u, 0, sizeof *u);
    char what[1200];
    snprintf(what, sizeof what, "%s (%s config from the tensor shapes)", path, stem_ldm_component_name(comp));
    STEM_TRY(stem_config_new(what, c));
    deriver d = {.path = path, .m = m, .lay = lay, .c = c, .unfit = u};
    stem_status s = comp == STEM_LDM_UNET  ? derive_unet(&d)
                    : comp == STEM_LDM_VAE ? derive_vae(&d)
                    : comp == STEM_LDM_TEXT ? derive_text(&d)
                                            : stem_fail(STEM_E_ARG, "ldm: unknown component %d", (int)comp);
    if (s != STEM_OK) stem_config_free(c);
    return s;
}
