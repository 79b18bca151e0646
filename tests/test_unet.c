/* The UNet against diffusers: every refdata/golden/unet/<model>__<case>.safetensors
 * (tiny SD 1.x / 2.x models of refdata/models, see refdata/gen/gen_unet.py) on the
 * CPU at the file's tolerance (rtol/atol metadata, 2e-5: the goldens are float64
 * forwards, PyTorch's own f32 forward and stem's are within ~1e-6 absolute of them,
 * outputs have std ~0.3); CUDA against the CPU
 * (f32 TF32 off: 1e-4; f16: 3e-2) or skipped with the reason; the hook contract
 * (sites, order, names, overrides); and load errors that name the component, tensor
 * and shapes. */
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
#include "test_util.h"

/* CUDA vs CPU. Not measured per case here (no GPU on the CI machine): the H200 run of
 * 2026-11-27 (scripts/gpu/run.sh) passed every case at these; f32 without TF32 differs
 * from the CPU by reduction order only (like the CPU matrix cells, ~1e-6 here), f16 by
 * its 2^-11 input rounding carried through the UNet. The next GPU session records the
 * spreads (run.sh prints each comparison's max abs). */
#define CUDA_F32_TOL 1e-4
#define CUDA_F16_TOL 3e-2

static stem_backend *cuda;
static char cuda_unavailable[512];

/* ---- helpers ------------------------------------------------------------------------- */

static void model_dir(const char *model, char *buf, size_t len) {
    snprintf(buf, len, "%s/models/%s/unet", test_refdata_dir(), model);
}

static stem_unet *load_unet(const char *model, stem_backend *be, stem_dtype dt) {
    char dir[2048];
    model_dir(model, dir, sizeof dir);
    stem_unet *u = NULL;
    if (stem_unet_load(dir, be, dt, &u) != STEM_OK) fail_msg("loading %s: %s", dir, stem_last_error());
    return u;
}

typedef struct golden_case {
    stem_tensor_map file;
    stem_tensor *sample, *timesteps, *context, *eps;
    double rtol, atol;
    char model[64];
} golden_case;

static void golden_open(const char *path, golden_case *g) {
    memset(g, 0, sizeof *g);
    if (stem_safetensors_load(path, -1, &g->file) != STEM_OK) fail_msg("%s", stem_last_error());
    if (stem_tensor_map_require(&g->file, "in.sample", path, &g->sample) != STEM_OK ||
        stem_tensor_map_require(&g->file, "in.timesteps", path, &g->timesteps) != STEM_OK ||
        stem_tensor_map_require(&g->file, "in.context", path, &g->context) != STEM_OK ||
        stem_tensor_map_require(&g->file, "out.eps", path, &g->eps) != STEM_OK)
        fail_msg("%s", stem_last_error());
    const char *m = stem_tensor_map_get_meta(&g->file, "model");
    const char *rt = stem_tensor_map_get_meta(&g->file, "rtol"), *at = stem_tensor_map_get_meta(&g->file, "atol");
    if (!m || !rt || !at) fail_msg("%s: metadata model/rtol/atol missing", path);
    snprintf(g->model, sizeof g->model, "%s", m);
    g->rtol = atof(rt);
    g->atol = atof(at);
}

/* Runs the UNet on host inputs, layer-major over slices of slice_frames samples
 * (0: stem_unet_forward); returns the output as a host f32 tensor (owned). */
static stem_status run_unet_sliced(stem_unet *u, const stem_tensor *sample, const stem_tensor *timesteps,
                                   const stem_tensor *context, const stem_unet_hooks *hooks, int64_t slice_frames,
                                   stem_tensor *out_host) {
    stem_backend *be = stem_unet_backend(u);
    stem_dtype dt = stem_unet_dtype(u);
    stem_tensor x, c, y;
    STEM_TRY(stem_tensor_to(sample, be, dt, &x));
    STEM_TRY(stem_tensor_to(context, be, dt, &c));
    stem_status s = stem_tensor_new(be, dt, 4, sample->shape, &y);
    stem_arena *arena = NULL;
    if (s == STEM_OK) s = stem_arena_create(be, 16u << 20, &arena);
    if (s == STEM_OK)
        s = slice_frames ? stem_unet_forward_sliced(u, arena, &x, (const float *)timesteps->data,
                                                    stem_numel(timesteps), &c, hooks, slice_frames, &y)
                         : stem_unet_forward(u, arena, &x, (const float *)timesteps->data, stem_numel(timesteps), &c,
                                             hooks, &y);
    if (s == STEM_OK) s = stem_tensor_to(&y, stem_cpu_backend(), STEM_F32, out_host);
    stem_arena_destroy(arena);
    stem_tensor_free(&x);
    stem_tensor_free(&c);
    stem_tensor_free(&y);
    return s;
}

