/* Host memory and the host tensors' backend (see host.h). */
#include "core/host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 64
#define MAX_BYTES ((size_t)1 << 46)

stem_status stem_host_alloc(size_t bytes, void **out, const char *what) {
    void *ptr = NULL;
    size_t n = bytes ? (bytes + ALIGN - 1) & ~(size_t)(ALIGN - 1) : ALIGN;
    /* sizes beyond any address space fail here (sanitizers would abort in malloc) */
    if (n < bytes || bytes > MAX_BYTES || posix_memalign(&ptr, ALIGN, n) != 0) {
        *out = NULL;
        return stem_fail(STEM_E_NOMEM, "host memory: cannot allocate %zu bytes (%.1f MiB) for %s", bytes,
                         (double)bytes / (1024.0 * 1024.0), what);
    }
    *out = ptr;
    return STEM_OK;
}

void stem_host_free(void *ptr) { free(ptr); }

stem_status stem_host_memory_info(size_t *available, size_t *total) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return stem_fail(STEM_E_IO, "host memory: cannot read /proc/meminfo");
    char line[256];
    *available = *total = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "MemAvailable:", 13)) *available = (size_t)strtoull(line + 13, NULL, 10) * 1024;
        else if (!strncmp(line, "MemTotal:", 9)) *total = (size_t)strtoull(line + 9, NULL, 10) * 1024;
    }
    fclose(f);
    if (!*total) return stem_fail(STEM_E_IO, "host memory: /proc/meminfo has no MemTotal");
    if (!*available) *available = *total / 2;
    return STEM_OK;
}

/* ---- the memory-only table, until a compute backend attaches --------------------------- */

static stem_status host_alloc_entry(stem_backend *be, size_t bytes, void **out) {
    (void)be;
    return stem_host_alloc(bytes, out, "a tensor");
}

static void host_free_entry(stem_backend *be, void *ptr) {
    (void)be;
    stem_host_free(ptr);
}

static stem_status host_copy(stem_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memmove(dst, src, bytes);
    return STEM_OK;
}

static stem_status host_memset0(stem_backend *be, void *dst, size_t bytes) {
    (void)be;
    if (bytes) memset(dst, 0, bytes);
    return STEM_OK;
}

static stem_status host_synchronize(stem_backend *be) {
    (void)be;
    return STEM_OK;
}

static stem_status host_memory_entry(stem_backend *be, size_t *available, size_t *total) {
    (void)be;
    return stem_host_memory_info(available, total);
}

static const char *host_describe(stem_backend *be) {
    (void)be;
    return "host memory (no compute backend attached)";
}

static const stem_backend_ops host_ops = {
    .alloc = host_alloc_entry,
    .free = host_free_entry,
    .upload = host_copy,
    .download = host_copy,
    .copy = host_copy,
    .memset0 = host_memset0,
    .synchronize = host_synchronize,
    .describe = host_describe,
    .memory_info = host_memory_entry,
};

static stem_backend host_backend = {
    .ops = &host_ops,
    .kind = STEM_BACKEND_CPU,
    .name = "host", /* "cpu" once the CPU backend attaches */
    .host_memory = true,
    .impl = NULL,
};

stem_backend *stem_host(void) { return &host_backend; }

void stem_host_attach(const stem_backend_ops *ops, const char *name) {
    if (!ops) return;
    host_backend.ops = ops;
    host_backend.name = name;
}
