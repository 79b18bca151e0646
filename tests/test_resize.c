/* Lanczos resize against PIL's Image.resize(..., Image.LANCZOS) and the pixel
 * mappings against torch (refdata/golden/io/{resize,pixels}.safetensors, made by
 * refdata/gen/gen_io.py). Resize must be byte-exact: every output of every case. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor_map.h"
#include "io/resize.h"
#include "io/safetensors.h"
#include "test_util.h"

static stem_tensor_map g_resize, g_pixels;

static int setup(void **state) {
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/golden/io/resize.safetensors", test_refdata_dir());
    if (stem_safetensors_load(path, -1, &g_resize) != STEM_OK) {
        fprintf(stderr, "%s\n", stem_last_error());
        return -1;
    }
    snprintf(path, sizeof path, "%s/golden/io/pixels.safetensors", test_refdata_dir());
    if (stem_safetensors_load(path, -1, &g_pixels) != STEM_OK) {
        fprintf(stderr, "%s\n", stem_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    stem_tensor_map_free(&g_resize);
    stem_tensor_map_free(&g_pixels);
    return 0;
}

/* An image viewing a U8 [H, W, 3] tensor (not owned). */
static stem_image view(const stem_tensor *t) {
    assert_int_equal(t->dtype, STEM_U8);
    assert_int_equal(t->ndim, 3);
    assert_int_equal(t->shape[2], 3);
    return (stem_image){.width = (int)t->shape[1], .height = (int)t->shape[0], .rgb = t->data};
}

static void test_goldens_exact(void **state) {
    (void)state;
    int cases = 0, failed = 0;
    for (int i = 0; i < g_resize.count; i++) {
        const char *name = g_resize.items[i].name;
        if (strncmp(name, "out.", 4) != 0) continue;
        char src_name[128];
        const char *dot = strchr(name + 4, '.');
        assert_non_null(dot);
        snprintf(src_name, sizeof src_name, "src.%.*s", (int)(dot - (name + 4)), name + 4);
        int w, h;
        assert_int_equal(sscanf(dot + 1, "%dx%d", &w, &h), 2);
        stem_tensor *src_t = stem_tensor_map_get(&g_resize, src_name);
        assert_non_null(src_t);
        stem_image src = view(src_t), want = view(&g_resize.items[i].tensor), got;
        assert_int_equal(want.width, w);
        assert_int_equal(want.height, h);
        assert_int_equal(stem_image_resize(&src, w, h, &got), STEM_OK);
        assert_int_equal(got.width, w);
        assert_int_equal(got.height, h);
        size_t n = (size_t)w * h * 3, diff = 0;
        int maxd = 0;
        for (size_t k = 0; k < n; k++) {
            int d = abs((int)got.rgb[k] - (int)want.rgb[k]);
            if (d) diff++;
            if (d > maxd) maxd = d;
        }
        if (diff) {
            fprintf(stderr, "resize %s (%dx%d -> %dx%d): %zu of %zu values differ from PIL, max %d\n", name, src.width,
                    src.height, w, h, diff, n, maxd);
            failed++;
        }
        stem_image_free(&got);
        cases++;
    }
    fprintf(stderr, "resize: %d PIL LANCZOS cases, %d byte-exact\n", cases, cases - failed);
    assert_true(cases >= 20);
    assert_int_equal(failed, 0);
}

static void test_same_size_is_copy(void **state) {
    (void)state;
    stem_image src, got;
    assert_int_equal(stem_image_new(5, 4, &src), STEM_OK);
    for (int i = 0; i < 5 * 4 * 3; i++) src.rgb[i] = (uint8_t)(i * 37);
    assert_int_equal(stem_image_resize(&src, 5, 4, &got), STEM_OK);
    assert_memory_equal(src.rgb, got.rgb, 5 * 4 * 3);
    stem_image_free(&got);
    stem_image_free(&src);
}

static void test_bad_sizes(void **state) {
    (void)state;
    stem_image src, got;
    assert_int_equal(stem_image_new(4, 4, &src), STEM_OK);
    const int sizes[][2] = {{0, 4}, {4, 0}, {-3, 4}, {4, STEM_IMAGE_MAX_DIM + 1}, {STEM_IMAGE_MAX_DIM + 1, 1}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        assert_int_equal(stem_image_resize(&src, sizes[i][0], sizes[i][1], &got), STEM_E_ARG);
        assert_null(got.rgb);
        assert_non_null(strstr(stem_last_error(), "target size"));
    }
    stem_image empty = {0};
    assert_int_equal(stem_image_resize(&empty, 4, 4, &got), STEM_E_ARG);
    assert_int_equal(stem_image_new(0, 4, &got), STEM_E_ARG);
    stem_image_free(&src);
}

