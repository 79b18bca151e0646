/* Image I/O: PNG/JPEG decoding against PIL's convert("RGB") (refdata/golden/io/
 * decode.safetensors), broken inputs (each error must name the file), PNG writing,
 * atomic files and output directories. Frame folders, videos, frame output and
 * contact sheets: test_frames_io.c. */
#include "test_io_util.h"

/* ---- decoding against PIL ------------------------------------------------------------ */

static void test_decode_goldens(void **state) {
    (void)state;
    int files = 0, exact = 0;
    for (int i = 0; i < g_decode.count; i++) {
        const char *name = g_decode.items[i].name;
        if (strncmp(name, "decode.", 7) != 0) continue;
        const char *file = name + 7;
        const stem_tensor *want = &g_decode.items[i].tensor;
        stem_image img;
        stem_image_info info;
        stem_status s = stem_image_read(golden_image(file), &img, &info);
        if (s != STEM_OK) fprintf(stderr, "%s\n", stem_last_error());
        assert_int_equal(s, STEM_OK);
        assert_int_equal(img.height, want->shape[0]);
        assert_int_equal(img.width, want->shape[1]);
        size_t n = (size_t)img.width * img.height * 3, diff = 0;
        int maxd = 0;
        for (size_t k = 0; k < n; k++) {
            int d = abs((int)img.rgb[k] - (int)((const uint8_t *)want->data)[k]);
            diff += d != 0;
            if (d > maxd) maxd = d;
        }
        char key[256];
        snprintf(key, sizeof key, "mode.%s", file);
        const char *mode = stem_tensor_map_get_meta(&g_decode, key);
        assert_non_null(mode);
        if (diff || strcmp(mode, info.mode) != 0)
            fprintf(stderr, "%s: %zu of %zu values differ from PIL (max %d); mode %s, PIL %s\n", file, diff, n, maxd,
                    info.mode, mode);
        assert_string_equal(info.mode, mode);
        assert_int_equal(diff, 0);
        exact++;
        files++;
        stem_image_free(&img);
    }
    fprintf(stderr, "decode: %d files, %d identical to PIL's convert('RGB')\n", files, exact);
    assert_true(files >= 20);
}

static void test_decode_info(void **state) {
    (void)state;
    stem_image img;
    stem_image_info info;
    assert_int_equal(stem_image_read(golden_image("gray16.png"), &img, &info), STEM_OK);
    assert_true(info.clipped16);
    assert_int_equal(info.bit_depth, 16);
    assert_int_equal(info.format, STEM_IMAGE_PNG);
    /* row 0 starts 0, 1, 255, 256, 300 -> 0, 1, 255, 255, 255 */
    const uint8_t want[5] = {0, 1, 255, 255, 255};
    for (int x = 0; x < 5; x++) assert_int_equal(img.rgb[3 * x + 1], want[x]);
    stem_image_free(&img);
    assert_int_equal(stem_image_read(golden_image("gray16_low.png"), &img, &info), STEM_OK);
    assert_false(info.clipped16);
    stem_image_free(&img);
    assert_int_equal(stem_image_read(golden_image("rgba8.png"), &img, &info), STEM_OK);
    assert_true(info.had_alpha);
    stem_image_free(&img);
    assert_int_equal(stem_image_read(golden_image("cmyk.jpg"), &img, &info), STEM_OK);
    assert_int_equal(info.format, STEM_IMAGE_JPEG);
    stem_image_free(&img);
    /* the format comes from the bytes: a JPEG named .png still reads */
    size_t len;
    uint8_t *jpg = read_bytes(golden_image("rgb420.jpg"), &len);
    write_bytes(in_dir("really_a_jpeg.png"), jpg, len);
    free(jpg);
    assert_int_equal(stem_image_read(in_dir("really_a_jpeg.png"), &img, &info), STEM_OK);
    assert_int_equal(info.format, STEM_IMAGE_JPEG);
    stem_image_free(&img);
}

/* ---- broken inputs ------------------------------------------------------------------- */

