/* Model folders and single-file checkpoints: stem_sd_inspect on the tiny models
 * (version, parameters, dtypes, scheduler), the errors for a folder without
 * model_index.json, a missing component, pickle-only weights and .ckpt files; the LDM
 * name mapping on real SD names, and on synthetic single-file checkpoints built here
 * from the tiny folders with the name tables of refdata/golden/ldm (made and checked
 * against diffusers' own converters by refdata/gen/gen_text_vae.py): every mapped
 * tensor must equal the folder's, nothing may be left unused, and the text encoder and
 * VAE loaded from the checkpoint must match the goldens. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* mkdtemp, nftw, open_memstream, symlink */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "models/clip_text.h"
#include "models/ldm_names.h"
#include "models/sd_model.h"
#include "models/vae.h"
#include "test_model_util.h"

static char *report(const stem_sd_info *info) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    stem_sd_info_print(info, f);
    fclose(f);
    /* line by line: cmocka's print_message truncates long strings */
    for (const char *line = buf; *line;) {
        const char *nl = strchr(line, '\n');
        int n = nl ? (int)(nl - line) : (int)strlen(line);
        print_message("%.*s\n", n, line);
        line += n + (nl != NULL);
    }
    return buf;
}

static int64_t file_params(const char *model, const char *comp, const char *file, int64_t *tensors) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", tm_model_path(model, comp), file);
    stem_tensor_map m;
    if (stem_safetensors_inspect(p, &m) != STEM_OK) fail_msg("%s", stem_last_error());
    int64_t n = 0;
    for (int i = 0; i < m.count; i++) n += stem_numel(&m.items[i].tensor);
    if (tensors) *tensors = m.count;
    stem_tensor_map_free(&m);
    return n;
}

static void inspect_tiny(void **state) {
    const char *model = *state;
    bool v1 = !strcmp(model, "tiny-sd1");
    stem_sd_info info;
    if (stem_sd_inspect(tm_model_path(model, NULL), &info) != STEM_OK) fail_msg("%s", stem_last_error());
    char *text = report(&info);
    assert_int_equal(info.missing, 0);
    assert_int_equal(info.version, v1 ? STEM_SD_1X : STEM_SD_2X);
    assert_true(info.custom_sizes);
    assert_non_null(strstr(text, "tiny/custom sizes"));
    assert_non_null(strstr(text, "status: ok"));
    assert_non_null(strstr(text, v1 ? "quick_gelu" : "gelu"));
    assert_non_null(strstr(info.scheduler, "DDIMScheduler: 1000 training steps, scaled_linear betas 0.00085..0.012"));
    static const char *const comps[3][2] = {{"text_encoder", "model.safetensors"},
                                             {"unet", "diffusion_pytorch_model.safetensors"},
                                             {"vae", "diffusion_pytorch_model.safetensors"}};
    for (int k = 0; k < 3; k++) {
        const stem_sd_component *c = stem_sd_find(&info, comps[k][0]);
        assert_non_null(c);
        assert_true(c->usable);
        assert_string_equal(c->dtypes, "F16");
        assert_string_equal(c->weights, comps[k][1]);
        int64_t tensors;
        assert_int_equal(c->params, file_params(model, comps[k][0], comps[k][1], &tensors));
        assert_int_equal(c->tensors, tensors);
    }
    const stem_sd_component *sc = stem_sd_find(&info, "safety_checker");
    assert_non_null(sc);
    assert_false(sc->required);
    assert_false(sc->present);
    free(text);
}

/* A temporary model folder: model_index.json and symlinks to the tiny model's components
 * except `skip`. */
static void partial_copy(const char *model, const char *dir, const char *skip, bool with_index) {
    static const char *const comps[] = {"text_encoder", "tokenizer", "unet", "vae", "scheduler"};
    char src[4096], dst[4096];
    if (with_index) {
        snprintf(src, sizeof src, "%s/model_index.json", tm_model_path(model, NULL));
        snprintf(dst, sizeof dst, "%s/model_index.json", dir);
        json_object *j = json_object_from_file(src);
        json_object_to_file(dst, j);
        json_object_put(j);
    }
    for (int i = 0; i < 5; i++) {
        if (skip && !strcmp(comps[i], skip)) continue;
        snprintf(dst, sizeof dst, "%s/%s", dir, comps[i]);
        if (symlink(tm_model_path(model, comps[i]), dst) != 0) fail_msg("symlink %s failed", dst);
    }
}

