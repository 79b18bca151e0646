/* A model's components from a diffusers folder or a single-file checkpoint, with
 * --model-config overrides (see model_source.h). */
#include "models/model_source.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/safetensors.h"
#include "models/ldm_config.h"
#include "models/weights.h"

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

static const char *const COMPONENTS[] = {"unet", "vae", "text_encoder"};

static int component_index(const char *name) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, COMPONENTS[i])) return i;
    return -1;
}

/* unet, vae, text_encoder as the ldm_names enum */
static stem_ldm_component ldm_comp(int i) {
    static const stem_ldm_component map[3] = {STEM_LDM_UNET, STEM_LDM_VAE, STEM_LDM_TEXT};
    return map[i];
}

/* ---- opening ---------------------------------------------------------------------------- */

static stem_status open_override(stem_model_source *src, const char *config) {
    snprintf(src->config, sizeof src->config, "%s", config);
    if (is_dir(config)) {
        src->config_is_dir = true;
        bool any = false;
        char p[1200];
        for (int i = 0; i < 3; i++) {
            snprintf(p, sizeof p, "%s/%s/config.json", config, COMPONENTS[i]);
            any |= is_file(p);
        }
        snprintf(p, sizeof p, "%s/scheduler/scheduler_config.json", config);
        any |= is_file(p);
        snprintf(p, sizeof p, "%s/tokenizer/vocab.json", config);
        any |= is_file(p);
        if (!any)
            return stem_fail(STEM_E_NOTFOUND,
                             "--model-config %s: the folder has none of unet/config.json, vae/config.json, "
                             "text_encoder/config.json, scheduler/scheduler_config.json, tokenizer/ (expected a "
                             "diffusers folder, or a .json file)", config);
        return STEM_OK;
    }
    if (!is_file(config)) return stem_fail(STEM_E_NOTFOUND, "--model-config %s: %s", config, strerror(errno ? errno : ENOENT));
    if (!ends_with(config, ".json"))
        return stem_fail(STEM_E_ARG, "--model-config %s: expected a folder or a .json file", config);
    STEM_TRY(stem_config_load(config, &src->override));
    static const char *const allowed[] = {"unet", "vae", "text_encoder", "scheduler", "tokenizer"};
    json_object_object_foreach((json_object *)src->override.root, key, val) {
        int k = 0;
        while (k < 5 && strcmp(key, allowed[k])) k++;
        if (k == 5)
            return stem_fail(STEM_E_FORMAT, "%s: unknown key '%s' (expected unet, vae, text_encoder, scheduler, tokenizer)",
                             config, key);
        bool want_string = k == 4;
        if (want_string ? !json_object_is_type(val, json_type_string) : !json_object_is_type(val, json_type_object))
            return stem_fail(STEM_E_FORMAT, "%s: '%s' must be %s", config, key,
                             want_string ? "a folder path (a string)" : "an object of config.json keys");
    }
    return STEM_OK;
}

stem_status stem_model_source_open(const char *path, const char *config, stem_model_source *src) {
    memset(src, 0, sizeof *src);
    stem_tensor_map_init(&src->header);
    snprintf(src->path, sizeof src->path, "%s", path);
    struct stat st;
    if (stat(path, &st) != 0) return stem_fail(STEM_E_NOTFOUND, "model %s: %s", path, strerror(errno));
    stem_status s = STEM_OK;
    if (S_ISDIR(st.st_mode)) {
        char p[1200];
        snprintf(p, sizeof p, "%s/model_index.json", path);
        if (!is_file(p))
            return stem_fail(STEM_E_NOTFOUND, "model %s: no model_index.json: not a diffusers folder (pass a diffusers "
                             "folder or a single-file .safetensors checkpoint; `stem info --model %s` says what is there)",
                             path, path);
    } else if (ends_with(path, ".safetensors")) {
        src->single_file = true;
        s = stem_safetensors_inspect(path, &src->header);
        if (s == STEM_OK) s = stem_ldm_infer_layout(&src->header, &src->layout);
        if (s != STEM_OK) {
            stem_model_source_close(src);
            return stem_error_context(s, "model %s", path);
        }
    } else if (ends_with(path, ".ckpt") || ends_with(path, ".pt") || ends_with(path, ".pth") || ends_with(path, ".bin")) {
        return stem_fail(STEM_E_UNSUPPORTED, "model %s: pickle checkpoints are not loaded (they can run code); convert it "
                         "to .safetensors first", path);
    } else {
        return stem_fail(STEM_E_FORMAT, "model %s: expected a diffusers model folder or a .safetensors checkpoint", path);
    }
    if (config && *config) s = open_override(src, config);
    if (s != STEM_OK) stem_model_source_close(src);
    return s;
}

