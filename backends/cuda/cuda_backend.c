/* The CUDA backend: device memory, one stream, one cuBLAS handle, and the op table of
 * core/backend.h. Everything is enqueued on the backend's stream in call order;
 * only download (and upload, whose host buffer the caller may free at once) and
 * synchronize wait for the device. A backend is used by one host thread at a time
 * (the stream and the workspace are shared state).
 *
 * GEMMs (gemm, conv2d, argmax_cos) go through cuBLAS; every other op is a kernel in
 * kernels/cuda (launchers in kernels/cuda/kernels.h). Ops needing scratch memory
 * (conv2d's im2col columns, group norm and mean_std partial statistics, argmax_cos's
 * normalised rows and similarity block) share one workspace that grows on demand;
 * the stream orders its reuse between ops.
 *
 * Precision: f32 GEMMs run with CUBLAS_COMPUTE_32F_PEDANTIC (no TF32, no emulation:
 * the same IEEE f32 products as the CPU reference); f16 GEMMs use tensor cores with
 * f32 accumulation (CUBLAS_COMPUTE_32F). Kernels compute in f32; f16 attention uses
 * tensor cores (WMMA, f16 products, f32 accumulation and softmax statistics). */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_internal.h"
#include "kernels/cuda/kernels.h"

static bool env_is(const char *name, const char *value) {
    const char *e = getenv(name);
    return e && !strcmp(e, value);
}

/* ---- workspace ------------------------------------------------------------------------ */

stem_status stem_cuda_backend_ws_reserve(cuda_impl *im, size_t bytes, const char *op, void **out) {
    if (bytes > im->ws_bytes) {
        if (im->ws) {
            /* earlier ops on the stream may still read the old block */
            CU(op, cudaStreamSynchronize(im->stream));
            CU(op, cudaFree(im->ws));
            im->ws = NULL;
            im->ws_bytes = 0;
        }
        size_t want = (bytes + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1); /* whole MiB */
        cudaError_t e = cudaMalloc(&im->ws, want);
        if (e != cudaSuccess) {
            im->ws = NULL;
            (void)cudaGetLastError();
            return stem_fail(e == cudaErrorMemoryAllocation ? STEM_E_NOMEM : STEM_E_BACKEND,
                             "cuda: %s: workspace of %zu bytes: %s", op, want, cudaGetErrorString(e));
        }
        im->ws_bytes = want;
    }
    *out = im->ws;
    return STEM_OK;
}

/* ---- memory ------------------------------------------------------------------------------ */

static stem_status cuda_alloc(stem_backend *be, size_t bytes, void **out) {
    BIND(be, "alloc");
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return stem_fail(e == cudaErrorMemoryAllocation ? STEM_E_NOMEM : STEM_E_BACKEND,
                         "cuda: alloc of %zu bytes: %s", bytes, cudaGetErrorString(e));
    }
    *out = p;
    return STEM_OK;
}

/* cudaFree waits for the device, so memory still used by queued kernels is safe. */
static void cuda_free(stem_backend *be, void *ptr) {
    if (!ptr) return;
    if (cudaSetDevice(impl_of(be)->device) != cudaSuccess || cudaFree(ptr) != cudaSuccess) (void)cudaGetLastError();
}

static stem_status cuda_upload(stem_backend *be, void *dst, const void *host_src, size_t bytes) {
    if (!bytes) return STEM_OK;
    BIND(be, "upload");
    cuda_impl *im = impl_of(be);
    CU("upload", cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, im->stream));
    /* the caller may free or reuse host_src as soon as we return */
    CU("upload", cudaStreamSynchronize(im->stream));
    return STEM_OK;
}

static stem_status cuda_download(stem_backend *be, void *host_dst, const void *src, size_t bytes) {
    if (!bytes) return STEM_OK;
    BIND(be, "download");
    cuda_impl *im = impl_of(be);
    CU("download", cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, im->stream));
    CU("download", cudaStreamSynchronize(im->stream));
    return STEM_OK;
}

static stem_status cuda_copy(stem_backend *be, void *dst, const void *src, size_t bytes) {
    if (!bytes || dst == src) return STEM_OK;
    BIND(be, "copy");
    CU("copy", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, impl_of(be)->stream));
    return STEM_OK;
}

static stem_status cuda_memset0(stem_backend *be, void *dst, size_t bytes) {
    if (!bytes) return STEM_OK;
    BIND(be, "memset0");
    CU("memset0", cudaMemsetAsync(dst, 0, bytes, impl_of(be)->stream));
    return STEM_OK;
}

static stem_status cuda_synchronize(stem_backend *be) {
    BIND(be, "synchronize");
    CU("synchronize", cudaStreamSynchronize(impl_of(be)->stream));
    return STEM_OK;
}

static stem_status cuda_memory_info(stem_backend *be, size_t *available, size_t *total) {
    BIND(be, "memory_info");
    CU("memory_info", cudaMemGetInfo(available, total));
    return STEM_OK;
}

/* ---- facts and teardown ------------------------------------------------------------------------ */

static const char *cuda_describe(stem_backend *be) { return impl_of(be)->desc; }

static void cuda_destroy(stem_backend *be) {
    if (!be) return;
    cuda_impl *im = impl_of(be);
    if (im) {
        if (cudaSetDevice(im->device) == cudaSuccess) {
            if (im->stream) (void)cudaStreamSynchronize(im->stream);
            if (im->ws) (void)cudaFree(im->ws);
            if (im->blas) (void)cublasDestroy(im->blas);
            if (im->stream) (void)cudaStreamDestroy(im->stream);
        }
        (void)cudaGetLastError();
        free(im);
    }
    free(be);
}

