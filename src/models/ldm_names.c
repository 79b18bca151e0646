#include "models/ldm_names.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

#define UNET_PREFIX "model.diffusion_model."
#define VAE_PREFIX "first_stage_model."
#define CLIP_PREFIX "cond_stage_model.transformer."
#define OPENCLIP_PREFIX "cond_stage_model.model."

const char *stem_ldm_component_name(stem_ldm_component c) {
    static const char *const names[] = {"unet", "vae", "text_encoder"};
    return c >= 0 && c < STEM_LDM_COMPONENTS ? names[c] : "?";
}

/* ---- small string helpers ------------------------------------------------------------ */

static bool starts(const char *s, const char *prefix, const char **rest) {
    size_t n = strlen(prefix);
    if (strncmp(s, prefix, n) != 0) return false;
    if (rest) *rest = s + n;
    return true;
}

/* Reads "<digits>." from *s; advances past the dot. */
static bool take_index(const char **s, int *v) {
    const char *p = *s;
    if (!isdigit((unsigned char)*p)) return false;
    long x = 0;
    while (isdigit((unsigned char)*p)) {
        x = x * 10 + (*p - '0');
        if (x > 1000000) return false;
        p++;
    }
    if (*p != '.') return false;
    *v = (int)x;
    *s = p + 1;
    return true;
}

/* Replaces every occurrence of `from` in buf (capacity cap) by `to`. */
static void replace_all(char *buf, size_t cap, const char *from, const char *to) {
    char tmp[512];
    size_t nf = strlen(from), len = 0;
    const char *p = buf, *hit;
    tmp[0] = '\0';
    while ((hit = strstr(p, from)) != NULL) {
        len += (size_t)snprintf(tmp + len, sizeof tmp - len, "%.*s%s", (int)(hit - p), p, to);
        if (len >= sizeof tmp) return;
        p = hit + nf;
    }
    if (p == buf) return;
    snprintf(tmp + len, sizeof tmp - len, "%s", p);
    snprintf(buf, cap, "%s", tmp);
}

static int target(stem_ldm_target *t, stem_ldm_component c, const char *fmt, ...) STEM_PRINTF(3, 4);

static int target(stem_ldm_target *t, stem_ldm_component c, const char *fmt, ...) {
    memset(t, 0, sizeof *t);
    t->component = c;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    return 1;
}

/* ---- UNet (convert_ldm_unet_checkpoint) ---------------------------------------------- */

/* renew_resnet_paths */
static void unet_resnet_rename(const char *rest, char *out, size_t cap) {
    snprintf(out, cap, "%s", rest);
    replace_all(out, cap, "in_layers.0", "norm1");
    replace_all(out, cap, "in_layers.2", "conv1");
    replace_all(out, cap, "out_layers.0", "norm2");
    replace_all(out, cap, "out_layers.3", "conv2");
    replace_all(out, cap, "emb_layers.1", "time_emb_proj");
    replace_all(out, cap, "skip_connection", "conv_shortcut");
}