void stem_model_source_close(stem_model_source *src) {
    stem_config_free(&src->override);
    stem_tensor_map_free(&src->header);
    memset(src, 0, sizeof *src);
}

/* ---- configs ---------------------------------------------------------------------------- */

/* The override of component/scheduler `key`: a config (empty root when none). */
static stem_status override_of(const stem_model_source *src, const char *key, const char *dir_file, stem_config *o,
                               bool *any) {
    *any = false;
    memset(o, 0, sizeof *o);
    if (!src->config[0]) return STEM_OK;
    if (src->config_is_dir) {
        char p[1300];
        snprintf(p, sizeof p, "%s/%s/%s", src->config, key, dir_file);
        if (!is_file(p)) return STEM_OK;
        *any = true;
        return stem_config_load(p, o);
    }
    json_object *v;
    if (!json_object_object_get_ex((json_object *)src->override.root, key, &v)) return STEM_OK;
    *any = true;
    char what[1200];
    snprintf(what, sizeof what, "%s: '%s'", src->config, key);
    return stem_config_parse(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), what, o);
}

stem_status stem_model_source_config(const stem_model_source *src, const char *component, stem_config *out) {
    memset(out, 0, sizeof *out);
    int ci = component_index(component);
    if (ci < 0) return stem_fail(STEM_E_ARG, "model %s: no component '%s'", src->path, component);
    stem_ldm_unfit unfit = {0};
    if (src->single_file) {
        STEM_TRY(stem_ldm_derive_config(src->path, &src->header, &src->layout, ldm_comp(ci), out, &unfit));
    } else {
        char p[1200];
        snprintf(p, sizeof p, "%s/%s/config.json", src->path, component);
        stem_status s = stem_config_load(p, out);
        if (s != STEM_OK) return stem_error_context(s, "%s", component);
    }
    stem_config o;
    bool any;
    stem_status s = override_of(src, component, "config.json", &o, &any);
    if (s == STEM_OK && any) {
        char what[2400];
        snprintf(what, sizeof what, "%s + %s", out->path, o.path);
        s = stem_config_merge(out, &o, what);
    }
    stem_config_free(&o);
    for (int i = 0; s == STEM_OK && i < unfit.n; i++)
        if (!stem_config_has(out, unfit.key[i]))
            s = stem_fail(STEM_E_FORMAT,
                          "%s: a checkpoint does not store '%s' and %s; pass --model-config with the model's "
                          "%s/config.json (a diffusers folder of the same model, or a .json file with "
                          "{\"%s\": {\"%s\": ...}})",
                          component, unfit.key[i], unfit.why[i], component, component, unfit.key[i]);
    if (s != STEM_OK) stem_config_free(out);
    return s;
}

/* Weights with diffusers names; the layout follows the final configs. */
static stem_status open_weights(const stem_model_source *src, int ci, const stem_ldm_layout *lay, stem_backend *be,
                                stem_dtype dtype, stem_weights *w) {
    if (src->single_file) return stem_ldm_weights_open(src->path, ldm_comp(ci), lay, be, dtype, w);
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/%s", src->path, COMPONENTS[ci]);
    return stem_weights_open(dir, COMPONENTS[ci], be, dtype, w);
}

stem_status stem_model_source_text_config(const stem_model_source *src, stem_clip_text_config *cfg) {
    stem_config c;
    STEM_TRY(stem_model_source_config(src, "text_encoder", &c));
    stem_status s = stem_clip_text_parse_config(&c, cfg);
    stem_config_free(&c);
    return s == STEM_OK ? s : stem_error_context(s, "text_encoder");
}

