/* An ordered list of named tensors with string metadata: what a safetensors file
 * holds, what `stem op` reads and writes, and how a model's weights are looked up. */
#ifndef STEM_CORE_TENSOR_MAP_H
#define STEM_CORE_TENSOR_MAP_H

#include "core/tensor.h"

typedef struct stem_named_tensor {
    char *name;
    stem_tensor tensor;
} stem_named_tensor;

typedef struct stem_meta_entry {
    char *key, *value;
} stem_meta_entry;

typedef struct stem_tensor_map {
    stem_named_tensor *items;
    int count, capacity;
    stem_meta_entry *meta; /* safetensors "__metadata__" (string -> string) */
    int meta_count, meta_capacity;
    void *mapping;         /* set by the safetensors reader: the mmap backing host tensors */
    size_t mapping_size;
} stem_tensor_map;

void stem_tensor_map_init(stem_tensor_map *m);
/* Frees owned tensors, names, metadata, and the file mapping. */
void stem_tensor_map_free(stem_tensor_map *m);
/* Takes ownership of `t` (if it is owned), also on failure (then `t` is freed);
 * replaces an entry of the same name in place, freeing the replaced owned tensor. */
stem_status stem_tensor_map_put(stem_tensor_map *m, const char *name, stem_tensor t);
/* Makes room for `capacity` entries, so that pointers from stem_tensor_map_get stay
 * valid while the map grows up to that size. */
stem_status stem_tensor_map_reserve(stem_tensor_map *m, int capacity);
/* NULL when absent. Valid until the map grows past its reserved capacity. */
stem_tensor *stem_tensor_map_get(const stem_tensor_map *m, const char *name);
/* STEM_E_NOTFOUND with "what: no tensor 'name'" when absent. */
stem_status stem_tensor_map_require(const stem_tensor_map *m, const char *name, const char *what,
                                    stem_tensor **out);
stem_status stem_tensor_map_set_meta(stem_tensor_map *m, const char *key, const char *value);
const char *stem_tensor_map_get_meta(const stem_tensor_map *m, const char *key);

#endif