static int map_unet(const char *n, const stem_ldm_layout *lay, stem_ldm_target *t, const char **why) {
    const char *r;
    char buf[256];
    int i, j;
    stem_ldm_component U = STEM_LDM_UNET;
    if (starts(n, "time_embed.0.", &r)) return target(t, U, "time_embedding.linear_1.%s", r);
    if (starts(n, "time_embed.2.", &r)) return target(t, U, "time_embedding.linear_2.%s", r);
    if (starts(n, "input_blocks.0.0.", &r)) return target(t, U, "conv_in.%s", r);
    if (starts(n, "out.0.", &r)) return target(t, U, "conv_norm_out.%s", r);
    if (starts(n, "out.2.", &r)) return target(t, U, "conv_out.%s", r);
    int per = lay->unet_layers_per_block + 1;
    if (starts(n, "input_blocks.", &r) && take_index(&r, &i) && take_index(&r, &j) && i >= 1 && per > 1) {
        int block = (i - 1) / per, layer = (i - 1) % per;
        const char *rr;
        if (j == 0 && starts(r, "op.", &rr)) return target(t, U, "down_blocks.%d.downsamplers.0.conv.%s", block, rr);
        if (j == 0) {
            unet_resnet_rename(r, buf, sizeof buf);
            return target(t, U, "down_blocks.%d.resnets.%d.%s", block, layer, buf);
        }
        if (j == 1) return target(t, U, "down_blocks.%d.attentions.%d.%s", block, layer, r);
    }
    if (starts(n, "middle_block.", &r) && take_index(&r, &j)) {
        if (j == 0 || j == 2) {
            unet_resnet_rename(r, buf, sizeof buf);
            return target(t, U, "mid_block.resnets.%d.%s", j / 2, buf);
        }
        if (j == 1) return target(t, U, "mid_block.attentions.0.%s", r);
    }
    if (starts(n, "output_blocks.", &r) && take_index(&r, &i) && take_index(&r, &j) && per > 1) {
        int block = i / per, layer = i % per;
        if (j == 0) {
            unet_resnet_rename(r, buf, sizeof buf);
            return target(t, U, "up_blocks.%d.resnets.%d.%s", block, layer, buf);
        }
        /* a sub-module holding exactly conv.weight/conv.bias is the upsampler */
        if (!strcmp(r, "conv.weight") || !strcmp(r, "conv.bias"))
            return target(t, U, "up_blocks.%d.upsamplers.0.%s", block, r);
        if (j == 1) return target(t, U, "up_blocks.%d.attentions.%d.%s", block, layer, r);
    }
    if (starts(n, "label_emb.", NULL)) {
        *why = "class/label embedding, not supported";
        return 0;
    }
    *why = "not a known UNet tensor";
    return 0;
}

/* ---- VAE (convert_ldm_vae_checkpoint) ------------------------------------------------ */

static void vae_resnet_rename(const char *rest, char *out, size_t cap) {
    snprintf(out, cap, "%s", rest);
    replace_all(out, cap, "nin_shortcut", "conv_shortcut");
}

static int map_vae(const char *n, const stem_ldm_layout *lay, stem_ldm_target *t, const char **why) {
    const char *r, *side;
    char buf[256];
    int i, j;
    stem_ldm_component V = STEM_LDM_VAE;
    if (starts(n, "quant_conv.", NULL) || starts(n, "post_quant_conv.", NULL)) return target(t, V, "%s", n);
    if (starts(n, "encoder.", &r))
        side = "encoder";
    else if (starts(n, "decoder.", &r))
        side = "decoder";
    else {
        *why = starts(n, "loss.", NULL) ? "training loss module" : "not a known VAE tensor";
        return 0;
    }
    const char *rr;
    if (starts(r, "conv_in.", NULL) || starts(r, "conv_out.", NULL)) return target(t, V, "%s.%s", side, r);
    if (starts(r, "norm_out.", &rr)) return target(t, V, "%s.conv_norm_out.%s", side, rr);
    if (starts(r, "mid.block_1.", &rr) || starts(r, "mid.block_2.", &rr)) {
        vae_resnet_rename(rr, buf, sizeof buf);
        return target(t, V, "%s.mid_block.resnets.%d.%s", side, r[10] - '1', buf);
    }
    if (starts(r, "mid.attn_1.", &rr)) {
        static const char *const from[] = {"norm.", "q.", "k.", "v.", "proj_out."};
        static const char *const to[] = {"group_norm.", "to_q.", "to_k.", "to_v.", "to_out.0."};
        for (int k = 0; k < 5; k++) {
            const char *leaf;
            if (starts(rr, from[k], &leaf)) {
                target(t, V, "%s.mid_block.attentions.0.%s%s", side, to[k], leaf);
                t->squeeze = k > 0 && !strcmp(leaf, "weight"); /* 1x1 conv -> linear */
                return 1;
            }
        }
    }
    if (!strcmp(side, "encoder") && starts(r, "down.", &rr) && take_index(&rr, &i)) {
        const char *leaf;
        if (starts(rr, "block.", &leaf) && take_index(&leaf, &j)) {
            vae_resnet_rename(leaf, buf, sizeof buf);
            return target(t, V, "encoder.down_blocks.%d.resnets.%d.%s", i, j, buf);
        }
        if (starts(rr, "downsample.conv.", &leaf))
            return target(t, V, "encoder.down_blocks.%d.downsamplers.0.conv.%s", i, leaf);
    }
    if (!strcmp(side, "decoder") && starts(r, "up.", &rr) && take_index(&rr, &i) && i < lay->vae_levels) {
        int block = lay->vae_levels - 1 - i;
        const char *leaf;
        if (starts(rr, "block.", &leaf) && take_index(&leaf, &j)) {
            vae_resnet_rename(leaf, buf, sizeof buf);
            return target(t, V, "decoder.up_blocks.%d.resnets.%d.%s", block, j, buf);
        }
        if (starts(rr, "upsample.conv.", &leaf))
            return target(t, V, "decoder.up_blocks.%d.upsamplers.0.conv.%s", block, leaf);
    }
    *why = "not a known VAE tensor";
    return 0;
}

