/* stem's TokenFlow editing (src/pipeline/edit.c, src/edit/) against the float64 PyTorch
 * reference of refdata/gen/edit_ref.py (goldens refdata/golden/edit, gen_edit.py), on the
 * CPU backend in f32, for every golden case: tiny-sd1 / tiny-sd2 / tiny-freeu, frame
 * counts that are and are not a multiple of batch_size, tail every / drop, FreeU on / off,
 * extended attention and --edit-attention stem.
 *
 * From the golden's stored inputs (inversion latents of every step, z0, the three prompt
 * contexts) this runs stem_edit_initial_latents and stem_edit_latents and checks
 *   - the keyframes of every step are the golden's;
 *   - every token-flow index whose float64 margin (best minus second-best cosine) is at least
 *     the golden's tie_margin is the golden's; at the near-ties below it a float32
 *     computation may pick the other token, so the golden's choice is forced there (the
 *     observer overwrites the index), as gen_edit.py prescribes;
 *   - x_T and the latents after steps 0, 1 and S-1 are within the golden's rtol/atol
 *     (|stem - ref| <= atol + rtol |ref|, atol = rtol max|ref|; gen_edit.py derived them with
 *     4x headroom over PyTorch float32 trials);
 *   - the frames decoded from the golden's last latents, likewise.
 * Two cases run again with the pivotal pass layer-major over 1-keyframe slices (attn1 in
 * two phases) and the keyframe caches in host memory: the plan's long-video path must give
 * the same edit within the same tolerances. The same two, and their long-video runs, run
 * on the CUDA backend in f32 against the same goldens and tolerances; skipped, with the
 * reason, when stem_backend_open("cuda") fails (no device, or a build without CUDA). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backends.h"
#include "core/dtype.h"
#include "io/safetensors.h"
#include "pipeline/edit.h"
#include "stem.h"
#include "test_util.h"

static char **paths;
static int path_count;

typedef struct case_spec {
    const char *path;
    bool long_video; /* unet_frames 1, caches on the host */
    bool on_cuda;
} case_spec;

static stem_backend *cuda;
static char cuda_unavailable[512];

static const char *meta(const stem_tensor_map *m, const char *key) {
    const char *v = stem_tensor_map_get_meta(m, key);
    if (!v) fail_msg("golden lacks metadata '%s'", key);
    return v;
}

static const stem_tensor *need(const stem_tensor_map *m, const char *name) {
    const stem_tensor *t = stem_tensor_map_get(m, name);
    if (!t) fail_msg("golden lacks tensor '%s'", name);
    return t;
}

typedef struct edit_case {
    const stem_tensor_map *g;
    stem_pipeline *p;
    int64_t F, Fe, B, S, h, w;
    double tie_margin;
    /* token-flow checks */
    long compared, forced, mismatched;
    char first_mismatch[256];
    /* latents checks */
    double worst[8];
    int failures;
    char failure[512];
} edit_case;

/* frames [f0, f0 + n) of in.inv_latents[inv_step] */
static stem_status source_latents(void *user, int inv_step, int64_t f0, int64_t n, stem_tensor *out) {
    edit_case *c = user;
    const stem_tensor *inv = need(c->g, "in.inv_latents");
    const int64_t per = 4 * c->h * c->w;
    const float *src = (const float *)inv->data + ((int64_t)inv_step * c->F + f0) * per;
    int64_t shape[4] = {n, 4, c->h, c->w};
    stem_tensor view = stem_tensor_wrap(inv->backend, STEM_F32, 4, shape, (void *)src);
    return stem_tensor_copy(&view, out);
}

static stem_status observe_keyframes(void *user, int step, const int64_t *frames, int64_t count) {
    edit_case *c = user;
    const int32_t *kf = need(c->g, "out.keyframes")->data;
    for (int64_t k = 0; k < count; k++)
        if (kf[step * count + k] != frames[k])
            fail_msg("step %d chunk %lld: keyframe %lld, golden %d", step, (long long)k, (long long)frames[k],
                     kf[step * count + k]);
    return STEM_OK;
}