static stem_status run_unet(stem_unet *u, const stem_tensor *sample, const stem_tensor *timesteps,
                            const stem_tensor *context, const stem_unet_hooks *hooks, stem_tensor *out_host) {
    return run_unet_sliced(u, sample, timesteps, context, hooks, 0, out_host);
}

static int compare(const char *label, const stem_tensor *got, const stem_tensor *want, double rtol, double atol) {
    stem_compare cmp;
    char desc[256];
    if (stem_compare_tensors(got, want, rtol, atol, &cmp) != STEM_OK) fail_msg("%s: %s", label, stem_last_error());
    stem_compare_describe(&cmp, rtol, atol, desc, sizeof desc);
    print_message("%s: %s\n", label, desc);
    return (int)cmp.violations;
}

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

/* ---- hooks ------------------------------------------------------------------------------ */

typedef struct hook_log {
    int attn_calls, next_index, bad_order;
    int taps[STEM_TAP_KIND_COUNT];
    int pnp_resnet_seen; /* up_blocks.1.resnets.1 residual */
    char first_name[128], last_name[128];
    bool zero_attention; /* override: self-attention output = 0 */
} hook_log;

static stem_status counting_attention(void *user, const stem_attn_site *site, const stem_tensor *q,
                                      const stem_tensor *k, const stem_tensor *v, stem_tensor *out) {
    hook_log *log = user;
    if (site->index != log->next_index) log->bad_order++;
    log->next_index = site->index + 1;
    if (log->attn_calls == 0) snprintf(log->first_name, sizeof log->first_name, "%s", site->name);
    snprintf(log->last_name, sizeof log->last_name, "%s", site->name);
    log->attn_calls++;
    if (q->shape[0] != site->batch || q->shape[1] != site->tokens || q->shape[2] != site->channels ||
        site->tokens != site->height * site->width || site->heads * site->head_dim != site->channels)
        return stem_fail(STEM_E_SHAPE, "site %s: inconsistent shapes", site->name);
    if (log->zero_attention) return stem_affine(q, 0.0f, 0.0f, out);
    return stem_self_attention_default(NULL, site, q, k, v, out);
}

static stem_status counting_tap(void *user, const stem_unet_tap *tap) {
    hook_log *log = user;
    log->taps[tap->kind]++;
    if (tap->kind == STEM_TAP_RESNET_RESIDUAL && strcmp(tap->name, "up_blocks.1.resnets.1") == 0)
        log->pnp_resnet_seen++;
    if (tap->kind == STEM_TAP_UP_CONCAT && (!tap->skip || tap->skip->shape[2] != tap->x->shape[2]))
        return stem_fail(STEM_E_SHAPE, "%s: skip and hidden state differ in size", tap->name);
    return STEM_OK;
}

