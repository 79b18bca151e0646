#include "core/arena.h"

#include <stdlib.h>

#include "core/backend.h"

#define ARENA_ALIGN 256 /* bytes: keeps every tensor aligned for AVX-512 and CUDA vector loads */

typedef struct arena_block {
    void *base;
    size_t size;
} arena_block;

struct stem_arena {
    stem_backend *be;
    size_t block_bytes;
    arena_block *blocks;
    int block_count, block_capacity;
    int current;      /* block being filled */
    size_t offset;    /* bytes used in the current block */
    size_t in_use;    /* bytes handed out (for the peak) */
    size_t peak;
};

stem_status stem_arena_create(stem_backend *be, size_t block_bytes, stem_arena **out) {
    stem_arena *a = calloc(1, sizeof *a);
    if (!a) return stem_fail(STEM_E_NOMEM, "arena: out of host memory");
    a->be = be;
    a->block_bytes = block_bytes ? block_bytes : (64u << 20);
    *out = a;
    return STEM_OK;
}

void stem_arena_destroy(stem_arena *a) {
    if (!a) return;
    for (int i = 0; i < a->block_count; i++) a->be->ops->free(a->be, a->blocks[i].base);
    free(a->blocks);
    free(a);
}

static stem_status arena_add_block(stem_arena *a, size_t size) {
    if (a->block_count == a->block_capacity) {
        int cap = a->block_capacity ? 2 * a->block_capacity : 8;
        arena_block *nb = realloc(a->blocks, (size_t)cap * sizeof *nb);
        if (!nb) return stem_fail(STEM_E_NOMEM, "arena: out of host memory");
        a->blocks = nb;
        a->block_capacity = cap;
    }
    void *base;
    STEM_TRY(a->be->ops->alloc(a->be, size, &base));
    a->blocks[a->block_count++] = (arena_block){base, size};
    return STEM_OK;
}

/* Marks encode (block index, offset) as block * 2^40 + offset. */
size_t stem_arena_mark(const stem_arena *a) { return ((size_t)a->current << 40) | a->offset; }

void stem_arena_reset(stem_arena *a, size_t mark) {
    int block = (int)(mark >> 40);
    size_t offset = mark & (((size_t)1 << 40) - 1);
    /* in_use is approximate across blocks; recompute from the blocks before `block` */
    size_t used = offset;
    for (int i = 0; i < block && i < a->block_count; i++) used += a->blocks[i].size;
    a->current = block;
    a->offset = offset;
    a->in_use = used;
}

size_t stem_arena_peak(const stem_arena *a) { return a->peak; }

stem_status stem_arena_reserve(stem_arena *a, size_t bytes) {
    if (a->current != 0 || a->offset != 0)
        return stem_fail(STEM_E_ARG, "arena: reserve while %zu bytes are in use", a->in_use);
    if (a->block_count > 0 && a->blocks[0].size >= bytes) return STEM_OK;
    for (int i = 0; i < a->block_count; i++) a->be->ops->free(a->be, a->blocks[i].base);
    a->block_count = 0;
    return arena_add_block(a, bytes);
}

stem_status stem_arena_tensor(stem_arena *a, stem_dtype dt, int ndim, const int64_t *shape, stem_tensor *out) {
    stem_tensor t = stem_tensor_wrap(a->be, dt, ndim, shape, NULL);
    size_t bytes = (stem_nbytes(&t) + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    if (bytes == 0) bytes = ARENA_ALIGN;
    /* find room in the current block or one of the following (kept from earlier runs) */
    while (a->current < a->block_count && a->offset + bytes > a->blocks[a->current].size) {
        a->in_use += a->blocks[a->current].size - a->offset;
        a->current++;
        a->offset = 0;
    }
    if (a->current == a->block_count)
        STEM_TRY(arena_add_block(a, bytes > a->block_bytes ? bytes : a->block_bytes));
    t.data = (char *)a->blocks[a->current].base + a->offset;
    a->offset += bytes;
    a->in_use += bytes;
    if (a->in_use > a->peak) a->peak = a->in_use;
    *out = t;
    return STEM_OK;
}
