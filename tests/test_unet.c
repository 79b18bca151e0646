/* The UNet against diffusers: every refdata/golden/unet/<model>__<case>.safetensors
 * (tiny SD 1.x / 2.x models of refdata/models, see refdata/gen/gen_unet.py) on the
 * CPU at the file's tolerance (rtol/atol metadata, 2e-5: the goldens are float64
 * forwards, PyTorch's own f32 forward and stem's are within ~1e-6 absolute of them,
 * outputs have std ~0.3); CUDA against the CPU
 * (f32 TF32 off: 1e-4; f16: 3e-2) or skipped with the reason; input checks; and load
 * errors that name the component, tensor and shapes. The hook contract is tested in
 * test_unet_hooks.c. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stem.h"
#include "backends/backends.h"
#include "models/unet.h"
#include "test_unet_util.h"

/* CUDA vs CPU. Not measured per case here (no GPU on the CI machine): the H200 run of
 * 2026-11-27 (scripts/gpu/run.sh) passed every case at these; f32 without TF32 differs
 * from the CPU by reduction order only (like the CPU matrix cells, ~1e-6 here), f16 by
 * its 2^-11 input rounding carried through the UNet. The next GPU session records the
 * spreads (run.sh prints each comparison's max abs). */
#define CUDA_F32_TOL 1e-4
#define CUDA_F16_TOL 3e-2

static stem_backend *cuda;
static char cuda_unavailable[512];

/* ---- goldens --------------------------------------------------------------------------- */

static void golden_cpu(void **state) {
    const char *path = *state;
    golden_case g;
    golden_open(path, &g);
    stem_unet *u = load_unet(g.model, stem_cpu_backend(), STEM_F32);
    stem_tensor got;
    if (run_unet(u, g.sample, g.timesteps, g.context, NULL, &got) != STEM_OK) fail_msg("%s", stem_last_error());
    int bad = compare(test_golden_label(path), &got, g.eps, g.rtol, g.atol);
    stem_tensor_free(&got);
    stem_unet_free(u);
    stem_tensor_map_free(&g.file);
    assert_int_equal(bad, 0);
}

static void golden_cuda(void **state, stem_dtype dt) {
    if (!cuda) {
        print_message("skipped: %s\n", cuda_unavailable);
        skip();
    }
    const char *path = *state;
    golden_case g;
    golden_open(path, &g);
    stem_unet *ucpu = load_unet(g.model, stem_cpu_backend(), STEM_F32);
    stem_unet *ugpu = load_unet(g.model, cuda, dt);
    stem_tensor ref, got;
    if (run_unet(ucpu, g.sample, g.timesteps, g.context, NULL, &ref) != STEM_OK) fail_msg("cpu: %s", stem_last_error());
    if (run_unet(ugpu, g.sample, g.timesteps, g.context, NULL, &got) != STEM_OK)
        fail_msg("cuda: %s", stem_last_error());
    double tol = dt == STEM_F16 ? CUDA_F16_TOL : CUDA_F32_TOL;
    char label[512];
    snprintf(label, sizeof label, "%s cuda %s vs cpu", test_golden_label(path), stem_dtype_name(dt));
    int bad = compare(label, &got, &ref, tol, tol);
    stem_tensor_free(&ref);
    stem_tensor_free(&got);
    stem_unet_free(ucpu);
    stem_unet_free(ugpu);
    stem_tensor_map_free(&g.file);
    assert_int_equal(bad, 0);
}
static void golden_cuda_f32(void **state) { golden_cuda(state, STEM_F32); }
static void golden_cuda_f16(void **state) { golden_cuda(state, STEM_F16); }