static void test_bad_images(void **state) {
    (void)state;
    stem_image img = {0};
    /* missing */
    expect_error(stem_image_read(in_dir("missing.png"), &img, NULL), STEM_E_IO, "missing.png");
    assert_null(img.rgb);
    /* empty, text, a directory */
    write_bytes(in_dir("empty.png"), "", 0);
    expect_error(stem_image_read(in_dir("empty.png"), &img, NULL), STEM_E_FORMAT, "empty.png");
    write_bytes(in_dir("text.png"), "hello, not an image\n", 20);
    expect_error(stem_image_read(in_dir("text.png"), &img, NULL), STEM_E_FORMAT, "text.png: not a PNG or JPEG");
    mkdir(in_dir("dir.png"), 0755);
    assert_int_not_equal(stem_image_read(in_dir("dir.png"), &img, NULL), STEM_OK);
    assert_non_null(strstr(stem_last_error(), "dir.png"));
    /* truncated PNGs: inside the header chunks and inside the image data */
    const double cuts[] = {0.1, 0.5, 0.9};
    for (int i = 0; i < 3; i++) {
        truncated_copy(golden_image("rgb8.png"), in_dir("trunc.png"), cuts[i]);
        expect_error(stem_image_read(in_dir("trunc.png"), &img, NULL), STEM_E_FORMAT, "trunc.png: corrupt or truncated PNG");
        assert_null(img.rgb);
    }
    /* a flipped byte in the image data: CRC error */
    size_t len;
    uint8_t *b = read_bytes(golden_image("rgb8.png"), &len);
    b[len - 20] ^= 0x55;
    write_bytes(in_dir("crc.png"), b, len);
    free(b);
    expect_error(stem_image_read(in_dir("crc.png"), &img, NULL), STEM_E_FORMAT, "crc.png");
    /* truncated JPEGs (baseline and progressive), and one cut inside its header */
    truncated_copy(golden_image("rgb420.jpg"), in_dir("trunc.jpg"), 0.95);
    expect_error(stem_image_read(in_dir("trunc.jpg"), &img, NULL), STEM_E_FORMAT, "trunc.jpg: truncated JPEG");
    truncated_copy(golden_image("progressive.jpg"), in_dir("trunc_prog.jpg"), 0.7);
    expect_error(stem_image_read(in_dir("trunc_prog.jpg"), &img, NULL), STEM_E_FORMAT, "trunc_prog.jpg");
    truncated_copy(golden_image("rgb420.jpg"), in_dir("head.jpg"), 0.3);
    expect_error(stem_image_read(in_dir("head.jpg"), &img, NULL), STEM_E_FORMAT, "head.jpg: corrupt or truncated JPEG");
    assert_null(img.rgb);
}

/* ---- PNG writing ---------------------------------------------------------------------- */

static void test_png_write_roundtrip(void **state) {
    (void)state;
    stem_image img, back;
    assert_int_equal(stem_image_new(17, 9, &img), STEM_OK);
    fill_pattern(&img, 3);
    mkdir(in_dir("out"), 0755);
    assert_int_equal(stem_image_write_png(in_dir("out/a.png"), &img), STEM_OK);
    assert_int_equal(count_entries(in_dir("out")), 1); /* no temporary left behind */
    assert_int_equal(stem_image_read(in_dir("out/a.png"), &back, NULL), STEM_OK);
    assert_int_equal(back.width, 17);
    assert_int_equal(back.height, 9);
    assert_memory_equal(img.rgb, back.rgb, 17 * 9 * 3);
    stem_image_free(&back);
    /* overwrite in place */
    fill_pattern(&img, 4);
    assert_int_equal(stem_image_write_png(in_dir("out/a.png"), &img), STEM_OK);
    assert_int_equal(stem_image_read(in_dir("out/a.png"), &back, NULL), STEM_OK);
    assert_memory_equal(img.rgb, back.rgb, 17 * 9 * 3);
    stem_image_free(&back);
    /* unwritable places: a missing directory, a parent that is a file */
    expect_error(stem_image_write_png(in_dir("nodir/a.png"), &img), STEM_E_IO, "nodir/a.png");
    write_bytes(in_dir("plainfile"), "x", 1);
    expect_error(stem_image_write_png(in_dir("plainfile/a.png"), &img), STEM_E_IO, "plainfile/a.png");
    stem_image empty = {0};
    expect_error(stem_image_write_png(in_dir("out/b.png"), &empty), STEM_E_ARG, "b.png");
    assert_false(exists(in_dir("out/b.png")));
    stem_image_free(&img);
}