static const stem_backend_ops cuda_ops = {
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .copy = cuda_copy,
    .memset0 = cuda_memset0,
    .synchronize = cuda_synchronize,
    .gemm = stem_cuda_backend_gemm,
    .conv2d = stem_cuda_backend_conv2d,
    .group_norm = stem_cuda_backend_group_norm,
    .layer_norm = stem_cuda_backend_layer_norm,
    .softmax = stem_cuda_backend_softmax,
    .unary = stem_cuda_backend_unary,
    .geglu = stem_cuda_backend_geglu,
    .binary = stem_cuda_backend_binary,
    .affine = stem_cuda_backend_affine,
    .upsample_nearest = stem_cuda_backend_upsample_nearest,
    .copy2d = stem_cuda_backend_copy2d,
    .permute = stem_cuda_backend_permute,
    .timestep_embedding = stem_cuda_backend_timestep_embedding,
    .attention = stem_cuda_backend_attention,
    .gather_rows = stem_cuda_backend_gather_rows,
    .argmax_cos = stem_cuda_backend_argmax_cos,
    .mean_std = stem_cuda_backend_mean_std,
    .freeu_filter = stem_cuda_backend_freeu_filter,
    .philox_normal = stem_cuda_backend_philox_normal,
    .convert = stem_cuda_backend_convert,
    .describe = cuda_describe,
    .destroy = cuda_destroy,
    .em_block = stem_cuda_backend_em_block,
    .memory_info = cuda_memory_info,
};

/* Device index from STEM_CUDA_DEVICE (default 0). */
static stem_status pick_device(int count, int *dev) {
    const char *env = getenv("STEM_CUDA_DEVICE");
    *dev = 0;
    if (!env || !*env) return STEM_OK;
    char *end = NULL;
    long v = strtol(env, &end, 10);
    if (*end != '\0' || v < 0 || v >= count)
        return stem_fail(STEM_E_ARG, "backend 'cuda': STEM_CUDA_DEVICE=%s is not a device index (this machine has %d: 0..%d)",
                         env, count, count - 1);
    *dev = (int)v;
    return STEM_OK;
}

stem_status stem_cuda_backend_create(stem_backend **out) {
    *out = NULL;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return stem_fail(STEM_E_NODEVICE, "backend 'cuda': no CUDA device (cudaGetDeviceCount: %s)",
                         cudaGetErrorString(e));
    }
    if (count <= 0)
        return stem_fail(STEM_E_NODEVICE, "backend 'cuda': no CUDA device (cudaGetDeviceCount: 0 devices)");
    int dev;
    STEM_TRY(pick_device(count, &dev));
    CU("create: cudaSetDevice", cudaSetDevice(dev));
    struct cudaDeviceProp prop;
    CU("create: cudaGetDeviceProperties", cudaGetDeviceProperties(&prop, dev));
    /* Are this build's kernels (NVCC_ARCH_FLAGS) runnable on the device? */
    e = stem_cuda_probe();
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return stem_fail(STEM_E_NODEVICE,
                         "backend 'cuda': device %d (%s, sm_%d%d) cannot run this build's kernels (%s); "
                         "rebuild with NVCC_ARCH_FLAGS for that architecture",
                         dev, prop.name, prop.major, prop.minor, cudaGetErrorString(e));
    }

    stem_backend *be = calloc(1, sizeof *be);
    cuda_impl *im = calloc(1, sizeof *im);
    if (!be || !im) {
        free(be);
        free(im);
        return stem_fail(STEM_E_NOMEM, "backend 'cuda': out of host memory");
    }
    im->device = dev;
    im->em_fused = env_is("STEM_CUDA_EM", "fused");
    im->attention_gemm = env_is("STEM_CUDA_ATTENTION", "gemm");
    be->ops = &cuda_ops;
    be->kind = STEM_BACKEND_CUDA;
    be->name = "cuda";
    be->host_memory = false;
    be->impl = im;

    stem_status st = STEM_OK;
    e = cudaStreamCreateWithFlags(&im->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        im->stream = NULL;
        st = cuda_fail("create: cudaStreamCreate", e);
    }
    if (st == STEM_OK) {
        cublasStatus_t bs = cublasCreate(&im->blas);
        if (bs != CUBLAS_STATUS_SUCCESS) {
            im->blas = NULL;
            st = blas_fail("create: cublasCreate", bs);
        }
    }
    if (st == STEM_OK) {
        cublasStatus_t bs = cublasSetStream(im->blas, im->stream);
        /* Default math: TF32 only with CUBLAS_TF32_TENSOR_OP_MATH, which we never set;
         * f32 GEMMs additionally ask for CUBLAS_COMPUTE_32F_PEDANTIC per call. */
        if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetMathMode(im->blas, CUBLAS_DEFAULT_MATH);
        if (bs != CUBLAS_STATUS_SUCCESS) st = blas_fail("create: cuBLAS setup", bs);
    }
    if (st != STEM_OK) {
        cuda_destroy(be);
        return st;
    }

    int driver = 0;
    if (cudaDriverGetVersion(&driver) != cudaSuccess) {
        (void)cudaGetLastError();
        driver = 0;
    }
    snprintf(im->desc, sizeof im->desc, "cuda: %.255s, sm_%d%d, %.0f GiB, driver %d.%d", prop.name, prop.major, prop.minor,
             (double)prop.totalGlobalMem / (double)(1u << 30), driver / 1000, (driver % 1000) / 10);
    *out = be;
    return STEM_OK;
}