static void folder_errors(void **state) {
    (void)state;
    stem_sd_info info;
    char dir[1024], p[2048];

    tm_expect_error(stem_sd_inspect("/nonexistent/model", &info), STEM_E_NOTFOUND, "/nonexistent/model", NULL);

    tm_mkdtemp(dir, sizeof dir, "sd_noindex");
    partial_copy("tiny-sd1", dir, "unet", false);
    tm_expect_error(stem_sd_inspect(dir, &info), STEM_E_NOTFOUND, "model_index.json", "vae/", "text_encoder/", NULL);
    tm_rm_tree(dir);

    tm_mkdtemp(dir, sizeof dir, "sd_nounet");
    partial_copy("tiny-sd1", dir, "unet", true);
    assert_int_equal(stem_sd_inspect(dir, &info), STEM_OK);
    char *text = report(&info);
    assert_int_equal(info.missing, 1);
    const stem_sd_component *u = stem_sd_find(&info, "unet");
    assert_false(u->present);
    assert_non_null(strstr(u->problem, "missing folder unet/"));
    assert_non_null(strstr(text, "status: NOT USABLE, 1 required component missing or broken: unet"));
    free(text);
    tm_rm_tree(dir);

    /* a VAE folder with only a pickle */
    tm_mkdtemp(dir, sizeof dir, "sd_pickle");
    partial_copy("tiny-sd1", dir, "vae", true);
    snprintf(p, sizeof p, "%s/vae", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/vae/config.json", dir);
    json_object *j = json_object_from_file(tm_model_path("tiny-sd1", "vae/config.json"));
    json_object_to_file(p, j);
    json_object_put(j);
    snprintf(p, sizeof p, "%s/vae/diffusion_pytorch_model.bin", dir);
    FILE *f = fopen(p, "wb");
    fputs("not really a pickle", f);
    fclose(f);
    assert_int_equal(stem_sd_inspect(dir, &info), STEM_OK);
    free(report(&info));
    assert_int_equal(info.missing, 1);
    const stem_sd_component *v = stem_sd_find(&info, "vae");
    assert_false(v->usable);
    assert_non_null(strstr(v->problem, "pickle"));
    assert_non_null(strstr(v->problem, ".safetensors"));

    /* .ckpt files are refused before reading them */
    snprintf(p, sizeof p, "%s/model.ckpt", dir);
    f = fopen(p, "wb");
    fputs("PK", f);
    fclose(f);
    tm_expect_error(stem_sd_inspect(p, &info), STEM_E_UNSUPPORTED, "model.ckpt", "pickle", ".safetensors", NULL);
    tm_rm_tree(dir);
}

/* ---- the name mapping on real SD names ------------------------------------------------- */

static void expect_map(const char *ldm, int64_t rows0, const stem_ldm_layout *lay, const char *want, bool squeeze) {
    stem_ldm_target t[3];
    const char *why;
    int n = stem_ldm_map_name(ldm, 2, rows0, lay, t, &why);
    if (n != 1) fail_msg("%s: %d targets (%s)", ldm, n, why);
    if (strcmp(t[0].name, want)) fail_msg("%s -> %s, expected %s", ldm, t[0].name, want);
    assert_int_equal(t[0].squeeze, squeeze);
}

static void ldm_names_sd(void **state) {
    (void)state;
    stem_ldm_layout sd15 = {.unet_layers_per_block = 2, .unet_levels = 4, .vae_levels = 4, .text_layers = 12};
    const char *U = "model.diffusion_model.";
    char n[256];
#define M(ldm, want) (snprintf(n, sizeof n, "%s%s", U, ldm), expect_map(n, 8, &sd15, want, false))
    M("time_embed.2.weight", "time_embedding.linear_2.weight");
    M("input_blocks.0.0.bias", "conv_in.bias");
    M("input_blocks.2.1.proj_in.weight", "down_blocks.0.attentions.1.proj_in.weight");
    M("input_blocks.3.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight");
    M("input_blocks.4.0.skip_connection.weight", "down_blocks.1.resnets.0.conv_shortcut.weight");
    M("input_blocks.11.0.out_layers.3.bias", "down_blocks.3.resnets.1.conv2.bias");
    M("middle_block.1.transformer_blocks.0.ff.net.0.proj.weight",
      "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight");
    M("middle_block.2.emb_layers.1.weight", "mid_block.resnets.1.time_emb_proj.weight");
    M("output_blocks.2.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight");
    M("output_blocks.5.2.conv.bias", "up_blocks.1.upsamplers.0.conv.bias");
    M("output_blocks.5.1.transformer_blocks.0.attn2.to_k.weight",
      "up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_k.weight");
    M("output_blocks.11.0.in_layers.0.weight", "up_blocks.3.resnets.2.norm1.weight");
    M("out.2.weight", "conv_out.weight");
#undef M
    expect_map("first_stage_model.decoder.up.0.block.0.nin_shortcut.weight", 8, &sd15,
               "decoder.up_blocks.3.resnets.0.conv_shortcut.weight", false);
    expect_map("first_stage_model.decoder.up.3.upsample.conv.bias", 8, &sd15, "decoder.up_blocks.0.upsamplers.0.conv.bias",
               false);
    expect_map("first_stage_model.encoder.down.1.downsample.conv.weight", 8, &sd15,
               "encoder.down_blocks.1.downsamplers.0.conv.weight", false);
    expect_map("first_stage_model.encoder.mid.attn_1.proj_out.weight", 8, &sd15,
               "encoder.mid_block.attentions.0.to_out.0.weight", true);
    expect_map("first_stage_model.decoder.mid.attn_1.norm.weight", 8, &sd15,
               "decoder.mid_block.attentions.0.group_norm.weight", false);
    expect_map("first_stage_model.encoder.mid.block_2.norm1.bias", 8, &sd15, "encoder.mid_block.resnets.1.norm1.bias",
               false);
    expect_map("first_stage_model.encoder.norm_out.weight", 8, &sd15, "encoder.conv_norm_out.weight", false);
    expect_map("cond_stage_model.transformer.text_model.encoder.layers.3.mlp.fc2.weight", 8, &sd15,
               "text_model.encoder.layers.3.mlp.fc2.weight", false);

    /* SD 2.x OpenCLIP: fused q/k/v, the 24th layer unused with diffusers' 23 */
    stem_ldm_layout sd21 = sd15;
    sd21.text_layers = 23;
    stem_ldm_target t[3];
    const char *why;
    assert_int_equal(stem_ldm_map_name("cond_stage_model.model.transformer.resblocks.22.attn.in_proj_weight", 2, 3072,
                                       &sd21, t, &why),
                     3);
    assert_string_equal(t[1].name, "text_model.encoder.layers.22.self_attn.k_proj.weight");
    assert_int_equal(t[1].row_start, 1024);
    assert_int_equal(t[1].rows, 1024);
    assert_string_equal(t[2].name, "text_model.encoder.layers.22.self_attn.v_proj.weight");
    expect_map("cond_stage_model.model.transformer.resblocks.0.mlp.c_fc.bias", 4096, &sd21,
               "text_model.encoder.layers.0.mlp.fc1.bias", false);
    expect_map("cond_stage_model.model.positional_embedding", 77, &sd21,
               "text_model.embeddings.position_embedding.weight", false);
    assert_int_equal(stem_ldm_map_name("cond_stage_model.model.transformer.resblocks.23.ln_1.weight", 1, 1024, &sd21, t,
                                       &why),
                     0);
    assert_non_null(strstr(why, "beyond num_hidden_layers"));
    assert_int_equal(stem_ldm_map_name("model_ema.diffusion_modelinput_blocks00weight", 4, 320, &sd21, t, &why), 0);
    assert_string_equal(why, "EMA copy");
}

/* ---- synthetic single-file checkpoints ------------------------------------------------- */

static stem_dtype parse_dtype(const char *s) {
    int d = stem_dtype_parse(s);
    if (d < 0) fail_msg("unknown dtype %s", s);
    return (stem_dtype)d;
}

/* Builds <dir>/<model>.safetensors from the folder and refdata/golden/ldm/<model>.json. */
static void build_ldm(const char *model, const char *path, int64_t *mapped, int64_t *unused) {
    char p[4096];
    snprintf(p, sizeof p, "%s/golden/ldm/%s.json", test_refdata_dir(), model);
    json_object *root = json_object_from_file(p), *tensors, *extra;
    if (!root || !json_object_object_get_ex(root, "tensors", &tensors) ||
        !json_object_object_get_ex(root, "unused", &extra))
        fail_msg("cannot read %s", p);
    static const char *const comps[3][2] = {{"unet", "diffusion_pytorch_model.safetensors"},
                                             {"vae", "diffusion_pytorch_model.safetensors"},
                                             {"text_encoder", "model.safetensors"}};
    stem_tensor_map src[3], out;
    for (int k = 0; k < 3; k++) {
        snprintf(p, sizeof p, "%s/%s", tm_model_path(model, comps[k][0]), comps[k][1]);
        if (stem_safetensors_load(p, -1, &src[k]) != STEM_OK) fail_msg("%s", stem_last_error());
    }
    stem_tensor_map_init(&out);
    *mapped = (int64_t)json_object_array_length(tensors);
    for (size_t i = 0; i < json_object_array_length(tensors); i++) {
        json_object *e = json_object_array_get_idx(tensors, i), *name, *shape, *from;
        json_object_object_get_ex(e, "ldm", &name);
        json_object_object_get_ex(e, "shape", &shape);
        json_object_object_get_ex(e, "from", &from);
        int64_t sh[STEM_MAX_DIMS];
        int nd = (int)json_object_array_length(shape);
        for (int d = 0; d < nd; d++) sh[d] = json_object_get_int64(json_object_array_get_idx(shape, d));
        const stem_tensor *parts[3] = {NULL, NULL, NULL};
        int np = (int)json_object_array_length(from);
        if (np < 1 || np > 3) fail_msg("%s: %d sources for one tensor", model, np);
        int64_t total = 0;
        for (int k = 0; k < np; k++) {
            const char *f = json_object_get_string(json_object_array_get_idx(from, k));
            const char *slash = strchr(f, '/');
            int c = !strncmp(f, "unet/", 5) ? 0 : !strncmp(f, "vae/", 4) ? 1 : 2;
            parts[k] = stem_tensor_map_get(&src[c], slash + 1);
            if (!parts[k]) fail_msg("%s: no %s", model, f);
            total += stem_numel(parts[k]);
        }
        stem_tensor t;
        if (stem_tensor_new(stem_cpu_backend(), parts[0]->dtype, nd, sh, &t) != STEM_OK) fail_msg("%s", stem_last_error());
        assert_int_equal(stem_numel(&t), total);
        size_t off = 0;
        for (int k = 0; k < np; k++) {
            memcpy((char *)t.data + off, parts[k]->data, stem_nbytes(parts[k]));
            off += stem_nbytes(parts[k]);
        }
        if (stem_tensor_map_put(&out, json_object_get_string(name), t) != STEM_OK) fail_msg("%s", stem_last_error());
    }
    *unused = (int64_t)json_object_array_length(extra);
    for (size_t i = 0; i < json_object_array_length(extra); i++) {
        json_object *e = json_object_array_get_idx(extra, i), *name, *shape, *dt;
        json_object_object_get_ex(e, "ldm", &name);
        json_object_object_get_ex(e, "shape", &shape);
        json_object_object_get_ex(e, "dtype", &dt);
        int64_t sh[STEM_MAX_DIMS];
        int nd = (int)json_object_array_length(shape);
        for (int d = 0; d < nd; d++) sh[d] = json_object_get_int64(json_object_array_get_idx(shape, d));
        stem_tensor t;
        if (stem_tensor_zeros(stem_cpu_backend(), parse_dtype(json_object_get_string(dt)), nd, sh, &t) != STEM_OK)
            fail_msg("%s", stem_last_error());
        stem_tensor_map_put(&out, json_object_get_string(name), t);
    }
    if (stem_safetensors_save(path, &out) != STEM_OK) fail_msg("%s", stem_last_error());
    stem_tensor_map_free(&out);
    for (int k = 0; k < 3; k++) stem_tensor_map_free(&src[k]);
    json_object_put(root);
}

/* Every tensor of the folder's component must come out of the checkpoint unchanged, and
 * the checkpoint must have nothing else for that component. */
static void check_component(const char *model, const char *path, stem_ldm_component comp, const stem_ldm_layout *lay,
                            const char *file) {
    stem_weights w;
    if (stem_ldm_weights_open(path, comp, lay, stem_cpu_backend(), STEM_F32, &w) != STEM_OK)
        fail_msg("%s", stem_last_error());
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", tm_model_path(model, stem_ldm_component_name(comp)), file);
    stem_tensor_map ref;
    if (stem_safetensors_load(p, STEM_F32, &ref) != STEM_OK) fail_msg("%s", stem_last_error());
    int64_t bad = 0;
    for (int i = 0; i < ref.count; i++) {
        const stem_tensor *want = &ref.items[i].tensor, *got;
        if (stem_weights_get(&w, ref.items[i].name, want->ndim, want->shape, &got) != STEM_OK)
            fail_msg("%s", stem_last_error());
        stem_compare c;
        stem_compare_tensors(got, want, 0, 0, &c);
        if (c.violations) print_message("    %s differs\n", ref.items[i].name);
        bad += c.violations != 0;
    }
    print_message("    %s: %d tensors equal the folder's\n", stem_ldm_component_name(comp), ref.count);
    assert_int_equal(bad, 0);
    if (stem_weights_finish(&w) != STEM_OK) fail_msg("%s", stem_last_error());
    stem_weights_close(&w);
    stem_tensor_map_free(&ref);
}

static void ldm_checkpoint(void **state) {
    const char *model = *state;
    bool v1 = !strcmp(model, "tiny-sd1");
    char dir[1024], path[2048];
    tm_mkdtemp(dir, sizeof dir, "ldm");
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, model);
    int64_t mapped, unused;
    build_ldm(model, path, &mapped, &unused);

    stem_sd_info info;
    if (stem_sd_inspect(path, &info) != STEM_OK) fail_msg("%s", stem_last_error());
    char *text = report(&info);
    assert_true(info.single_file);
    assert_int_equal(info.missing, 0);
    assert_int_equal(info.version, v1 ? STEM_SD_1X : STEM_SD_2X);
    assert_int_equal(info.ldm.ignored, unused);
    assert_non_null(strstr(text, "mapping: "));
    int64_t n_unet, n_vae, n_text;
    assert_int_equal(info.ldm.params[STEM_LDM_UNET], file_params(model, "unet", "diffusion_pytorch_model.safetensors", &n_unet));
    assert_int_equal(info.ldm.params[STEM_LDM_VAE], file_params(model, "vae", "diffusion_pytorch_model.safetensors", &n_vae));
    assert_int_equal(info.ldm.params[STEM_LDM_TEXT], file_params(model, "text_encoder", "model.safetensors", &n_text));
    assert_int_equal(info.ldm.mapped[STEM_LDM_UNET], n_unet);
    assert_int_equal(info.ldm.mapped[STEM_LDM_VAE], n_vae);
    assert_int_equal(info.ldm.mapped[STEM_LDM_TEXT], n_text);
    free(text);

    /* the text config says how many OpenCLIP layers to use (the file has one more) */
    stem_config cfg;
    stem_clip_text_config tc;
    if (stem_config_load(tm_model_path(model, "text_encoder/config.json"), &cfg) != STEM_OK ||
        stem_clip_text_parse_config(&cfg, &tc) != STEM_OK)
        fail_msg("%s", stem_last_error());
    stem_config_free(&cfg);
    stem_ldm_layout lay = {.text_layers = (int)tc.layers};
    check_component(model, path, STEM_LDM_UNET, &lay, "diffusion_pytorch_model.safetensors");
    check_component(model, path, STEM_LDM_VAE, &lay, "diffusion_pytorch_model.safetensors");
    check_component(model, path, STEM_LDM_TEXT, &lay, "model.safetensors");

    /* the text encoder and the VAE run from the checkpoint */
    stem_weights w;
    if (stem_sd_open_weights(path, "text_encoder", &lay, stem_cpu_backend(), STEM_F32, &w) != STEM_OK)
        fail_msg("%s", stem_last_error());
    stem_clip_text te;
    if (stem_clip_text_load_weights(&tc, &w, &te) != STEM_OK) fail_msg("%s", stem_last_error());
    stem_tensor_map g;
    char gp[4096];
    snprintf(gp, sizeof gp, "%s/golden/text_encoder/%s.safetensors", test_refdata_dir(), model);
    if (stem_safetensors_load(gp, -1, &g) != STEM_OK) fail_msg("%s", stem_last_error());
    stem_tensor *ids = tm_require(&g, "in.ids"), *want = tm_require(&g, "out.last_hidden_state"), out;
    stem_tensor_new(stem_cpu_backend(), STEM_F32, 3, want->shape, &out);
    if (stem_clip_text_forward(&te, ids, &out) != STEM_OK) fail_msg("%s", stem_last_error());
    assert_int_equal(tm_compare("text encoder from checkpoint", &out, want, tm_meta_double(&g, "rtol"),
                                tm_meta_double(&g, "atol")),
                     0);
    stem_tensor_free(&out);
    stem_tensor_map_free(&g);
    stem_clip_text_free(&te);

    stem_vae_config vc;
    if (stem_config_load(tm_model_path(model, "vae/config.json"), &cfg) != STEM_OK || stem_vae_parse_config(&cfg, &vc) != STEM_OK)
        fail_msg("%s", stem_last_error());
    stem_config_free(&cfg);
    if (stem_ldm_weights_open(path, STEM_LDM_VAE, &lay, stem_cpu_backend(), STEM_F32, &w) != STEM_OK)
        fail_msg("%s", stem_last_error());
    stem_vae vae;
    if (stem_vae_load_weights(&vc, &w, &vae) != STEM_OK) fail_msg("%s", stem_last_error());
    snprintf(gp, sizeof gp, "%s/golden/vae/%s__30x46.safetensors", test_refdata_dir(), model);
    if (stem_safetensors_load(gp, -1, &g) != STEM_OK) fail_msg("%s", stem_last_error());
    stem_tensor *frames = tm_require(&g, "in.frames"), *lat = tm_require(&g, "out.latents");
    stem_tensor_new(stem_cpu_backend(), STEM_F32, 4, lat->shape, &out);
    if (stem_vae_encode(&vae, frames, &out) != STEM_OK) fail_msg("%s", stem_last_error());
    assert_int_equal(tm_compare("vae encode from checkpoint", &out, lat, tm_meta_double(&g, "rtol"),
                                tm_meta_double(&g, "atol.latents")),
                     0);
    stem_tensor_free(&out);
    stem_tensor_map_free(&g);
    stem_vae_free(&vae);

    /* a component the file does not have */
    stem_tensor_map only;
    stem_tensor_map_init(&only);
    stem_tensor t;
    int64_t s1[1] = {4};
    stem_tensor_zeros(stem_cpu_backend(), STEM_F16, 1, s1, &t);
    stem_tensor_map_put(&only, "first_stage_model.encoder.conv_in.bias", t);
    snprintf(path, sizeof path, "%s/vae_only.safetensors", dir);
    stem_safetensors_save(path, &only);
    stem_tensor_map_free(&only);
    tm_expect_error(stem_ldm_weights_open(path, STEM_LDM_UNET, NULL, stem_cpu_backend(), STEM_F32, &w), STEM_E_NOTFOUND,
                    "unet", "model.diffusion_model.", NULL);
    stem_weights_close(&w);
    assert_int_equal(stem_sd_inspect(path, &info), STEM_OK);
    free(report(&info));
    assert_int_equal(info.missing, 2); /* unet and text encoder */
    tm_rm_tree(dir);
}

int main(int argc, char **argv) {
    stem_blas_ensure_fast_core(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(inspect_tiny, "tiny-sd1"),
        cmocka_unit_test_prestate(inspect_tiny, "tiny-sd2"),
        cmocka_unit_test(folder_errors),
        cmocka_unit_test(ldm_names_sd),
        cmocka_unit_test_prestate(ldm_checkpoint, "tiny-sd1"),
        cmocka_unit_test_prestate(ldm_checkpoint, "tiny-sd2"),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
