/* Single-file (LDM) checkpoints through stem_pipeline_load (models/model_source.h):
 *   - configs from the tensors' shapes: real SD 1.5 / 2.1-base checkpoints' shapes
 *     (refdata/golden/ldm/sd*_header.json, from diffusers modules with the published
 *     configs) give back those configs; the tiny checkpoints give the folders' configs on
 *     every key shapes determine, and name the keys SD's fixed values do not fit;
 *   - refdata/models/tiny-sd{1,2}.safetensors (verified against the folders by diffusers'
 *     own single-file loader, refdata/gen/gen_single_file.py) load into the same
 *     pipeline as the folders: same configs, schedule, prompt embedding (bundled tokenizer)
 *     and VAE latents, bit for bit (tests/test_single_file.sh inverts with both);
 *   - bad input: a file that is not an SD checkpoint, a missing or reshaped tensor, an
 *     override that does not fit, bad --model-config: errors naming the culprit;
 *   - the fingerprint of a file and of a --model-config. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "io/safetensors.h"
#include "models/ldm_config.h"
#include "models/model_source.h"
#include "pipeline/pipeline.h"
#include "test_model_util.h"

static const char *file_of(const char *model) {
    static char buf[2][2048];
    static int next;
    char *b = buf[next++ % 2];
    snprintf(b, 2048, "%s/models/%s.safetensors", test_refdata_dir(), model);
    return b;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) fail_msg("cannot write %s", path);
}

/* What the tiny models have that SD's fixed values do not give (heads, groups). */
static const char *tiny_override(const char *model) {
    return !strcmp(model, "tiny-sd1")
               ? "{\"unet\": {\"attention_head_dim\": 2, \"norm_num_groups\": 8}, \"vae\": {\"norm_num_groups\": 4}, "
                 "\"text_encoder\": {\"num_attention_heads\": 2}}"
               : "{\"unet\": {\"attention_head_dim\": [2, 4], \"norm_num_groups\": 8}, \"vae\": {\"norm_num_groups\": 4}, "
                 "\"text_encoder\": {\"num_attention_heads\": 2}}";
}

static json_object *cfg_get(const stem_config *c, const char *key) {
    json_object *v = NULL;
    json_object_object_get_ex((json_object *)c->root, key, &v);
    return v;
}

/* Every key of `want` must be in `got` with an equal value. */
static int same_keys(const char *label, const stem_config *got, json_object *want) {
    int bad = 0;
    json_object_object_foreach(want, key, val) {
        json_object *g = cfg_get(got, key);
        if (!g || !json_object_equal(g, val)) {
            print_message("    %s: %s is %s, expected %s\n", label, key,
                          g ? json_object_to_json_string_ext(g, JSON_C_TO_STRING_PLAIN) : "(unset)",
                          json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN));
            bad++;
        }
    }
    return bad;
}

static const char *const COMPS[3] = {"unet", "vae", "text_encoder"};
static const stem_ldm_component LDM[3] = {STEM_LDM_UNET, STEM_LDM_VAE, STEM_LDM_TEXT};

/* ---- configs from shapes ------------------------------------------------------------------ */

static void real_sd_shapes(void **state) {
    const char *name = *state;
    char path[2048];
    snprintf(path, sizeof path, "%s/golden/ldm/%s_header.json", test_refdata_dir(), name);
    json_object *root = json_object_from_file(path), *tensors, *configs;
    if (!root) fail_msg("cannot read %s", path);
    assert_true(json_object_object_get_ex(root, "tensors", &tensors));
    assert_true(json_object_object_get_ex(root, "config", &configs));
    stem_tensor_map m; /* a header: names and shapes, no data */
    stem_tensor_map_init(&m);
    for (size_t i = 0; i < json_object_array_length(tensors); i++) {
        json_object *e = json_object_array_get_idx(tensors, i), *shape = json_object_array_get_idx(e, 1);
        stem_tensor t = {.dtype = STEM_F16, .ndim = (int)json_object_array_length(shape)};
        for (int d = 0; d < t.ndim; d++) t.shape[d] = json_object_get_int64(json_object_array_get_idx(shape, (size_t)d));
        if (stem_tensor_map_put(&m, json_object_get_string(json_object_array_get_idx(e, 0)), t) != STEM_OK)
            fail_msg("%s", stem_last_error());
    }
    stem_ldm_layout lay;
    if (stem_ldm_infer_layout(&m, &lay) != STEM_OK) fail_msg("%s", stem_last_error());
    int bad = 0;
    for (int k = 0; k < 3; k++) {
        stem_config c;
        stem_ldm_unfit unfit;
        if (stem_ldm_derive_config(path, &m, &lay, LDM[k], &c, &unfit) != STEM_OK) fail_msg("%s", stem_last_error());
        assert_int_equal(unfit.n, 0); /* SD's own sizes: every fixed value fits */
        json_object *want;
        assert_true(json_object_object_get_ex(configs, COMPS[k], &want));
        bad += same_keys(COMPS[k], &c, want);
        print_message("    %s %s: %s\n", name, COMPS[k], json_object_to_json_string_ext(c.root, JSON_C_TO_STRING_PLAIN));
        stem_config_free(&c);
    }
    assert_int_equal(bad, 0);
    stem_tensor_map_free(&m);
    json_object_put(root);
}

