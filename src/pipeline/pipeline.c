#include "pipeline/pipeline.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/host.h"
#include "models/model_source.h"

/* The bundled CLIP tokenizer files (refdata/tokenizer: clip/, clip-sd2/), for single-file
 * checkpoints: under $STEM_REFDATA or the source tree, as the default model. */
static void bundled_tokenizer_dir(char *buf, size_t len) {
    const char *env = getenv("STEM_REFDATA");
    snprintf(buf, len, "%s/tokenizer", env && *env ? env : STEM_SOURCE_DIR "/refdata");
}

stem_status stem_pipeline_load(const char *model, stem_backend *be, stem_dtype dtype, stem_pipeline *p) {
    return stem_pipeline_load_config(model, NULL, be, dtype, p);
}

stem_status stem_pipeline_load_config(const char *model, const char *model_config, stem_backend *be, stem_dtype dtype,
                                      stem_pipeline *p) {
    memset(p, 0, sizeof *p);
    snprintf(p->model_dir, sizeof p->model_dir, "%s", model);
    snprintf(p->model_config, sizeof p->model_config, "%s", model_config ? model_config : "");
    p->be = be;
    p->dtype = dtype;
    stem_model_source src;
    stem_status s = stem_model_source_open(model, model_config, &src);
    if (s != STEM_OK) return s;
    p->single_file = src.single_file;
    char bundled[1100], *sched = NULL;
    bundled_tokenizer_dir(bundled, sizeof bundled);
    if ((s = stem_model_source_tokenizer(&src, bundled, &p->tokenizer, p->tokenizer_from, sizeof p->tokenizer_from)) !=
        STEM_OK)
        goto fail;
    if ((s = stem_model_source_load_text(&src, be, dtype, &p->text)) != STEM_OK) goto fail;
    p->loaded_text = true;
    if ((s = stem_model_source_load_unet(&src, be, dtype, &p->unet)) != STEM_OK) goto fail;
    if ((s = stem_model_source_load_vae(&src, be, dtype, &p->vae)) != STEM_OK) goto fail;
    p->loaded_vae = true;
    if ((s = stem_model_source_scheduler(&src, &sched, p->scheduler_from, sizeof p->scheduler_from)) != STEM_OK)
        goto fail;
    if (sched)
        s = stem_ddim_config_parse(sched, p->scheduler_from, &p->schedule);
    else
        stem_ddim_config_default(&p->schedule);
    free(sched);
    if (s != STEM_OK) goto fail;
    if ((s = stem_arena_create(be, 64u << 20, &p->arena)) != STEM_OK) goto fail;
    stem_model_source_close(&src);
    return STEM_OK;
fail:
    stem_model_source_close(&src);
    stem_error_context(s, "model %s", model);
    stem_pipeline_free(p);
    return s;
}

stem_status stem_pipeline_load_shapes(const char *model, const char *model_config, stem_backend *be, stem_dtype dtype,
                                      stem_pipeline *p) {
    memset(p, 0, sizeof *p);
    snprintf(p->model_dir, sizeof p->model_dir, "%s", model);
    snprintf(p->model_config, sizeof p->model_config, "%s", model_config ? model_config : "");
    p->be = be;
    p->dtype = dtype;
    stem_model_source src; /* a single file: its header only */
    stem_status s = stem_model_source_open(model, model_config, &src);
    if (s != STEM_OK) return s;
    p->single_file = src.single_file;
    char *sched = NULL;
    if ((s = stem_model_source_text_config(&src, &p->text.cfg)) != STEM_OK) goto fail;
    if ((s = stem_model_source_load_unet_shapes(&src, be, dtype, &p->unet)) != STEM_OK) goto fail;
    if ((s = stem_model_source_vae_config(&src, &p->vae.cfg)) != STEM_OK) goto fail;
    if ((s = stem_model_source_scheduler(&src, &sched, p->scheduler_from, sizeof p->scheduler_from)) != STEM_OK)
        goto fail;
    if (sched)
        s = stem_ddim_config_parse(sched, p->scheduler_from, &p->schedule);
    else
        stem_ddim_config_default(&p->schedule);
    free(sched);
    if (s != STEM_OK) goto fail;
    stem_model_source_close(&src);
    return STEM_OK;
fail:
    stem_model_source_close(&src);
    stem_error_context(s, "model %s", model);
    stem_pipeline_free(p);
    return s;
}