/* idx [n N] of block `block` for the frames first .. against keyframe i (which 0) or i-1 */
static stem_status observe_flow(void *user, int step, int block, int64_t first, int which, stem_tensor *idx) {
    edit_case *c = user;
    char key[64];
    snprintf(key, sizeof key, "out.tf_b%02d.idx%d", block, which + 1);
    const stem_tensor *gi = need(c->g, key);
    snprintf(key, sizeof key, "out.tf_b%02d.margin%d", block, which + 1);
    const stem_tensor *gm = need(c->g, key);
    const int64_t rows = gi->shape[1], N = gi->shape[2], row0 = which == 0 ? first : first - c->B;
    const int64_t n = stem_numel(idx) / N;
    stem_tensor host = {0};
    if (idx->backend != stem_cpu_backend() && stem_tensor_to(idx, stem_cpu_backend(), STEM_I32, &host) != STEM_OK)
        fail_msg("%s", stem_last_error());
    int32_t *x = host.data ? host.data : idx->data;
    for (int64_t j = 0; j < n; j++)
        for (int64_t k = 0; k < N; k++) {
            const int64_t at = ((int64_t)step * rows + row0 + j) * N + k;
            const int ref = ((const uint8_t *)gi->data)[at];
            const double margin = stem_f16_to_f32(((const uint16_t *)gm->data)[at]);
            if (margin < c->tie_margin) { /* a near-tie: take the reference's choice */
                c->forced += x[j * N + k] != ref;
                x[j * N + k] = ref;
                continue;
            }
            c->compared++;
            if (x[j * N + k] != ref && c->mismatched++ == 0)
                snprintf(c->first_mismatch, sizeof c->first_mismatch,
                         "step %d block %d frame %lld token %lld vs keyframe %s: index %d, golden %d (margin %.3g)",
                         step, block, (long long)(first + j), (long long)k, which ? "i-1" : "i", x[j * N + k], ref,
                         margin);
        }
    stem_status st = host.data ? stem_tensor_copy(&host, idx) : STEM_OK;
    stem_tensor_free(&host);
    return st;
}

/* |got - ref| <= atol + rtol |ref| with the golden's rtol.<key>, atol.<key>; records the
 * worst ratio to the bound in c->worst[slot]. */
static void compare(edit_case *c, const char *key, const stem_tensor *got, int slot) {
    char name[64], k_rtol[64], k_atol[64];
    snprintf(name, sizeof name, "out.%s", key);
    snprintf(k_rtol, sizeof k_rtol, "rtol.%s", key);
    snprintf(k_atol, sizeof k_atol, "atol.%s", key);
    const stem_tensor *ref = need(c->g, name);
    const double rtol = atof(meta(c->g, k_rtol)), atol = atof(meta(c->g, k_atol));
    stem_tensor host;
    if (stem_tensor_to(got, ref->backend, STEM_F32, &host) != STEM_OK) fail_msg("%s", stem_last_error());
    if (stem_numel(&host) != stem_numel(ref)) fail_msg("%s: %lld values, golden %lld", key, (long long)stem_numel(&host), (long long)stem_numel(ref));
    const float *a = host.data, *b = ref->data;
    double worst = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < stem_numel(ref); i++) {
        double r = fabs((double)a[i] - b[i]) / (atol + rtol * fabs((double)b[i]));
        if (!(r <= worst)) { /* NaN counts as the worst */
            worst = isnan(r) ? INFINITY : r;
            at = i;
        }
    }
    c->worst[slot] = worst;
    if (worst > 1 && c->failures++ == 0)
        snprintf(c->failure, sizeof c->failure, "%s: element %lld is %.9g, golden %.9g (%.2fx the tolerance %g + %g|ref|)",
                 key, (long long)at, a[at], b[at], worst, atol, rtol);
    stem_tensor_free(&host);
}

static stem_status on_step(void *user, int step, int steps, int t, int pass, int passes, const stem_tensor *x) {
    edit_case *c = user;
    (void)t;
    if (!x || pass != passes) return STEM_OK;
    char key[32];
    snprintf(key, sizeof key, "edit_step%d", step);
    if (step == 0 || step == 1 || step == steps - 1) compare(c, key, x, step == 0 ? 1 : step == 1 ? 2 : 3);
    return STEM_OK;
}

