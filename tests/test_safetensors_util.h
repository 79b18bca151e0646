/* Shared by the safetensors tests (test_safetensors: round trips, conversion, atomic
 * writes; test_safetensors_corrupt: corrupt files): a temporary folder, files written
 * byte by byte, a sample map of every dtype, error checks. Included first. */
#ifndef STEM_TEST_SAFETENSORS_UTIL_H
#define STEM_TEST_SAFETENSORS_UTIL_H

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

static inline int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    chmod(path, 0700); /* undo the read-only directory test */
    return remove(path);
}

static inline int group_setup(void **state) {
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/stem_test_safetensors_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    return mkdtemp(g_dir) ? 0 : -1;
}

static inline int group_teardown(void **state) {
    (void)state;
    return nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* "<g_dir>/<name>" in one of a few rotating buffers. */
static inline const char *in_dir(const char *name) {
    static char bufs[4][PATH_MAX];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, PATH_MAX, "%s/%s", g_dir, name);
    return b;
}

static inline void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len) assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* A file whose length field says `header_len`, followed by `header_bytes` of header and
 * `data_len` bytes of data (0..255 repeating). */
static inline void write_raw(const char *path, uint64_t header_len, const char *header, size_t header_bytes, size_t data_len) {
    size_t total = 8 + header_bytes + data_len;
    uint8_t *buf = malloc(total);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(header_len >> (8 * i));
    memcpy(buf + 8, header, header_bytes);
    for (size_t i = 0; i < data_len; i++) buf[8 + header_bytes + i] = (uint8_t)i;
    write_bytes(path, buf, total);
    free(buf);
}

static inline const char *write_json(const char *name, const char *json, size_t data_len) {
    const char *path = in_dir(name);
    write_raw(path, strlen(json), json, strlen(json), data_len);
    return path;
}

/* Same, with the header padded with spaces so that the data block starts 8-aligned. */
static inline const char *write_json_aligned(const char *name, const char *json, size_t data_len) {
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

static inline bool dir_has_temp_files(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    bool found = false;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) found = true;
    closedir(d);
    return found;
}

static inline bool file_exists(const char *path) {
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
static inline void expect_error(const char *path, stem_status want, const char *tensor, const char *what) {
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

/* ---- a sample of every dtype --------------------------------------------------- */

static inline stem_tensor make(stem_dtype dt, int ndim, const int64_t *shape) {
    stem_tensor t;
    assert_int_equal(stem_tensor_new(stem_cpu_backend(), dt, ndim, shape, &t), STEM_OK);
    uint8_t *p = t.data;
    for (size_t i = 0; i < stem_nbytes(&t); i++) p[i] = (uint8_t)(i * 7 + 3);
    return t;
}

/* f16 1.0, -2.0, 65504, 2^-24 */
static const uint16_t k_f16_bits[4] = {0x3C00, 0xC000, 0x7BFF, 0x0001};

static inline void build_sample(stem_tensor_map *m) {
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

static inline void assert_same_tensor(const char *name, const stem_tensor *a, const stem_tensor *b) {
    if (a->dtype != b->dtype) fail_msg("%s: dtype %s vs %s", name, stem_dtype_name(a->dtype), stem_dtype_name(b->dtype));
    if (!stem_same_shape(a, b)) fail_msg("%s: shapes differ", name);
    if (stem_nbytes(a)) assert_memory_equal(a->data, b->data, stem_nbytes(a));
}

static inline void assert_same_maps(const stem_tensor_map *want, const stem_tensor_map *got) {
    assert_int_equal(got->count, want->count);
    for (int i = 0; i < want->count; i++) {
        assert_string_equal(got->items[i].name, want->items[i].name); /* file order is insertion order */
        assert_same_tensor(want->items[i].name, &want->items[i].tensor, &got->items[i].tensor);
    }
    assert_int_equal(got->meta_count, want->meta_count);
    for (int i = 0; i < want->meta_count; i++)
        assert_string_equal(stem_tensor_map_get_meta(got, want->meta[i].key), want->meta[i].value);
}

#endif
