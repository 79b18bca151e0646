/* UNet2DConditionModel's config.json (diffusers 0.20.2): parsing and validation. What
 * stem does not implement is refused with a message naming the key (see unet.h). */
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "models/model_config.h"
#include "models/unet.h"

/* ---- config -------------------------------------------------------------------------- */

static stem_status unsupported(const stem_config *c, const char *key, const char *value, const char *supported) {
    return stem_fail(STEM_E_UNSUPPORTED, "%s: %s = %s is not supported (stem implements %s)", c->path, key, value,
                     supported);
}

/* A key that must be absent/null or equal to its default (given as JSON text). */
static stem_status require_default(const stem_config *c, const char *key, const char *dflt) {
    json_object *v = NULL;
    if (!json_object_object_get_ex((json_object *)c->root, key, &v) || json_object_is_type(v, json_type_null))
        return STEM_OK;
    const char *txt = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
    if (dflt && strcmp(txt, dflt) == 0) return STEM_OK;
    return unsupported(c, key, txt, dflt ? dflt : "null");
}

/* An int or per-level list of ints (the list must have `levels` entries). */
static stem_status per_level_ints(const stem_config *c, const char *key, int64_t dflt, int levels, int *out) {
    int64_t v[STEM_UNET_MAX_LEVELS + 1];
    int n = 0;
    if (!stem_config_has(c, key)) {
        for (int i = 0; i < levels; i++) out[i] = (int)dflt;
        return STEM_OK;
    }
    STEM_TRY(stem_config_ints(c, key, v, STEM_UNET_MAX_LEVELS + 1, &n));
    json_object *j = NULL;
    json_object_object_get_ex((json_object *)c->root, key, &j);
    bool scalar = json_object_is_type(j, json_type_int);
    if (!scalar && n != levels)
        return stem_fail(STEM_E_FORMAT, "%s: '%s' has %d entries but block_out_channels has %d", c->path, key, n,
                         levels);
    for (int i = 0; i < levels; i++) {
        int64_t x = v[scalar ? 0 : i];
        if (x < 1 || x > (1 << 20))
            return stem_fail(STEM_E_FORMAT, "%s: '%s' = %lld is out of range", c->path, key, (long long)x);
        out[i] = (int)x;
    }
    return STEM_OK;
}