stem_status stem_model_source_vae_config(const stem_model_source *src, stem_vae_config *cfg) {
    stem_config c;
    STEM_TRY(stem_model_source_config(src, "vae", &c));
    stem_status s = stem_vae_parse_config(&c, cfg);
    stem_config_free(&c);
    return s == STEM_OK ? s : stem_error_context(s, "vae");
}

stem_status stem_model_source_load_text(const stem_model_source *src, stem_backend *be, stem_dtype dtype,
                                        stem_clip_text *m) {
    memset(m, 0, sizeof *m);
    stem_clip_text_config cfg;
    STEM_TRY(stem_model_source_text_config(src, &cfg));
    stem_ldm_layout lay = src->layout;
    lay.text_layers = (int)cfg.layers;
    stem_weights w;
    STEM_TRY(open_weights(src, 2, &lay, be, dtype, &w));
    return stem_clip_text_load_weights(&cfg, &w, m);
}

/* The UNet with its weights, or (shapes_only) data-less ones of the shapes it asks for. */
static stem_status load_unet(const stem_model_source *src, stem_backend *be, stem_dtype dtype, bool shapes_only,
                             stem_unet **out) {
    *out = NULL;
    stem_config c;
    STEM_TRY(stem_model_source_config(src, "unet", &c));
    stem_unet_config cfg;
    stem_status s = stem_unet_parse_config(&c, &cfg);
    stem_config_free(&c);
    if (s != STEM_OK) return stem_error_context(s, "unet");
    for (int i = 1; src->single_file && i < cfg.levels; i++)
        if (cfg.layers_per_block[i] != cfg.layers_per_block[0])
            return stem_fail(STEM_E_UNSUPPORTED, "%s: unet: layers_per_block differs between levels, which the LDM "
                             "layout cannot store", src->path);
    stem_ldm_layout lay = src->layout;
    lay.unet_layers_per_block = cfg.layers_per_block[0];
    stem_weights w;
    char dir[1200];
    snprintf(dir, sizeof dir, src->single_file ? "%s" : "%s/unet", src->path);
    STEM_TRY(shapes_only ? stem_weights_open_shapes(dir, "unet", be, dtype, &w)
                         : open_weights(src, 0, &lay, be, dtype, &w));
    return stem_unet_load_weights(&cfg, &w, out);
}

stem_status stem_model_source_load_unet(const stem_model_source *src, stem_backend *be, stem_dtype dtype,
                                        stem_unet **out) {
    return load_unet(src, be, dtype, false, out);
}

stem_status stem_model_source_load_unet_shapes(const stem_model_source *src, stem_backend *be, stem_dtype dtype,
                                               stem_unet **out) {
    return load_unet(src, be, dtype, true, out);
}

stem_status stem_model_source_load_vae(const stem_model_source *src, stem_backend *be, stem_dtype dtype,
                                       stem_vae *v) {
    memset(v, 0, sizeof *v);
    stem_vae_config cfg;
    STEM_TRY(stem_model_source_vae_config(src, &cfg));
    stem_ldm_layout lay = src->layout;
    lay.vae_levels = cfg.levels;
    stem_weights w;
    STEM_TRY(open_weights(src, 1, &lay, be, dtype, &w));
    return stem_vae_load_weights(&cfg, &w, v);
}

/* ---- tokenizer and scheduler -------------------------------------------------------------- */

