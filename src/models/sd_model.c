#include "models/sd_model.h"

#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/backend.h"
#include "core/host.h"
#include "models/clip_text.h"
#include "models/model_config.h"
#include "models/vae.h"
#include "models/weights.h"

const char *stem_sd_version_name(stem_sd_version v) {
    return v == STEM_SD_1X ? "SD 1.x" : v == STEM_SD_2X ? "SD 2.x" : "unknown";
}

const stem_sd_component *stem_sd_find(const stem_sd_info *info, const char *name) {
    for (int i = 0; i < info->n_components; i++)
        if (!strcmp(info->comp[i].name, name)) return &info->comp[i];
    return NULL;
}

static stem_sd_component *find_mut(stem_sd_info *info, const char *name) {
    return (stem_sd_component *)stem_sd_find(info, name);
}

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static void problem(stem_sd_component *c, const char *fmt, ...) STEM_PRINTF(2, 3);
static void problem(stem_sd_component *c, const char *fmt, ...) {
    if (c->problem[0]) return; /* the first problem is the one to fix */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->problem, sizeof c->problem, fmt, ap);
    va_end(ap);
}

static void add_dtype(char *list, size_t cap, stem_dtype dt) {
    const char *name = stem_dtype_name(dt);
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s", list);
    for (char *tok = strtok(tmp, ", "); tok; tok = strtok(NULL, ", "))
        if (!strcmp(tok, name)) return;
    size_t len = strlen(list);
    snprintf(list + len, cap - len, "%s%s", len ? ", " : "", name);
}

static stem_sd_component *add_component(stem_sd_info *info, const char *name, bool required) {
    stem_sd_component *c = find_mut(info, name);
    if (c) {
        c->required |= required;
        return c;
    }
    if (info->n_components == STEM_SD_MAX_COMPONENTS) return NULL;
    c = &info->comp[info->n_components++];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->required = required;
    return c;
}

/* ---- weights of one component folder (headers only) -------------------------------- */

