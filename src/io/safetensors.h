/* safetensors: 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"k": "v"}}, then the data block. The reader mmaps the file and
 * checks everything before any tensor is touched: header length within the file,
 * valid JSON object, known dtype, shape product x dtype size == end - begin,
 * offsets inside the data block, no two tensors overlapping. Every error names the
 * file and, where there is one, the tensor. */
#ifndef STEM_IO_SAFETENSORS_H
#define STEM_IO_SAFETENSORS_H

#include "core/tensor_map.h"

/* Loads every tensor as a host tensor on the CPU backend. Tensors whose dtype is
 * already `want` (or when want < 0) point into the read-only mapping (not owned);
 * f16/bf16/f32 tensors are otherwise converted into owned f32/f16/bf16 copies;
 * integer tensors are never converted. A tensor whose bytes are not aligned for its
 * dtype in the file (safetensors does not align offsets) is copied (owned).
 * `out` is initialised here (do not pass a map holding tensors); on failure it is
 * left empty. Tensors are listed in header order; STEM_E_IO for files that cannot
 * be opened or mapped, STEM_E_FORMAT for anything wrong inside. */
stem_status stem_safetensors_load(const char *path, int want_dtype, stem_tensor_map *out);

/* Only parses and validates the header; tensors get shapes and dtypes, data NULL. */
stem_status stem_safetensors_inspect(const char *path, stem_tensor_map *out);

/* Writes all tensors in map order (downloading device tensors) and metadata; atomic:
 * writes "<path>.tmp.<pid>", fsyncs, renames over `path`; on any failure the
 * temporary file is removed and an existing `path` is left as it was. */
stem_status stem_safetensors_save(const char *path, const stem_tensor_map *m);

#endif