/* ---- text encoders (convert_ldm_clip_checkpoint, convert_open_clip_checkpoint) ------- */

static int map_clip(const char *r, const stem_ldm_layout *lay, stem_ldm_target *t, const char **why) {
    const char *rr = r;
    if (!starts(r, "text_model.", &rr)) rr = r; /* very old transformers saved without it */
    if (!strcmp(rr, "embeddings.position_ids")) {
        *why = "position_ids buffer, not a parameter";
        return 0;
    }
    const char *leaf;
    int layer;
    if (starts(rr, "encoder.layers.", &leaf) && take_index(&leaf, &layer) && layer >= lay->text_layers) {
        *why = "text encoder layer beyond num_hidden_layers";
        return 0;
    }
    return target(t, STEM_LDM_TEXT, "text_model.%s", rr);
}

static int map_openclip(const char *r, int64_t rows0, const stem_ldm_layout *lay, stem_ldm_target out[3],
                        const char **why) {
    stem_ldm_component T = STEM_LDM_TEXT;
    const char *rr;
    if (!strcmp(r, "token_embedding.weight")) return target(out, T, "text_model.embeddings.token_embedding.weight");
    if (!strcmp(r, "positional_embedding")) return target(out, T, "text_model.embeddings.position_embedding.weight");
    if (starts(r, "ln_final.", &rr)) return target(out, T, "text_model.final_layer_norm.%s", rr);
    if (!strcmp(r, "text_projection")) {
        *why = "text projection, unused by CLIPTextModel";
        return 0;
    }
    if (!strcmp(r, "logit_scale")) {
        *why = "CLIP logit scale, unused";
        return 0;
    }
    int n;
    if (starts(r, "transformer.resblocks.", &rr) && take_index(&rr, &n)) {
        if (n >= lay->text_layers) {
            *why = "text encoder layer beyond num_hidden_layers (SD 2.x uses the penultimate layer)";
            return 0;
        }
        const char *leaf;
        char p[64];
        snprintf(p, sizeof p, "text_model.encoder.layers.%d", n);
        if (starts(rr, "ln_1.", &leaf)) return target(out, T, "%s.layer_norm1.%s", p, leaf);
        if (starts(rr, "ln_2.", &leaf)) return target(out, T, "%s.layer_norm2.%s", p, leaf);
        if (starts(rr, "mlp.c_fc.", &leaf)) return target(out, T, "%s.mlp.fc1.%s", p, leaf);
        if (starts(rr, "mlp.c_proj.", &leaf)) return target(out, T, "%s.mlp.fc2.%s", p, leaf);
        if (starts(rr, "attn.out_proj.", &leaf)) return target(out, T, "%s.self_attn.out_proj.%s", p, leaf);
        const char *kind = !strcmp(rr, "attn.in_proj_weight") ? "weight" : !strcmp(rr, "attn.in_proj_bias") ? "bias" : NULL;
        if (kind && rows0 % 3 == 0) {
            static const char *const qkv[3] = {"q_proj", "k_proj", "v_proj"};
            int64_t d = rows0 / 3;
            for (int k = 0; k < 3; k++) {
                target(&out[k], T, "%s.self_attn.%s.%s", p, qkv[k], kind);
                out[k].row_start = k * d;
                out[k].rows = d;
            }
            return 3;
        }
    }
    *why = "not a known OpenCLIP text tensor";
    return 0;
}

