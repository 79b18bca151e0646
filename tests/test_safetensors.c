/* safetensors: round trips over every dtype, conversion on load, and atomic writes
 * that leave nothing behind on failure. Corrupt files: test_safetensors_corrupt.c. */
#include "test_safetensors_util.h"

/* ---- round trips ---------------------------------------------------------------- */

static void test_round_trip(void **state) {
    (void)state;
    stem_tensor_map m, r;
    build_sample(&m);
    const char *path = in_dir("round_trip.safetensors");
    assert_int_equal(stem_safetensors_save(path, &m), STEM_OK);
    assert_false(dir_has_temp_files(g_dir));

    assert_int_equal(stem_safetensors_load(path, -1, &r), STEM_OK);
    assert_same_maps(&m, &r);
    assert_non_null(r.mapping);
    for (int i = 0; i < r.count; i++) {
        const stem_tensor *t = &r.items[i].tensor;
        assert_ptr_equal(t->backend, stem_cpu_backend());
        assert_non_null(t->data);
        if ((uintptr_t)t->data % stem_dtype_size(t->dtype) != 0) fail_msg("%s: misaligned data", r.items[i].name);
    }
    /* f32 sits at offset 0 of the data block: it points into the mapping */
    assert_false(stem_tensor_map_get(&r, "f32")->owned);
    stem_tensor_map_free(&r);
    assert_null(r.items);
    assert_null(r.mapping);

    /* the file layout: 8-byte length, header padded with spaces to 8, consecutive data */
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t len8[8];
    assert_int_equal(fread(len8, 1, 8, f), 8);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | len8[i];
    assert_int_equal(hl % 8, 0);
    char *header = calloc(1, hl + 1);
    assert_int_equal(fread(header, 1, hl, f), hl);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    size_t data = 0;
    for (int i = 0; i < m.count; i++) data += stem_nbytes(&m.items[i].tensor);
    assert_int_equal((size_t)size, 8 + hl + data);
    char *close_brace = strrchr(header, '}');
    assert_non_null(close_brace);
    for (char *p = close_brace + 1; *p; p++) assert_int_equal(*p, ' ');
    assert_non_null(strstr(header, "\"data_offsets\":[0,24]")); /* f32 [2,3] comes first */
    assert_non_null(strstr(header, "\"data_offsets\":[24,29]")); /* then u8 [5] */
    free(header);
    stem_tensor_map_free(&m);
}

static void test_load_converts(void **state) {
    (void)state;
    stem_tensor_map m, r;
    build_sample(&m);
    const char *path = in_dir("convert.safetensors");
    assert_int_equal(stem_safetensors_save(path, &m), STEM_OK);

    /* to f32: f16 and bf16 become exact f32 values; integers are never converted */
    assert_int_equal(stem_safetensors_load(path, STEM_F32, &r), STEM_OK);
    const stem_tensor *h = stem_tensor_map_get(&r, "f16");
    assert_non_null(h);
    assert_int_equal(h->dtype, STEM_F32);
    assert_true(h->owned);
    const float *hf = h->data;
    assert_true(hf[0] == 1.0f && hf[1] == -2.0f && hf[2] == 65504.0f && hf[3] == ldexpf(1.0f, -24));
    const stem_tensor *b = stem_tensor_map_get(&r, "bf16");
    assert_int_equal(b->dtype, STEM_F32);
    for (int i = 0; i < 4; i++) assert_true(((const float *)b->data)[i] == (float)i - 1.5f);
    assert_int_equal(stem_tensor_map_get(&r, "i32")->dtype, STEM_I32);
    assert_int_equal(stem_tensor_map_get(&r, "u8")->dtype, STEM_U8);
    assert_int_equal(stem_tensor_map_get(&r, "model.layers.0/weight i64")->dtype, STEM_I64);
    assert_same_tensor("f32", stem_tensor_map_get(&m, "f32"), stem_tensor_map_get(&r, "f32"));
    assert_true(*(const float *)stem_tensor_map_get(&r, "scalar")->data == 42.5f);
    assert_int_equal(stem_tensor_map_get(&r, "empty")->shape[0], 0);
    stem_tensor_map_free(&r);

    /* to f16: f32 values are rounded like stem_f32_to_f16 */
    assert_int_equal(stem_safetensors_load(path, STEM_F16, &r), STEM_OK);
    const stem_tensor *t = stem_tensor_map_get(&r, "f32");
    assert_int_equal(t->dtype, STEM_F16);
    for (int i = 0; i < 6; i++)
        assert_int_equal(((const uint16_t *)t->data)[i], stem_f32_to_f16(((const float *)m.items[0].tensor.data)[i]));
    assert_memory_equal(stem_tensor_map_get(&r, "f16")->data, k_f16_bits, sizeof k_f16_bits);
    assert_int_equal(stem_tensor_map_get(&r, "bf16")->dtype, STEM_F16);
    stem_tensor_map_free(&r);

    /* an integer target is not a conversion the loader does */
    stem_clear_error();
    assert_int_equal(stem_safetensors_load(path, STEM_I32, &r), STEM_E_ARG);
    assert_contains(stem_last_error(), path);
    stem_tensor_map_free(&m);
}