static void inspect_weights(const char *dir, stem_sd_component *c) {
    static const char *const names[] = {
        "diffusion_pytorch_model.safetensors", "model.safetensors",
        "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors",
    };
    char path[1500];
    for (int i = 0; i < 4 && !c->weights[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (is_file(path)) snprintf(c->weights, sizeof c->weights, "%s", names[i]);
        snprintf(path, sizeof path, "%s/%s.index.json", dir, names[i]);
        if (!c->weights[0] && is_file(path)) snprintf(c->weights, sizeof c->weights, "%s.index.json (shards)", names[i]);
    }
    stem_weights w;
    stem_status s = stem_weights_open(dir, c->name, stem_host(), STEM_F32, &w);
    if (s != STEM_OK) {
        problem(c, "%s", stem_last_error());
        stem_weights_close(&w);
        return;
    }
    c->tensors = w.host.count;
    c->params = stem_weights_param_count(&w);
    for (int i = 0; i < w.host.count; i++) add_dtype(c->dtypes, sizeof c->dtypes, w.host.items[i].tensor.dtype);
    stem_weights_close(&w);
}

/* ---- per-component configs ----------------------------------------------------------- */

/* dir/config.json, or false with the reason recorded as c's problem. */
static bool load_component_config(const char *dir, stem_sd_component *c, stem_config *cfg) {
    char path[1500];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (stem_config_load(path, cfg) == STEM_OK) return true;
    problem(c, "%s", stem_last_error());
    return false;
}

static void inspect_text_encoder(stem_sd_info *info, const char *dir, stem_sd_component *c) {
    stem_config cfg;
    if (!load_component_config(dir, c, &cfg)) return;
    stem_clip_text_config tc;
    if (stem_clip_text_parse_config(&cfg, &tc) != STEM_OK) {
        problem(c, "%s", stem_last_error());
    } else {
        info->text_hidden = tc.hidden;
        info->text_layers = tc.layers;
        snprintf(info->text_act, sizeof info->text_act, "%s", tc.hidden_act);
        snprintf(c->detail, sizeof c->detail, "%lld layers, hidden %lld, %lld heads, mlp %lld, %s, %lld positions",
                 (long long)tc.layers, (long long)tc.hidden, (long long)tc.heads, (long long)tc.intermediate,
                 tc.hidden_act, (long long)tc.max_positions);
    }
    stem_config_free(&cfg);
}

static void inspect_vae(const char *dir, stem_sd_component *c) {
    stem_config cfg;
    if (!load_component_config(dir, c, &cfg)) return;
    stem_vae_config vc;
    if (stem_vae_parse_config(&cfg, &vc) != STEM_OK) {
        problem(c, "%s", stem_last_error());
    } else {
        char chans[96] = "";
        size_t len = 0;
        for (int i = 0; i < vc.levels && len < sizeof chans; i++)
            len += (size_t)snprintf(chans + len, sizeof chans - len, "%s%lld", i ? ", " : "", (long long)vc.block_out[i]);
        snprintf(c->detail, sizeof c->detail, "channels [%s], %lld resnets/level, %lld latent channels, %d-fold downsampling, scaling %g",
                 chans, (long long)vc.layers_per_block, (long long)vc.latent_channels, 1 << (vc.levels - 1),
                 vc.scaling_factor);
    }
    stem_config_free(&cfg);
}

static void inspect_unet(stem_sd_info *info, const char *dir, stem_sd_component *c) {
    stem_config cfg;
    if (!load_component_config(dir, c, &cfg)) return;
    int64_t chans[8], heads[8], cross = 0, layers = 0, sample = 0;
    int n = 0, nh = 0;
    bool linear = false;
    if (stem_config_ints(&cfg, "block_out_channels", chans, 8, &n) != STEM_OK ||
        stem_config_int(&cfg, "cross_attention_dim", 0, &cross) != STEM_OK ||
        stem_config_int(&cfg, "layers_per_block", 2, &layers) != STEM_OK ||
        stem_config_int(&cfg, "sample_size", 0, &sample) != STEM_OK ||
        stem_config_bool(&cfg, "use_linear_projection", false, &linear) != STEM_OK) {
        problem(c, "%s", stem_last_error());
    } else {
        if (!stem_config_has(&cfg, "attention_head_dim") ||
            stem_config_ints(&cfg, "attention_head_dim", heads, 8, &nh) != STEM_OK)
            nh = 0;
        info->unet_cross_dim = cross;
        info->unet_linear_proj = linear;
        char ch[96] = "", hd[64] = "";
        size_t len = 0;
        for (int i = 0; i < n; i++) len += (size_t)snprintf(ch + len, sizeof ch - len, "%s%lld", i ? ", " : "", (long long)chans[i]);
        len = 0;
        for (int i = 0; i < nh; i++) len += (size_t)snprintf(hd + len, sizeof hd - len, "%s%lld", i ? ", " : "", (long long)heads[i]);
        snprintf(c->detail, sizeof c->detail,
                 "channels [%s], %lld resnets/level, attention_head_dim [%s], cross-attention %lld, %s projections, "
                 "sample size %lld",
                 ch, (long long)layers, hd, (long long)cross, linear ? "linear" : "1x1 conv", (long long)sample);
        if (!stem_config_has(&cfg, "cross_attention_dim")) problem(c, "%s: missing required key 'cross_attention_dim'", cfg.path);
    }
    stem_config_free(&cfg);
}

static void inspect_scheduler(stem_sd_info *info, const char *dir, stem_sd_component *c) {
    char path[1500];
    snprintf(path, sizeof path, "%s/scheduler_config.json", dir);
    stem_config cfg;
    if (stem_config_load(path, &cfg) != STEM_OK) {
        problem(c, "%s", stem_last_error());
        return;
    }
    const char *cls = NULL, *sched = NULL, *pred = NULL, *spacing = NULL;
    int64_t T = 0, offset = 0;
    double b0 = 0, b1 = 0;
    bool one = false;
    if (stem_config_string(&cfg, "_class_name", "?", &cls) != STEM_OK ||
        stem_config_string(&cfg, "beta_schedule", "linear", &sched) != STEM_OK ||
        stem_config_string(&cfg, "prediction_type", "epsilon", &pred) != STEM_OK ||
        stem_config_string(&cfg, "timestep_spacing", "leading", &spacing) != STEM_OK ||
        stem_config_int(&cfg, "num_train_timesteps", 1000, &T) != STEM_OK ||
        stem_config_int(&cfg, "steps_offset", 0, &offset) != STEM_OK ||
        stem_config_float(&cfg, "beta_start", 0.0001, &b0) != STEM_OK ||
        stem_config_float(&cfg, "beta_end", 0.02, &b1) != STEM_OK ||
        stem_config_bool(&cfg, "set_alpha_to_one", true, &one) != STEM_OK) {
        problem(c, "%s", stem_last_error());
    } else {
        snprintf(info->scheduler, sizeof info->scheduler,
                 "%s: %lld training steps, %s betas %g..%g, %s prediction, %s spacing, steps_offset %lld, "
                 "set_alpha_to_one %s",
                 cls, (long long)T, sched, b0, b1, pred, spacing, (long long)offset, one ? "true" : "false");
        snprintf(c->detail, sizeof c->detail, "%s", info->scheduler);
        snprintf(info->prediction, sizeof info->prediction, "%s", pred);
        if (!c->class_name[0]) snprintf(c->class_name, sizeof c->class_name, "%s", cls);
    }
    stem_config_free(&cfg);
}

static void inspect_tokenizer(const char *dir, stem_sd_component *c) {
    char path[1500];
    static const char *const need[] = {"vocab.json", "merges.txt"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, need[i]);
        if (!is_file(path)) problem(c, "%s: missing %s", dir, need[i]);
    }
    snprintf(path, sizeof path, "%s/special_tokens_map.json", dir);
    json_object *root = is_file(path) ? json_object_from_file(path) : NULL, *pad = NULL, *content = NULL;
    const char *pad_s = NULL;
    if (root && json_object_object_get_ex(root, "pad_token", &pad)) {
        if (json_object_is_type(pad, json_type_string))
            pad_s = json_object_get_string(pad);
        else if (json_object_object_get_ex(pad, "content", &content))
            pad_s = json_object_get_string(content);
    }
    snprintf(c->detail, sizeof c->detail, "CLIP BPE (vocab.json + merges.txt), pad token '%s'",
             pad_s ? pad_s : "<|endoftext|>");
    if (root) json_object_put(root);
}