stem_status stem_model_source_tokenizer_dirs(const stem_model_source *src, const char *bundled, char *vocab_dir,
                                             char *special_dir, size_t dir_len, char *what, size_t what_len) {
    char p[1400];
    /* 1. the override's */
    if (src->config[0]) {
        json_object *v;
        if (src->config_is_dir) {
            snprintf(p, sizeof p, "%s/tokenizer/vocab.json", src->config);
            if (is_file(p)) snprintf(vocab_dir, dir_len, "%s/tokenizer", src->config);
        } else if (json_object_object_get_ex((json_object *)src->override.root, "tokenizer", &v)) {
            const char *t = json_object_get_string(v);
            const char *slash = strrchr(src->config, '/');
            if (t[0] == '/' || !slash)
                snprintf(vocab_dir, dir_len, "%s", t);
            else
                snprintf(vocab_dir, dir_len, "%.*s/%s", (int)(slash - src->config), src->config, t);
        } else {
            vocab_dir[0] = '\0';
        }
        if (vocab_dir[0]) {
            snprintf(special_dir, dir_len, "%s", vocab_dir);
            snprintf(what, what_len, "%s (--model-config)", vocab_dir);
            return STEM_OK;
        }
    }
    /* 2. the folder's */
    if (!src->single_file) {
        snprintf(vocab_dir, dir_len, "%s/tokenizer", src->path);
        snprintf(special_dir, dir_len, "%s", vocab_dir);
        snprintf(what, what_len, "%s", vocab_dir);
        return STEM_OK;
    }
    /* 3. the bundled CLIP files */
    bool sd2 = src->layout.text_kind == STEM_LDM_TEXT_OPENCLIP;
    snprintf(vocab_dir, dir_len, "%s/clip", bundled);
    snprintf(special_dir, dir_len, "%s/%s", bundled, sd2 ? "clip-sd2" : "clip");
    snprintf(p, sizeof p, "%s/vocab.json", vocab_dir);
    if (!is_file(p))
        return stem_fail(STEM_E_NOTFOUND,
                         "model %s: a single-file checkpoint has no tokenizer, and the bundled CLIP tokenizer files "
                         "are missing (%s); pass --model-config DIR with a tokenizer/ folder (a diffusers folder of "
                         "the same SD version)", src->path, p);
    snprintf(what, what_len, "bundled CLIP tokenizer, %s (%s)", sd2 ? "SD 2.x pad \"!\"" : "SD 1.x pad <|endoftext|>",
             special_dir);
    return STEM_OK;
}

stem_status stem_model_source_tokenizer(const stem_model_source *src, const char *bundled, stem_tokenizer **out,
                                        char *what, size_t what_len) {
    char vocab[1200], special[1200], w[1400];
    STEM_TRY(stem_model_source_tokenizer_dirs(src, bundled, vocab, special, sizeof vocab, w, sizeof w));
    if (what) snprintf(what, what_len, "%s", w);
    return stem_tokenizer_load_split(vocab, special, out);
}

stem_status stem_model_source_scheduler(const stem_model_source *src, char **json, char *what, size_t what_len) {
    *json = NULL;
    stem_config base = {0};
    char p[1200];
    if (!src->single_file) {
        snprintf(p, sizeof p, "%s/scheduler/scheduler_config.json", src->path);
        STEM_TRY(stem_config_load(p, &base));
    }
    stem_config o;
    bool any;
    stem_status s = override_of(src, "scheduler", "scheduler_config.json", &o, &any);
    if (s == STEM_OK && !any && !base.root) {
        snprintf(what, what_len, "SD's DDIM values (a single-file checkpoint has no scheduler)");
        return STEM_OK;
    }
    if (s == STEM_OK && any && !base.root) {
        /* over SD's values, not DDIMScheduler's own defaults */
        s = stem_config_parse("{\"num_train_timesteps\": 1000, \"beta_start\": 0.00085, \"beta_end\": 0.012, "
                              "\"beta_schedule\": \"scaled_linear\", \"steps_offset\": 1, \"set_alpha_to_one\": false, "
                              "\"clip_sample\": false, \"prediction_type\": \"epsilon\"}",
                              "SD's DDIM values", &base);
    }
    if (s == STEM_OK && any) {
        char w[2400];
        snprintf(w, sizeof w, "%s + %s", base.path, o.path);
        s = stem_config_merge(&base, &o, w);
    }
    stem_config_free(&o);
    if (s == STEM_OK) {
        snprintf(what, what_len, "%s", base.path);
        *json = strdup(json_object_to_json_string_ext((json_object *)base.root, JSON_C_TO_STRING_PLAIN));
        if (!*json) s = stem_fail(STEM_E_NOMEM, "out of memory");
    }
    stem_config_free(&base);
    return s;
}