static void test_inspect(void **state) {
    (void)state;
    stem_tensor_map m, r;
    build_sample(&m);
    const char *path = in_dir("inspect.safetensors");
    assert_int_equal(stem_safetensors_save(path, &m), STEM_OK);
    assert_int_equal(stem_safetensors_inspect(path, &r), STEM_OK);
    assert_int_equal(r.count, m.count);
    assert_null(r.mapping);
    for (int i = 0; i < m.count; i++) {
        assert_string_equal(r.items[i].name, m.items[i].name);
        assert_int_equal(r.items[i].tensor.dtype, m.items[i].tensor.dtype);
        assert_true(stem_same_shape(&r.items[i].tensor, &m.items[i].tensor));
        assert_null(r.items[i].tensor.data);
    }
    assert_string_equal(stem_tensor_map_get_meta(&r, "format"), "pt");
    /* a header-only map cannot be saved: it has no data */
    const char *out = in_dir("from_inspect.safetensors");
    stem_clear_error();
    assert_int_equal(stem_safetensors_save(out, &r), STEM_E_ARG);
    assert_contains(stem_last_error(), out);
    assert_contains(stem_last_error(), "tensor 'f32'");
    assert_false(file_exists(out));
    stem_tensor_map_free(&r);
    stem_tensor_map_free(&m);
}

/* Saving a loaded map over the file it was loaded from: its tensors point into the old
 * file's mapping, which stays valid because the new file is renamed into place. */
static void test_resave_over_source(void **state) {
    (void)state;
    stem_tensor_map m, r, r2;
    build_sample(&m);
    const char *path = in_dir("resave.safetensors");
    assert_int_equal(stem_safetensors_save(path, &m), STEM_OK);
    assert_int_equal(stem_safetensors_load(path, -1, &r), STEM_OK);
    assert_int_equal(stem_tensor_map_set_meta(&r, "format", "resaved"), STEM_OK);
    assert_int_equal(stem_safetensors_save(path, &r), STEM_OK);
    assert_int_equal(stem_safetensors_load(path, -1, &r2), STEM_OK);
    assert_same_maps(&r, &r2);
    assert_string_equal(stem_tensor_map_get_meta(&r2, "format"), "resaved");
    stem_tensor_map_free(&r2);
    stem_tensor_map_free(&r);
    stem_tensor_map_free(&m);
    assert_false(dir_has_temp_files(g_dir));
}

static void test_empty_map(void **state) {
    (void)state;
    stem_tensor_map m, r;
    stem_tensor_map_init(&m);
    const char *path = in_dir("empty.safetensors");
    assert_int_equal(stem_safetensors_save(path, &m), STEM_OK);
    assert_int_equal(stem_safetensors_load(path, -1, &r), STEM_OK);
    assert_int_equal(r.count, 0);
    assert_int_equal(r.meta_count, 0);
    stem_tensor_map_free(&r);
}

/* Files written by other tools: any padding, gaps, null metadata, unaligned offsets. */
static void test_foreign_files(void **state) {
    (void)state;
    stem_tensor_map r;
    const char *path = write_json("padded.safetensors", "{\"__metadata__\":null} \t\r\n   ", 0);
    assert_int_equal(stem_safetensors_load(path, -1, &r), STEM_OK);
    assert_int_equal(r.count, 0);
    stem_tensor_map_free(&r);

    /* u8 [3] at 0; f32 [2] at the odd offset 3 (gap after it); f16 [2] at 13; an empty
     * tensor inside the f32 range (empty ranges overlap nothing) */
    path = write_json_aligned("unaligned.safetensors",
                      "{\"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                      "\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[3,11]},"
                      "\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[13,17]},"
                      "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[5,5]}}",
                      20);
    for (int want = -1; want <= STEM_F32; want++) {
        assert_int_equal(stem_safetensors_load(path, want, &r), STEM_OK);
        assert_int_equal(r.count, 4);
        assert_string_equal(r.items[0].name, "u");
        assert_string_equal(r.items[3].name, "e");
        const stem_tensor *f = stem_tensor_map_get(&r, "f"), *h = stem_tensor_map_get(&r, "h");
        assert_int_equal((uintptr_t)f->data % 4, 0);
        assert_true(f->owned); /* copied to be aligned */
        uint8_t expect[8] = {3, 4, 5, 6, 7, 8, 9, 10};
        assert_memory_equal(f->data, expect, 8);
        if (want == STEM_F32) {
            uint16_t hb[2] = {13 | 14 << 8, 15 | 16 << 8};
            assert_int_equal(h->dtype, STEM_F32);
            assert_true(((const float *)h->data)[0] == stem_f16_to_f32(hb[0]));
            assert_true(((const float *)h->data)[1] == stem_f16_to_f32(hb[1]));
        } else {
            assert_int_equal(h->dtype, STEM_F16);
            assert_int_equal((uintptr_t)h->data % 2, 0);
        }
        stem_tensor_map_free(&r);
    }
}