/* ---- version ---------------------------------------------------------------------- */

static void detect_version(stem_sd_info *info, const char *act, bool linear, bool have_text, bool have_unet,
                           const char *pred) {
    char facts[200];
    snprintf(facts, sizeof facts, "text encoder %lld wide, %lld layers, %s; UNet with %s projections, cross-attention %lld",
             (long long)info->text_hidden, (long long)info->text_layers, act ? act : "?", linear ? "linear" : "1x1 conv",
             (long long)info->unet_cross_dim);
    if (!have_text || !have_unet || !act) {
        info->version = STEM_SD_UNKNOWN;
        snprintf(info->version_text, sizeof info->version_text, "unknown (needs the text encoder and UNet configs)");
        return;
    }
    bool v1 = !strcmp(act, "quick_gelu") && !linear, v2 = !strcmp(act, "gelu") && linear;
    if (!v1 && !v2) {
        info->version = STEM_SD_UNKNOWN;
        snprintf(info->version_text, sizeof info->version_text, "unknown: neither SD 1.x nor SD 2.x (%s)", facts);
        return;
    }
    info->version = v1 ? STEM_SD_1X : STEM_SD_2X;
    bool standard = v1 ? info->text_hidden == 768 && info->text_layers == 12 && info->unet_cross_dim == 768
                       : info->text_hidden == 1024 && info->text_layers == 23 && info->unet_cross_dim == 1024;
    info->custom_sizes = !standard;
    const char *variant = v2 && pred && !strcmp(pred, "v_prediction") ? " (v-prediction, 768-v)" : "";
    snprintf(info->version_text, sizeof info->version_text, "%s%s%s (%s)", stem_sd_version_name(info->version), variant,
             standard ? "" : ", tiny/custom sizes", facts);
}

/* ---- diffusers folder --------------------------------------------------------------- */

static const char *const REQUIRED[] = {"text_encoder", "tokenizer", "unet", "vae", "scheduler"};

static stem_status no_index(const char *dir) {
    char have[256] = "";
    size_t len = 0;
    for (int i = 0; i < 5; i++) {
        char p[1400];
        snprintf(p, sizeof p, "%s/%s", dir, REQUIRED[i]);
        if (is_dir(p)) len += (size_t)snprintf(have + len, sizeof have - len, "%s%s/", len ? ", " : "", REQUIRED[i]);
    }
    return stem_fail(STEM_E_NOTFOUND,
                     "%s: no model_index.json, so this is not a diffusers Stable Diffusion folder (it has %s); expected "
                     "model_index.json with text_encoder/, tokenizer/, unet/, vae/ and scheduler/, or pass a single-file "
                     ".safetensors checkpoint",
                     dir, len ? have : "none of the component folders");
}

