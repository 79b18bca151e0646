/* The DDIM scheduler (src/stem/ddim.c) beyond the golden files (ddim__*): the SD 1.5
 * schedule's known values, scheduler_config.json parsing and its refusals, the
 * inversion/sampling round trip, and argument errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stem.h"
#include "stem/ddim.h"

#define assert_contains(haystack, needle)                                                  \
    do {                                                                                   \
        const char *h_ = (haystack), *n_ = (needle);                                       \
        if (!strstr(h_, n_)) fail_msg("message \"%s\" does not contain \"%s\"", h_, n_); \
    } while (0)
#define OK(expr)                                                              \
    do {                                                                      \
        stem_status s_ = (expr);                                              \
        if (s_ != STEM_OK) fail_msg("%s: %s", #expr, stem_last_error());     \
    } while (0)

/* runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json */
static const char *SD15 =
    "{\"_class_name\": \"PNDMScheduler\", \"_diffusers_version\": \"0.6.0\", \"beta_end\": 0.012,"
    " \"beta_schedule\": \"scaled_linear\", \"beta_start\": 0.00085, \"num_train_timesteps\": 1000,"
    " \"set_alpha_to_one\": false, \"skip_prk_steps\": true, \"steps_offset\": 1, \"trained_betas\": null,"
    " \"clip_sample\": false}";

static void sd15_schedule(void **state) {
    stem_ddim_config c;
    OK(stem_ddim_config_parse(SD15, "sd15", &c));
    stem_ddim_config d;
    stem_ddim_config_default(&d);
    assert_int_equal(c.train_steps, d.train_steps);
    assert_true(c.beta_start == d.beta_start && c.beta_end == d.beta_end);
    assert_int_equal(c.schedule, STEM_BETAS_SCALED_LINEAR);
    assert_int_equal(c.steps_offset, 1);
    assert_false(c.set_alpha_to_one);
    assert_false(c.clip_sample);
    assert_int_equal(c.spacing, STEM_SPACING_LEADING);

    stem_ddim s;
    OK(stem_ddim_init(&s, &c, 50));
    assert_int_equal(s.step_ratio, 20);
    for (int i = 0; i < 50; i++) assert_int_equal(s.timesteps[i], 981 - 20 * i); /* 981, 961, ..., 1 */
    assert_true(stem_ddim_alpha(&s, 0) == 1.0 - 0.00085);                        /* abar_0 = 1 - beta_0 */
    assert_true(s.final_alpha_cumprod == stem_ddim_alpha(&s, 0));               /* set_alpha_to_one false */
    assert_true(stem_ddim_alpha_prev(&s, 1) == s.final_alpha_cumprod);
    assert_true(stem_ddim_alpha_prev(&s, 981) == stem_ddim_alpha(&s, 961));
    /* diffusers' float32 DDIMScheduler.alphas_cumprod, to its precision */
    assert_true(fabs(stem_ddim_alpha(&s, 981) / 0.0057755001 - 1.0) < 2e-6);
    assert_true(fabs(stem_ddim_alpha(&s, 999) / 0.0046600985 - 1.0) < 2e-6);
    for (int t = 1; t < 1000; t++) assert_true(stem_ddim_alpha(&s, t) < stem_ddim_alpha(&s, t - 1));
    stem_ddim_free(&s);

    OK(stem_ddim_init(&s, &c, 10));
    for (int i = 0; i < 10; i++) assert_int_equal(s.timesteps[i], 901 - 100 * i);
    stem_ddim_free(&s);
    c.set_alpha_to_one = true;
    OK(stem_ddim_init(&s, &c, 10));
    assert_true(s.final_alpha_cumprod == 1.0);
    stem_ddim_free(&s);
}

static stem_tensor rand_tensor(unsigned seed) {
    stem_tensor t;
    OK(stem_tensor_new(stem_cpu_backend(), STEM_F32, 4, (int64_t[]){2, 4, 6, 5}, &t));
    srand(seed);
    for (int64_t i = 0; i < stem_numel(&t); i++) ((float *)t.data)[i] = (float)((double)rand() / RAND_MAX * 2.0 - 1.0);
    return t;
}

/* Inverting to t and sampling back from t with the same eps returns x. */
static void invert_then_sample_round_trip(void **state) {
    stem_ddim_config c;
    stem_ddim_config_default(&c);
    stem_ddim s;
    OK(stem_ddim_init(&s, &c, 50));
    stem_tensor x = rand_tensor(1), eps = rand_tensor(2), up = rand_tensor(3), back = rand_tensor(4);
    int ts[] = {1, 21, 481, 981};
    for (int i = 0; i < 4; i++) {
        OK(stem_ddim_invert_step(&s, ts[i], &x, &eps, &up));
        OK(stem_ddim_sample_step(&s, ts[i], &up, &eps, &back));
        double worst = 0.0;
        for (int64_t j = 0; j < stem_numel(&x); j++) {
            double e = fabs(((float *)back.data)[j] - ((float *)x.data)[j]);
            if (!(e <= worst)) worst = e; /* not fmax, which skips NaN: a NaN must fail */
        }
        print_message("t=%d: invert then sample: max |x' - x| %.3g\n", ts[i], worst);
        assert_true(worst < 2e-5);
    }
    /* add_noise(z0, eps, t) = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps */
    OK(stem_ddim_add_noise(&s, 500, &x, &eps, &up));
    double a = stem_ddim_alpha(&s, 500);
    for (int64_t j = 0; j < stem_numel(&x); j++)
        assert_float_equal(((float *)up.data)[j],
                           sqrt(a) * ((float *)x.data)[j] + sqrt(1.0 - a) * ((float *)eps.data)[j], 1e-6);
    /* errors: t not in the schedule; aliasing output */
    assert_int_equal(stem_ddim_invert_step(&s, 500, &x, &eps, &up), STEM_E_ARG);
    assert_contains(stem_last_error(), "not one of the 50-step schedule's");
    assert_int_equal(stem_ddim_add_noise(&s, 1000, &x, &eps, &up), STEM_E_ARG);
    assert_int_equal(stem_ddim_sample_step(&s, 981, &x, &eps, &x), STEM_E_ARG);
    stem_tensor *all[] = {&x, &eps, &up, &back};
    for (int i = 0; i < 4; i++) stem_tensor_free(all[i]);
    stem_ddim_free(&s);
}

