/* Shared by the golden and parity tests: where the golden files are, and listing them. */
#ifndef STEM_TEST_UTIL_H
#define STEM_TEST_UTIL_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef STEM_SOURCE_REFDATA
#define STEM_SOURCE_REFDATA "refdata"
#endif

/* $STEM_REFDATA (set by `make check`), else ./refdata. */
static inline const char *test_refdata_dir(void) {
    const char *d = getenv("STEM_REFDATA");
    return d && *d ? d : STEM_SOURCE_REFDATA;
}

static int test_cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted full paths of the .safetensors files in refdata/golden/SUBDIR; *count
 * receives how many (0, with a message, when the folder cannot be opened). */
static inline char **test_list_golden_dir(const char *subdir, int *count) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/golden/%s", test_refdata_dir(), subdir);
    DIR *d = opendir(dir);
    *count = 0;
    if (!d) {
        fprintf(stderr, "cannot open %s (set STEM_REFDATA to the refdata directory)\n", dir);
        return NULL;
    }
    char **paths = NULL;
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 12 || strcmp(e->d_name + n - 12, ".safetensors") != 0) continue;
        if (*count == cap) {
            cap = cap ? 2 * cap : 64;
            paths = realloc(paths, (size_t)cap * sizeof *paths);
        }
        size_t len = strlen(dir) + n + 2;
        paths[*count] = malloc(len);
        snprintf(paths[*count], len, "%s/%s", dir, e->d_name);
        (*count)++;
    }
    closedir(d);
    if (*count) qsort(paths, (size_t)*count, sizeof *paths, test_cmp_str);
    return paths;
}

/* The op goldens (refdata/golden/ops). */
static inline char **test_list_goldens(int *count) { return test_list_golden_dir("ops", count); }

/* "refdata/golden/ops/conv2d__stride2.safetensors" -> "conv2d__stride2" */
static inline const char *test_golden_label(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

#endif
