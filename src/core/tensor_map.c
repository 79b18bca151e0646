/* An ordered list of named tensors plus string metadata. Lookups are linear: maps
 * hold at most a few thousand tensors and are searched at load time only. */
#include "core/tensor_map.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void stem_tensor_map_init(stem_tensor_map *m) { memset(m, 0, sizeof *m); }

void stem_tensor_map_free(stem_tensor_map *m) {
    if (!m) return;
    for (int i = 0; i < m->count; i++) {
        stem_tensor_free(&m->items[i].tensor);
        free(m->items[i].name);
    }
    free(m->items);
    for (int i = 0; i < m->meta_count; i++) {
        free(m->meta[i].key);
        free(m->meta[i].value);
    }
    free(m->meta);
    if (m->mapping) munmap(m->mapping, m->mapping_size);
    stem_tensor_map_init(m);
}

static int find_index(const stem_tensor_map *m, const char *name) {
    for (int i = 0; i < m->count; i++)
        if (strcmp(m->items[i].name, name) == 0) return i;
    return -1;
}

/* `items` (of `*capacity` elements of `size` bytes) with room for one more; NULL
 * when out of memory (then `items` is unchanged). */
static void *grow(void *items, int *capacity, int count, size_t size) {
    if (count < *capacity) return items;
    int cap = *capacity ? 2 * *capacity : 16;
    void *p = realloc(items, (size_t)cap * size);
    if (p) *capacity = cap;
    return p;
}

stem_status stem_tensor_map_put(stem_tensor_map *m, const char *name, stem_tensor t) {
    int i = find_index(m, name);
    if (i >= 0) {
        stem_tensor *old = &m->items[i].tensor;
        if (old->data != t.data) stem_tensor_free(old); /* putting the same tensor again keeps it */
        *old = t;
        return STEM_OK;
    }
    char *copy = strdup(name);
    stem_named_tensor *items = copy ? grow(m->items, &m->capacity, m->count, sizeof *m->items) : NULL;
    if (!items) {
        free(copy);
        stem_tensor_free(&t); /* ownership was passed to us: do not leak it */
        return stem_fail(STEM_E_NOMEM, "tensor map: out of memory adding tensor '%s'", name);
    }
    m->items = items;
    m->items[m->count++] = (stem_named_tensor){.name = copy, .tensor = t};
    return STEM_OK;
}

stem_tensor *stem_tensor_map_get(const stem_tensor_map *m, const char *name) {
    int i = find_index(m, name);
    return i >= 0 ? &m->items[i].tensor : NULL;
}

stem_status stem_tensor_map_require(const stem_tensor_map *m, const char *name, const char *what,
                                    stem_tensor **out) {
    stem_tensor *t = stem_tensor_map_get(m, name);
    if (!t) {
        *out = NULL;
        return stem_fail(STEM_E_NOTFOUND, "%s: no tensor '%s' (the map holds %d tensors)", what ? what : "tensor map",
                         name, m->count);
    }
    *out = t;
    return STEM_OK;
}

stem_status stem_tensor_map_set_meta(stem_tensor_map *m, const char *key, const char *value) {
    char *v = strdup(value);
    if (!v) return stem_fail(STEM_E_NOMEM, "tensor map: out of memory setting metadata '%s'", key);
    for (int i = 0; i < m->meta_count; i++) {
        if (strcmp(m->meta[i].key, key) == 0) {
            free(m->meta[i].value);
            m->meta[i].value = v;
            return STEM_OK;
        }
    }
    char *k = strdup(key);
    stem_meta_entry *meta = k ? grow(m->meta, &m->meta_capacity, m->meta_count, sizeof *m->meta) : NULL;
    if (!meta) {
        free(k);
        free(v);
        return stem_fail(STEM_E_NOMEM, "tensor map: out of memory setting metadata '%s'", key);
    }
    m->meta = meta;
    m->meta[m->meta_count++] = (stem_meta_entry){.key = k, .value = v};
    return STEM_OK;
}

const char *stem_tensor_map_get_meta(const stem_tensor_map *m, const char *key) {
    for (int i = 0; i < m->meta_count; i++)
        if (strcmp(m->meta[i].key, key) == 0) return m->meta[i].value;
    return NULL;
}

stem_status stem_tensor_map_reserve(stem_tensor_map *m, int capacity) {
    if (capacity <= m->capacity) return STEM_OK;
    stem_named_tensor *items = realloc(m->items, (size_t)capacity * sizeof *items);
    if (!items) return stem_fail(STEM_E_NOMEM, "out of memory reserving %d tensors", capacity);
    m->items = items;
    m->capacity = capacity;
    return STEM_OK;
}
