/* The CUDA backend's constructor (backends/backends.c calls it). */
#ifndef STEM_BACKENDS_CUDA_BACKEND_H
#define STEM_BACKENDS_CUDA_BACKEND_H

#include "core/backend.h"

/* STEM_E_NODEVICE, with a message, when no CUDA device is usable. */
stem_status stem_cuda_backend_create(stem_backend **out);

#endif
