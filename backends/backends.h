/* Constructors of the concrete backends; only core/backend.c calls these. */
#ifndef STEM_BACKENDS_H
#define STEM_BACKENDS_H

#include "core/backend.h"

#ifdef STEM_HAVE_CUDA
/* STEM_E_NODEVICE, with a message, when no CUDA device is usable. */
stem_status stem_cuda_backend_create(stem_backend **out);
#endif

#endif