static void context_broadcast(void **state) {
    (void)state;
    golden_case g;
    golden_open_named("tiny-sd2__t1_13x9", &g);
    stem_unet *u = load_unet("tiny-sd2", stem_cpu_backend(), STEM_F32);
    stem_tensor one, rep, a, b;
    assert_int_equal(stem_tensor_narrow0(g.context, 0, 1, &one), STEM_OK);
    assert_int_equal(stem_tensor_new(stem_cpu_backend(), STEM_F32, 3, g.context->shape, &rep), STEM_OK);
    for (int64_t i = 0; i < rep.shape[0]; i++) {
        stem_tensor row;
        assert_int_equal(stem_tensor_narrow0(&rep, i, 1, &row), STEM_OK);
        assert_int_equal(stem_tensor_copy(&one, &row), STEM_OK);
    }
    if (run_unet(u, g.sample, g.timesteps, &one, NULL, &a) != STEM_OK) fail_msg("%s", stem_last_error());
    if (run_unet(u, g.sample, g.timesteps, &rep, NULL, &b) != STEM_OK) fail_msg("%s", stem_last_error());
    assert_int_equal(compare("context [1] vs repeated", &a, &b, 0, 0), 0);
    stem_tensor_free(&a);
    stem_tensor_free(&b);
    stem_tensor_free(&rep);
    stem_unet_free(u);
    stem_tensor_map_free(&g.file);
}

static void forward_input_errors(void **state) {
    (void)state;
    stem_unet *u = load_unet("tiny-sd1", stem_cpu_backend(), STEM_F32);
    stem_backend *be = stem_cpu_backend();
    int64_t sx[4] = {2, 3, 8, 8}, sc[3] = {2, 77, 16}, so[4] = {2, 4, 8, 8};
    stem_tensor x, c, y;
    assert_int_equal(stem_tensor_zeros(be, STEM_F32, 4, sx, &x), STEM_OK);
    assert_int_equal(stem_tensor_zeros(be, STEM_F32, 3, sc, &c), STEM_OK);
    assert_int_equal(stem_tensor_zeros(be, STEM_F32, 4, so, &y), STEM_OK);
    stem_arena *arena;
    assert_int_equal(stem_arena_create(be, 1 << 20, &arena), STEM_OK);
    float t[2] = {1, 2};
    assert_int_equal(stem_unet_forward(u, arena, &x, t, 2, &c, NULL, &y), STEM_E_SHAPE);
    print_message("error: %s\n", stem_last_error());
    assert_non_null(strstr(stem_last_error(), "[2, 3, 8, 8]"));
    stem_tensor_free(&x);
    sx[1] = 4;
    assert_int_equal(stem_tensor_zeros(be, STEM_F32, 4, sx, &x), STEM_OK);
    assert_int_equal(stem_unet_forward(u, arena, &x, t, 3, &c, NULL, &y), STEM_E_SHAPE);
    print_message("error: %s\n", stem_last_error());
    c.shape[2] = 15;
    assert_int_equal(stem_unet_forward(u, arena, &x, t, 2, &c, NULL, &y), STEM_E_SHAPE);
    print_message("error: %s\n", stem_last_error());
    assert_non_null(strstr(stem_last_error(), "context"));
    c.shape[2] = 16;
    assert_int_equal(stem_unet_forward(u, arena, &x, t, 2, &c, NULL, &y), STEM_OK);
    assert_int_equal(stem_unet_forward_sliced(u, arena, &x, t, 2, &c, NULL, 0, &y), STEM_E_ARG);
    print_message("error: %s\n", stem_last_error());
    /* two branches do not split 3 samples */
    stem_tensor x3, c3, y3;
    int64_t s3[4] = {3, 4, 8, 8}, sc3[3] = {1, 77, 16};
    assert_int_equal(stem_tensor_zeros(be, STEM_F32, 4, s3, &x3), STEM_OK);
    assert_int_equal(stem_tensor_zeros(be, STEM_F32, 3, sc3, &c3), STEM_OK);
    assert_int_equal(stem_tensor_zeros(be, STEM_F32, 4, s3, &y3), STEM_OK);
    stem_unet_hooks two = {.branches = 2};
    assert_int_equal(stem_unet_forward(u, arena, &x3, t, 1, &c3, &two, &y3), STEM_E_ARG);
    print_message("error: %s\n", stem_last_error());
    assert_non_null(strstr(stem_last_error(), "2 branches"));
    stem_tensor_free(&x3);
    stem_tensor_free(&c3);
    stem_tensor_free(&y3);
    stem_arena_destroy(arena);
    stem_tensor_free(&x);
    stem_tensor_free(&c);
    stem_tensor_free(&y);
    stem_unet_free(u);
}

