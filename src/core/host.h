/* Host memory, a facility of core: where host tensors live (file mappings, frames,
 * staging copies, anything the CPU reads directly) and what the CPU backend allocates
 * its tensors and scratch from. stem_host() is the backend of host tensors: its memory
 * entries (64-byte aligned malloc, memcpy, /proc/meminfo) work from the start; the CPU
 * backend (backends/cpu) attaches its op table to the same object when it is first
 * opened, so host tensors and CPU-backend tensors are one backend for the ops (no
 * copies between them), while core and models never name the CPU backend
 * (doc/architecture.md, "Layers"). Before that, an op on host tensors fails with "not
 * supported by backend 'host'" (open the CPU backend: stem_backend_open("cpu")). */
#ifndef STEM_CORE_HOST_H
#define STEM_CORE_HOST_H

#include <stddef.h>

#include "core/backend.h"

/* The backend of host tensors (never NULL; host_memory true). */
stem_backend *stem_host(void);

/* `bytes` (at least 1) of 64-byte aligned host memory; STEM_E_NOMEM naming `what`
 * ("a tensor", "scratch for gemm") when it cannot be had. Free with stem_host_free. */
stem_status stem_host_alloc(size_t bytes, void **out, const char *what);
void stem_host_free(void *ptr);

/* MemAvailable and MemTotal of the machine (bytes). */
stem_status stem_host_memory_info(size_t *available, size_t *total);

/* Makes `ops` (a compute backend on host memory, whose memory entries are the ones
 * above or compatible with them) the op table of stem_host(), and `name` its name ("host"
 * until then). Called once, by the CPU backend, before it hands out stem_host(). */
void stem_host_attach(const stem_backend_ops *ops, const char *name);

#endif