static void hooks_contract(void **state) {
    (void)state;
    char path[2048];
    snprintf(path, sizeof path, "%s/golden/unet/tiny-sd1__t981_13x9.safetensors", test_refdata_dir());
    golden_case g;
    golden_open(path, &g);
    stem_unet *u = load_unet("tiny-sd1", stem_cpu_backend(), STEM_F32);
    int n = stem_unet_attn1_count(u);
    /* tiny-sd1: down_blocks 0, 1 (1 attention each), mid (1), up_blocks 1, 2 (2 each) */
    assert_int_equal(n, 7);
    assert_string_equal(stem_unet_attn1_name(u, 0), "down_blocks.0.attentions.0.transformer_blocks.0.attn1");
    assert_string_equal(stem_unet_attn1_name(u, 2), "mid_block.attentions.0.transformer_blocks.0.attn1");
    assert_string_equal(stem_unet_attn1_name(u, 6), "up_blocks.2.attentions.1.transformer_blocks.0.attn1");
    assert_null(stem_unet_attn1_name(u, 7));

    stem_tensor plain, hooked, zeroed;
    if (run_unet(u, g.sample, g.timesteps, g.context, NULL, &plain) != STEM_OK) fail_msg("%s", stem_last_error());
    hook_log log = {0};
    stem_unet_hooks hooks = {.self_attention = counting_attention, .self_attention_user = &log,
                             .tap = counting_tap, .tap_user = &log, .tap_mask = ~0u};
    if (run_unet(u, g.sample, g.timesteps, g.context, &hooks, &hooked) != STEM_OK) fail_msg("%s", stem_last_error());
    assert_int_equal(log.attn_calls, n);
    assert_int_equal(log.bad_order, 0);
    assert_string_equal(log.first_name, stem_unet_attn1_name(u, 0));
    assert_string_equal(log.last_name, stem_unet_attn1_name(u, n - 1));
    for (int k = STEM_TAP_NORM1; k <= STEM_TAP_ATTN1_OUT; k++) assert_int_equal(log.taps[k], n);
    /* resnets: down 1 + 1 + 1, mid 2, up 2 + 2 + 2 = 11; concats: one per up resnet */
    assert_int_equal(log.taps[STEM_TAP_RESNET_RESIDUAL], 11);
    assert_int_equal(log.taps[STEM_TAP_UP_CONCAT], 6);
    assert_int_equal(log.pnp_resnet_seen, 1);
    /* hooks that only observe change nothing, bit for bit */
    assert_int_equal(compare("observing hooks vs none", &hooked, &plain, 0, 0), 0);
    /* an overriding hook is really used */
    hook_log zlog = {.zero_attention = true};
    hooks.self_attention_user = &zlog;
    hooks.tap = NULL;
    if (run_unet(u, g.sample, g.timesteps, g.context, &hooks, &zeroed) != STEM_OK) fail_msg("%s", stem_last_error());
    stem_compare cmp;
    assert_int_equal(stem_compare_tensors(&zeroed, &plain, 1e-3, 1e-3, &cmp), STEM_OK);
    print_message("zeroed self-attention vs default: max abs %.3g\n", cmp.max_abs);
    assert_true(cmp.max_abs > 1e-3);

    stem_tensor_free(&plain);
    stem_tensor_free(&hooked);
    stem_tensor_free(&zeroed);
    stem_unet_free(u);
    stem_tensor_map_free(&g.file);
}

static stem_status failing_tap(void *user, const stem_unet_tap *tap) {
    (void)user;
    (void)tap;
    return stem_fail(STEM_E_ARG, "test hook says no");
}

static void hook_error_propagates(void **state) {
    (void)state;
    char path[2048];
    snprintf(path, sizeof path, "%s/golden/unet/tiny-sd2__mixed_8x8.safetensors", test_refdata_dir());
    golden_case g;
    golden_open(path, &g);
    stem_unet *u = load_unet("tiny-sd2", stem_cpu_backend(), STEM_F32);
    stem_unet_hooks hooks = {.tap = failing_tap, .tap_mask = STEM_TAP_BIT(STEM_TAP_RESNET_RESIDUAL)};
    stem_tensor out;
    assert_int_equal(run_unet(u, g.sample, g.timesteps, g.context, &hooks, &out), STEM_E_ARG);
    print_message("error: %s\n", stem_last_error());
    assert_non_null(strstr(stem_last_error(), "test hook says no"));
    assert_non_null(strstr(stem_last_error(), "down_blocks.0.resnets.0"));
    stem_unet_free(u);
    stem_tensor_map_free(&g.file);
}