/* ---- load errors ----------------------------------------------------------------------------- */

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) n = 0;
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    fclose(f);
}

/* A temp copy of tiny-sd1/unet with `from` replaced by `to` in config.json and the
 * weights minus `drop` (NULL: all) plus an extra tensor when `extra`. */
static void make_variant(char *dir, const char *from, const char *to, const char *drop, bool extra) {
    char src[2048], path[2300], path2[2300];
    model_dir("tiny-sd1", src, sizeof src);
    strcpy(dir, "/tmp/stem_test_unet.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/config.json", src);
    char *cfg = read_text(path);
    assert_non_null(cfg);
    if (from) {
        char *at = strstr(cfg, from);
        assert_non_null(at);
        size_t len = strlen(cfg) + strlen(to) + 1;
        char *edited = malloc(len);
        snprintf(edited, len, "%.*s%s%s", (int)(at - cfg), cfg, to, at + strlen(from));
        free(cfg);
        cfg = edited;
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_text(path, cfg);
    free(cfg);
    stem_tensor_map in, out;
    snprintf(path2, sizeof path2, "%s/diffusion_pytorch_model.safetensors", src);
    assert_int_equal(stem_safetensors_load(path2, -1, &in), STEM_OK);
    stem_tensor_map_init(&out);
    for (int i = 0; i < in.count; i++) {
        if (drop && strcmp(in.items[i].name, drop) == 0) continue;
        stem_tensor v = in.items[i].tensor;
        v.owned = false;
        assert_int_equal(stem_tensor_map_put(&out, in.items[i].name, v), STEM_OK);
    }
    if (extra) {
        int64_t s1 = 3;
        stem_tensor t;
        assert_int_equal(stem_tensor_zeros(stem_cpu_backend(), STEM_F32, 1, &s1, &t), STEM_OK);
        assert_int_equal(stem_tensor_map_put(&out, "down_blocks.0.extra.weight", t), STEM_OK);
    }
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    assert_int_equal(stem_safetensors_save(path, &out), STEM_OK);
    stem_tensor_map_free(&out);
    stem_tensor_map_free(&in);
}

static void remove_variant(const char *dir) {
    char path[2300];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    unlink(path);
    rmdir(dir);
}

static void expect_load_error(const char *dir, stem_status want, const char *const *needles) {
    stem_unet *u = NULL;
    stem_status s = stem_unet_load(dir, stem_cpu_backend(), STEM_F32, &u);
    print_message("error: %s\n", stem_last_error());
    assert_null(u);
    assert_int_equal(s, want);
    for (int i = 0; needles[i]; i++)
        if (!strstr(stem_last_error(), needles[i])) fail_msg("message lacks '%s': %s", needles[i], stem_last_error());
}

static void error_missing_tensor(void **state) {
    (void)state;
    char dir[64];
    const char *name = "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight";
    make_variant(dir, NULL, NULL, name, false);
    const char *needles[] = {"unet", name, "[32, 16]", "missing", NULL};
    expect_load_error(dir, STEM_E_NOTFOUND, needles);
    remove_variant(dir);
}

static void error_wrong_shape(void **state) {
    (void)state;
    char dir[64];
    /* the config says 20-wide text, the weights are 16-wide */
    make_variant(dir, "\"cross_attention_dim\": 16", "\"cross_attention_dim\": 20", NULL, false);
    const char *needles[] = {"unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight", "[16, 16]",
                             "[16, 20]", NULL};
    expect_load_error(dir, STEM_E_SHAPE, needles);
    remove_variant(dir);
}

static void error_unsupported_block(void **state) {
    (void)state;
    char dir[64];
    make_variant(dir, "\"CrossAttnDownBlock2D\"", "\"AttnDownBlock2D\"", NULL, false);
    const char *needles[] = {"config.json", "down_block_types[0]", "AttnDownBlock2D", "CrossAttnDownBlock2D", NULL};
    expect_load_error(dir, STEM_E_UNSUPPORTED, needles);
    remove_variant(dir);
}

static void error_unsupported_option(void **state) {
    (void)state;
    char dir[64];
    make_variant(dir, "\"class_embed_type\": null", "\"class_embed_type\": \"timestep\"", NULL, false);
    const char *needles[] = {"config.json", "class_embed_type", "timestep", NULL};
    expect_load_error(dir, STEM_E_UNSUPPORTED, needles);
    remove_variant(dir);
}

/* norm_num_groups 0 divided the channel counts (SIGFPE); a negative count loaded and failed at step 0 */
static void error_bad_norm_groups(void **state) {
    (void)state;
    static const char *const values[] = {"\"norm_num_groups\": 0", "\"norm_num_groups\": -8"};
    for (int i = 0; i < 2; i++) {
        char dir[64];
        make_variant(dir, "\"norm_num_groups\": 8", values[i], NULL, false);
        const char *needles[] = {"config.json", "norm_num_groups", i ? "-8" : "= 0", NULL};
        expect_load_error(dir, STEM_E_FORMAT, needles);
        remove_variant(dir);
    }
}

/* A rejected weights file: the error names it, and nothing leaks (48 bytes did; the ASan
 * build's leak check fails this test then). */
static void error_corrupt_weights(void **state) {
    (void)state;
    char dir[64], path[128];
    make_variant(dir, NULL, NULL, NULL, false);
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    write_text(path, "not a safetensors file");
    const char *needles[] = {"unet", "diffusion_pytorch_model.safetensors", NULL};
    expect_load_error(dir, STEM_E_FORMAT, needles);
    remove_variant(dir);
}

static void error_unused_tensor(void **state) {
    (void)state;
    char dir[64];
    make_variant(dir, NULL, NULL, NULL, true);
    const char *needles[] = {"unet", "down_blocks.0.extra.weight", "does not use", NULL};
    expect_load_error(dir, STEM_E_FORMAT, needles);
    remove_variant(dir);
}

/* ---- main ---------------------------------------------------------------------------------- */


int main(int argc, char **argv) {
    stem_blas_ensure_fast_core(argc, argv);
    if (stem_backend_open("cuda", &cuda) != STEM_OK) {
        snprintf(cuda_unavailable, sizeof cuda_unavailable, "%s", stem_last_error());
        fprintf(stderr, "test_unet: CUDA tests skipped: %s\n", cuda_unavailable);
        cuda = NULL;
    }
    int n = 0;
    char **paths = test_list_golden_dir("unet", &n);
    if (n == 0) {
        fprintf(stderr, "test_unet: no goldens in %s/golden/unet (set STEM_REFDATA)\n", test_refdata_dir());
        return 1;
    }
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(context_broadcast),      cmocka_unit_test(forward_input_errors),
        cmocka_unit_test(error_missing_tensor),   cmocka_unit_test(error_wrong_shape),
        cmocka_unit_test(error_unsupported_block), cmocka_unit_test(error_unsupported_option),
        cmocka_unit_test(error_unused_tensor),    cmocka_unit_test(error_bad_norm_groups),
        cmocka_unit_test(error_corrupt_weights),
    };
    int n_fixed = (int)(sizeof fixed / sizeof *fixed);
    struct CMUnitTest *tests = calloc((size_t)(3 * n + n_fixed), sizeof *tests);
    char **names = calloc((size_t)(3 * n), sizeof *names);
    int k = 0;
    for (int i = 0; i < n; i++)
        for (int f = 0; f < 3; f++) {
            static const char *const suffix[3] = {"cpu", "cuda f32", "cuda f16"};
            static const CMUnitTestFunction fn[3] = {golden_cpu, golden_cuda_f32, golden_cuda_f16};
            size_t len = strlen(test_golden_label(paths[i])) + 16;
            names[k] = malloc(len);
            snprintf(names[k], len, "%s %s", test_golden_label(paths[i]), suffix[f]);
            tests[k] = (struct CMUnitTest){.name = names[k], .test_func = fn[f], .initial_state = paths[i]};
            k++;
        }
    for (int i = 0; i < n_fixed; i++) tests[k++] = fixed[i];
    int failed = _cmocka_run_group_tests("unet", tests, (size_t)k, NULL, NULL);
    for (int i = 0; i < 3 * n; i++) free(names[i]);
    for (int i = 0; i < n; i++) free(paths[i]);
    free(names);
    free(paths);
    free(tests);
    if (cuda) stem_backend_close(cuda);
    return failed;
}