static void tiny_shapes(void **state) {
    const char *model = *state;
    stem_model_source src;
    if (stem_model_source_open(file_of(model), NULL, &src) != STEM_OK) fail_msg("%s", stem_last_error());
    assert_true(src.single_file);
    /* what the shapes give must be the folder's; heads and groups are named as unfit */
    static const char *const keys[3][12] = {
        {"in_channels", "out_channels", "block_out_channels", "layers_per_block", "down_block_types", "up_block_types",
         "cross_attention_dim", "use_linear_projection", "transformer_layers_per_block", "conv_in_kernel", NULL},
        {"in_channels", "out_channels", "block_out_channels", "layers_per_block", "latent_channels",
         "down_block_types", "up_block_types", "scaling_factor", NULL},
        {"hidden_size", "num_hidden_layers", "intermediate_size", "max_position_embeddings", "vocab_size",
         "hidden_act", "layer_norm_eps", NULL},
    };
    /* SD 1.x's 8 heads divide tiny-sd1's 16 channels (so they are set, and wrong: the
     * override gives 2); SD 2.x's 64 channels a head do not fit tiny-sd2 */
    bool v1 = !strcmp(model, "tiny-sd1");
    const char *const unfit_keys[3][3] = {{"norm_num_groups", v1 ? NULL : "attention_head_dim", NULL},
                                          {"norm_num_groups", NULL},
                                          {"num_attention_heads", NULL}};
    int bad = 0;
    for (int k = 0; k < 3; k++) {
        stem_config c, folder;
        stem_ldm_unfit unfit;
        if (stem_ldm_derive_config(src.path, &src.header, &src.layout, LDM[k], &c, &unfit) != STEM_OK)
            fail_msg("%s", stem_last_error());
        char p[2100];
        snprintf(p, sizeof p, "%s/config.json", tm_model_path(model, COMPS[k]));
        if (stem_config_load(p, &folder) != STEM_OK) fail_msg("%s", stem_last_error());
        json_object *want = json_object_new_object();
        for (int i = 0; keys[k][i]; i++) {
            json_object *v = cfg_get(&folder, keys[k][i]);
            if (v) json_object_object_add(want, keys[k][i], json_object_get(v));
        }
        bad += same_keys(COMPS[k], &c, want);
        json_object_put(want);
        int n = 0;
        for (int i = 0; unfit_keys[k][i]; i++, n++) {
            bool found = false;
            for (int j = 0; j < unfit.n; j++) found |= !strcmp(unfit.key[j], unfit_keys[k][i]);
            if (!found) fail_msg("%s %s: '%s' not reported as unfit", model, COMPS[k], unfit_keys[k][i]);
            assert_null(cfg_get(&c, unfit_keys[k][i]));
        }
        assert_int_equal(unfit.n, n);
        stem_config_free(&c);
        stem_config_free(&folder);
    }
    assert_int_equal(bad, 0);
    /* without an override, loading names the first key to pass */
    stem_pipeline p;
    tm_expect_error(stem_pipeline_load(file_of(model), stem_cpu_backend(), STEM_F32, &p), STEM_E_FORMAT,
                    "text_encoder", "num_attention_heads", "--model-config", NULL);
    stem_model_source_close(&src);
}