static void test_to_pixels_matches_torch(void **state) {
    (void)state;
    stem_tensor *in = stem_tensor_map_get(&g_pixels, "to_pixels.in");
    stem_tensor *want = stem_tensor_map_get(&g_pixels, "to_pixels.out");
    assert_non_null(in);
    assert_non_null(want);
    /* a 256x1 image whose R, G, B are p, 255 - p, p */
    stem_image img;
    assert_int_equal(stem_image_new(256, 1, &img), STEM_OK);
    const uint8_t *p = in->data;
    for (int i = 0; i < 256; i++) {
        img.rgb[3 * i] = p[i];
        img.rgb[3 * i + 1] = (uint8_t)(255 - p[i]);
        img.rgb[3 * i + 2] = p[i];
    }
    float chw[3 * 256];
    stem_image_to_pixels(&img, chw);
    const float *w = want->data;
    for (int i = 0; i < 256; i++) {
        assert_memory_equal(&chw[i], &w[i], sizeof(float));             /* bit-exact */
        assert_memory_equal(&chw[256 + i], &w[255 - i], sizeof(float)); /* G plane */
        assert_memory_equal(&chw[512 + i], &w[i], sizeof(float));
    }
    assert_true(chw[0] == -1.0f && chw[255] == 1.0f);
    stem_image_free(&img);
}

static void test_to_u8_round_and_truncate(void **state) {
    (void)state;
    stem_tensor *in = stem_tensor_map_get(&g_pixels, "to_u8.in");
    stem_tensor *rnd = stem_tensor_map_get(&g_pixels, "to_u8.round");
    stem_tensor *trunc = stem_tensor_map_get(&g_pixels, "to_u8.truncate");
    assert_non_null(in);
    assert_non_null(rnd);
    assert_non_null(trunc);
    int64_t n = in->shape[0];
    const float *x = in->data;
    const uint8_t *r = rnd->data, *t = trunc->data;
    int differ = 0;
    for (int64_t i = 0; i < n; i++) {
        if (stem_pixel_to_u8(x[i], STEM_QUANTIZE_ROUND) != r[i] || stem_pixel_to_u8(x[i], STEM_QUANTIZE_TRUNCATE) != t[i]) {
            fprintf(stderr, "x = %.9g: round %d (want %d), truncate %d (want %d)\n", x[i],
                    stem_pixel_to_u8(x[i], STEM_QUANTIZE_ROUND), r[i], stem_pixel_to_u8(x[i], STEM_QUANTIZE_TRUNCATE), t[i]);
            differ++;
        }
        if (r[i] != t[i]) assert_int_equal(r[i], t[i] + 1);
    }
    assert_int_equal(differ, 0);
    assert_int_equal(stem_pixel_to_u8(NAN, STEM_QUANTIZE_ROUND), 0);
    assert_int_equal(stem_pixel_to_u8(INFINITY, STEM_QUANTIZE_TRUNCATE), 255);

    /* the image round trip: every 8-bit value survives pixels -> u8 in both modes */
    stem_image img, back;
    assert_int_equal(stem_image_new(256, 1, &img), STEM_OK);
    assert_int_equal(stem_image_new(256, 1, &back), STEM_OK);
    for (int i = 0; i < 256 * 3; i++) img.rgb[i] = (uint8_t)(i / 3);
    float chw[3 * 256];
    stem_image_to_pixels(&img, chw);
    stem_pixels_to_image(chw, STEM_QUANTIZE_ROUND, &back);
    assert_memory_equal(img.rgb, back.rgb, 256 * 3);
    stem_image_free(&img);
    stem_image_free(&back);
}

static void test_quantize_parse(void **state) {
    (void)state;
    stem_quantize q;
    assert_int_equal(stem_quantize_parse("round", &q), STEM_OK);
    assert_int_equal(q, STEM_QUANTIZE_ROUND);
    assert_int_equal(stem_quantize_parse("truncate", &q), STEM_OK);
    assert_int_equal(q, STEM_QUANTIZE_TRUNCATE);
    assert_int_equal(stem_quantize_parse("floor", &q), STEM_E_ARG);
    assert_non_null(strstr(stem_last_error(), "'floor'"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_goldens_exact),
        cmocka_unit_test(test_same_size_is_copy),
        cmocka_unit_test(test_bad_sizes),
        cmocka_unit_test(test_to_pixels_matches_torch),
        cmocka_unit_test(test_to_u8_round_and_truncate),
        cmocka_unit_test(test_quantize_parse),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
