/* safetensors: round trips over every dtype, conversion on load, a set of corrupt
 * files generated here (each must fail with the right status and a message naming
 * the file and the tensor), and atomic writes that leave nothing behind on failure. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* mkdtemp, nftw, mkfifo, truncate */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/backends.h"
#include "core/backend.h"
#include "core/tensor_map.h"
#include "io/safetensors.h"

static char g_dir[1024]; /* short enough that "<g_dir>/<name>" always fits PATH_MAX */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    chmod(path, 0700); /* undo the read-only directory test */
    return remove(path);
}

static int group_setup(void **state) {
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/stem_test_safetensors_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    return nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* "<g_dir>/<name>" in one of a few rotating buffers. */
static const char *in_dir(const char *name) {
    static char bufs[4][PATH_MAX];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, PATH_MAX, "%s/%s", g_dir, name);
    return b;
}

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len) assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* A file whose length field says `header_len`, followed by `header_bytes` of header and
 * `data_len` bytes of data (0..255 repeating). */
static void write_raw(const char *path, uint64_t header_len, const char *header, size_t header_bytes, size_t data_len) {
    size_t total = 8 + header_bytes + data_len;
    uint8_t *buf = malloc(total);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(header_len >> (8 * i));
    memcpy(buf + 8, header, header_bytes);
    for (size_t i = 0; i < data_len; i++) buf[8 + header_bytes + i] = (uint8_t)i;
    write_bytes(path, buf, total);
    free(buf);
}

static const char *write_json(const char *name, const char *json, size_t data_len) {
    const char *path = in_dir(name);
    write_raw(path, strlen(json), json, strlen(json), data_len);
    return path;
}

/* Same, with the header padded with spaces so that the data block starts 8-aligned. */
static const char *write_json_aligned(const char *name, const char *json, size_t data_len) {
    const char *path = in_dir(name);
    size_t n = strlen(json), padded = (n + 7) / 8 * 8;
    char *h = malloc(padded);
    assert_non_null(h);
    memcpy(h, json, n);
    memset(h + n, ' ', padded - n);
    write_raw(path, padded, h, padded, data_len);
    free(h);
    return path;
}

static bool dir_has_temp_files(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    bool found = false;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) found = true;
    closedir(d);
    return found;
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

#define assert_contains(haystack, needle)                                                  \
    do {                                                                                   \
        const char *h_ = (haystack), *n_ = (needle);                                       \
        if (!strstr(h_, n_)) fail_msg("message \"%s\" does not contain \"%s\"", h_, n_); \
    } while (0)

/* Both the loader and inspect must fail with `want`, naming the file, the tensor (when
 * given) and `what` (when given), and leave the map empty. */
static void expect_error(const char *path, stem_status want, const char *tensor, const char *what) {
    for (int pass = 0; pass < 2; pass++) {
        stem_tensor_map m;
        stem_clear_error();
        stem_status s = pass == 0 ? stem_safetensors_load(path, -1, &m) : stem_safetensors_inspect(path, &m);
        const char *msg = stem_last_error();
        if (s != want)
            fail_msg("%s(%s): status %s, expected %s (message: %s)", pass ? "inspect" : "load", path,
                     stem_status_name(s), stem_status_name(want), msg);
        assert_contains(msg, path);
        if (tensor) {
            char q[256];
            snprintf(q, sizeof q, "tensor '%s'", tensor);
            assert_contains(msg, q);
        }
        if (what) assert_contains(msg, what);
        if (pass == 0 && getenv("STEM_TEST_VERBOSE")) print_message("%s\n", msg);
        assert_int_equal(m.count, 0);
        assert_int_equal(m.meta_count, 0);
        assert_null(m.mapping);
        stem_tensor_map_free(&m);
    }
}

/* ---- round trips ---------------------------------------------------------------- */

static stem_tensor make(stem_dtype dt, int ndim, const int64_t *shape) {
    stem_tensor t;
    assert_int_equal(stem_tensor_new(stem_cpu_backend(), dt, ndim, shape, &t), STEM_OK);
    uint8_t *p = t.data;
    for (size_t i = 0; i < stem_nbytes(&t); i++) p[i] = (uint8_t)(i * 7 + 3);
    return t;
}

