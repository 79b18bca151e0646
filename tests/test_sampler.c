/* The sampler (src/pipeline/sampler.c) and the latent store (src/pipeline/latent_store.c):
 * the DDIM loop's order of steps and timesteps in both directions against the DDIM steps
 * taken by hand, resuming from a step, how a callback stops it, the frame batching of
 * each attention mode and scope, and the per-step files (names of inv/rec/edit, a frame
 * range read back, the resume point checking every saved file). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stem.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "pipeline/latent_store.h"
#include "pipeline/sampler.h"

#define OK(expr)                                                          \
    do {                                                                  \
        stem_status s_ = (expr);                                          \
        if (s_ != STEM_OK) fail_msg("%s: %s", #expr, stem_last_error()); \
    } while (0)
#define assert_contains(haystack, needle)                                                  \
    do {                                                                                   \
        const char *h_ = (haystack), *n_ = (needle);                                       \
        if (!strstr(h_, n_)) fail_msg("message \"%s\" does not contain \"%s\"", h_, n_); \
    } while (0)

enum { S = 5 }; /* timesteps 801, 601, 401, 201, 1 (leading, T = 1000) */

static void ddim5(stem_ddim *d) {
    stem_ddim_config c;
    stem_ddim_config_default(&c);
    OK(stem_ddim_init(d, &c, S));
}

static void host_tensor(int64_t f, stem_tensor *t, float base) {
    int64_t shape[4] = {f, 4, 2, 2};
    OK(stem_tensor_new(stem_cpu_backend(), STEM_F32, 4, shape, t));
    float *p = t->data;
    for (int64_t i = 0; i < f * 16; i++) p[i] = base + 0.01f * (float)((i * 7) % 23) - 0.1f;
}

static void timesteps_by_direction(void **state) {
    (void)state;
    stem_ddim d;
    ddim5(&d);
    const int want_inv[S] = {1, 201, 401, 601, 801}, want_sample[S] = {801, 601, 401, 201, 1};
    for (int i = 0; i < S; i++) {
        assert_int_equal(stem_sampler_timestep(&d, STEM_SAMPLER_INVERT, i), want_inv[i]);
        assert_int_equal(stem_sampler_timestep(&d, STEM_SAMPLER_SAMPLE, i), want_sample[i]);
    }
    assert_string_equal(stem_phase_name(STEM_PHASE_EDITING), "editing");
    stem_ddim_free(&d);
}

/* ---- the loop with a model that returns a known eps ---------------------------------- */

typedef struct fake {
    int calls, steps_seen[S], ts_seen[S];
    int reported[S], n_reported;
    int fail_eps_at, stop_at; /* -1: never */
} fake;

/* eps = 0.1 (step + 1) + 0.001 x, elementwise */
static stem_status fake_eps(void *user, int step, int t, const stem_tensor *x, stem_tensor *eps) {
    fake *f = user;
    if (step == f->fail_eps_at) return stem_fail(STEM_E_ARG, "the model failed");
    f->steps_seen[f->calls] = step;
    f->ts_seen[f->calls++] = t;
    const float *xp = x->data;
    float *ep = eps->data;
    for (int64_t i = 0; i < stem_numel(x); i++) ep[i] = 0.1f * (float)(step + 1) + 0.001f * xp[i];
    return STEM_OK;
}

static stem_status fake_on_step(void *user, stem_phase phase, int step, int steps, int t, const stem_tensor *x) {
    fake *f = user;
    (void)x;
    assert_int_equal(phase, STEM_PHASE_RECONSTRUCTION);
    assert_int_equal(steps, S);
    assert_int_equal(t, f->ts_seen[f->calls - 1]);
    f->reported[f->n_reported++] = step;
    if (step == f->stop_at) return stem_fail(STEM_E_IO, "stopped by the callback");
    return STEM_OK;
}

