/* Decoded-size limits (io/image_limits.h) and JPEG scan-data warnings as errors: a tiny
 * file declaring a huge image is rejected from its header, before the pixels are
 * allocated, and a JPEG without its scan data is an error, not a gray picture. The
 * files are refdata's golden images with their headers edited here. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* mkdtemp */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/image.h"
#include "io/image_limits.h"
#include "test_util.h"

static char g_dir[1024];

static const char *tmp_path(const char *name) {
    static char buf[4][PATH_MAX];
    static int next;
    char *b = buf[next++ % 4];
    snprintf(b, PATH_MAX, "%s/%s", g_dir, name);
    return b;
}

static uint8_t *read_golden(const char *name, size_t *len) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/golden/io/images/%s", test_refdata_dir(), name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 16);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static const char *write_tmp(const char *name, const uint8_t *b, size_t len) {
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    fclose(f);
    return path;
}

static void put_be16(uint8_t *p, unsigned v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put_be32(uint8_t *p, uint32_t v) { put_be16(p, v >> 16); put_be16(p + 2, v & 0xffff); }

static uint32_t crc32_png(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xffffffffu;
}

/* gray.jpg with its frame header saying width x height, and (no_scan) everything after the
 * scan header replaced by an end-of-image marker. Returns the new length. */
static size_t edit_jpeg(uint8_t *b, size_t len, unsigned width, unsigned height, bool no_scan) {
    size_t i = 2;
    while (i + 4 <= len) {
        assert_int_equal(b[i], 0xff);
        unsigned m = b[i + 1], seg = (unsigned)b[i + 2] << 8 | b[i + 3];
        if (m >= 0xc0 && m <= 0xc2) { /* SOF0..2: P(1) Y(2) X(2) */
            put_be16(b + i + 5, height);
            put_be16(b + i + 7, width);
        }
        if (m == 0xda) {
            if (!no_scan) return len;
            size_t end = i + 2 + seg;
            b[end] = 0xff;
            b[end + 1] = 0xd9;
            return end + 2;
        }
        i += 2 + seg;
    }
    fail_msg("gray.jpg has no scan header");
    return 0;
}

static void expect_error(const char *path, stem_status want, const char *needle) {
    stem_image img = {0};
    stem_status s = stem_image_read(path, &img, NULL);
    print_message("    %s\n", stem_last_error());
    if (s != want || !strstr(stem_last_error(), needle) || !strstr(stem_last_error(), path))
        fail_msg("status %s (want %s): '%s' should name the file and contain '%s'", stem_status_name(s),
                 stem_status_name(want), stem_last_error(), needle);
    assert_null(img.rgb);
}

/* Issue 14: a 166-byte JPEG declaring 16384x16384 without scan data decoded (4.9 GB, 23 s). */
static void jpeg_bomb_rejected_from_header(void **state) {
    (void)state;
    size_t len;
    uint8_t *b = read_golden("gray.jpg", &len);
    len = edit_jpeg(b, len, 16384, 16384, true);
    stem_image_set_max_pixels((int64_t)1 << 30); /* so that the file-size bound, not the pixel cap, decides */
    expect_error(write_tmp("bomb.jpg", b, len), STEM_E_FORMAT, "more than a");
    stem_image_set_max_pixels(0);
    /* the same header under the default pixel cap: rejected by the cap, naming the override */
    expect_error(tmp_path("bomb.jpg"), STEM_E_ARG, "STEM_MAX_IMAGE_PIXELS");
    free(b);
}

/* A JPEG with its scan data removed at a size the file-size bound allows: libjpeg warns
 * "premature end of data segment" and fills zeros; stem must refuse it. */
static void jpeg_without_scan_data(void **state) {
    (void)state;
    size_t len;
    uint8_t *b = read_golden("gray.jpg", &len);
    len = edit_jpeg(b, len, 64, 64, true);
    expect_error(write_tmp("noscan.jpg", b, len), STEM_E_FORMAT, "premature end of data segment");
    free(b);
    /* the unedited image still decodes */
    b = read_golden("gray.jpg", &len);
    stem_image img;
    assert_int_equal(stem_image_read(write_tmp("ok.jpg", b, len), &img, NULL), STEM_OK);
    stem_image_free(&img);
    free(b);
}

/* Issue 14: a 128-byte PNG declaring 16384x16384 allocated 805 MB before libpng found the
 * data missing; now the header check refuses it (the message says why, not "truncated"). */
static void png_bomb_rejected_before_allocation(void **state) {
    (void)state;
    size_t len;
    uint8_t *b = read_golden("rgb8.png", &len);
    assert_memory_equal(b + 12, "IHDR", 4);
    put_be32(b + 16, 16384);
    put_be32(b + 20, 16384);
    put_be32(b + 29, crc32_png(b + 12, 17)); /* type + 13 data bytes */
    stem_image_set_max_pixels((int64_t)1 << 30);
    expect_error(write_tmp("bomb.png", b, len), STEM_E_FORMAT, "more than a");
    stem_image_set_max_pixels(0);
    expect_error(tmp_path("bomb.png"), STEM_E_ARG, "over the limit");
    free(b);
}

/* The stated limit is overridable, from the program and from the environment. */
static void pixel_limit_override(void **state) {
    (void)state;
    size_t len;
    uint8_t *b = read_golden("rgb8.png", &len);
    const char *path = write_tmp("small.png", b, len);
    free(b);
    stem_image img;
    assert_int_equal(stem_image_read(path, &img, NULL), STEM_OK);
    int64_t pixels = (int64_t)img.width * img.height;
    stem_image_free(&img);
    stem_image_set_max_pixels(pixels - 1);
    expect_error(path, STEM_E_ARG, "over the limit");
    stem_image_set_max_pixels(pixels);
    assert_int_equal(stem_image_read(path, &img, NULL), STEM_OK);
    stem_image_free(&img);
    stem_image_set_max_pixels(0);
    char env[32];
    snprintf(env, sizeof env, "%lld", (long long)(pixels - 1));
    setenv("STEM_MAX_IMAGE_PIXELS", env, 1);
    expect_error(path, STEM_E_ARG, "over the limit");
    unsetenv("STEM_MAX_IMAGE_PIXELS");
    assert_int_equal(stem_image_max_pixels(), STEM_IMAGE_MAX_PIXELS);
}

/* The bounds themselves: generous enough for the most compressible real files. */
static void bounds(void **state) {
    (void)state;
    /* a 1920x1080 RGB PNG needs 6.2 MB inflated: 6 KB of file can hold it, 5 KB cannot */
    assert_int_equal(stem_png_check_file_size("x.png", 6100, 1920, 1080, 3, 8), STEM_OK);
    assert_int_equal(stem_png_check_file_size("x.png", 5000, 1920, 1080, 3, 8), STEM_E_FORMAT);
    /* 4:2:0 1920x1080: the chroma planes have 120x68 blocks, 1020 bytes of bits */
    stem_jpeg_sampling s420[3] = {{2, 2}, {1, 1}, {1, 1}};
    assert_int_equal(stem_jpeg_check_file_size("x.jpg", 1020, 1920, 1080, s420, 3, false), STEM_OK);
    assert_int_equal(stem_jpeg_check_file_size("x.jpg", 1010, 1920, 1080, s420, 3, false), STEM_E_FORMAT);
    assert_int_equal(stem_jpeg_check_file_size("x.jpg", 10, 1920, 1080, s420, 3, true), STEM_OK); /* arithmetic */
}

static int setup(void **state) {
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/stem_test_image_limits_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    static const char *const names[] = {"bomb.jpg", "noscan.jpg", "ok.jpg", "bomb.png", "small.png"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) unlink(tmp_path(names[i]));
    return rmdir(g_dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(jpeg_bomb_rejected_from_header),
        cmocka_unit_test(jpeg_without_scan_data),
        cmocka_unit_test(png_bomb_rejected_before_allocation),
        cmocka_unit_test(pixel_limit_override),
        cmocka_unit_test(bounds),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