static stem_status read_index(stem_sd_info *info, const char *dir) {
    char path[1500];
    snprintf(path, sizeof path, "%s/model_index.json", dir);
    if (!is_file(path)) return no_index(dir);
    json_object *root = json_object_from_file(path), *v;
    if (!root || !json_object_is_type(root, json_type_object)) {
        if (root) json_object_put(root);
        return stem_fail(STEM_E_FORMAT, "%s: not a JSON object", path);
    }
    if (json_object_object_get_ex(root, "_class_name", &v))
        snprintf(info->pipeline_class, sizeof info->pipeline_class, "%s", json_object_get_string(v));
    if (json_object_object_get_ex(root, "_diffusers_version", &v))
        snprintf(info->diffusers_version, sizeof info->diffusers_version, "%s", json_object_get_string(v));
    for (int i = 0; i < 5; i++) add_component(info, REQUIRED[i], true);
    json_object_object_foreach(root, key, val) {
        if (key[0] == '_' || !json_object_is_type(val, json_type_array) || json_object_array_length(val) != 2) continue;
        json_object *lib = json_object_array_get_idx(val, 0), *cls = json_object_array_get_idx(val, 1);
        stem_sd_component *c = add_component(info, key, false);
        if (!c) continue;
        if (lib && cls && json_object_is_type(cls, json_type_string)) {
            c->listed = true;
            snprintf(c->library, sizeof c->library, "%s", lib ? json_object_get_string(lib) : "");
            snprintf(c->class_name, sizeof c->class_name, "%s", json_object_get_string(cls));
        }
    }
    json_object_put(root);
    return STEM_OK;
}

static void check_class(stem_sd_component *c, const char *want1, const char *want2) {
    if (c->listed && strcmp(c->class_name, want1) && (!want2 || strcmp(c->class_name, want2)))
        problem(c, "model_index.json names %s, stem supports %s%s%s", c->class_name, want1, want2 ? " or " : "",
                want2 ? want2 : "");
}

static stem_status inspect_folder(stem_sd_info *info, const char *dir) {
    STEM_TRY(read_index(info, dir));
    bool have_text = false, have_unet = false;
    for (int i = 0; i < info->n_components; i++) {
        stem_sd_component *c = &info->comp[i];
        char sub[1400];
        snprintf(sub, sizeof sub, "%s/%s", dir, c->name);
        c->present = is_dir(sub);
        if (!c->present) {
            if (c->required) problem(c, "%s: missing folder %s/", dir, c->name);
            continue;
        }
        if (!c->listed && c->required)
            problem(c, "model_index.json does not list '%s' (the folder is there)", c->name);
        if (!strcmp(c->name, "text_encoder")) {
            check_class(c, "CLIPTextModel", NULL);
            inspect_text_encoder(info, sub, c);
            inspect_weights(sub, c);
            have_text = info->text_hidden > 0;
        } else if (!strcmp(c->name, "unet")) {
            check_class(c, "UNet2DConditionModel", NULL);
            inspect_unet(info, sub, c);
            inspect_weights(sub, c);
            have_unet = info->unet_cross_dim > 0;
        } else if (!strcmp(c->name, "vae")) {
            check_class(c, "AutoencoderKL", NULL);
            inspect_vae(sub, c);
            inspect_weights(sub, c);
        } else if (!strcmp(c->name, "tokenizer")) {
            check_class(c, "CLIPTokenizer", "CLIPTokenizerFast");
            inspect_tokenizer(sub, c);
        } else if (!strcmp(c->name, "scheduler")) {
            inspect_scheduler(info, sub, c);
        } else {
            snprintf(c->detail, sizeof c->detail, "not used by stem");
        }
    }
    detect_version(info, info->text_act[0] ? info->text_act : NULL, info->unet_linear_proj, have_text, have_unet,
                   info->prediction);
    /* the text encoder's width must be what the UNet cross-attends to */
    stem_sd_component *unet = find_mut(info, "unet");
    if (have_text && have_unet && info->text_hidden != info->unet_cross_dim && unet)
        problem(unet, "cross_attention_dim %lld does not match the text encoder's hidden_size %lld",
                (long long)info->unet_cross_dim, (long long)info->text_hidden);
    return STEM_OK;
}

/* ---- single file ---------------------------------------------------------------------- */

