#include "models/weights.h"

#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/safetensors.h"
#include "models/model_config.h"

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static stem_status add_file(stem_weights *w, const char *path) {
    stem_tensor_map *files = realloc(w->files, (size_t)(w->file_count + 1) * sizeof *files);
    if (!files) return stem_fail(STEM_E_NOMEM, "out of memory");
    w->files = files;
    stem_tensor_map *m = &w->files[w->file_count];
    stem_status s = stem_safetensors_load(path, -1, m);
    if (s != STEM_OK) return stem_error_context(s, "%s", w->component);
    w->file_count++;
    for (int i = 0; i < m->count; i++) {
        if (stem_tensor_map_get(&w->host, m->items[i].name))
            return stem_fail(STEM_E_FORMAT, "%s: tensor '%s' appears in more than one file (%s)", w->component,
                             m->items[i].name, path);
        stem_tensor view = m->items[i].tensor;
        view.owned = false;
        STEM_TRY(stem_tensor_map_put(&w->host, m->items[i].name, view));
    }
    return STEM_OK;
}

static void init(stem_weights *w, const char *dir, const char *component, stem_backend *be, stem_dtype dtype) {
    memset(w, 0, sizeof *w);
    snprintf(w->component, sizeof w->component, "%s", component);
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    w->be = be;
    w->dtype = dtype;
    stem_tensor_map_init(&w->host);
    stem_tensor_map_init(&w->placed);
}

static stem_status finish_open(stem_weights *w) {
    w->used = calloc((size_t)w->host.count + 1, 1);
    if (!w->used) return stem_fail(STEM_E_NOMEM, "out of memory");
    /* every placed tensor fits without a realloc: pointers handed out stay valid */
    return stem_tensor_map_reserve(&w->placed, w->host.count + 1);
}

/* Files named by an index's weight_map, each once. */
static stem_status open_index(stem_weights *w, const char *index_path) {
    json_object *root = json_object_from_file(index_path), *map;
    if (!root || !json_object_object_get_ex(root, "weight_map", &map) || !json_object_is_type(map, json_type_object)) {
        if (root) json_object_put(root);
        return stem_fail(STEM_E_FORMAT, "%s: not a safetensors index (no weight_map object)", index_path);
    }
    char seen[64][256];
    int n_seen = 0;
    stem_status s = STEM_OK;
    json_object_object_foreach(map, key, val) {
        (void)key;
        const char *file = json_object_get_string(val);
        bool dup = false;
        for (int i = 0; i < n_seen; i++) dup |= strcmp(seen[i], file) == 0;
        if (dup) continue;
        if (n_seen == 64 || strchr(file, '/')) {
            s = stem_fail(STEM_E_FORMAT, "%s: unsupported shard name '%s'", index_path, file);
            break;
        }
        snprintf(seen[n_seen++], sizeof seen[0], "%s", file);
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", w->dir, file);
        s = add_file(w, path);
        if (s != STEM_OK) break;
    }
    json_object_put(root);
    return s;
}

stem_status stem_weights_open(const char *dir, const char *component, stem_backend *be, stem_dtype dtype,
                              stem_weights *w) {
    init(w, dir, component, be, dtype);
    static const char *const names[] = {
        "diffusion_pytorch_model.safetensors", "model.safetensors",
        "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors",
    };
    char path[1400];
    for (int i = 0; i < 4; i++) {
        stem_status s = STEM_E_NOTFOUND;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (file_exists(path)) {
            s = add_file(w, path);
        } else {
            snprintf(path, sizeof path, "%s/%s.index.json", dir, names[i]);
            if (file_exists(path)) s = open_index(w, path);
        }
        if (s == STEM_E_NOTFOUND) continue;
        if (s == STEM_OK) s = finish_open(w);
        if (s != STEM_OK) stem_weights_close(w); /* a rejected file leaves nothing behind (it leaked 48 bytes) */
        return s;
    }
    /* say what is there instead */
    DIR *d = opendir(dir);
    if (!d) return stem_fail(STEM_E_IO, "%s: cannot open folder %s: %s", component, dir, strerror(errno));
    bool pickle = false;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        pickle |= (n > 4 && !strcmp(e->d_name + n - 4, ".bin")) || (n > 5 && !strcmp(e->d_name + n - 5, ".ckpt")) ||
                  (n > 3 && !strcmp(e->d_name + n - 3, ".pt"));
    }
    closedir(d);
    if (pickle)
        return stem_fail(STEM_E_UNSUPPORTED,
                         "%s: %s has only pickle weights (.bin/.ckpt/.pt), which stem does not load (they can run "
                         "code); convert them to .safetensors, e.g. with diffusers' save_pretrained(safe_serialization=True)",
                         component, dir);
    return stem_fail(STEM_E_NOTFOUND, "%s: no weights in %s (expected diffusion_pytorch_model.safetensors or model.safetensors)",
                     component, dir);
}

stem_status stem_weights_open_file(const char *path, const char *component, stem_backend *be, stem_dtype dtype,
                                   stem_weights *w) {
    init(w, path, component, be, dtype);
    stem_status s = add_file(w, path);
    if (s == STEM_OK) s = finish_open(w);
    if (s != STEM_OK) stem_weights_close(w);
    return s;
}