void stem_pipeline_free(stem_pipeline *p) {
    if (p->tokenizer) stem_tokenizer_free(p->tokenizer);
    if (p->loaded_text) stem_clip_text_free(&p->text);
    if (p->unet) stem_unet_free(p->unet);
    if (p->loaded_vae) stem_vae_free(&p->vae);
    if (p->arena) stem_arena_destroy(p->arena);
    memset(p, 0, sizeof *p);
}

stem_status stem_pipeline_encode_prompt(stem_pipeline *p, const char *prompt, stem_tensor *context, bool *truncated) {
    int32_t ids[77];
    int n_real = 0;
    STEM_TRY(stem_tokenize(p->tokenizer, prompt, ids, &n_real, truncated));
    int64_t id_shape[2] = {1, 77};
    stem_tensor host_ids = stem_tensor_wrap(stem_host(), STEM_I32, 2, id_shape, ids), dev_ids;
    STEM_TRY(stem_tensor_to(&host_ids, p->be, STEM_I32, &dev_ids));
    int64_t ctx_shape[3] = {1, 77, p->text.cfg.hidden};
    stem_status s = stem_tensor_new(p->be, p->dtype, 3, ctx_shape, context);
    if (s == STEM_OK) s = stem_clip_text_forward(&p->text, &dev_ids, context);
    if (s != STEM_OK) stem_tensor_free(context);
    stem_tensor_free(&dev_ids);
    return s;
}

/* ---- frame geometry ----------------------------------------------------------------- */

/* Each component's side of the tensors the others hand it. */
static stem_status check_components(const stem_pipeline *p) {
    const stem_unet_config *u = stem_unet_get_config(p->unet);
    const stem_vae_config *v = &p->vae.cfg;
    if (v->latent_channels != u->in_channels || v->latent_channels != u->out_channels)
        return stem_fail(STEM_E_FORMAT, "model %s: the VAE has %lld latent channels, the UNet takes %d and returns %d",
                         p->model_dir, (long long)v->latent_channels, u->in_channels, u->out_channels);
    if (v->in_channels != 3 || v->out_channels != 3)
        return stem_fail(STEM_E_FORMAT, "model %s: the VAE reads %lld and writes %lld channels, frames are RGB (3)",
                         p->model_dir, (long long)v->in_channels, (long long)v->out_channels);
    if (p->text.cfg.hidden != u->cross_attention_dim[0])
        return stem_fail(STEM_E_FORMAT, "model %s: the text encoder's hidden_size %lld is not the UNet's "
                         "cross_attention_dim %d", p->model_dir, (long long)p->text.cfg.hidden,
                         u->cross_attention_dim[0]);
    return STEM_OK;
}

stem_status stem_pipeline_geometry(const stem_pipeline *p, int64_t H, int64_t W, stem_frame_geometry *g) {
    memset(g, 0, sizeof *g);
    STEM_TRY(check_components(p));
    g->in_h = H;
    g->in_w = W;
    g->factor = 1 << (p->vae.cfg.levels - 1);
    /* each Downsample2D pads right/bottom by one for its 3x3 stride-2 kernel, x -> floor(x / 2):
     * it needs x >= 2, so the frames need factor pixels a side; latent = floor(x / factor) */
    if (H < g->factor || W < g->factor)
        return stem_fail(STEM_E_ARG, "%lldx%lld frames are too small for the VAE: it needs at least %dx%d (its "
                         "%d downsampling steps)", (long long)W, (long long)H, g->factor, g->factor,
                         p->vae.cfg.levels - 1);
    stem_vae_latent_size(&p->vae, H, W, &g->latent_h, &g->latent_w);
    /* the UNet's downsamplers (padding 1, or right/bottom 1 with downsample_padding 0) give
     * at least 1 from 1 or 2; its upsamplers take the skip connection's size back */
    const stem_unet_config *u = stem_unet_get_config(p->unet);
    g->unet_levels = stem_unet_level_sizes(p->unet, g->latent_h, g->latent_w, g->unet_h, g->unet_w);
    for (int l = 1; l < g->unet_levels; l++)
        if (g->unet_h[l] < 1 || g->unet_w[l] < 1 ||
            (!u->downsample_padding && (g->unet_h[l - 1] < 2 || g->unet_w[l - 1] < 2)))
            return stem_fail(STEM_E_ARG, "%lldx%lld frames: latents %lldx%lld are too small for the UNet's %d levels",
                             (long long)W, (long long)H, (long long)g->latent_w, (long long)g->latent_h,
                             g->unet_levels);
    stem_vae_frame_size(&p->vae, g->latent_h, g->latent_w, &g->out_h, &g->out_w);
    if (g->out_h > H || g->out_w > W) /* factor * floor(x / factor) <= x: what the crop for metrics relies on */
        return stem_fail(STEM_E_ARG, "%lldx%lld frames decode to %lldx%lld, larger than the input", (long long)W,
                         (long long)H, (long long)g->out_w, (long long)g->out_h);
    return STEM_OK;
}