int stem_ldm_map_name(const char *n, int ndim, int64_t rows0, const stem_ldm_layout *lay, stem_ldm_target out[3],
                      const char **why) {
    const char *r;
    static const char *unused = "";
    *why = unused;
    (void)ndim;
    if (starts(n, UNET_PREFIX, &r)) return map_unet(r, lay, out, why);
    if (starts(n, VAE_PREFIX, &r)) return map_vae(r, lay, out, why);
    if (starts(n, CLIP_PREFIX, &r)) return map_clip(r, lay, out, why);
    if (starts(n, OPENCLIP_PREFIX, &r)) return map_openclip(r, rows0, lay, out, why);
    if (starts(n, "model_ema.", NULL))
        *why = "EMA copy";
    else if (starts(n, "conditioner.", NULL))
        *why = "SDXL conditioner, not supported";
    else if (starts(n, "cond_stage_model.", NULL))
        *why = "unknown text encoder layout";
    else if (!strchr(n, '.'))
        *why = "DDPM schedule buffer";
    else
        *why = "not part of the UNet, VAE or text encoder";
    return 0;
}

/* ---- layout --------------------------------------------------------------------------- */

stem_status stem_ldm_infer_layout(const stem_tensor_map *m, stem_ldm_layout *lay) {
    memset(lay, 0, sizeof *lay);
    int max_input = -1, downsamplers = 0, max_up = -1, max_layer = -1;
    bool any = false;
    for (int k = 0; k < m->count; k++) {
        const char *n = m->items[k].name, *r;
        int i, j;
        if (starts(n, UNET_PREFIX "input_blocks.", &r) && take_index(&r, &i) && take_index(&r, &j)) {
            any = true;
            if (i > max_input) max_input = i;
            if (j == 0 && !strcmp(r, "op.weight")) downsamplers++;
        } else if (starts(n, UNET_PREFIX, NULL)) {
            any = true;
        } else if (starts(n, VAE_PREFIX, &r)) {
            any = true;
            if (starts(r, "decoder.up.", &r) && take_index(&r, &i) && i > max_up) max_up = i;
        } else if (starts(n, CLIP_PREFIX, &r)) {
            any = true;
            lay->text_kind = STEM_LDM_TEXT_CLIP;
            starts(r, "text_model.", &r);
            if (starts(r, "encoder.layers.", &r) && take_index(&r, &i) && i > max_layer) max_layer = i;
        } else if (starts(n, OPENCLIP_PREFIX, &r)) {
            any = true;
            lay->text_kind = STEM_LDM_TEXT_OPENCLIP;
            if (starts(r, "transformer.resblocks.", &r) && take_index(&r, &i) && i > max_layer) max_layer = i;
        }
    }
    if (!any)
        return stem_fail(STEM_E_FORMAT,
                         "not an original (LDM) Stable Diffusion checkpoint: no tensors under model.diffusion_model., "
                         "first_stage_model. or cond_stage_model.");
    if (max_input >= 0) {
        /* input_blocks: conv_in, then per level layers+1 entries (the last level has no downsampler) */
        lay->unet_levels = downsamplers + 1;
        lay->unet_layers_per_block = (max_input + 1 - lay->unet_levels) / lay->unet_levels;
    }
    lay->vae_levels = max_up + 1;
    lay->text_layers = lay->text_layers_in_file = max_layer + 1;
    /* SD 2.x conditions on OpenCLIP's penultimate layer: diffusers' text_encoder config
     * has 23 of the checkpoint's 24 layers */
    if (lay->text_kind == STEM_LDM_TEXT_OPENCLIP && lay->text_layers > 1) lay->text_layers--;
    return STEM_OK;
}

