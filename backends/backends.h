/* Opening a backend by name: the factory above core that knows the concrete backends
 * (core/backend.h defines the interface they fill). */
#ifndef STEM_BACKENDS_H
#define STEM_BACKENDS_H

#include "core/backend.h"

/* The process-wide CPU backend (never fails): core's host backend (core/host.h) with the
 * CPU kernels attached, so host tensors compute on it directly. */
stem_backend *stem_cpu_backend(void);

/* "cpu" or "cuda". Without a GPU or without CUDA in the build: STEM_E_NODEVICE with
 * a message saying which. */
stem_status stem_backend_open(const char *name, stem_backend **out);
/* Releases a backend from stem_backend_open (the process-wide CPU backend stays). */
void stem_backend_close(stem_backend *be);

#endif