/* ---- the file loads into the folder's pipeline ----------------------------------------------- */

static void same_pipeline(const stem_pipeline *a, const stem_pipeline *b) {
    /* all but what a checkpoint cannot tell and the forward does not use: the training
     * resolution (sample_size) and upcast_attention (the softmax is f32 anyway) */
    stem_unet_config ua = *stem_unet_get_config(a->unet), ub = *stem_unet_get_config(b->unet);
    ua.sample_size = ub.sample_size = 0;
    ua.upcast_attention = ub.upcast_attention = false;
    assert_memory_equal(&ua, &ub, sizeof ua);
    assert_memory_equal(&a->vae.cfg, &b->vae.cfg, sizeof a->vae.cfg);
    assert_int_equal(a->text.cfg.hidden, b->text.cfg.hidden);
    assert_int_equal(a->text.cfg.layers, b->text.cfg.layers);
    assert_int_equal(a->text.cfg.heads, b->text.cfg.heads);
    assert_int_equal(a->text.cfg.act, b->text.cfg.act);
    const stem_ddim_config *sa = &a->schedule, *sb = &b->schedule; /* field by field: padding */
    assert_int_equal(sa->train_steps, sb->train_steps);
    assert_true(sa->beta_start == sb->beta_start && sa->beta_end == sb->beta_end);
    assert_int_equal(sa->schedule, sb->schedule);
    assert_int_equal(sa->steps_offset, sb->steps_offset);
    assert_int_equal(sa->set_alpha_to_one, sb->set_alpha_to_one);
    assert_int_equal(sa->spacing, sb->spacing);
    assert_int_equal(sa->clip_sample, sb->clip_sample);
    assert_int_equal(sa->thresholding, sb->thresholding);
    assert_int_equal(stem_unet_param_count(a->unet), stem_unet_param_count(b->unet));
    if (a->tokenizer && b->tokenizer) /* none in a configs-only pipeline */
        assert_int_equal(stem_tokenizer_pad_id(a->tokenizer), stem_tokenizer_pad_id(b->tokenizer));
}

static void bit_equal(const char *label, const stem_tensor *a, const stem_tensor *b) {
    assert_int_equal(stem_nbytes(a), stem_nbytes(b));
    if (memcmp(a->data, b->data, stem_nbytes(a))) fail_msg("%s differs between the folder and the file", label);
    print_message("    %s: bit-identical\n", label);
}

static void file_as_folder(void **state) {
    const char *model = *state;
    char dir[1024], json[1100];
    tm_mkdtemp(dir, sizeof dir, "single");
    snprintf(json, sizeof json, "%s/override.json", dir);
    write_text(json, tiny_override(model));
    stem_pipeline folder, file, file_dir;
    if (stem_pipeline_load(tm_model_path(model, NULL), stem_cpu_backend(), STEM_F32, &folder) != STEM_OK ||
        stem_pipeline_load_config(file_of(model), json, stem_cpu_backend(), STEM_F32, &file) != STEM_OK ||
        stem_pipeline_load_config(file_of(model), tm_model_path(model, NULL), stem_cpu_backend(), STEM_F32,
                                  &file_dir) != STEM_OK)
        fail_msg("%s", stem_last_error());
    assert_true(file.single_file);
    assert_false(folder.single_file);
    print_message("    tokenizer: %s\n    scheduler: %s\n", file.tokenizer_from, file.scheduler_from);
    assert_non_null(strstr(file.tokenizer_from, "bundled CLIP tokenizer"));
    assert_non_null(strstr(file.scheduler_from, "SD's DDIM values"));
    assert_non_null(strstr(file_dir.tokenizer_from, "--model-config"));
    same_pipeline(&folder, &file);
    same_pipeline(&folder, &file_dir);

    /* the prompt through tokenizer and text encoder, and frames through the VAE */
    const char *prompt = "a mallard floats on the sparkling pond";
    stem_tensor c1, c2;
    bool trunc;
    if (stem_pipeline_encode_prompt(&folder, prompt, &c1, &trunc) != STEM_OK ||
        stem_pipeline_encode_prompt(&file, prompt, &c2, &trunc) != STEM_OK)
        fail_msg("%s", stem_last_error());
    bit_equal("prompt embedding", &c1, &c2);
    stem_tensor_free(&c1);
    stem_tensor_free(&c2);
    int64_t fs[4] = {1, 3, 32, 32}, ls[4] = {1, 4, 8, 8};
    stem_tensor frames, l1, l2;
    stem_tensor_new(stem_cpu_backend(), STEM_F32, 4, fs, &frames);
    for (int64_t i = 0; i < stem_numel(&frames); i++) ((float *)frames.data)[i] = (float)((i * 37) % 200) / 100.0f - 1.0f;
    stem_tensor_new(stem_cpu_backend(), STEM_F32, 4, ls, &l1);
    stem_tensor_new(stem_cpu_backend(), STEM_F32, 4, ls, &l2);
    if (stem_vae_encode(&folder.vae, &frames, &l1) != STEM_OK || stem_vae_encode(&file.vae, &frames, &l2) != STEM_OK)
        fail_msg("%s", stem_last_error());
    bit_equal("VAE latents", &l1, &l2);
    stem_tensor_free(&frames);
    stem_tensor_free(&l1);
    stem_tensor_free(&l2);
    stem_pipeline_free(&folder);
    stem_pipeline_free(&file);
    stem_pipeline_free(&file_dir);
    tm_rm_tree(dir);
}