/* x after steps first..S-1 taken by hand with the DDIM steps */
static void by_hand(const stem_ddim *d, stem_sampler_dir dir, int first, stem_tensor *x) {
    stem_tensor eps, next;
    host_tensor(x->shape[0], &eps, 0);
    host_tensor(x->shape[0], &next, 0);
    for (int i = first; i < S; i++) {
        int t = dir == STEM_SAMPLER_INVERT ? d->timesteps[S - 1 - i] : d->timesteps[i];
        float *ep = eps.data, *xp = x->data;
        for (int64_t k = 0; k < stem_numel(x); k++) ep[k] = 0.1f * (float)(i + 1) + 0.001f * xp[k];
        OK(dir == STEM_SAMPLER_INVERT ? stem_ddim_invert_step(d, t, x, &eps, &next)
                                      : stem_ddim_sample_step(d, t, x, &eps, &next));
        OK(stem_tensor_copy(&next, x));
    }
    stem_tensor_free(&eps);
    stem_tensor_free(&next);
}

static void run_and_compare(stem_sampler_dir dir, stem_phase phase, int first) {
    stem_ddim d;
    ddim5(&d);
    stem_tensor x, want;
    host_tensor(3, &x, 0.5f);
    host_tensor(3, &want, 0.5f);
    fake f = {.fail_eps_at = -1, .stop_at = -1};
    const stem_sampler_loop loop = {.ddim = &d, .dir = dir, .phase = phase, .eps = fake_eps, .eps_user = &f,
                                    .on_step = phase == STEM_PHASE_RECONSTRUCTION ? fake_on_step : NULL, .user = &f};
    OK(stem_sampler_run(&loop, first, &x));
    by_hand(&d, dir, first, &want);
    assert_int_equal(f.calls, S - first);
    for (int i = first; i < S; i++) {
        assert_int_equal(f.steps_seen[i - first], i);
        assert_int_equal(f.ts_seen[i - first], stem_sampler_timestep(&d, dir, i));
    }
    if (loop.on_step) {
        assert_int_equal(f.n_reported, S - first);
        for (int i = first; i < S; i++) assert_int_equal(f.reported[i - first], i);
    }
    assert_memory_equal(x.data, want.data, stem_nbytes(&x)); /* the same operations: bit for bit */
    stem_tensor_free(&x);
    stem_tensor_free(&want);
    stem_ddim_free(&d);
}

static void loop_inverts_ascending(void **state) {
    (void)state;
    run_and_compare(STEM_SAMPLER_INVERT, STEM_PHASE_INVERSION, 0);
}

static void loop_samples_descending(void **state) {
    (void)state;
    run_and_compare(STEM_SAMPLER_SAMPLE, STEM_PHASE_RECONSTRUCTION, 0);
}

static void loop_resumes_from_a_step(void **state) {
    (void)state;
    run_and_compare(STEM_SAMPLER_SAMPLE, STEM_PHASE_RECONSTRUCTION, 3);
    run_and_compare(STEM_SAMPLER_INVERT, STEM_PHASE_INVERSION, 2);
}

static void loop_stops_with_the_callbacks_status(void **state) {
    (void)state;
    stem_ddim d;
    ddim5(&d);
    stem_tensor x;
    host_tensor(2, &x, 0);
    fake f = {.fail_eps_at = -1, .stop_at = 1};
    stem_sampler_loop loop = {.ddim = &d, .dir = STEM_SAMPLER_SAMPLE, .phase = STEM_PHASE_RECONSTRUCTION,
                              .eps = fake_eps, .eps_user = &f, .on_step = fake_on_step, .user = &f};
    assert_int_equal(stem_sampler_run(&loop, 0, &x), STEM_E_IO);
    assert_string_equal(stem_last_error(), "stopped by the callback"); /* the caller's message, as is */
    assert_int_equal(f.calls, 2);
    /* a model failure names the step, counted from 1, and its timestep */
    f = (fake){.fail_eps_at = 1, .stop_at = -1};
    assert_int_equal(stem_sampler_run(&loop, 0, &x), STEM_E_ARG);
    assert_contains(stem_last_error(), "reconstruction step 2 of 5 (t = 601)");
    assert_contains(stem_last_error(), "the model failed");
    stem_tensor_free(&x);
    stem_ddim_free(&d);
}