/* One shared context row [1, 77, X] gives the same result as that row repeated. */
static void context_broadcast(void **state) {
    (void)state;
    char path[2048];
    snprintf(path, sizeof path, "%s/golden/unet/tiny-sd2__t1_13x9.safetensors", test_refdata_dir());
    golden_case g;
    golden_open(path, &g);
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

/* ---- layer-major (sliced) forward --------------------------------------------------------- */

/* A two-phase attn1 that gives the default attention back: phase 1 keeps every sample's
 * k, v [B, N, C]; phase 2 attends each slice's q to its own samples' rows. It also
 * checks that the slices come in order and cover all samples. */
typedef struct collecting {
    stem_tensor k, v; /* [B, N, C] of the current site */
    int site, errors;
    int64_t next_frame;  /* the frame0 the next collect must have */
    int collects, attends;
    int taps[STEM_TAP_KIND_COUNT];
    int64_t tap_frames[STEM_TAP_KIND_COUNT]; /* samples seen per tap kind */
} collecting;

static stem_status collect_kv(void *user, const stem_attn_site *site, const stem_tensor *k, const stem_tensor *v) {
    collecting *c = user;
    if (site->frame0 == 0) {
        stem_tensor_free(&c->k);
        stem_tensor_free(&c->v);
        int64_t shape[3] = {site->frames_total, site->tokens, site->channels};
        STEM_TRY(stem_tensor_new(k->backend, k->dtype, 3, shape, &c->k));
        STEM_TRY(stem_tensor_new(k->backend, k->dtype, 3, shape, &c->v));
        c->site = site->index;
        c->next_frame = 0;
    }
    if (site->index != c->site || site->frame0 != c->next_frame || k->shape[0] != site->batch) c->errors++;
    c->next_frame = site->frame0 + site->batch;
    c->collects++;
    stem_tensor kr, vr;
    STEM_TRY(stem_tensor_narrow0(&c->k, site->frame0, site->batch, &kr));
    STEM_TRY(stem_tensor_narrow0(&c->v, site->frame0, site->batch, &vr));
    STEM_TRY(stem_tensor_copy(k, &kr));
    return stem_tensor_copy(v, &vr);
}

static stem_status attend_own_frames(void *user, const stem_attn_site *site, const stem_tensor *q,
                                     const stem_tensor *k, const stem_tensor *v, stem_tensor *out) {
    collecting *c = user;
    /* phase 2 only after the last slice of this site was collected; no k, v */
    if (k || v || site->index != c->site || c->next_frame != site->frames_total) c->errors++;
    c->attends++;
    stem_tensor kr, vr;
    STEM_TRY(stem_tensor_narrow0(&c->k, site->frame0, site->batch, &kr));
    STEM_TRY(stem_tensor_narrow0(&c->v, site->frame0, site->batch, &vr));
    return stem_self_attention_default(NULL, site, q, &kr, &vr, out);
}

static stem_status count_slice_taps(void *user, const stem_unet_tap *tap) {
    collecting *c = user;
    c->taps[tap->kind]++;
    c->tap_frames[tap->kind] += tap->x->shape[0];
    return STEM_OK;
}

/* 5 samples of 13x9 (the golden's 2, then noise), a timestep each, one shared context row. */
static void five_samples(const golden_case *g, stem_tensor *sample, stem_tensor *timesteps, stem_tensor *context) {
    stem_backend *cpu = stem_cpu_backend();
    int64_t s[4] = {5, g->sample->shape[1], g->sample->shape[2], g->sample->shape[3]}, nt = 5;
    assert_int_equal(stem_tensor_new(cpu, STEM_F32, 4, s, sample), STEM_OK);
    assert_int_equal(stem_philox_normal(11, 0, 0, 0, sample), STEM_OK);
    stem_tensor first;
    assert_int_equal(stem_tensor_narrow0(sample, 0, 2, &first), STEM_OK);
    assert_int_equal(stem_tensor_copy(g->sample, &first), STEM_OK);
    assert_int_equal(stem_tensor_new(cpu, STEM_F32, 1, &nt, timesteps), STEM_OK);
    static const float ts[5] = {981, 1, 501, 250, 741};
    memcpy(timesteps->data, ts, sizeof ts);
    assert_int_equal(stem_tensor_narrow0(g->context, 0, 1, context), STEM_OK);
}

/* stem_unet_forward_sliced over slices of 1, 2 (2 + 2 + 1) and 5 samples equals the
 * one-shot forward at the golden's tolerance (float rounding: the GEMM shapes change),
 * with the default attention and with a two-phase collect/attend hook pair doing the
 * same attention; every slice fires its taps; slices of 1 match the diffusers golden. */
static void sliced_forward(void **state) {
    (void)state;
    char path[2048];
    snprintf(path, sizeof path, "%s/golden/unet/tiny-sd1__t981_13x9.safetensors", test_refdata_dir());
    golden_case g;
    golden_open(path, &g);
    stem_unet *u = load_unet("tiny-sd1", stem_cpu_backend(), STEM_F32);
    const int n_sites = stem_unet_attn1_count(u);
    stem_tensor sample, timesteps, context, whole, sliced;
    five_samples(&g, &sample, &timesteps, &context);
    if (run_unet(u, &sample, &timesteps, &context, NULL, &whole) != STEM_OK) fail_msg("%s", stem_last_error());
    static const int64_t slices[3] = {1, 2, 5};
    for (int i = 0; i < 3; i++) {
        const int64_t n_slices = (5 + slices[i] - 1) / slices[i];
        char label[96];
        snprintf(label, sizeof label, "slices of %lld, default attention", (long long)slices[i]);
        if (run_unet_sliced(u, &sample, &timesteps, &context, NULL, slices[i], &sliced) != STEM_OK)
            fail_msg("%s", stem_last_error());
        /* Measured max |sliced - whole| over the CI matrix (scripts/test.sh; Zen 5): 8.9e-7
         * (one thread) .. 1.3e-6 (OpenBLAS SkylakeX), against the golden's 2e-5: >= 15x. */
        assert_int_equal(compare(label, &sliced, &whole, g.rtol, g.atol), 0);
        stem_tensor_free(&sliced);

        collecting c = {.site = -1};
        stem_unet_hooks two_phase = {.self_attention = attend_own_frames, .self_attention_collect = collect_kv,
                                     .self_attention_user = &c, .tap = count_slice_taps, .tap_user = &c,
                                     .tap_mask = ~0u};
        snprintf(label, sizeof label, "slices of %lld, two-phase attn1", (long long)slices[i]);
        if (run_unet_sliced(u, &sample, &timesteps, &context, &two_phase, slices[i], &sliced) != STEM_OK)
            fail_msg("%s", stem_last_error());
        assert_int_equal(compare(label, &sliced, &whole, g.rtol, g.atol), 0);
        stem_tensor_free(&sliced);
        assert_int_equal(c.errors, 0);
        assert_int_equal(c.collects, n_sites * n_slices);
        assert_int_equal(c.attends, n_sites * n_slices);
        /* every per-slice tap once per slice and site, over all 5 samples */
        for (int k = STEM_TAP_NORM1; k <= STEM_TAP_ATTN1_OUT; k++) {
            assert_int_equal(c.taps[k], n_sites * n_slices);
            assert_int_equal(c.tap_frames[k], 5 * n_sites);
        }
        assert_int_equal(c.taps[STEM_TAP_RESNET_RESIDUAL], 11 * n_slices);
        assert_int_equal(c.tap_frames[STEM_TAP_RESNET_RESIDUAL], 11 * 5);
        assert_int_equal(c.taps[STEM_TAP_UP_CONCAT], 6); /* all samples at once */
        stem_tensor_free(&c.k);
        stem_tensor_free(&c.v);
    }
    /* against diffusers, one sample at a time */
    if (run_unet_sliced(u, g.sample, g.timesteps, g.context, NULL, 1, &sliced) != STEM_OK)
        fail_msg("%s", stem_last_error());
    assert_int_equal(compare("slices of 1 vs golden", &sliced, g.eps, g.rtol, g.atol), 0);
    stem_tensor_free(&sliced);
    stem_tensor_free(&whole);
    stem_tensor_free(&sample);
    stem_tensor_free(&timesteps);
    stem_unet_free(u);
    stem_tensor_map_free(&g.file);
}

/* Bad inputs to the forward are refused with the shapes. */
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
    /* a collect hook needs the self_attention hook that reads what it collected */
    stem_unet_hooks collect_only = {.self_attention_collect = collect_kv};
    assert_int_equal(stem_unet_forward_sliced(u, arena, &x, t, 2, &c, &collect_only, 1, &y), STEM_E_ARG);
    print_message("error: %s\n", stem_last_error());
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
        cmocka_unit_test(hooks_contract),         cmocka_unit_test(hook_error_propagates),
        cmocka_unit_test(context_broadcast),      cmocka_unit_test(forward_input_errors),
        cmocka_unit_test(sliced_forward),
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