/* ---- bad input ------------------------------------------------------------------------------ */

typedef struct edit {
    const char *remove, *reshape;
    int ndim;
    int64_t shape[4];
} edit;

/* A copy of the tiny checkpoint with one tensor removed or replaced by zeros of another shape. */
static void edited_copy(const char *model, const char *out, const edit *e) {
    stem_tensor_map in, m;
    if (stem_safetensors_load(file_of(model), -1, &in) != STEM_OK) fail_msg("%s", stem_last_error());
    stem_tensor_map_init(&m);
    for (int i = 0; i < in.count; i++) {
        stem_tensor v = in.items[i].tensor;
        v.owned = false;
        if (e->remove && !strcmp(in.items[i].name, e->remove)) continue;
        stem_tensor_map_put(&m, in.items[i].name, v);
    }
    if (e->reshape) tm_reshape_tensor(&m, e->reshape, e->ndim, e->shape);
    if (stem_safetensors_save(out, &m) != STEM_OK) fail_msg("%s", stem_last_error());
    stem_tensor_map_free(&m);
    stem_tensor_map_free(&in);
}

static void bad_input(void **state) {
    (void)state;
    char dir[1024], path[1200], json[1200];
    tm_mkdtemp(dir, sizeof dir, "single_bad");
    stem_backend *cpu = stem_cpu_backend();
    stem_pipeline p;
    const char *model = "tiny-sd1", *cfg = tm_model_path(model, NULL);

    /* not an SD checkpoint */
    snprintf(path, sizeof path, "%s/other.safetensors", dir);
    stem_tensor_map m;
    stem_tensor_map_init(&m);
    stem_tensor t;
    int64_t s1[1] = {4};
    stem_tensor_zeros(cpu, STEM_F32, 1, s1, &t);
    stem_tensor_map_put(&m, "encoder.layer.0.weight", t);
    stem_safetensors_save(path, &m);
    stem_tensor_map_free(&m);
    tm_expect_error(stem_pipeline_load(path, cpu, STEM_F32, &p), STEM_E_FORMAT, "other.safetensors",
                    "not an original (LDM) Stable Diffusion checkpoint", NULL);
    /* a tensor the UNet needs, missing: named with its diffusers name, the file and how names were made */
    edit e1 = {.remove = "model.diffusion_model.input_blocks.1.0.in_layers.2.bias"};
    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    edited_copy(model, path, &e1);
    tm_expect_error(stem_pipeline_load_config(path, cfg, cpu, STEM_F32, &p), STEM_E_NOTFOUND, "unet",
                    "down_blocks.0.resnets.0.conv1.bias", "missing.safetensors", "LDM names", NULL);
    /* a tensor that sizes the config, missing: named with its LDM name */
    edit e2 = {.remove = "first_stage_model.decoder.conv_in.weight"};
    edited_copy(model, path, &e2);
    tm_expect_error(stem_pipeline_load_config(path, cfg, cpu, STEM_F32, &p), STEM_E_FORMAT,
                    "first_stage_model.decoder.conv_in.weight", "latent_channels", NULL);
    /* wrong shape */
    edit e3 = {.reshape = "first_stage_model.encoder.down.0.block.0.norm1.weight", .ndim = 1, .shape = {5}};
    snprintf(path, sizeof path, "%s/shape.safetensors", dir);
    edited_copy(model, path, &e3);
    tm_expect_error(stem_pipeline_load_config(path, cfg, cpu, STEM_F32, &p), STEM_E_SHAPE, "vae",
                    "encoder.down_blocks.0.resnets.0.norm1.weight", "[5]", "shape.safetensors", NULL);
    /* an override that does not fit the weights */
    snprintf(json, sizeof json, "%s/wide.json", dir);
    write_text(json, "{\"unet\": {\"block_out_channels\": [32, 64, 64], \"attention_head_dim\": 2, "
                     "\"norm_num_groups\": 8}, \"vae\": {\"norm_num_groups\": 4}, \"text_encoder\": "
                     "{\"num_attention_heads\": 2}}");
    tm_expect_error(stem_pipeline_load_config(file_of(model), json, cpu, STEM_F32, &p), STEM_E_SHAPE, "unet",
                    "conv_in.weight", NULL);
    /* --model-config itself */
    write_text(json, "{\"unet\": {}, \"vea\": {}}");
    tm_expect_error(stem_pipeline_load_config(file_of(model), json, cpu, STEM_F32, &p), STEM_E_FORMAT, "wide.json",
                    "unknown key 'vea'", NULL);
    write_text(json, "{\"unet\": 3}");
    tm_expect_error(stem_pipeline_load_config(file_of(model), json, cpu, STEM_F32, &p), STEM_E_FORMAT, "'unet'",
                    "an object", NULL);
    write_text(json, "{\"unet\": {\"attention_head_dim\": \"two\"}}");
    tm_expect_error(stem_pipeline_load_config(file_of(model), json, cpu, STEM_F32, &p), STEM_E_FORMAT,
                    "text_encoder", "num_attention_heads", NULL); /* the text encoder loads first */
    snprintf(path, sizeof path, "%s/nothing", dir);
    mkdir(path, 0755);
    tm_expect_error(stem_pipeline_load_config(file_of(model), path, cpu, STEM_F32, &p), STEM_E_NOTFOUND, "nothing",
                    "unet/config.json", NULL);
    snprintf(path, sizeof path, "%s/absent.json", dir);
    tm_expect_error(stem_pipeline_load_config(file_of(model), path, cpu, STEM_F32, &p), STEM_E_NOTFOUND, "absent.json",
                    NULL);
    /* models that are neither */
    snprintf(path, sizeof path, "%s/model.ckpt", dir);
    write_text(path, "pickle");
    tm_expect_error(stem_pipeline_load(path, cpu, STEM_F32, &p), STEM_E_UNSUPPORTED, "model.ckpt", "pickle", NULL);
    tm_expect_error(stem_pipeline_load(dir, cpu, STEM_F32, &p), STEM_E_NOTFOUND, "model_index.json", NULL);
    tm_rm_tree(dir);
}

