/* Shared by the model tests (text encoder, VAE, model folders): temporary folders,
 * edited copies of a tiny model component, golden comparison with a printed summary,
 * and error-message checks. Include after <cmocka.h>. */
#ifndef STEM_TEST_MODEL_UTIL_H
#define STEM_TEST_MODEL_UTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* mkdtemp, nftw */
#endif
#include <ftw.h>
#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stem.h"
#include "test_util.h"

/* A fresh temporary directory (under $TMPDIR). */
static inline void tm_mkdtemp(char *out, size_t cap, const char *tag) {
    const char *tmp = getenv("TMPDIR");
    snprintf(out, cap, "%s/stem_%s_XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
    if (!mkdtemp(out)) fail_msg("mkdtemp %s failed", out);
}

static int tm_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static inline void tm_rm_tree(const char *dir) { nftw(dir, tm_rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* "<refdata>/models/<model>[/<sub>]" */
static inline const char *tm_model_path(const char *model, const char *sub) {
    static char bufs[4][2048];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, 2048, "%s/models/%s%s%s", test_refdata_dir(), model, sub ? "/" : "", sub ? sub : "");
    return b;
}

typedef void (*tm_config_edit)(json_object *root, void *ctx);
typedef void (*tm_weights_edit)(stem_tensor_map *m, void *ctx);

/* Copies component folder `src` (config.json + the one weights file `weights`) into
 * `dst`, passing the config and the tensors through the edit callbacks (NULL: as is). */
static inline void tm_copy_component(const char *src, const char *dst, const char *weights, tm_config_edit cedit,
                                     tm_weights_edit wedit, void *ctx) {
    char p[4096];
    mkdir(dst, 0755);
    snprintf(p, sizeof p, "%s/config.json", src);
    json_object *root = json_object_from_file(p);
    if (!root) fail_msg("cannot read %s", p);
    if (cedit) cedit(root, ctx);
    snprintf(p, sizeof p, "%s/config.json", dst);
    if (json_object_to_file_ext(p, root, JSON_C_TO_STRING_PRETTY) != 0) fail_msg("cannot write %s", p);
    json_object_put(root);
    stem_tensor_map in, out;
    snprintf(p, sizeof p, "%s/%s", src, weights);
    if (stem_safetensors_load(p, -1, &in) != STEM_OK) fail_msg("%s", stem_last_error());
    stem_tensor_map_init(&out);
    for (int i = 0; i < in.count; i++) {
        stem_tensor v = in.items[i].tensor;
        v.owned = false;
        if (stem_tensor_map_put(&out, in.items[i].name, v) != STEM_OK) fail_msg("%s", stem_last_error());
    }
    if (wedit) wedit(&out, ctx);
    snprintf(p, sizeof p, "%s/%s", dst, weights);
    if (stem_safetensors_save(p, &out) != STEM_OK) fail_msg("%s", stem_last_error());
    stem_tensor_map_free(&out);
    stem_tensor_map_free(&in);
}

/* Removes tensor `name` from m (fails the test if absent). */
static inline void tm_remove_tensor(stem_tensor_map *m, const char *name) {
    stem_tensor_map out;
    stem_tensor_map_init(&out);
    bool found = false;
    for (int i = 0; i < m->count; i++) {
        if (!strcmp(m->items[i].name, name)) {
            found = true;
            continue;
        }
        stem_tensor v = m->items[i].tensor;
        v.owned = false; /* views of the source file */
        stem_tensor_map_put(&out, m->items[i].name, v);
    }
    if (!found) fail_msg("no tensor '%s' to remove", name);
    stem_tensor_map_free(m);
    *m = out;
}

/* Replaces tensor `name` with zeros of another shape (F16, like the tiny models). */
static inline void tm_reshape_tensor(stem_tensor_map *m, const char *name, int ndim, const int64_t *shape) {
    stem_tensor t;
    if (stem_tensor_zeros(stem_cpu_backend(), STEM_F16, ndim, shape, &t) != STEM_OK) fail_msg("%s", stem_last_error());
    if (!stem_tensor_map_get(m, name)) fail_msg("no tensor '%s' to replace", name);
    if (stem_tensor_map_put(m, name, t) != STEM_OK) fail_msg("%s", stem_last_error());
}

/* Renames tensor `from` to `to` (keeps order). */
static inline void tm_rename_tensor(stem_tensor_map *m, const char *from, const char *to) {
    for (int i = 0; i < m->count; i++)
        if (!strcmp(m->items[i].name, from)) {
            free(m->items[i].name);
            m->items[i].name = strdup(to);
            return;
        }
    fail_msg("no tensor '%s' to rename", from);
}

/* Asserts status `want` and that the message contains every given substring (NULL-terminated). */
static inline void tm_expect_error(stem_status got, stem_status want, ...) {
    const char *msg = stem_last_error();
    print_message("    expected %s: %s\n", stem_status_name(want), msg);
    if (got != want) fail_msg("status %s, expected %s (%s)", stem_status_name(got), stem_status_name(want), msg);
    va_list ap;
    va_start(ap, want);
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *))
        if (!strstr(msg, s)) fail_msg("message lacks '%s': %s", s, msg);
    va_end(ap);
}

/* Host f32 copy of any tensor (caller frees). */
static inline stem_tensor tm_host_f32(const stem_tensor *t) {
    stem_tensor h;
    if (stem_tensor_to(t, stem_cpu_backend(), STEM_F32, &h) != STEM_OK) fail_msg("%s", stem_last_error());
    return h;
}

/* allclose(got, want) with a printed summary; returns the violation count. */
static inline int64_t tm_compare(const char *label, const stem_tensor *got, const stem_tensor *want, double rtol,
                                 double atol) {
    stem_tensor g = tm_host_f32(got), w = tm_host_f32(want);
    stem_compare c;
    char desc[256];
    if (stem_compare_tensors(&g, &w, rtol, atol, &c) != STEM_OK) fail_msg("%s: %s", label, stem_last_error());
    stem_compare_describe(&c, rtol, atol, desc, sizeof desc);
    print_message("    %s: %s\n", label, desc);
    stem_tensor_free(&g);
    stem_tensor_free(&w);
    return c.violations;
}

/* max |x| of any tensor (NaN if it holds one). */
static inline double tm_max_abs(const stem_tensor *x) {
    stem_tensor h = tm_host_f32(x);
    double m = 0.0;
    for (int64_t i = 0; i < stem_numel(&h); i++) {
        double a = fabs(((const float *)h.data)[i]);
        if (!(a <= m)) m = a; /* NaN wins */
    }
    stem_tensor_free(&h);
    return m;
}

static inline double tm_meta_double(const stem_tensor_map *m, const char *key) {
    const char *v = stem_tensor_map_get_meta(m, key);
    if (!v) fail_msg("golden lacks metadata '%s'", key);
    return atof(v);
}

static inline stem_tensor *tm_require(const stem_tensor_map *m, const char *name) {
    stem_tensor *t = stem_tensor_map_get(m, name);
    if (!t) fail_msg("golden lacks tensor '%s'", name);
    return t;
}

/* The CUDA backend, or NULL with the reason printed once. */
static inline stem_backend *tm_cuda(void) {
    static stem_backend *cuda;
    static int tried;
    if (!tried) {
        tried = 1;
        if (stem_backend_open("cuda", &cuda) != STEM_OK) {
            fprintf(stderr, "CUDA parity tests skipped: %s\n", stem_last_error());
            cuda = NULL;
        }
    }
    return cuda;
}

#endif