static stem_status inspect_single_file(stem_sd_info *info, const char *path) {
    info->single_file = true;
    STEM_TRY(stem_ldm_inspect(path, &info->ldm));
    const stem_ldm_summary *s = &info->ldm;
    static const stem_ldm_component order[3] = {STEM_LDM_TEXT, STEM_LDM_UNET, STEM_LDM_VAE};
    static const char *const cls[3] = {"CLIPTextModel", "UNet2DConditionModel", "AutoencoderKL"};
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    for (int k = 0; k < 3; k++) {
        stem_ldm_component comp = order[k];
        stem_sd_component *c = add_component(info, stem_ldm_component_name(comp), true);
        c->present = s->mapped[comp] > 0;
        c->tensors = s->mapped[comp];
        c->params = s->params[comp];
        snprintf(c->dtypes, sizeof c->dtypes, "%s", s->dtypes[comp]);
        snprintf(c->class_name, sizeof c->class_name, "%s", cls[k]);
        snprintf(c->weights, sizeof c->weights, "%s", base);
        if (!c->present) problem(c, "%s: no %s tensors in the checkpoint", path, c->name);
    }
    snprintf(find_mut(info, "text_encoder")->detail, sizeof info->comp[0].detail, "%s, %d layers in the file%s",
             s->layout.text_kind == STEM_LDM_TEXT_CLIP       ? "CLIP ViT-L/14 layout (cond_stage_model.transformer)"
             : s->layout.text_kind == STEM_LDM_TEXT_OPENCLIP ? "OpenCLIP layout (cond_stage_model.model), q/k/v split from in_proj"
                                                             : "none",
             s->layout.text_layers_in_file,
             s->layout.text_kind == STEM_LDM_TEXT_OPENCLIP ? " (SD 2.x uses all but the last)" : "");
    snprintf(find_mut(info, "unet")->detail, sizeof info->comp[0].detail,
             "%d levels, %d resnets/level, %s projections, cross-attention %lld", s->layout.unet_levels,
             s->layout.unet_layers_per_block, s->unet_linear_proj ? "linear" : "1x1 conv",
             (long long)s->unet_context_dim);
    snprintf(find_mut(info, "vae")->detail, sizeof info->comp[0].detail,
             "%d levels; mid attention 1x1 convs mapped to linear layers", s->layout.vae_levels);
    info->text_hidden = s->text_hidden;
    info->text_layers = s->layout.text_layers;
    info->unet_cross_dim = s->unet_context_dim;
    const char *act = s->layout.text_kind == STEM_LDM_TEXT_CLIP ? "quick_gelu"
                      : s->layout.text_kind == STEM_LDM_TEXT_OPENCLIP ? "gelu" : "";
    snprintf(info->text_act, sizeof info->text_act, "%s", act);
    info->unet_linear_proj = s->unet_linear_proj;
    detect_version(info, act[0] ? act : NULL, s->unet_linear_proj, s->text_hidden > 0, s->mapped[STEM_LDM_UNET] > 0,
                   NULL);
    snprintf(info->scheduler, sizeof info->scheduler,
             "not in a single-file checkpoint: stem invert uses SD's DDIM values and the bundled CLIP tokenizer, "
             "or those of --model-config DIR (a diffusers folder of the same version)");
    return STEM_OK;
}

stem_status stem_sd_inspect(const char *path, stem_sd_info *info) {
    memset(info, 0, sizeof *info);
    snprintf(info->path, sizeof info->path, "%s", path);
    struct stat st;
    if (stat(path, &st) != 0) return stem_fail(STEM_E_NOTFOUND, "%s: %s", path, strerror(errno));
    stem_status s;
    if (S_ISDIR(st.st_mode)) {
        s = inspect_folder(info, path);
    } else if (ends_with(path, ".safetensors")) {
        s = inspect_single_file(info, path);
    } else if (ends_with(path, ".ckpt") || ends_with(path, ".pt") || ends_with(path, ".pth") || ends_with(path, ".bin")) {
        return stem_fail(STEM_E_UNSUPPORTED,
                         "%s: pickle checkpoints are not loaded (they can run code); convert it to .safetensors, e.g. "
                         "with safetensors.torch.save_file(torch.load(path)['state_dict'], 'model.safetensors')",
                         path);
    } else {
        return stem_fail(STEM_E_FORMAT, "%s: expected a diffusers model folder or a .safetensors checkpoint", path);
    }
    if (s != STEM_OK) return s;
    for (int i = 0; i < info->n_components; i++) {
        stem_sd_component *c = &info->comp[i];
        c->usable = c->present && !c->problem[0];
        if (c->required && !c->usable) info->missing++;
    }
    return STEM_OK;
}

