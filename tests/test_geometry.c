/* Frame sizes through the model (stem_pipeline_geometry, doc/frame-sizes.md), the crop the
 * metrics use (stem_pixels_crop) and the contact sheet's size known in advance
 * (stem_contact_sheet_size).
 *   - tiny-sd1 (VAE factor 4): 854x480 -> latents 213x120 -> UNet 107x60, 54x30 -> 852x480;
 *     86x48 -> 21x12 -> 84x48; 64x64 unchanged; 4x4 the smallest; 3 pixels a side refused;
 *   - the sizes agree with the VAE itself: encode into latents of the geometry's shape and
 *     decode into frames of its output shape (the tensors' shapes are checked there);
 *   - factor 8 (SD's arithmetic, levels = 4 in the VAE config the geometry reads):
 *     854x480 -> 106x60 -> 848x480, 640x360 and 512x512 unchanged;
 *   - components that disagree (text width vs cross_attention_dim) are refused by name;
 *   - the crop copies the top-left region of every plane, refuses regions outside the frame;
 *   - the sheet's size for 3 columns x 4 rows, and a refusal over STEM_IMAGE_MAX_DIM. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* test_model_util.h: mkdtemp, nftw */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "io/contact_sheet.h"
#include "test_model_util.h"

#define OK(expr)                                                          \
    do {                                                                  \
        stem_status s_ = (expr);                                          \
        if (s_ != STEM_OK) fail_msg("%s: %s", #expr, stem_last_error()); \
    } while (0)

static stem_pipeline tiny;

static int setup(void **state) {
    (void)state;
    if (stem_pipeline_load(tm_model_path("tiny-sd1", NULL), stem_cpu_backend(), STEM_F32, &tiny) != STEM_OK) {
        fprintf(stderr, "test_geometry: %s\n", stem_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    stem_pipeline_free(&tiny);
    return 0;
}

static void expect_geometry(int64_t H, int64_t W, int64_t lh, int64_t lw, int64_t oh, int64_t ow) {
    stem_frame_geometry g;
    OK(stem_pipeline_geometry(&tiny, H, W, &g));
    print_message("    %lldx%lld -> latents %lldx%lld -> %lldx%lld (factor %d)\n", (long long)W, (long long)H,
                  (long long)g.latent_w, (long long)g.latent_h, (long long)g.out_w, (long long)g.out_h, g.factor);
    assert_int_equal(g.in_h, H);
    assert_int_equal(g.in_w, W);
    assert_int_equal(g.latent_h, lh);
    assert_int_equal(g.latent_w, lw);
    assert_int_equal(g.out_h, oh);
    assert_int_equal(g.out_w, ow);
    assert_int_equal(g.unet_h[0], lh);
    assert_int_equal(g.unet_w[0], lw);
}

static void tiny_sizes(void **state) {
    (void)state;
    expect_geometry(480, 854, 120, 213, 480, 852);
    stem_frame_geometry g;
    OK(stem_pipeline_geometry(&tiny, 480, 854, &g));
    assert_int_equal(g.factor, 4);
    assert_int_equal(g.unet_levels, 3); /* the UNet's downsamplers: ceil(x / 2) */
    assert_int_equal(g.unet_w[1], 107);
    assert_int_equal(g.unet_h[1], 60);
    assert_int_equal(g.unet_w[2], 54);
    assert_int_equal(g.unet_h[2], 30);
    expect_geometry(48, 86, 12, 21, 48, 84);
    expect_geometry(64, 64, 16, 16, 64, 64);
    expect_geometry(4, 4, 1, 1, 4, 4);
    tm_expect_error(stem_pipeline_geometry(&tiny, 3, 8, &g), STEM_E_ARG, "8x3 frames", "at least 4x4", NULL);
    tm_expect_error(stem_pipeline_geometry(&tiny, 8, 3, &g), STEM_E_ARG, "3x8 frames", NULL);
}

/* What the geometry says is what the VAE does: its encode and decode check the shapes. */
static void agrees_with_the_vae(void **state) {
    (void)state;
    stem_frame_geometry g;
    OK(stem_pipeline_geometry(&tiny, 30, 43, &g)); /* remainders 2 and 3 mod 4 */
    int64_t fs[4] = {1, 3, 30, 43}, ls[4] = {1, 4, g.latent_h, g.latent_w}, os[4] = {1, 3, g.out_h, g.out_w};
    stem_tensor frames, latents, out;
    OK(stem_tensor_zeros(stem_cpu_backend(), STEM_F32, 4, fs, &frames));
    OK(stem_tensor_new(stem_cpu_backend(), STEM_F32, 4, ls, &latents));
    OK(stem_tensor_new(stem_cpu_backend(), STEM_F32, 4, os, &out));
    OK(stem_vae_encode(&tiny.vae, &frames, &latents));
    OK(stem_vae_decode(&tiny.vae, &latents, &out));
    assert_int_equal(g.out_w, 40);
    assert_int_equal(g.out_h, 28);
    stem_tensor_free(&frames);
    stem_tensor_free(&latents);
    stem_tensor_free(&out);
}

/* SD's VAE has 4 levels (factor 8); the geometry reads only the VAE's config for it. */
static void factor_8_sizes(void **state) {
    (void)state;
    int levels = tiny.vae.cfg.levels;
    tiny.vae.cfg.levels = 4;
    expect_geometry(480, 854, 60, 106, 480, 848);
    expect_geometry(360, 640, 45, 80, 360, 640);
    expect_geometry(512, 512, 64, 64, 512, 512);
    stem_frame_geometry g;
    stem_status s = stem_pipeline_geometry(&tiny, 7, 64, &g);
    tiny.vae.cfg.levels = levels;
    tm_expect_error(s, STEM_E_ARG, "64x7 frames", "at least 8x8", NULL);
}

static void components_must_agree(void **state) {
    (void)state;
    stem_frame_geometry g;
    int64_t hidden = tiny.text.cfg.hidden;
    tiny.text.cfg.hidden = hidden + 8;
    stem_status s = stem_pipeline_geometry(&tiny, 64, 64, &g);
    tiny.text.cfg.hidden = hidden;
    tm_expect_error(s, STEM_E_FORMAT, "hidden_size", "cross_attention_dim", NULL);
    int64_t latent = tiny.vae.cfg.latent_channels;
    tiny.vae.cfg.latent_channels = latent + 1;
    s = stem_pipeline_geometry(&tiny, 64, 64, &g);
    tiny.vae.cfg.latent_channels = latent;
    tm_expect_error(s, STEM_E_FORMAT, "latent channels", NULL);
}

static void crop_top_left(void **state) {
    (void)state;
    int64_t shape[4] = {2, 3, 3, 5};
    stem_tensor px, c;
    OK(stem_tensor_new(stem_cpu_backend(), STEM_F32, 4, shape, &px));
    float *v = px.data;
    for (int i = 0; i < 2 * 3 * 3 * 5; i++) v[i] = (float)i; /* value = its flat index */
    OK(stem_pixels_crop(&px, 2, 4, &c));
    assert_int_equal(c.shape[0], 2);
    assert_int_equal(c.shape[1], 3);
    assert_int_equal(c.shape[2], 2);
    assert_int_equal(c.shape[3], 4);
    const float *o = c.data;
    for (int f = 0; f < 2; f++)
        for (int ch = 0; ch < 3; ch++)
            for (int y = 0; y < 2; y++)
                for (int x = 0; x < 4; x++)
                    assert_true(o[((f * 3 + ch) * 2 + y) * 4 + x] == (float)(((f * 3 + ch) * 3 + y) * 5 + x));
    stem_tensor_free(&c);
    tm_expect_error(stem_pixels_crop(&px, 4, 4, &c), STEM_E_ARG, "4x4", "5x3", NULL);
    tm_expect_error(stem_pixels_crop(&px, 2, 6, &c), STEM_E_ARG, NULL);
    tm_expect_error(stem_pixels_crop(&px, 0, 4, &c), STEM_E_ARG, NULL);
    stem_tensor_free(&px);
}

static void sheet_size(void **state) {
    (void)state;
    long w, h;
    OK(stem_contact_sheet_size(3, 4, 8, 64, 64, &w, &h));
    assert_int_equal(w, 3 * 64 + 2 * STEM_SHEET_GAP);
    assert_int_equal(h, 4 * 64 + 3 * STEM_SHEET_GAP);
    OK(stem_contact_sheet_size(3, 4, 2, 480, 852, &w, &h)); /* rows: at most the frames */
    assert_int_equal(h, 2 * 480 + STEM_SHEET_GAP);
    tm_expect_error(stem_contact_sheet_size(3, 4, 3, 8, 6000, &w, &h), STEM_E_ARG, "larger than", NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tiny_sizes),        cmocka_unit_test(agrees_with_the_vae),
        cmocka_unit_test(factor_8_sizes),    cmocka_unit_test(components_must_agree),
        cmocka_unit_test(crop_top_left),     cmocka_unit_test(sheet_size),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