/* f16 1.0, -2.0, 65504, 2^-24 */
static const uint16_t k_f16_bits[4] = {0x3C00, 0xC000, 0x7BFF, 0x0001};

static void build_sample(stem_tensor_map *m) {
    stem_tensor_map_init(m);
    stem_tensor t = make(STEM_F32, 2, (int64_t[]){2, 3});
    for (int i = 0; i < 6; i++) ((float *)t.data)[i] = (float)i * 0.5f - 1.0f;
    assert_int_equal(stem_tensor_map_put(m, "f32", t), STEM_OK);
    /* 5 bytes: everything after it sits at odd offsets in the data block */
    assert_int_equal(stem_tensor_map_put(m, "u8", make(STEM_U8, 1, (int64_t[]){5})), STEM_OK);
    t = make(STEM_F16, 1, (int64_t[]){4});
    memcpy(t.data, k_f16_bits, sizeof k_f16_bits);
    assert_int_equal(stem_tensor_map_put(m, "f16", t), STEM_OK);
    t = make(STEM_BF16, 2, (int64_t[]){2, 2});
    for (int i = 0; i < 4; i++) ((uint16_t *)t.data)[i] = stem_f32_to_bf16((float)i - 1.5f);
    assert_int_equal(stem_tensor_map_put(m, "bf16", t), STEM_OK);
    t = make(STEM_I32, 1, (int64_t[]){3});
    ((int32_t *)t.data)[0] = INT32_MIN;
    assert_int_equal(stem_tensor_map_put(m, "i32", t), STEM_OK);
    t = make(STEM_I64, 1, (int64_t[]){2});
    ((int64_t *)t.data)[1] = INT64_MAX;
    assert_int_equal(stem_tensor_map_put(m, "model.layers.0/weight i64", t), STEM_OK);
    t = make(STEM_F32, 0, NULL);
    *(float *)t.data = 42.5f;
    assert_int_equal(stem_tensor_map_put(m, "scalar", t), STEM_OK);
    assert_int_equal(stem_tensor_map_put(m, "empty", make(STEM_F32, 2, (int64_t[]){0, 3})), STEM_OK);
    assert_int_equal(stem_tensor_map_put(m, "empty_u8", make(STEM_U8, 1, (int64_t[]){0})), STEM_OK);
    assert_int_equal(stem_tensor_map_put(m, "f32_6d", make(STEM_F32, 6, (int64_t[]){1, 2, 1, 2, 1, 3})), STEM_OK);
    assert_int_equal(stem_tensor_map_set_meta(m, "format", "pt"), STEM_OK);
    assert_int_equal(stem_tensor_map_set_meta(m, "note", "quote \" backslash \\ slash / \xc3\xbcnicode\n"), STEM_OK);
}

static void assert_same_tensor(const char *name, const stem_tensor *a, const stem_tensor *b) {
    if (a->dtype != b->dtype) fail_msg("%s: dtype %s vs %s", name, stem_dtype_name(a->dtype), stem_dtype_name(b->dtype));
    if (!stem_same_shape(a, b)) fail_msg("%s: shapes differ", name);
    if (stem_nbytes(a)) assert_memory_equal(a->data, b->data, stem_nbytes(a));
}

static void assert_same_maps(const stem_tensor_map *want, const stem_tensor_map *got) {
    assert_int_equal(got->count, want->count);
    for (int i = 0; i < want->count; i++) {
        assert_string_equal(got->items[i].name, want->items[i].name); /* file order is insertion order */
        assert_same_tensor(want->items[i].name, &want->items[i].tensor, &got->items[i].tensor);
    }
    assert_int_equal(got->meta_count, want->meta_count);
    for (int i = 0; i < want->meta_count; i++)
        assert_string_equal(stem_tensor_map_get_meta(got, want->meta[i].key), want->meta[i].value);
}

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
        cmocka_unit_test(test_corrupt_headers),
        cmocka_unit_test(test_bad_header_length),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_not_a_file),
        cmocka_unit_test(test_save_failures_leave_nothing),
        cmocka_unit_test(test_save_fails_midway),
        cmocka_unit_test(test_save_download_failure),
        cmocka_unit_test(test_save_rejects_reserved_name),
    };
    return cmocka_run_group_tests_name("safetensors", tests, group_setup, group_teardown);
}