static void check_case(void **state) {
    const case_spec *spec = *state;
    const char *path = spec->path;
    if (spec->on_cuda && !cuda) {
        print_message("skipped: %s\n", cuda_unavailable);
        skip();
    }
    stem_backend *be = spec->on_cuda ? cuda : stem_cpu_backend();
    stem_tensor_map g;
    stem_tensor_map_init(&g);
    if (stem_safetensors_load(path, -1, &g) != STEM_OK) fail_msg("%s", stem_last_error());
    char model[1024];
    snprintf(model, sizeof model, "%s/models/%s", test_refdata_dir(), meta(&g, "model"));
    stem_pipeline p;
    if (stem_pipeline_load(model, be, STEM_F32, &p) != STEM_OK) fail_msg("%s", stem_last_error());
    const stem_tensor *z0 = need(&g, "in.z0");
    edit_case c = {.g = &g, .p = &p, .F = z0->shape[0], .h = z0->shape[2], .w = z0->shape[3],
                   .Fe = atoll(meta(&g, "frames_edited")), .B = atoll(meta(&g, "batch_size")),
                   .S = atoll(meta(&g, "steps")), .tie_margin = atof(meta(&g, "tie_margin"))};

    stem_edit_options o;
    stem_edit_options_default(&o);
    o.steps = (int)c.S;
    o.batch_size = c.B;
    o.seed = strtoull(meta(&g, "seed"), NULL, 10);
    o.guidance_scale = atof(meta(&g, "guidance_scale"));
    o.pnp_attn_t = atof(meta(&g, "pnp_attn_t"));
    o.pnp_f_t = atof(meta(&g, "pnp_f_t"));
    assert_int_equal(stem_edit_tail_parse(meta(&g, "tail"), &o.tail), STEM_OK);
    assert_int_equal(stem_edit_attention_parse(meta(&g, "edit_attention"), &o.attention), STEM_OK);
    if (o.attention == STEM_EDIT_ATTN_STEM) {
        o.em.bases = atoll(meta(&g, "edit_bases"));
        o.em.iters = atoll(meta(&g, "edit_iters"));
        o.em.tau = (float)atof(meta(&g, "edit_tau"));
    }
    o.freeu.enabled = strcmp(meta(&g, "freeu"), "on") == 0;
    long g1, g2;
    assert_int_equal(sscanf(meta(&g, "freeu_gate_channels"), "%ld,%ld", &g1, &g2), 2);
    o.freeu.gate1 = g1;
    o.freeu.gate2 = g2;
    assert_int_equal(stem_edit_frame_count(&o, c.F), c.Fe);
    if (spec->long_video) {
        o.unet_frames = 1;
        o.cache_on_host = true;
    }

    /* x_T from z0 and the last inverted latents of the edited frames */
    stem_tensor z0e, inv_T, x;
    int64_t shape[4] = {c.Fe, 4, c.h, c.w};
    assert_int_equal(stem_tensor_new(p.be, STEM_F32, 4, shape, &inv_T), STEM_OK);
    assert_int_equal(source_latents(&c, (int)c.S - 1, 0, c.Fe, &inv_T), STEM_OK);
    stem_tensor z0_host, z0_dev;
    assert_int_equal(stem_tensor_narrow0(z0, 0, c.Fe, &z0_host), STEM_OK);
    assert_int_equal(stem_tensor_to(&z0_host, be, STEM_F32, &z0_dev), STEM_OK);
    z0e = z0_dev;
    assert_int_equal(stem_tensor_new(p.be, STEM_F32, 4, shape, &x), STEM_OK);
    if (stem_edit_initial_latents(&p, o.steps, &z0e, &inv_T, &x) != STEM_OK) fail_msg("%s", stem_last_error());
    compare(&c, "x_T", &x, 0);

    stem_tensor ctx[3];
    static const char *const ctx_names[3] = {"in.context_inversion", "in.context_negative", "in.context_prompt"};
    for (int i = 0; i < 3; i++)
        if (stem_tensor_to(need(&g, ctx_names[i]), be, STEM_F32, &ctx[i]) != STEM_OK) fail_msg("%s", stem_last_error());
    const stem_edit_inputs in = {.source = source_latents, .source_user = &c, .context_source = &ctx[0],
                                 .context_negative = &ctx[1], .context_target = &ctx[2]};
    const stem_edit_observer obs = {.user = &c, .token_flow = observe_flow, .keyframes = observe_keyframes};
    if (stem_edit_latents(&p, &in, &o, 0, &x, &obs, on_step, &c) != STEM_OK) fail_msg("%s", stem_last_error());

    /* the frames, decoded from the golden's last latents (each stage from the stored inputs) */
    char last[48];
    snprintf(last, sizeof last, "out.edit_step%lld", (long long)(c.S - 1));
    const stem_tensor *ref_last = need(&g, last), *ref_frames = need(&g, "out.frames");
    stem_tensor frames, last_dev;
    assert_int_equal(stem_tensor_new(p.be, STEM_F32, 4, ref_frames->shape, &frames), STEM_OK);
    assert_int_equal(stem_tensor_to(ref_last, be, STEM_F32, &last_dev), STEM_OK);
    if (stem_vae_decode(&p.vae, &last_dev, &frames) != STEM_OK) fail_msg("%s", stem_last_error());
    stem_tensor_free(&last_dev);
    for (int i = 0; i < 3; i++) stem_tensor_free(&ctx[i]);
    compare(&c, "frames", &frames, 4);

    print_message("%s%s%s: %ld token-flow indices equal the golden's (%ld near-ties forced, %ld mismatched); worst "
                  "|d|/tol: x_T %.3f, step0 %.3f, step1 %.3f, last %.3f, frames %.3f\n",
                  test_golden_label(path), spec->on_cuda ? " (cuda f32)" : "", spec->long_video ? " (long-video path)" : "", c.compared - c.mismatched, c.forced, c.mismatched, c.worst[0], c.worst[1],
                  c.worst[2], c.worst[3], c.worst[4]);
    if (c.mismatched) fail_msg("%ld of %ld token-flow indices above the tie margin differ; first: %s", c.mismatched,
                               c.compared, c.first_mismatch);
    if (c.failures) fail_msg("%s", c.failure);
    stem_tensor_free(&frames);
    stem_tensor_free(&x);
    stem_tensor_free(&inv_T);
    stem_tensor_free(&z0_dev);
    stem_pipeline_free(&p);
    stem_tensor_map_free(&g);
}