/* ---- frame batching ----------------------------------------------------------------------- */

static void batching(stem_sa_mode mode, stem_em_scope scope, int64_t batch, int64_t unet_frames, int64_t per_eval,
                     int64_t slice, bool layer_major) {
    stem_sa_options sa;
    stem_sa_options_default(&sa);
    sa.mode = mode, sa.scope = scope, sa.batch_size = batch;
    stem_frame_batching b;
    stem_frame_batching_plan(&sa, unet_frames, 8, &b);
    assert_int_equal(b.frames, 8);
    assert_int_equal(b.per_eval, per_eval);
    assert_int_equal(b.slice, slice);
    assert_int_equal(b.layer_major, layer_major);
}

static void frame_batching_by_mode_and_scope(void **state) {
    (void)state;
    batching(STEM_SA_STEM, STEM_SCOPE_VIDEO, 8, 0, 8, 8, false);    /* all at once */
    batching(STEM_SA_STEM, STEM_SCOPE_VIDEO, 8, 8, 8, 8, false);
    batching(STEM_SA_STEM, STEM_SCOPE_VIDEO, 8, 3, 8, 3, true);     /* one EM over all: layer-major */
    batching(STEM_SA_INFLATED, STEM_SCOPE_VIDEO, 8, 3, 8, 3, true);
    batching(STEM_SA_FRAME, STEM_SCOPE_VIDEO, 8, 3, 3, 3, false);   /* frames are independent */
    batching(STEM_SA_STEM, STEM_SCOPE_CHUNK, 2, 5, 4, 4, false);    /* whole chunks: 2 of 2 frames */
    batching(STEM_SA_STEM, STEM_SCOPE_CHUNK, 2, 1, 2, 2, false);    /* never less than a chunk */
    batching(STEM_SA_INFLATED, STEM_SCOPE_CHUNK, 4, 0, 8, 8, false);
}

/* ---- the latent store --------------------------------------------------------------------- */

