/* A bump allocator for activations: one run's intermediate tensors come from large
 * backend blocks and are released together with stem_arena_reset(), so the CUDA
 * backend never calls cudaMalloc inside a UNet evaluation. */
#ifndef STEM_CORE_ARENA_H
#define STEM_CORE_ARENA_H

#include "core/tensor.h"

typedef struct stem_arena stem_arena;

/* block_bytes: size of each backing block (a larger tensor gets its own block). */
stem_status stem_arena_create(stem_backend *be, size_t block_bytes, stem_arena **out);
void stem_arena_destroy(stem_arena *a);
/* A tensor whose memory belongs to the arena (not owned; do not stem_tensor_free). */
stem_status stem_arena_tensor(stem_arena *a, stem_dtype dt, int ndim, const int64_t *shape,
                              stem_tensor *out);
/* Position to return to: everything allocated after `mark` is released by reset. */
size_t stem_arena_mark(const stem_arena *a);
void stem_arena_reset(stem_arena *a, size_t mark);
/* Makes the first block at least `bytes` (the arena must be empty): a run whose peak is
 * known (stem_unet_activation_bytes) then fits in one block, with no block-boundary waste. */
stem_status stem_arena_reserve(stem_arena *a, size_t bytes);
/* Highest number of bytes in use since creation (for memory reports). */
size_t stem_arena_peak(const stem_arena *a);

#endif