stem_status stem_unet_parse_config(const stem_config *cp, stem_unet_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    const stem_config c = *cp; /* a shallow copy: the checks below take &c */
    const char *path = c.path;
    stem_status s;
    int64_t v;
    double d;
    const char *str;
#define TRY(e) do { if ((s = (e)) != STEM_OK) goto done; } while (0)
    /* levels */
    int64_t boc[STEM_UNET_MAX_LEVELS + 1];
    int n;
    TRY(stem_config_ints(&c, "block_out_channels", boc, STEM_UNET_MAX_LEVELS, &n));
    if (n < 1) { s = stem_fail(STEM_E_FORMAT, "%s: block_out_channels is empty", path); goto done; }
    cfg->levels = n;
    for (int i = 0; i < n; i++) {
        if (boc[i] < 1 || boc[i] > (1 << 20)) {
            s = stem_fail(STEM_E_FORMAT, "%s: block_out_channels[%d] = %lld is out of range", path, i, (long long)boc[i]);
            goto done;
        }
        cfg->block_out_channels[i] = (int)boc[i];
    }

    TRY(stem_config_int(&c, "in_channels", 4, &v)); cfg->in_channels = (int)v;
    TRY(stem_config_int(&c, "out_channels", 4, &v)); cfg->out_channels = (int)v;
    TRY(stem_config_int(&c, "sample_size", 64, &v)); cfg->sample_size = (int)v;
    TRY(stem_config_bool(&c, "center_input_sample", false, &cfg->center_input_sample));
    TRY(stem_config_bool(&c, "flip_sin_to_cos", true, &cfg->flip_sin_to_cos));
    TRY(stem_config_float(&c, "freq_shift", 0, &d)); cfg->freq_shift = (float)d;
    TRY(stem_config_int(&c, "norm_num_groups", 32, &v)); cfg->norm_num_groups = (int)v;
    if (!stem_config_has(&c, "norm_num_groups") &&
        json_object_object_get_ex((json_object *)c.root, "norm_num_groups", NULL)) {
        s = unsupported(&c, "norm_num_groups", "null", "GroupNorm before conv_out (an integer)");
        goto done;
    }
    /* checked before the channel counts are divided by it (0 was a SIGFPE, a negative count a failure at step 0) */
    if (v < 1 || v > (1 << 20)) {
        s = stem_fail(STEM_E_FORMAT, "%s: norm_num_groups = %lld is out of range (1..%d)", path, (long long)v, 1 << 20);
        goto done;
    }
    TRY(stem_config_float(&c, "norm_eps", 1e-5, &d)); cfg->norm_eps = (float)d;
    TRY(stem_config_int(&c, "downsample_padding", 1, &v)); cfg->downsample_padding = (int)v;
    if (v != 0 && v != 1) { s = unsupported(&c, "downsample_padding", "that value", "0 or 1"); goto done; }
    TRY(stem_config_float(&c, "mid_block_scale_factor", 1, &d)); cfg->mid_block_scale_factor = (float)d;
    TRY(stem_config_bool(&c, "use_linear_projection", false, &cfg->use_linear_projection));
    TRY(stem_config_bool(&c, "upcast_attention", false, &cfg->upcast_attention));
    TRY(stem_config_int(&c, "conv_in_kernel", 3, &v)); cfg->conv_in_kernel = (int)v;
    TRY(stem_config_int(&c, "conv_out_kernel", 3, &v)); cfg->conv_out_kernel = (int)v;
    if (cfg->conv_in_kernel % 2 == 0 || cfg->conv_out_kernel % 2 == 0 || cfg->conv_in_kernel < 1 ||
        cfg->conv_out_kernel < 1) {
        s = unsupported(&c, "conv_in_kernel/conv_out_kernel", "an even size", "odd kernel sizes");
        goto done;
    }
    TRY(stem_config_int(&c, "time_embedding_dim", 4 * (int64_t)cfg->block_out_channels[0], &v));
    cfg->time_embed_dim = (int)v;

    TRY(stem_config_string(&c, "act_fn", "silu", &str));
    if (strcmp(str, "silu") != 0 && strcmp(str, "swish") != 0) { s = unsupported(&c, "act_fn", str, "silu"); goto done; }
    TRY(stem_config_string(&c, "time_embedding_type", "positional", &str));
    if (strcmp(str, "positional") != 0) { s = unsupported(&c, "time_embedding_type", str, "positional"); goto done; }
    TRY(stem_config_string(&c, "resnet_time_scale_shift", "default", &str));
    if (strcmp(str, "default") != 0) { s = unsupported(&c, "resnet_time_scale_shift", str, "default"); goto done; }
    TRY(stem_config_string(&c, "attention_type", "default", &str));
    if (strcmp(str, "default") != 0) { s = unsupported(&c, "attention_type", str, "default"); goto done; }
    TRY(stem_config_string(&c, "mid_block_type", "UNetMidBlock2DCrossAttn", &str));
    if (strcmp(str, "UNetMidBlock2DCrossAttn") != 0) {
        s = unsupported(&c, "mid_block_type", str, "UNetMidBlock2DCrossAttn");
        goto done;
    }
    /* options of other diffusers models that SD 1.x/2.x never set */
    static const char *const must_be_null[] = {
        "class_embed_type", "addition_embed_type", "num_class_embeds", "encoder_hid_dim", "encoder_hid_dim_type",
        "time_embedding_act_fn", "timestep_post_act", "time_cond_proj_dim", "cross_attention_norm",
        "num_attention_heads", "addition_time_embed_dim",
    };
    for (size_t i = 0; i < sizeof must_be_null / sizeof *must_be_null; i++) TRY(require_default(&c, must_be_null[i], NULL));
    TRY(require_default(&c, "dual_cross_attention", "false"));
    TRY(require_default(&c, "resnet_skip_time_act", "false"));
    TRY(require_default(&c, "class_embeddings_concat", "false"));
    TRY(require_default(&c, "mid_block_only_cross_attention", "false"));
    {
        json_object *oca = NULL;
        if (json_object_object_get_ex((json_object *)c.root, "only_cross_attention", &oca) && oca) {
            bool any = json_object_is_type(oca, json_type_boolean) && json_object_get_boolean(oca);
            if (json_object_is_type(oca, json_type_array))
                for (size_t i = 0; i < json_object_array_length(oca); i++)
                    any |= json_object_get_boolean(json_object_array_get_idx(oca, i));
            if (any) {
                s = unsupported(&c, "only_cross_attention", json_object_to_json_string_ext(oca, JSON_C_TO_STRING_PLAIN),
                                "false");
                goto done;
            }
        }
    }

    /* per-level values */
    TRY(per_level_ints(&c, "layers_per_block", 2, n, cfg->layers_per_block));
    TRY(per_level_ints(&c, "transformer_layers_per_block", 1, n, cfg->transformer_layers));
    TRY(per_level_ints(&c, "attention_head_dim", 8, n, cfg->heads));
    TRY(per_level_ints(&c, "cross_attention_dim", 1280, n, cfg->cross_attention_dim));
    for (int i = 0; i < n; i++) {
        if (cfg->layers_per_block[i] + 1 > STEM_UNET_MAX_LAYERS || cfg->transformer_layers[i] > STEM_UNET_MAX_LAYERS) {
            s = stem_fail(STEM_E_UNSUPPORTED, "%s: at most %d layers per block are supported", path,
                          STEM_UNET_MAX_LAYERS - 1);
            goto done;
        }
        if (cfg->cross_attention_dim[i] != cfg->cross_attention_dim[0]) {
            s = unsupported(&c, "cross_attention_dim", "a list of different values", "one text width for all levels");
            goto done;
        }
        if (cfg->block_out_channels[i] < 1 || cfg->block_out_channels[i] % cfg->norm_num_groups) {
            s = stem_fail(STEM_E_FORMAT, "%s: block_out_channels[%d] = %d is not a multiple of norm_num_groups = %d",
                          path, i, cfg->block_out_channels[i], cfg->norm_num_groups);
            goto done;
        }
        if (cfg->block_out_channels[i] % cfg->heads[i]) {
            s = stem_fail(STEM_E_UNSUPPORTED,
                          "%s: attention_head_dim[%d] = %d heads do not divide block_out_channels[%d] = %d", path, i,
                          cfg->heads[i], i, cfg->block_out_channels[i]);
            goto done;
        }
    }

    /* block types */
    const char *down[STEM_UNET_MAX_LEVELS + 1], *up[STEM_UNET_MAX_LEVELS + 1];
    int nd = 0, nu = 0;
    TRY(stem_config_strings(&c, "down_block_types", down, STEM_UNET_MAX_LEVELS + 1, &nd));
    TRY(stem_config_strings(&c, "up_block_types", up, STEM_UNET_MAX_LEVELS + 1, &nu));
    if (nd != n || nu != n) {
        s = stem_fail(STEM_E_FORMAT, "%s: %d down_block_types and %d up_block_types for %d block_out_channels", path,
                      nd, nu, n);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        char key[64];
        snprintf(key, sizeof key, "down_block_types[%d]", i);
        if (!strcmp(down[i], "CrossAttnDownBlock2D")) cfg->down_cross_attn[i] = true;
        else if (strcmp(down[i], "DownBlock2D")) {
            s = unsupported(&c, key, down[i], "CrossAttnDownBlock2D and DownBlock2D");
            goto done;
        }
        snprintf(key, sizeof key, "up_block_types[%d]", i);
        if (!strcmp(up[i], "CrossAttnUpBlock2D")) cfg->up_cross_attn[i] = true;
        else if (strcmp(up[i], "UpBlock2D")) {
            s = unsupported(&c, key, up[i], "CrossAttnUpBlock2D and UpBlock2D");
            goto done;
        }
    }
#undef TRY
    s = STEM_OK;
done:
    return s;
}

stem_status stem_unet_config_load(const char *path, stem_unet_config *cfg) {
    stem_config c;
    memset(cfg, 0, sizeof *cfg);
    STEM_TRY(stem_config_load(path, &c));
    stem_status s = stem_unet_parse_config(&c, cfg);
    stem_config_free(&c);
    return s;
}