static char *tmp_dir(void) {
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/stem_test_sampler_XXXXXX");
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void store_names_each_kind(void **state) {
    (void)state;
    stem_ddim d;
    ddim5(&d);
    stem_latent_store st;
    char path[PATH_MAX + 64];
    const struct {
        stem_phase phase;
        int step;
        const char *want;
    } cases[] = {
        {STEM_PHASE_INVERSION, 0, "/x/latents/inv_000_t0001.safetensors"},
        {STEM_PHASE_INVERSION, 4, "/x/latents/inv_004_t0801.safetensors"},
        {STEM_PHASE_RECONSTRUCTION, 0, "/x/latents/rec_000_t0801.safetensors"},
        {STEM_PHASE_EDITING, 0, "/x/latents/edit_000_t0801.safetensors"},
        {STEM_PHASE_EDITING, 4, "/x/latents/edit_004_t0001.safetensors"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        OK(stem_latent_store_for_phase(&st, "/x/latents", cases[i].phase, &d));
        OK(stem_latent_store_path(&st, cases[i].step, path, sizeof path));
        assert_string_equal(path, cases[i].want);
    }
    assert_int_equal(stem_latent_store_path(&st, S, path, sizeof path), STEM_E_ARG);
    const char *bad[] = {"", "Edit", "a/b", "much_too_long_kind"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(stem_latent_store_init(&st, "/x", bad[i], STEM_PHASE_EDITING, STEM_SAMPLER_SAMPLE, &d),
                         STEM_E_ARG);
    OK(stem_latent_store_init(&st, "/x", "edit2", STEM_PHASE_EDITING, STEM_SAMPLER_SAMPLE, &d));
    stem_ddim_free(&d);
}

static void store_saves_and_reads_a_frame_range(void **state) {
    (void)state;
    stem_ddim d;
    ddim5(&d);
    const char *dir = tmp_dir();
    stem_latent_store st;
    OK(stem_latent_store_for_phase(&st, dir, STEM_PHASE_EDITING, &d));
    stem_tensor x, part, all;
    host_tensor(3, &x, 1.0f);
    OK(stem_latent_store_save(&st, 2, &x));
    char path[PATH_MAX + 64];
    OK(stem_latent_store_path(&st, 2, path, sizeof path));
    stem_tensor_map m;
    OK(stem_safetensors_load(path, -1, &m));
    assert_string_equal(stem_tensor_map_get_meta(&m, "phase"), "editing");
    assert_string_equal(stem_tensor_map_get_meta(&m, "timestep"), "401");
    stem_tensor_map_free(&m);
    host_tensor(2, &part, 0);
    OK(stem_latent_store_load(&st, 2, 1, &part)); /* frames 1, 2 */
    assert_memory_equal(part.data, (float *)x.data + 16, 2 * 16 * sizeof(float));
    assert_int_equal(stem_latent_store_load(&st, 2, 2, &part), STEM_E_SHAPE); /* frames 2, 3: no frame 3 */
    host_tensor(3, &all, 0);
    OK(stem_latent_store_load(&st, 2, 0, &all));
    assert_memory_equal(all.data, x.data, stem_nbytes(&x));
    assert_int_equal(stem_latent_store_load(&st, 3, 0, &all), STEM_E_IO); /* never saved */
    assert_contains(stem_last_error(), "edit_003_t0201.safetensors: missing");
    stem_tensor_free(&x);
    stem_tensor_free(&part);
    stem_tensor_free(&all);
    stem_remove_tree(dir);
    stem_ddim_free(&d);
}

static void store_resume_point_checks_every_file(void **state) {
    (void)state;
    stem_ddim d;
    ddim5(&d);
    const char *dir = tmp_dir();
    stem_latent_store st;
    OK(stem_latent_store_for_phase(&st, dir, STEM_PHASE_RECONSTRUCTION, &d));
    stem_tensor x, steps[3];
    host_tensor(2, &x, 0);
    int last = 7;
    OK(stem_latent_store_resume_point(&st, &x, &last));
    assert_int_equal(last, -1); /* nothing saved yet */
    for (int i = 0; i < 3; i++) {
        host_tensor(2, &steps[i], (float)i);
        OK(stem_latent_store_save(&st, i, &steps[i]));
    }
    OK(stem_latent_store_resume_point(&st, &x, &last));
    assert_int_equal(last, 2);
    assert_memory_equal(x.data, steps[2].data, stem_nbytes(&x));
    /* damage the first step's data (its last byte): the last step is fine, the resume is not */
    char path[PATH_MAX + 64];
    OK(stem_latent_store_path(&st, 0, path, sizeof path));
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, -1, SEEK_END);
    int c = fgetc(f);
    fseek(f, -1, SEEK_END);
    fputc(c ^ 1, f);
    fclose(f);
    assert_int_equal(stem_latent_store_resume_point(&st, &x, &last), STEM_E_FORMAT);
    assert_contains(stem_last_error(), "rec_000_t0801.safetensors");
    assert_contains(stem_last_error(), "checksum");
    for (int i = 0; i < 3; i++) stem_tensor_free(&steps[i]);
    stem_tensor_free(&x);
    stem_remove_tree(dir);
    stem_ddim_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(timesteps_by_direction),
        cmocka_unit_test(loop_inverts_ascending),
        cmocka_unit_test(loop_samples_descending),
        cmocka_unit_test(loop_resumes_from_a_step),
        cmocka_unit_test(loop_stops_with_the_callbacks_status),
        cmocka_unit_test(frame_batching_by_mode_and_scope),
        cmocka_unit_test(store_names_each_kind),
        cmocka_unit_test(store_saves_and_reads_a_frame_range),
        cmocka_unit_test(store_resume_point_checks_every_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
