/* safetensors: a set of corrupt files generated here, each of which must fail with
 * the right status and a message naming the file and the tensor; bad header lengths,
 * truncated files, paths that are not regular files. */
#include "test_safetensors_util.h"

/* ---- corrupt files -------------------------------------------------------------- */

typedef struct corrupt_case {
    const char *file, *json;
    size_t data_len;
    const char *tensor, *what;
} corrupt_case;

#define ENTRY(dtype, shape, offs) "{\"dtype\":" dtype ",\"shape\":" shape ",\"data_offsets\":" offs "}"

static const corrupt_case k_corrupt[] = {
    {"invalid_json.st", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], ", 4, NULL, "not valid JSON"},
    {"bad_token.st", "{\"w\": {\"dtype\": F32}}", 4, NULL, "not valid JSON"},
    {"trailing.st", "{} xyz", 0, NULL, "trailing data"},
    {"two_objects.st", "{}{}", 0, NULL, "trailing data"},
    {"array_root.st", "[1, 2, 3]", 0, NULL, "not a JSON object"},
    {"string_root.st", "\"weights\"", 0, NULL, "not a JSON object"},
    {"entry_not_object.st", "{\"w\": [1, 2]}", 0, "w", "not an object"},
    {"missing_dtype.st", "{\"w\": {\"shape\": [2], \"data_offsets\": [0, 8]}}", 8, "w", "missing \"dtype\""},
    {"missing_shape.st", "{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 8]}}", 8, "w", "missing \"shape\""},
    {"missing_offsets.st", "{\"w\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8, "w", "missing \"data_offsets\""},
    {"dtype_number.st", "{\"w\":" ENTRY("5", "[2]", "[0,8]") "}", 8, "w", "\"dtype\" must be a string"},
    {"dtype_f64.st", "{\"w\":" ENTRY("\"F64\"", "[1]", "[0,8]") "}", 8, "w", "unsupported dtype"},
    {"dtype_bool.st", "{\"ok\":" ENTRY("\"F32\"", "[1]", "[0,4]") ",\"mask\":" ENTRY("\"BOOL\"", "[4]", "[4,8]") "}", 8,
     "mask", "unsupported dtype"},
    {"dtype_i8.st", "{\"w\":" ENTRY("\"I8\"", "[4]", "[0,4]") "}", 4, "w", "\"I8\""},
    {"dtype_f8.st", "{\"w\":" ENTRY("\"F8_E4M3\"", "[4]", "[0,4]") "}", 4, "w", "unsupported dtype"},
    {"dtype_lower.st", "{\"w\":" ENTRY("\"f32\"", "[1]", "[0,4]") "}", 4, "w", "unsupported dtype"},
    {"shape_negative.st", "{\"w\":" ENTRY("\"F32\"", "[2, -1]", "[0,8]") "}", 8, "w", "negative"},
    {"shape_float.st", "{\"w\":" ENTRY("\"F32\"", "[2.0]", "[0,8]") "}", 8, "w", "must be an integer"},
    {"shape_not_array.st", "{\"w\":" ENTRY("\"F32\"", "2", "[0,8]") "}", 8, "w", "\"shape\" must be an array"},
    {"shape_rank7.st", "{\"w\":" ENTRY("\"F32\"", "[1,1,1,1,1,1,2]", "[0,8]") "}", 8, "w", "rank"},
    {"shape_overflow.st", "{\"w\":" ENTRY("\"F32\"", "[4294967296, 4294967296, 16]", "[0,4]") "}", 4, "w", "overflow"},
    {"shape_overflow_bytes.st", "{\"w\":" ENTRY("\"I64\"", "[4611686018427387904]", "[0,8]") "}", 8, "w", "overflow"},
    {"shape_huge_int.st", "{\"w\":" ENTRY("\"F32\"", "[99999999999999999999]", "[0,4]") "}", 4, "w", "too large"},
    {"offsets_range.st", "{\"w\":" ENTRY("\"F32\"", "[2]", "[0,8]") "}", 4, "w", "out of range"},
    {"offsets_far.st", "{\"w\":" ENTRY("\"F32\"", "[2]", "[1000000,1000008]") "}", 16, "w", "out of range"},
    {"offsets_reversed.st", "{\"w\":" ENTRY("\"F32\"", "[0]", "[8,0]") "}", 8, "w", "begin > end"},
    {"offsets_short.st", "{\"w\":" ENTRY("\"F32\"", "[2]", "[8]") "}", 8, "w", "data_offsets"},
    {"offsets_negative.st", "{\"w\":" ENTRY("\"F32\"", "[1]", "[-4,0]") "}", 8, "w", "negative"},
    {"offsets_string.st", "{\"w\":" ENTRY("\"F32\"", "[1]", "[\"0\",4]") "}", 8, "w", "must be an integer"},
    {"size_mismatch.st", "{\"w\":" ENTRY("\"F32\"", "[3]", "[0,8]") "}", 8, "w", "does not match"},
    {"size_mismatch_dtype.st", "{\"w\":" ENTRY("\"F16\"", "[4]", "[0,16]") "}", 16, "w", "expected 8 bytes"},
    {"overlap.st", "{\"a\":" ENTRY("\"F32\"", "[4]", "[0,16]") ",\"b\":" ENTRY("\"F32\"", "[4]", "[8,24]") "}", 24, "b",
     "overlaps tensor 'a'"},
    {"overlap_same.st", "{\"a\":" ENTRY("\"F32\"", "[2]", "[0,8]") ",\"b\":" ENTRY("\"I64\"", "[1]", "[0,8]") "}", 8,
     NULL, "overlaps tensor"},
    {"overlap_inside.st",
     "{\"big\":" ENTRY("\"U8\"", "[32]", "[0,32]") ",\"x\":" ENTRY("\"U8\"", "[4]", "[40,44]") ",\"in\":" ENTRY(
         "\"U8\"", "[2]", "[20,22]") "}",
     48, "in", "overlaps tensor 'big'"},
    {"meta_not_string.st", "{\"__metadata__\": {\"format\": \"pt\", \"epoch\": 3}}", 0, NULL, "'epoch'"},
    {"meta_not_object.st", "{\"__metadata__\": [\"pt\"]}", 0, NULL, "__metadata__"},
};