static void config_defaults_and_refusals(void **state) {
    stem_ddim_config c;
    /* absent keys: DDIMScheduler's defaults */
    OK(stem_ddim_config_parse("{}", "empty", &c));
    assert_int_equal(c.schedule, STEM_BETAS_LINEAR);
    assert_true(c.beta_start == 0.0001 && c.beta_end == 0.02);
    assert_true(c.set_alpha_to_one);
    assert_int_equal(c.steps_offset, 0);

    assert_int_equal(stem_ddim_config_parse("{\"prediction_type\": \"v_prediction\"}", "cfg.json", &c), STEM_E_UNSUPPORTED);
    assert_contains(stem_last_error(), "cfg.json: prediction_type \"v_prediction\" is not supported");
    OK(stem_ddim_config_parse("{\"prediction_type\": \"epsilon\"}", "cfg.json", &c));
    assert_int_equal(stem_ddim_config_parse("{\"beta_schedule\": \"squaredcos_cap_v2\"}", "cfg.json", &c), STEM_E_UNSUPPORTED);
    assert_contains(stem_last_error(), "squaredcos_cap_v2");
    assert_int_equal(stem_ddim_config_parse("{\"trained_betas\": [0.1, 0.2]}", "cfg.json", &c), STEM_E_UNSUPPORTED);
    assert_int_equal(stem_ddim_config_parse("{\"rescale_betas_zero_snr\": true}", "cfg.json", &c), STEM_E_UNSUPPORTED);
    assert_int_equal(stem_ddim_config_parse("{\"timestep_spacing\": \"karras\"}", "cfg.json", &c), STEM_E_UNSUPPORTED);
    assert_int_equal(stem_ddim_config_parse("{\"steps_offset\": 1.5}", "cfg.json", &c), STEM_E_FORMAT);
    assert_contains(stem_last_error(), "steps_offset");
    assert_int_equal(stem_ddim_config_parse("{\"beta_start\": \"x\"}", "cfg.json", &c), STEM_E_FORMAT);
    assert_int_equal(stem_ddim_config_parse("{\"set_alpha_to_one\": 0}", "cfg.json", &c), STEM_E_FORMAT);
    assert_int_equal(stem_ddim_config_parse("{\"beta_end\": 0.012,", "cfg.json", &c), STEM_E_FORMAT);
    assert_contains(stem_last_error(), "not valid JSON");
    assert_int_equal(stem_ddim_config_parse("[1, 2]", "cfg.json", &c), STEM_E_FORMAT);

    /* from a file */
    char path[] = "/tmp/stem_test_ddim_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(SD15, f);
    fclose(f);
    OK(stem_ddim_config_load(path, &c));
    assert_int_equal(c.steps_offset, 1);
    unlink(path);
    assert_int_equal(stem_ddim_config_load(path, &c), STEM_E_IO);
    assert_contains(stem_last_error(), path);

    /* steps out of range; an offset that pushes a timestep past T-1 */
    stem_ddim s;
    stem_ddim_config_default(&c);
    assert_int_equal(stem_ddim_init(&s, &c, 0), STEM_E_ARG);
    assert_int_equal(stem_ddim_init(&s, &c, 1001), STEM_E_ARG);
    assert_int_equal(stem_ddim_init(&s, &c, 1000), STEM_E_ARG); /* 999 + 1 */
    assert_contains(stem_last_error(), "steps_offset");
}

static void spacings(void **state) {
    stem_ddim_config c;
    stem_ddim_config_default(&c);
    c.steps_offset = 0;
    stem_ddim s;
    c.spacing = STEM_SPACING_TRAILING; /* np.round(np.arange(1000, 0, -40)) - 1 */
    OK(stem_ddim_init(&s, &c, 25));
    for (int i = 0; i < 25; i++) assert_int_equal(s.timesteps[i], 999 - 40 * i);
    stem_ddim_free(&s);
    c.spacing = STEM_SPACING_LINSPACE; /* np.linspace(0, 999, 4).round()[::-1] = 999, 666, 333, 0 */
    OK(stem_ddim_init(&s, &c, 4));
    int want[] = {999, 666, 333, 0};
    for (int i = 0; i < 4; i++) assert_int_equal(s.timesteps[i], want[i]);
    stem_ddim_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sd15_schedule),
        cmocka_unit_test(invert_then_sample_round_trip),
        cmocka_unit_test(config_defaults_and_refusals),
        cmocka_unit_test(spacings),
    };
    return cmocka_run_group_tests_name("ddim", tests, NULL, NULL);
}