/* ---- opening one component ------------------------------------------------------------- */

static stem_status make_view(const stem_tensor *src, const stem_ldm_target *t, const char *path, const char *ldm_name,
                             stem_tensor *view) {
    *view = *src;
    view->owned = false;
    if (t->rows) {
        if (src->ndim < 1 || t->row_start + t->rows > src->shape[0])
            return stem_fail(STEM_E_SHAPE, "%s: tensor '%s' is too small to split into '%s'", path, ldm_name, t->name);
        int64_t row = stem_numel(src) / src->shape[0];
        view->data = (char *)src->data + (size_t)(t->row_start * row) * stem_dtype_size(src->dtype);
        view->shape[0] = t->rows;
    }
    if (t->squeeze)
        while (view->ndim > 2 && view->shape[view->ndim - 1] == 1) view->ndim--;
    return STEM_OK;
}

static stem_status fill(stem_weights *w, stem_ldm_component comp, const stem_ldm_layout *given) {
    const stem_tensor_map *f = &w->files[0];
    stem_ldm_layout lay;
    STEM_TRY(stem_ldm_infer_layout(f, &lay));
    if (given) {
        if (given->unet_layers_per_block) lay.unet_layers_per_block = given->unet_layers_per_block;
        if (given->vae_levels) lay.vae_levels = given->vae_levels;
        if (given->text_layers) lay.text_layers = given->text_layers;
    }
    for (int k = 0; k < f->count; k++) {
        stem_ldm_target t[3];
        const char *why;
        const stem_tensor *src = &f->items[k].tensor;
        int n = stem_ldm_map_name(f->items[k].name, src->ndim, src->ndim ? src->shape[0] : 0, &lay, t, &why);
        for (int i = 0; i < n; i++) {
            if (t[i].component != comp) continue;
            if (stem_tensor_map_get(&w->host, t[i].name))
                return stem_fail(STEM_E_FORMAT, "%s: two tensors map to %s tensor '%s' (the second is '%s')", w->dir,
                                 stem_ldm_component_name(comp), t[i].name, f->items[k].name);
            stem_tensor view;
            STEM_TRY(make_view(src, &t[i], w->dir, f->items[k].name, &view));
            STEM_TRY(stem_tensor_map_put(&w->host, t[i].name, view));
        }
    }
    if (w->host.count == 0) {
        static const char *const prefix[] = {UNET_PREFIX, VAE_PREFIX, "cond_stage_model."};
        return stem_fail(STEM_E_NOTFOUND, "%s: %s: the checkpoint has no tensors under '%s'", stem_ldm_component_name(comp),
                         w->dir, prefix[comp]);
    }
    w->used = calloc((size_t)w->host.count + 1, 1);
    if (!w->used) return stem_fail(STEM_E_NOMEM, "out of memory");
    /* as stem_weights_open: every placed tensor fits without a realloc, pointers stay valid */
    return stem_tensor_map_reserve(&w->placed, w->host.count + 1);
}