stem_status stem_sd_open_weights(const char *path, const char *component, const stem_ldm_layout *lay,
                                 stem_backend *be, stem_dtype dtype, stem_weights *w) {
    memset(w, 0, sizeof *w);
    struct stat st;
    if (stat(path, &st) != 0) return stem_fail(STEM_E_NOTFOUND, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        char dir[1400];
        snprintf(dir, sizeof dir, "%s/%s", path, component);
        return stem_weights_open(dir, component, be, dtype, w);
    }
    for (int c = 0; c < STEM_LDM_COMPONENTS; c++)
        if (!strcmp(component, stem_ldm_component_name((stem_ldm_component)c)))
            return stem_ldm_weights_open(path, (stem_ldm_component)c, lay, be, dtype, w);
    return stem_fail(STEM_E_ARG, "%s: a single-file checkpoint has no component '%s' (only unet, vae, text_encoder)",
                     path, component);
}

/* ---- report ------------------------------------------------------------------------------ */

static void fmt_count(int64_t n, char *buf, size_t cap) {
    if (n >= 1000000000)
        snprintf(buf, cap, "%.2fB", (double)n / 1e9);
    else if (n >= 1000000)
        snprintf(buf, cap, "%.2fM", (double)n / 1e6);
    else if (n >= 1000)
        snprintf(buf, cap, "%.1fk", (double)n / 1e3);
    else
        snprintf(buf, cap, "%lld", (long long)n);
}

void stem_sd_info_print(const stem_sd_info *info, FILE *out) {
    if (info->single_file)
        fprintf(out, "model: %s (single-file LDM checkpoint, %lld tensors)\n", info->path, (long long)info->ldm.tensors);
    else
        fprintf(out, "model: %s (diffusers folder%s%s%s%s)\n", info->path, info->pipeline_class[0] ? ", " : "",
                info->pipeline_class, info->diffusers_version[0] ? ", diffusers " : "", info->diffusers_version);
    fprintf(out, "version: %s\n", info->version_text);
    fprintf(out, "components:\n");
    int64_t total = 0;
    for (int i = 0; i < info->n_components; i++) {
        const stem_sd_component *c = &info->comp[i];
        const char *state = !c->present ? (c->listed || c->required ? "MISSING" : "not used")
                            : c->usable ? "ok" : "PROBLEM";
        if (!c->present && !c->listed && !c->required) state = "not used (null in model_index.json)";
        fprintf(out, "  %-17s %-8s", c->name, state);
        if (c->class_name[0]) fprintf(out, " %s%s%s", c->library[0] ? c->library : "", c->library[0] ? " " : "", c->class_name);
        fprintf(out, "\n");
        if (c->params) {
            char n[32];
            fmt_count(c->params, n, sizeof n);
            fprintf(out, "      parameters: %s (%lld) in %lld tensors, dtype %s, from %s\n", n, (long long)c->params,
                    (long long)c->tensors, c->dtypes[0] ? c->dtypes : "?", c->weights[0] ? c->weights : "?");
            total += c->params;
        }
        if (c->detail[0] && c->present) fprintf(out, "      %s\n", c->detail);
        if (c->problem[0]) fprintf(out, "      problem: %s\n", c->problem);
    }
    char n[32];
    fmt_count(total, n, sizeof n);
    fprintf(out, "total parameters: %s (%lld)\n", n, (long long)total);
    if (info->single_file) {
        const stem_ldm_summary *s = &info->ldm;
        fprintf(out, "mapping: %lld unet, %lld vae, %lld text_encoder tensors to diffusers names; %lld tensors unused",
                (long long)s->mapped[STEM_LDM_UNET], (long long)s->mapped[STEM_LDM_VAE],
                (long long)s->mapped[STEM_LDM_TEXT], (long long)s->ignored);
        if (s->ignored) fprintf(out, ": %s", s->ignored_examples);
        fprintf(out, "\n");
    }
    if (info->single_file || !info->scheduler[0])
        fprintf(out, "scheduler: %s\n", info->scheduler[0] ? info->scheduler : "none");
    if (info->missing) {
        fprintf(out, "status: NOT USABLE, %d required component%s missing or broken:", info->missing,
                info->missing == 1 ? "" : "s");
        for (int i = 0; i < info->n_components; i++)
            if (info->comp[i].required && !info->comp[i].usable) fprintf(out, " %s", info->comp[i].name);
        fprintf(out, "\n");
    } else {
        fprintf(out, "status: ok\n");
    }
}
