/* Shared by the libFuzzer harnesses: the parsers under test read files, so each input is
 * written to a private temporary folder (one per process, removed at exit) first. */
#ifndef STEM_FUZZ_UTIL_H
#define STEM_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/atomic_file.h"

static char fuzz_dir_buf[512];

static void fuzz_cleanup(void) {
    if (fuzz_dir_buf[0]) stem_remove_tree(fuzz_dir_buf);
}

/* The process's scratch folder. */
static inline const char *fuzz_dir(void) {
    if (!fuzz_dir_buf[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(fuzz_dir_buf, sizeof fuzz_dir_buf, "%s/stem-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(fuzz_dir_buf)) abort();
        atexit(fuzz_cleanup);
    }
    return fuzz_dir_buf;
}

/* "<scratch>/<name>" (a static buffer per call site is enough: callers copy or use at once). */
static inline void fuzz_path(char *buf, size_t len, const char *name) { snprintf(buf, len, "%s/%s", fuzz_dir(), name); }

/* Writes data to <scratch>/<name>; returns the path in buf. */
static inline const char *fuzz_write(char *buf, size_t len, const char *name, const uint8_t *data, size_t n) {
    fuzz_path(buf, len, name);
    FILE *f = fopen(buf, "wb");
    if (!f) abort();
    if (n && fwrite(data, 1, n, f) != n) abort();
    fclose(f);
    return buf;
}

/* Splits data at each "\n--8<--\n" into at most max parts (the seed format of harnesses
 * that read several files); returns how many. */
#define FUZZ_SEPARATOR "\n--8<--\n"
static inline int fuzz_split(const uint8_t *data, size_t n, const uint8_t **part, size_t *len, int max) {
    const size_t sl = sizeof FUZZ_SEPARATOR - 1;
    int k = 0;
    size_t start = 0;
    for (size_t i = 0; k < max - 1 && i + sl <= n; i++) {
        if (memcmp(data + i, FUZZ_SEPARATOR, sl) == 0) {
            part[k] = data + start;
            len[k++] = i - start;
            start = i + sl;
            i += sl - 1;
        }
    }
    part[k] = data + start;
    len[k++] = n - start;
    for (int j = k; j < max; j++) {
        part[j] = NULL;
        len[j] = 0;
    }
    return k;
}

static inline void fuzz_no_note(void *user, const char *msg) {
    (void)user;
    (void)msg;
}

#endif
