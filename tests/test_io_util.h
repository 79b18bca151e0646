/* Shared by the I/O tests (test_image_io: images, PNG writing, output folders;
 * test_frames_io: frame folders, videos, frame output, contact sheets): a temporary
 * folder and the PIL decode goldens (setup/teardown), file helpers, error checks.
 * Included first (it includes cmocka and config.h). */
#ifndef STEM_TEST_IO_UTIL_H
#define STEM_TEST_IO_UTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* mkdtemp, nftw */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "backends/backends.h"
#include "core/backend.h"
#include "core/tensor_map.h"
#include "io/atomic_file.h"
#include "io/contact_sheet.h"
#include "io/frames.h"
#include "io/image.h"
#include "io/resize.h"
#include "io/safetensors.h"
#include "test_util.h"


static char g_dir[1024];
static stem_tensor_map g_decode;

static inline int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static inline int setup(void **state) {
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/stem_test_image_io_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/golden/io/decode.safetensors", test_refdata_dir());
    if (stem_safetensors_load(path, -1, &g_decode) != STEM_OK) {
        fprintf(stderr, "%s\n", stem_last_error());
        return -1;
    }
    return 0;
}

static inline int teardown(void **state) {
    (void)state;
    stem_tensor_map_free(&g_decode);
    return nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* "<g_dir>/<name>" in one of a few rotating buffers. */
static inline const char *in_dir(const char *name) {
    static char bufs[8][PATH_MAX];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, PATH_MAX, "%s/%s", g_dir, name);
    return b;
}

static inline const char *golden_image(const char *name) {
    static char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s/golden/io/images/%s", test_refdata_dir(), name);
    return buf;
}

static inline void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len) assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static inline uint8_t *read_bytes(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static inline bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static inline int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static inline void expect_error(stem_status got, stem_status want, const char *must_contain) {
    if (got != want || !strstr(stem_last_error(), must_contain))
        fprintf(stderr, "status %s (want %s), message: %s (want it to contain '%s')\n", stem_status_name(got),
                stem_status_name(want), stem_last_error(), must_contain);
    assert_int_equal(got, want);
    assert_non_null(strstr(stem_last_error(), must_contain));
}

/* A deterministic test image. */
static inline void fill_pattern(stem_image *img, int seed) {
    for (int y = 0; y < img->height; y++)
        for (int x = 0; x < img->width; x++)
            for (int c = 0; c < 3; c++)
                img->rgb[((size_t)y * img->width + x) * 3 + c] = (uint8_t)(x * 7 + y * 13 + c * 50 + seed * 31);
}

typedef struct notes {
    int count;
    char last[1024];
} notes;

static inline void collect_note(void *user, const char *msg) {
    notes *n = user;
    n->count++;
    snprintf(n->last, sizeof n->last, "%s", msg);
}

/* dst = the first `fraction` of src's bytes. */
static inline void truncated_copy(const char *src, const char *dst, double fraction) {
    size_t len;
    uint8_t *b = read_bytes(src, &len);
    write_bytes(dst, b, (size_t)(len * fraction));
    free(b);
}

#endif
