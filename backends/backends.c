#include "config.h" /* STEM_HAVE_CUDA */

#include "backends/backends.h"

#include <string.h>

#ifdef STEM_HAVE_CUDA
#include "backends/cuda/cuda_backend.h"
#endif

stem_status stem_backend_open(const char *name, stem_backend **out) {
    if (strcmp(name, "cpu") == 0) {
        *out = stem_cpu_backend();
        return STEM_OK;
    }
    if (strcmp(name, "cuda") == 0) {
#ifdef STEM_HAVE_CUDA
        return stem_cuda_backend_create(out);
#else
        return stem_fail(STEM_E_NODEVICE,
                         "backend 'cuda': this stem was built without CUDA (configure found no nvcc/cuBLAS, "
                         "or --without-cuda was given)");
#endif
    }
    return stem_fail(STEM_E_ARG, "unknown backend '%s' (expected cpu or cuda)", name);
}

void stem_backend_close(stem_backend *be) {
    if (be && be->kind != STEM_BACKEND_CPU && be->ops->destroy) be->ops->destroy(be);
}