static void test_corrupt_headers(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof k_corrupt / sizeof *k_corrupt; i++) {
        const corrupt_case *c = &k_corrupt[i];
        const char *path = write_json(c->file, c->json, c->data_len);
        expect_error(path, STEM_E_FORMAT, c->tensor, c->what);
    }
}

static void test_bad_header_length(void **state) {
    (void)state;
    const char *path = in_dir("len_zero.st");
    write_raw(path, 0, "{}", 2, 0);
    expect_error(path, STEM_E_FORMAT, NULL, "header length is 0");

    path = in_dir("len_past_end.st");
    write_raw(path, 1000, "{}      ", 8, 16);
    expect_error(path, STEM_E_FORMAT, NULL, "exceeds the file");

    path = in_dir("len_huge.st");
    write_raw(path, UINT64_MAX, "{}      ", 8, 0);
    expect_error(path, STEM_E_FORMAT, NULL, "too large");

    path = in_dir("len_101mb.st");
    write_raw(path, 101u * 1000 * 1000, "{}      ", 8, 0);
    expect_error(path, STEM_E_FORMAT, NULL, "too large");

    path = in_dir("short.st");
    write_bytes(path, "\x02\0\0\0", 4);
    expect_error(path, STEM_E_FORMAT, NULL, "too short");

    path = in_dir("zero_bytes.st");
    write_bytes(path, "", 0);
    expect_error(path, STEM_E_FORMAT, NULL, "too short");

    /* a NUL inside the header is not padding */
    path = in_dir("nul_padding.st");
    write_raw(path, 8, "{}\0     ", 8, 0);
    expect_error(path, STEM_E_FORMAT, NULL, "trailing data");

    /* invalid UTF-8 in a tensor name */
    path = write_json("bad_utf8.st", "{\"w\xff\":" ENTRY("\"F32\"", "[1]", "[0,4]") "}", 4);
    expect_error(path, STEM_E_FORMAT, NULL, "not valid JSON");
}

static void test_truncated(void **state) {
    (void)state;
    stem_tensor_map m;
    build_sample(&m);
    const char *path = in_dir("truncated.safetensors");
    assert_int_equal(stem_safetensors_save(path, &m), STEM_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    const char *last = m.items[m.count - 1].name; /* f32_6d: 48 bytes at the end */

    /* cut inside the data: the last tensor runs past the end */
    assert_int_equal(truncate(path, st.st_size - 3), 0);
    expect_error(path, STEM_E_FORMAT, last, "out of range");

    /* cut right after the header: every non-empty tensor is out of range; the first is named */
    uint8_t len8[8];
    FILE *f = fopen(path, "rb");
    assert_int_equal(fread(len8, 1, 8, f), 8);
    fclose(f);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | len8[i];
    assert_int_equal(truncate(path, (off_t)(8 + hl)), 0);
    expect_error(path, STEM_E_FORMAT, "f32", "out of range");

    /* cut inside the header */
    assert_int_equal(truncate(path, (off_t)(8 + hl / 2)), 0);
    expect_error(path, STEM_E_FORMAT, NULL, "exceeds the file");

    /* cut inside the length field */
    assert_int_equal(truncate(path, 5), 0);
    expect_error(path, STEM_E_FORMAT, NULL, "too short");
    stem_tensor_map_free(&m);
}

static void test_not_a_file(void **state) {
    (void)state;
    const char *path = in_dir("does_not_exist.safetensors");
    expect_error(path, STEM_E_IO, NULL, "No such file");

    path = in_dir("a_directory.safetensors");
    assert_int_equal(mkdir(path, 0755), 0);
    expect_error(path, STEM_E_IO, NULL, "directory");

    path = in_dir("a_fifo.safetensors");
    assert_int_equal(mkfifo(path, 0644), 0);
    expect_error(path, STEM_E_IO, NULL, "not a regular file"); /* and does not block */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corrupt_headers),
        cmocka_unit_test(test_bad_header_length),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_not_a_file),
    };
    return cmocka_run_group_tests_name("safetensors", tests, group_setup, group_teardown);
}