/* Configs only (stem_pipeline_load_shapes, `stem edit --dry-run`): a file's header and its
 * --model-config give the folder's pipeline, UNet parameters included, without a weight
 * read; a data-less UNet refuses to run; without the override the same key is named. */
static void shapes_only(void **state) {
    const char *model = *state;
    char dir[1024], json[1100];
    tm_mkdtemp(dir, sizeof dir, "single_shapes");
    snprintf(json, sizeof json, "%s/override.json", dir);
    write_text(json, tiny_override(model));
    stem_backend *cpu = stem_cpu_backend();
    stem_pipeline full, file, folder;
    if (stem_pipeline_load(tm_model_path(model, NULL), cpu, STEM_F32, &full) != STEM_OK ||
        stem_pipeline_load_shapes(file_of(model), json, cpu, STEM_F32, &file) != STEM_OK ||
        stem_pipeline_load_shapes(tm_model_path(model, NULL), NULL, cpu, STEM_F32, &folder) != STEM_OK)
        fail_msg("%s", stem_last_error());
    assert_true(file.single_file);
    assert_null(file.tokenizer);
    same_pipeline(&full, &file);
    same_pipeline(&full, &folder);
    stem_frame_geometry g1, g2;
    assert_int_equal(stem_pipeline_geometry(&full, 40, 48, &g1), STEM_OK);
    assert_int_equal(stem_pipeline_geometry(&file, 40, 48, &g2), STEM_OK);
    assert_memory_equal(&g1, &g2, sizeof g1);
    int64_t xs[4] = {1, 4, 8, 8}, cs[3] = {1, 77, full.text.cfg.hidden};
    stem_tensor x, ctx, eps;
    stem_tensor_new(cpu, STEM_F32, 4, xs, &x);
    stem_tensor_new(cpu, STEM_F32, 4, xs, &eps);
    stem_tensor_new(cpu, STEM_F32, 3, cs, &ctx);
    const float t = 999;
    tm_expect_error(stem_unet_forward(file.unet, full.arena, &x, &t, 1, &ctx, NULL, &eps), STEM_E_ARG,
                    "no weights", NULL);
    stem_tensor_free(&x);
    stem_tensor_free(&eps);
    stem_tensor_free(&ctx);
    stem_pipeline p;
    tm_expect_error(stem_pipeline_load_shapes(file_of(model), NULL, cpu, STEM_F32, &p), STEM_E_FORMAT, "text_encoder",
                    "num_attention_heads", "--model-config", NULL);
    stem_pipeline_free(&full);
    stem_pipeline_free(&file);
    stem_pipeline_free(&folder);
    tm_rm_tree(dir);
}