stem_status stem_weights_open_shapes(const char *dir, const char *component, stem_backend *be, stem_dtype dtype,
                                     stem_weights *w) {
    init(w, dir, component, be, dtype);
    w->shapes_only = true;
    /* room for every tensor of any UNet stem loads (SD 1.5: 686), so pointers stay valid */
    stem_status s = stem_tensor_map_reserve(&w->placed, 8192);
    if (s != STEM_OK) stem_weights_close(w);
    return s;
}

bool stem_weights_has(const stem_weights *w, const char *name) { return stem_tensor_map_get(&w->host, name) != NULL; }

static int host_index(const stem_weights *w, const char *name) {
    for (int i = 0; i < w->host.count; i++)
        if (strcmp(w->host.items[i].name, name) == 0) return i;
    return -1;
}

stem_status stem_weights_get_optional(stem_weights *w, const char *name, int ndim, const int64_t *shape,
                                      const stem_tensor **out) {
    *out = NULL;
    stem_tensor *placed = stem_tensor_map_get(&w->placed, name);
    if (w->shapes_only && !placed) { /* a data-less tensor of the shape asked for */
        stem_tensor t = {.dtype = w->dtype, .ndim = ndim, .backend = w->be};
        memcpy(t.shape, shape, (size_t)ndim * sizeof *shape);
        STEM_TRY(stem_tensor_map_put(&w->placed, name, t));
        placed = stem_tensor_map_get(&w->placed, name);
    }
    int idx = host_index(w, name);
    if (idx < 0 && !placed) return STEM_OK;
    const stem_tensor *src = placed ? placed : &w->host.items[idx].tensor;
    stem_tensor want = {.ndim = ndim};
    memcpy(want.shape, shape, (size_t)ndim * sizeof *shape);
    if (!stem_same_shape(src, &want)) {
        char a[STEM_SHAPE_STR_LEN], b[STEM_SHAPE_STR_LEN];
        return stem_fail(STEM_E_SHAPE, "%s: tensor '%s' has shape %s, the config expects %s%s%s", w->component, name,
                         stem_shape_str(src, a, sizeof a), stem_shape_str(&want, b, sizeof b),
                         w->names_note ? " in " : "", w->names_note ? w->dir : "");
    }
    if (!placed) {
        stem_dtype dt = src->dtype == STEM_F32 || src->dtype == STEM_F16 || src->dtype == STEM_BF16 ? w->dtype : src->dtype;
        stem_tensor t;
        stem_status s = stem_tensor_to(src, w->be, dt, &t);
        if (s != STEM_OK) return stem_error_context(s, "%s: tensor '%s'", w->component, name);
        STEM_TRY(stem_tensor_map_put(&w->placed, name, t));
        w->placed_bytes += stem_nbytes(&t);
        w->used[idx] = 1;
        placed = stem_tensor_map_get(&w->placed, name);
    }
    *out = placed;
    return STEM_OK;
}

stem_status stem_weights_get(stem_weights *w, const char *name, int ndim, const int64_t *shape,
                             const stem_tensor **out) {
    STEM_TRY(stem_weights_get_optional(w, name, ndim, shape, out));
    if (!*out) {
        char want[STEM_SHAPE_STR_LEN];
        stem_tensor t = {.ndim = ndim};
        memcpy(t.shape, shape, (size_t)ndim * sizeof *shape);
        return stem_fail(STEM_E_NOTFOUND, "%s: missing tensor '%s' (expected shape %s) in %s%s", w->component, name,
                         stem_shape_str(&t, want, sizeof want), w->dir, w->names_note ? w->names_note : "");
    }
    return STEM_OK;
}

stem_status stem_weights_finish(stem_weights *w) {
    int unused = 0;
    char names[512] = "";
    size_t len = 0;
    for (int i = 0; i < w->host.count; i++) {
        if (w->used[i]) continue;
        if (unused < 4 && len < sizeof names - 1)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s'%s'", unused ? ", " : "", w->host.items[i].name);
        unused++;
    }
    if (unused)
        return stem_fail(STEM_E_FORMAT, "%s: %d tensor%s in %s%s that the config does not use: %s%s", w->component,
                         unused, unused == 1 ? "" : "s", w->dir, w->names_note ? w->names_note : "", names,
                         unused > 4 ? ", ..." : "");
    stem_tensor_map_free(&w->host);
    for (int i = 0; i < w->file_count; i++) stem_tensor_map_free(&w->files[i]);
    free(w->files);
    w->files = NULL;
    w->file_count = 0;
    return STEM_OK;
}

void stem_weights_close(stem_weights *w) {
    stem_tensor_map_free(&w->placed);
    stem_tensor_map_free(&w->host);
    for (int i = 0; i < w->file_count; i++) stem_tensor_map_free(&w->files[i]);
    free(w->files);
    free(w->used);
    memset(w, 0, sizeof *w);
}

int64_t stem_weights_param_count(const stem_weights *w) {
    int64_t n = 0;
    const stem_tensor_map *m = w->shapes_only ? &w->placed : &w->host;
    for (int i = 0; i < m->count; i++) n += stem_numel(&m->items[i].tensor);
    return n;
}

stem_status stem_component_open(const char *dir, const char *component, stem_backend *be, stem_dtype dtype,
                                stem_config *c, stem_weights *w) {
    char path[1200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    stem_status s = stem_config_load(path, c);
    if (s != STEM_OK) return stem_error_context(s, "%s", component);
    s = stem_weights_open(dir, component, be, dtype, w);
    if (s != STEM_OK) {
        stem_weights_close(w);
        stem_config_free(c);
    }
    return s;
}
