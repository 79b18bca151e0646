/* PSNR and SSIM against scikit-image 0.26 (refdata/golden/io/metrics.safetensors, made
 * by refdata/gen/gen_io.py in float64), the temporal-consistency number against numpy,
 * and the clip-level wrapper. Tolerance: 1e-10 absolute (double arithmetic, summation
 * order differs from numpy's pairwise sums). */
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
#include "core/backend.h"
#include "core/tensor_map.h"
#include "io/metrics.h"
#include "io/safetensors.h"
#include "test_util.h"

#define TOL 1e-10

static stem_tensor_map g_m;

static int setup(void **state) {
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/golden/io/metrics.safetensors", test_refdata_dir());
    if (stem_safetensors_load(path, -1, &g_m) != STEM_OK) {
        fprintf(stderr, "%s\n", stem_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    stem_tensor_map_free(&g_m);
    return 0;
}

static double meta_double(const char *key) {
    const char *v = stem_tensor_map_get_meta(&g_m, key);
    assert_non_null(v);
    return strcmp(v, "inf") == 0 ? INFINITY : strtod(v, NULL);
}

static void test_psnr_ssim_goldens(void **state) {
    (void)state;
    int cases = 0;
    for (int i = 0; i < g_m.count; i++) {
        const char *name = g_m.items[i].name;
        if (strncmp(name, "a.", 2) != 0) continue;
        const char *c = name + 2;
        char key[128];
        snprintf(key, sizeof key, "b.%s", c);
        const stem_tensor *a = &g_m.items[i].tensor, *b = stem_tensor_map_get(&g_m, key);
        assert_non_null(b);
        assert_int_equal(a->ndim, 3);
        int ch = (int)a->shape[0], h = (int)a->shape[1], w = (int)a->shape[2];
        snprintf(key, sizeof key, "psnr.%s", c);
        double want_psnr = meta_double(key);
        snprintf(key, sizeof key, "ssim.%s", c);
        double want_ssim = meta_double(key);
        double psnr = stem_psnr(a->data, b->data, ch, h, w), ssim;
        assert_int_equal(stem_ssim(a->data, b->data, ch, h, w, &ssim), STEM_OK);
        fprintf(stderr, "%-10s %dx%d  psnr %.12f (skimage %.12f)  ssim %.12f (skimage %.12f)\n", c, w, h, psnr, want_psnr,
                ssim, want_ssim);
        if (isinf(want_psnr))
            assert_true(isinf(psnr) && psnr > 0);
        else
            assert_true(fabs(psnr - want_psnr) <= TOL * fmax(1.0, fabs(want_psnr)));
        assert_true(fabs(ssim - want_ssim) <= TOL);
        cases++;
    }
    assert_true(cases >= 6);
}

static void test_ssim_too_small(void **state) {
    (void)state;
    float a[3 * 10 * 20] = {0};
    double s;
    assert_int_equal(stem_ssim(a, a, 3, 10, 20, &s), STEM_E_ARG);
    assert_non_null(strstr(stem_last_error(), "11x11"));
    assert_true(isnan(s));
}

static void test_temporal_golden(void **state) {
    (void)state;
    const stem_tensor *in = stem_tensor_map_get(&g_m, "clip_in"), *out = stem_tensor_map_get(&g_m, "clip_out");
    assert_non_null(in);
    assert_non_null(out);
    double t = stem_temporal_mad(in->data, out->data, (int)in->shape[0], (int)in->shape[1], (int)in->shape[2],
                                 (int)in->shape[3]);
    assert_true(fabs(t - meta_double("temporal")) <= TOL);
    /* the same clip: 0; one frame: 0 */
    assert_true(stem_temporal_mad(in->data, in->data, 4, 3, (int)in->shape[2], (int)in->shape[3]) == 0.0);
    assert_true(stem_temporal_mad(in->data, out->data, 1, 3, (int)in->shape[2], (int)in->shape[3]) == 0.0);
    /* a constant offset does not change the frame differences */
    size_t n = (size_t)stem_numel(in);
    float *shifted = malloc(sizeof *shifted * n);
    for (size_t i = 0; i < n; i++) shifted[i] = ((const float *)in->data)[i] + 0.25f;
    assert_true(stem_temporal_mad(in->data, shifted, 4, 3, (int)in->shape[2], (int)in->shape[3]) < 1e-7);
    free(shifted);
}

static void test_video_metrics(void **state) {
    (void)state;
    /* two frames of the "noisy" case, mapped to [-1, 1] */
    const stem_tensor *a = stem_tensor_map_get(&g_m, "a.noisy"), *b = stem_tensor_map_get(&g_m, "b.noisy");
    assert_non_null(a);
    assert_non_null(b);
    int h = (int)a->shape[1], w = (int)a->shape[2];
    size_t n = (size_t)3 * h * w;
    int64_t shape[4] = {2, 3, h, w};
    stem_tensor ref, test;
    assert_int_equal(stem_tensor_new(stem_cpu_backend(), STEM_F32, 4, shape, &ref), STEM_OK);
    assert_int_equal(stem_tensor_new(stem_cpu_backend(), STEM_F32, 4, shape, &test), STEM_OK);
    for (size_t i = 0; i < n; i++) {
        float va = ((const float *)a->data)[i], vb = ((const float *)b->data)[i];
        ((float *)ref.data)[i] = ((float *)ref.data)[n + i] = va * 2 - 1;
        ((float *)test.data)[i] = vb * 2 - 1;
        ((float *)test.data)[n + i] = va * 2 - 1; /* frame 1 identical */
    }
    stem_video_metrics m;
    assert_int_equal(stem_video_metrics_compute(&ref, &test, &m), STEM_OK);
    assert_int_equal(m.frames, 2);
    assert_true(fabs(m.psnr[0] - meta_double("psnr.noisy")) < 1e-4);
    assert_true(fabs(m.ssim[0] - meta_double("ssim.noisy")) < 1e-5);
    assert_true(isinf(m.psnr[1]));
    assert_true(fabs(m.ssim[1] - 1.0) < 1e-12);
    assert_true(isinf(m.mean_psnr));
    assert_true(fabs(m.mean_ssim - (m.ssim[0] + 1.0) / 2) < 1e-12);
    assert_true(m.temporal > 0);
    /* the clip-level temporal term is stem_temporal_mad of the mapped clips */
    float *ma = malloc(sizeof *ma * 2 * n), *mb = malloc(sizeof *mb * 2 * n);
    for (size_t i = 0; i < 2 * n; i++) {
        ma[i] = fminf(fmaxf(((float *)ref.data)[i] / 2.0f + 0.5f, 0.0f), 1.0f);
        mb[i] = fminf(fmaxf(((float *)test.data)[i] / 2.0f + 0.5f, 0.0f), 1.0f);
    }
    assert_true(fabs(m.temporal - stem_temporal_mad(ma, mb, 2, 3, h, w)) < 1e-12);
    free(ma);
    free(mb);
    stem_video_metrics_free(&m);

    /* shape mismatch and too-small frames */
    stem_tensor small;
    int64_t sshape[4] = {2, 3, 5, 5};
    assert_int_equal(stem_tensor_zeros(stem_cpu_backend(), STEM_F32, 4, sshape, &small), STEM_OK);
    assert_int_equal(stem_video_metrics_compute(&ref, &small, &m), STEM_E_SHAPE);
    assert_non_null(strstr(stem_last_error(), "differ in shape"));
    assert_null(m.psnr);
    assert_int_equal(stem_video_metrics_compute(&small, &small, &m), STEM_E_ARG);
    assert_non_null(strstr(stem_last_error(), "frame 0"));
    stem_tensor_free(&small);
    stem_tensor_free(&ref);
    stem_tensor_free(&test);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_psnr_ssim_goldens),
        cmocka_unit_test(test_ssim_too_small),
        cmocka_unit_test(test_temporal_golden),
        cmocka_unit_test(test_video_metrics),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