static void test_atomic_write(void **state) {
    (void)state;
    mkdir(in_dir("atomic"), 0755);
    assert_int_equal(stem_atomic_write(in_dir("atomic/f.txt"), "hello", 5), STEM_OK);
    stem_atomic_file af;
    assert_int_equal(stem_atomic_open(in_dir("atomic/f.txt"), &af), STEM_OK);
    fputs("partial", af.fp);
    stem_atomic_abort(&af); /* the old content stays, the temporary goes */
    size_t len;
    uint8_t *b = read_bytes(in_dir("atomic/f.txt"), &len);
    assert_int_equal(len, 5);
    assert_memory_equal(b, "hello", 5);
    free(b);
    assert_int_equal(count_entries(in_dir("atomic")), 1);
}

/* ---- output directories --------------------------------------------------------------- */

static void test_outdir(void **state) {
    (void)state;
    stem_outdir od;
    const char *final = in_dir("run/out"); /* the parent "run" does not exist yet */
    assert_int_equal(stem_outdir_begin(final, &od), STEM_OK);
    assert_false(od.reused);
    assert_true(exists(in_dir("run/out.partial")));
    assert_false(exists(final));
    char *f = stem_outdir_file(&od, "a.txt");
    assert_int_equal(stem_atomic_write(f, "1", 1), STEM_OK);
    free(f);
    assert_int_equal(stem_outdir_commit(&od, false), STEM_OK);
    assert_true(exists(in_dir("run/out/a.txt")));
    assert_false(exists(in_dir("run/out.partial")));

    /* an interrupted second run leaves out.partial; the next begin reuses it */
    assert_int_equal(stem_outdir_begin(final, &od), STEM_OK);
    f = stem_outdir_file(&od, "b.txt");
    assert_int_equal(stem_atomic_write(f, "2", 1), STEM_OK);
    free(f);
    stem_outdir_free(&od);
    assert_int_equal(stem_outdir_begin(final, &od), STEM_OK);
    assert_true(od.reused);
    assert_true(exists(in_dir("run/out.partial/b.txt")));
    /* the final directory exists: refused without replace, nothing lost */
    expect_error(stem_outdir_commit(&od, false), STEM_E_IO, "already exists");
    assert_true(exists(in_dir("run/out/a.txt")));
    assert_int_equal(stem_outdir_commit(&od, true), STEM_OK);
    assert_true(exists(in_dir("run/out/b.txt")));
    assert_false(exists(in_dir("run/out/a.txt")));
    assert_int_equal(count_entries(in_dir("run")), 1); /* no .old or .partial left */

    /* discard */
    assert_int_equal(stem_outdir_begin(in_dir("run/gone"), &od), STEM_OK);
    f = stem_outdir_file(&od, "x");
    assert_int_equal(stem_atomic_write(f, "x", 1), STEM_OK);
    free(f);
    assert_int_equal(stem_outdir_discard(&od), STEM_OK);
    assert_false(exists(in_dir("run/gone.partial")));

    /* unwritable: a read-only parent (not for root, who may write anyway), and a
     * parent that is a plain file */
    if (geteuid() != 0) {
        mkdir(in_dir("readonly"), 0555);
        expect_error(stem_outdir_begin(in_dir("readonly/out"), &od), STEM_E_IO, "readonly/out");
        chmod(in_dir("readonly"), 0755);
    }
    write_bytes(in_dir("blocker"), "x", 1);
    expect_error(stem_outdir_begin(in_dir("blocker/out"), &od), STEM_E_IO, "blocker");
    assert_null(od.partial);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_goldens),
        cmocka_unit_test(test_decode_info),
        cmocka_unit_test(test_bad_images),
        cmocka_unit_test(test_png_write_roundtrip),
        cmocka_unit_test(test_atomic_write),
        cmocka_unit_test(test_outdir),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