int main(void) {
    paths = test_list_golden_dir("edit", &path_count);
    if (path_count == 0) {
        fprintf(stderr, "test_edit: no golden files in %s/golden/edit\n", test_refdata_dir());
        return 1;
    }
    if (stem_backend_open("cuda", &cuda) != STEM_OK) {
        snprintf(cuda_unavailable, sizeof cuda_unavailable, "%s", stem_last_error());
        fprintf(stderr, "test_edit: CUDA tests skipped: %s\n", cuda_unavailable);
        cuda = NULL;
    }
    struct CMUnitTest *tests = calloc((size_t)path_count + 6, sizeof *tests);
    case_spec *specs = calloc((size_t)path_count + 6, sizeof *specs);
    int n = 0;
    for (int i = 0; i < path_count; i++) {
        specs[n] = (case_spec){.path = paths[i]};
        tests[n] = (struct CMUnitTest){.name = test_golden_label(paths[i]), .test_func = check_case,
                                       .initial_state = &specs[n]};
        n++;
    }
    static const char *const long_cases[2] = {"tiny-freeu__f5_b2_freeu_every", "tiny-sd1__f6_b3_stem"};
    static char names[6][112];
    for (int v = 0; v < 3; v++) /* cpu long-video; cuda; cuda long-video */
        for (int j = 0; j < 2; j++)
            for (int i = 0; i < path_count; i++)
                if (strstr(paths[i], long_cases[j])) {
                    char *name = names[v * 2 + j];
                    snprintf(name, sizeof names[0], "%s%s%s", long_cases[j], v ? ", cuda f32" : "",
                             v != 1 ? ", layer-major pivotal, host caches" : "");
                    specs[n] = (case_spec){.path = paths[i], .long_video = v != 1, .on_cuda = v > 0};
                    tests[n] = (struct CMUnitTest){.name = name, .test_func = check_case, .initial_state = &specs[n]};
                    n++;
                }
    int failed = _cmocka_run_group_tests("edit", tests, (size_t)n, NULL, NULL);
    free(specs);
    if (cuda) stem_backend_close(cuda);
    for (int i = 0; i < path_count; i++) free(paths[i]);
    free(paths);
    free(tests);
    return failed;
}