/* ---- fingerprint ------------------------------------------------------------------------------ */

static void fingerprint(void **state) {
    (void)state;
    char dir[1024], path[1200], json[1200], a[17], b[17], c[17], d[17], f[17];
    tm_mkdtemp(dir, sizeof dir, "single_fp");
    snprintf(json, sizeof json, "%s/o.json", dir);
    write_text(json, tiny_override("tiny-sd1"));
    assert_int_equal(stem_model_fingerprint(file_of("tiny-sd1"), json, a), STEM_OK);
    assert_int_equal(stem_model_fingerprint(file_of("tiny-sd1"), json, b), STEM_OK);
    assert_string_equal(a, b);
    assert_int_equal(stem_model_fingerprint(file_of("tiny-sd1"), tm_model_path("tiny-sd1", NULL), c), STEM_OK);
    assert_string_not_equal(a, c); /* another config */
    assert_int_equal(stem_model_fingerprint(tm_model_path("tiny-sd1", NULL), NULL, d), STEM_OK);
    assert_string_not_equal(c, d); /* the folder */
    /* a byte near the end (beyond the first MiB) */
    edit none = {0};
    snprintf(path, sizeof path, "%s/copy.safetensors", dir);
    edited_copy("tiny-sd1", path, &none);
    char f0[17];
    assert_int_equal(stem_model_fingerprint(path, json, f0), STEM_OK);
    assert_int_equal(stem_model_fingerprint(path, json, f), STEM_OK);
    assert_string_equal(f0, f);
    FILE *fp = fopen(path, "r+b");
    fseek(fp, -3, SEEK_END);
    fputc(0x55, fp);
    fclose(fp);
    assert_int_equal(stem_model_fingerprint(path, json, f), STEM_OK);
    assert_string_not_equal(f0, f);
    print_message("    file %s, with the folder as config %s, folder %s, edited %s\n", a, c, d, f);
    tm_rm_tree(dir);
}

int main(int argc, char **argv) {
    stem_blas_ensure_fast_core(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(real_sd_shapes, "sd15"),
        cmocka_unit_test_prestate(real_sd_shapes, "sd21"),
        cmocka_unit_test_prestate(tiny_shapes, "tiny-sd1"),
        cmocka_unit_test_prestate(tiny_shapes, "tiny-sd2"),
        cmocka_unit_test_prestate(file_as_folder, "tiny-sd1"),
        cmocka_unit_test_prestate(file_as_folder, "tiny-sd2"),
        cmocka_unit_test_prestate(shapes_only, "tiny-sd1"),
        cmocka_unit_test_prestate(shapes_only, "tiny-sd2"),
        cmocka_unit_test(bad_input),
        cmocka_unit_test(fingerprint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