/* ---- fingerprint -------------------------------------------------------------------- */

static void fnv1a(uint64_t *h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) *h = (*h ^ p[i]) * 0x100000001b3ULL;
}

/* Hashes the file's name, size and first `limit` bytes; missing files hash their name only. */
static void hash_file(uint64_t *h, const char *path, const char *name, size_t limit) {
    fnv1a(h, name, strlen(name) + 1);
    FILE *f = fopen(path, "rb");
    if (!f) return;
    struct stat st;
    if (fstat(fileno(f), &st) == 0) fnv1a(h, &st.st_size, sizeof st.st_size);
    unsigned char buf[65536];
    size_t total = 0, got;
    while (total < limit && (got = fread(buf, 1, sizeof buf, f)) > 0) {
        fnv1a(h, buf, got);
        total += got;
    }
    fclose(f);
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* model_index.json and every file of the component folders (the fingerprint of a folder
 * before single files existed: unchanged, so manifests of folder runs stay the same). */
static void hash_folder(uint64_t *h, const char *model_dir) {
    static const char *const components[] = {"unet", "vae", "text_encoder", "tokenizer", "scheduler"};
    char path[1400];
    snprintf(path, sizeof path, "%s/model_index.json", model_dir);
    hash_file(h, path, "model_index.json", (size_t)1 << 20);
    for (size_t c = 0; c < sizeof components / sizeof *components; c++) {
        snprintf(path, sizeof path, "%s/%s", model_dir, components[c]);
        DIR *d = opendir(path);
        if (!d) continue;
        char *names[256];
        int n = 0;
        struct dirent *e;
        while ((e = readdir(d)) && n < 256)
            if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
        closedir(d);
        qsort(names, (size_t)n, sizeof *names, cmp_names); /* directory order is not stable */
        for (int i = 0; i < n; i++) {
            if (!names[i]) continue;
            char file[1700];
            snprintf(file, sizeof file, "%s/%s", path, names[i]);
            hash_file(h, file, names[i], (size_t)1 << 20);
            free(names[i]);
        }
    }
}

/* A single-file checkpoint: its size, first MiB (the header: every tensor's name, shape,
 * dtype and offsets, and the first tensors) and last MiB. */
static void hash_checkpoint(uint64_t *h, const char *path) {
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    hash_file(h, path, base, (size_t)1 << 20);
    FILE *f = fopen(path, "rb");
    if (!f) return;
    unsigned char buf[65536];
    size_t got;
    if (fseek(f, -(long)(1 << 20), SEEK_END) == 0)
        while ((got = fread(buf, 1, sizeof buf, f)) > 0) fnv1a(h, buf, got);
    fclose(f);
}

stem_status stem_model_fingerprint(const char *model, const char *model_config, char out[17]) {
    uint64_t h = 0xcbf29ce484222325ULL;
    struct stat st;
    if (stat(model, &st) == 0 && S_ISREG(st.st_mode)) {
        hash_checkpoint(&h, model);
        /* the tokenizer it runs with (the bundled one, or --model-config's) */
        stem_model_source src;
        STEM_TRY(stem_model_source_open(model, model_config, &src));
        char bundled[1100], vocab[1200], special[1200], what[1400], file[1400];
        bundled_tokenizer_dir(bundled, sizeof bundled);
        stem_status s = stem_model_source_tokenizer_dirs(&src, bundled, vocab, special, sizeof vocab, what, sizeof what);
        stem_model_source_close(&src);
        if (s != STEM_OK) return s;
        static const char *const files[4] = {"vocab.json", "merges.txt", "tokenizer_config.json",
                                             "special_tokens_map.json"};
        for (int i = 0; i < 4; i++) {
            snprintf(file, sizeof file, "%s/%s", i < 2 ? vocab : special, files[i]);
            hash_file(&h, file, files[i], (size_t)1 << 20);
        }
    } else {
        hash_folder(&h, model);
    }
    if (model_config && *model_config) {
        if (stat(model_config, &st) == 0 && S_ISDIR(st.st_mode))
            hash_folder(&h, model_config);
        else
            hash_file(&h, model_config, "model-config.json", (size_t)1 << 20);
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
    return STEM_OK;
}