stem_status stem_ldm_weights_open(const char *path, stem_ldm_component comp, const stem_ldm_layout *lay,
                                  stem_backend *be, stem_dtype dtype, stem_weights *w) {
    memset(w, 0, sizeof *w);
    if (comp < 0 || comp >= STEM_LDM_COMPONENTS) return stem_fail(STEM_E_ARG, "ldm: unknown component %d", (int)comp);
    snprintf(w->component, sizeof w->component, "%s", stem_ldm_component_name(comp));
    snprintf(w->dir, sizeof w->dir, "%s", path);
    w->be = be;
    w->dtype = dtype;
    w->names_note = " (its LDM names mapped to diffusers')";
    stem_tensor_map_init(&w->host);
    stem_tensor_map_init(&w->placed);
    w->files = calloc(1, sizeof *w->files);
    if (!w->files) return stem_fail(STEM_E_NOMEM, "out of memory");
    stem_status s = stem_safetensors_load(path, -1, &w->files[0]);
    if (s != STEM_OK) {
        stem_weights_close(w);
        return stem_error_context(s, "%s", stem_ldm_component_name(comp));
    }
    w->file_count = 1;
    s = fill(w, comp, lay);
    if (s != STEM_OK) stem_weights_close(w); /* on failure nothing is left to free, as stem_weights_open */
    return s;
}

/* ---- summary -------------------------------------------------------------------------- */

static void add_dtype(char *list, size_t cap, stem_dtype dt) {
    const char *name = stem_dtype_name(dt);
    char *p = list;
    size_t n = strlen(name);
    while ((p = strstr(p, name)) != NULL) {
        if ((p == list || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0')) return;
        p += n;
    }
    size_t len = strlen(list);
    snprintf(list + len, cap - len, "%s%s", len ? ", " : "", name);
}

stem_status stem_ldm_inspect(const char *path, stem_ldm_summary *s) {
    memset(s, 0, sizeof *s);
    stem_tensor_map m;
    STEM_TRY(stem_safetensors_inspect(path, &m));
    stem_status st = stem_ldm_infer_layout(&m, &s->layout);
    if (st != STEM_OK) {
        stem_tensor_map_free(&m);
        return stem_error_context(st, "%s", path);
    }
    s->tensors = m.count;
    size_t ex_len = 0;
    int examples = 0;
    for (int k = 0; k < m.count; k++) {
        const char *name = m.items[k].name;
        const stem_tensor *t = &m.items[k].tensor;
        stem_ldm_target tg[3];
        const char *why;
        int n = stem_ldm_map_name(name, t->ndim, t->ndim ? t->shape[0] : 0, &s->layout, tg, &why);
        if (n == 0) {
            s->ignored++;
            s->ignored_params += stem_numel(t);
            if (examples < 3 && ex_len < sizeof s->ignored_examples - 1) {
                ex_len += (size_t)snprintf(s->ignored_examples + ex_len, sizeof s->ignored_examples - ex_len,
                                           "%s'%s' (%s)", examples ? ", " : "", name, why);
                examples++;
            }
            continue;
        }
        for (int i = 0; i < n; i++) {
            int c = tg[i].component;
            s->mapped[c]++;
            s->params[c] += tg[i].rows ? stem_numel(t) / t->shape[0] * tg[i].rows : stem_numel(t);
            add_dtype(s->dtypes[c], sizeof s->dtypes[c], t->dtype);
            if (!strcmp(tg[i].name, "text_model.embeddings.token_embedding.weight") && t->ndim == 2)
                s->text_hidden = t->shape[1];
            size_t len = strlen(tg[i].name);
            if (c == STEM_LDM_UNET && len > 15 && !strcmp(tg[i].name + len - 15, ".proj_in.weight"))
                s->unet_linear_proj = t->ndim == 2;
            if (c == STEM_LDM_UNET && len > 18 && !strcmp(tg[i].name + len - 18, ".attn2.to_k.weight") && t->ndim == 2)
                s->unet_context_dim = t->shape[1];
        }
    }
    if (s->ignored > examples && ex_len < sizeof s->ignored_examples - 8)
        snprintf(s->ignored_examples + ex_len, sizeof s->ignored_examples - ex_len, ", ...");
    stem_tensor_map_free(&m);
    return STEM_OK;
}