/* ---- atomic writes -------------------------------------------------------------- */

static void expect_save_fails(const char *path, const stem_tensor_map *m, const char *what) {
    stem_clear_error();
    stem_status s = stem_safetensors_save(path, m);
    if (s != STEM_E_IO) fail_msg("save(%s): %s, expected i/o error (%s)", path, stem_status_name(s), stem_last_error());
    assert_contains(stem_last_error(), path);
    if (what) assert_contains(stem_last_error(), what);
}

static void test_save_failures_leave_nothing(void **state) {
    (void)state;
    stem_tensor_map m;
    build_sample(&m);

    const char *path = in_dir("no_such_dir/out.safetensors");
    expect_save_fails(path, &m, "No such file");
    assert_false(file_exists(path));

    /* the target is an existing directory: the rename fails, the temp file goes */
    path = in_dir("target_is_dir");
    assert_int_equal(mkdir(path, 0755), 0);
    expect_save_fails(path, &m, NULL);
    assert_false(dir_has_temp_files(g_dir));

    if (geteuid() != 0) {
        const char *ro = in_dir("read_only");
        assert_int_equal(mkdir(ro, 0555), 0);
        path = in_dir("read_only/out.safetensors");
        expect_save_fails(path, &m, "Permission denied");
        assert_false(file_exists(path));
    } else {
        print_message("running as root: the read-only directory case is not meaningful, skipped\n");
    }
    stem_tensor_map_free(&m);
}

/* A write that fails half way (file size limit: EFBIG, like ENOSPC) leaves the old file
 * as it was and no temporary file. */
static void test_save_fails_midway(void **state) {
    (void)state;
    stem_tensor_map small, big;
    build_sample(&small);
    const char *path = in_dir("midway.safetensors");
    assert_int_equal(stem_safetensors_save(path, &small), STEM_OK);

    stem_tensor_map_init(&big);
    assert_int_equal(stem_tensor_map_put(&big, "big", make(STEM_F32, 1, (int64_t[]){1 << 20})), STEM_OK);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 64 * 1024;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    stem_clear_error();
    stem_status s = stem_safetensors_save(path, &big);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", stem_last_error());
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    if (s != STEM_E_IO) fail_msg("expected an i/o error, got %s: %s", stem_status_name(s), msg);
    assert_contains(msg, path);
    assert_contains(msg, "File too large");
    assert_false(dir_has_temp_files(g_dir));

    stem_tensor_map r;
    assert_int_equal(stem_safetensors_load(path, -1, &r), STEM_OK);
    assert_same_maps(&small, &r);
    stem_tensor_map_free(&r);
    stem_tensor_map_free(&big);
    stem_tensor_map_free(&small);
}

/* A "device" whose downloads fail: the error names the tensor, nothing is left behind. */
static stem_status failing_download(stem_backend *be, void *dst, const void *src, size_t n) {
    (void)be; (void)dst; (void)src; (void)n;
    return stem_fail(STEM_E_BACKEND, "device lost");
}

static void test_save_download_failure(void **state) {
    (void)state;
    static const stem_backend_ops ops = {.download = failing_download};
    stem_backend dev = {.ops = &ops, .kind = STEM_BACKEND_CUDA, .name = "fake", .host_memory = false};
    static float device_mem[4];
    stem_tensor_map m;
    build_sample(&m);
    assert_int_equal(stem_tensor_map_put(&m, "on_device", stem_tensor_wrap(&dev, STEM_F32, 1, (int64_t[]){4}, device_mem)),
                     STEM_OK);
    const char *path = in_dir("download.safetensors");
    stem_clear_error();
    assert_int_equal(stem_safetensors_save(path, &m), STEM_E_BACKEND);
    assert_contains(stem_last_error(), path);
    assert_contains(stem_last_error(), "tensor 'on_device'");
    assert_contains(stem_last_error(), "device lost");
    assert_false(file_exists(path));
    assert_false(dir_has_temp_files(g_dir));
    stem_tensor_map_free(&m);
}

static void test_save_rejects_reserved_name(void **state) {
    (void)state;
    stem_tensor_map m;
    stem_tensor_map_init(&m);
    assert_int_equal(stem_tensor_map_put(&m, "__metadata__", make(STEM_F32, 1, (int64_t[]){1})), STEM_OK);
    const char *path = in_dir("reserved.safetensors");
    stem_clear_error();
    assert_int_equal(stem_safetensors_save(path, &m), STEM_E_ARG);
    assert_contains(stem_last_error(), path);
    assert_false(file_exists(path));
    stem_tensor_map_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_load_converts),
        cmocka_unit_test(test_inspect),
        cmocka_unit_test(test_resave_over_source),
        cmocka_unit_test(test_empty_map),
        cmocka_unit_test(test_foreign_files),
        cmocka_unit_test(test_save_failures_leave_nothing),
        cmocka_unit_test(test_save_fails_midway),
        cmocka_unit_test(test_save_download_failure),
        cmocka_unit_test(test_save_rejects_reserved_name),
    };
    return cmocka_run_group_tests_name("safetensors", tests, group_setup, group_teardown);
}
