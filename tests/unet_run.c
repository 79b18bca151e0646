/* unet_run: one UNet forward from a safetensors file of inputs, for comparisons with
 * diffusers outside the unit tests (tests/fullsize/compare_unet.py).
 *
 *   unet_run UNET_DIR IN.safetensors OUT.safetensors [--backend cpu|cuda]
 *            [--dtype f32|f16] [--threads N]
 *
 * IN holds in.sample [B, C, h, w], in.timesteps [B] or [1] (f32) and in.context
 * [B or 1, S, X]; OUT receives out.eps [B, C_out, h, w] (f32) with metadata
 * "seconds" (the forward alone) and "load_seconds". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stem.h"
#include "backends/backends.h"
#include "models/unet.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int usage(void) {
    fprintf(stderr, "usage: unet_run UNET_DIR IN.safetensors OUT.safetensors [--backend cpu|cuda] [--dtype f32|f16] "
                    "[--threads N]\n");
    return 2;
}

static stem_status run(const char *dir, const char *in_path, const char *out_path, const char *backend,
                       stem_dtype dt) {
    stem_backend *be = NULL;
    STEM_TRY(stem_backend_open(backend, &be));
    stem_tensor_map in, out;
    stem_tensor *sample, *timesteps, *context;
    STEM_TRY(stem_safetensors_load(in_path, STEM_F32, &in));
    stem_status s = stem_tensor_map_require(&in, "in.sample", in_path, &sample);
    if (s == STEM_OK) s = stem_tensor_map_require(&in, "in.timesteps", in_path, &timesteps);
    if (s == STEM_OK) s = stem_tensor_map_require(&in, "in.context", in_path, &context);
    double t0 = now();
    stem_unet *u = NULL;
    if (s == STEM_OK) s = stem_unet_load(dir, be, dt, &u);
    double t1 = now();
    stem_tensor x = {0}, c = {0}, y = {0}, yh = {0};
    stem_arena *arena = NULL;
    if (s == STEM_OK) s = stem_tensor_to(sample, be, dt, &x);
    if (s == STEM_OK) s = stem_tensor_to(context, be, dt, &c);
    int64_t so[4] = {sample->shape[0], 0, sample->shape[2], sample->shape[3]};
    if (s == STEM_OK) {
        so[1] = stem_unet_get_config(u)->out_channels;
        s = stem_tensor_new(be, dt, 4, so, &y);
    }
    if (s == STEM_OK) s = stem_arena_create(be, 64u << 20, &arena);
    double t2 = now(), t3 = t2;
    if (s == STEM_OK)
        s = stem_unet_forward(u, arena, &x, (const float *)timesteps->data, stem_numel(timesteps), &c, NULL, &y);
    if (s == STEM_OK) s = be->ops->synchronize(be);
    t3 = now();
    if (s == STEM_OK) s = stem_tensor_to(&y, stem_cpu_backend(), STEM_F32, &yh);
    stem_tensor_map_init(&out);
    if (s == STEM_OK) {
        char buf[64];
        s = stem_tensor_map_put(&out, "out.eps", yh);
        snprintf(buf, sizeof buf, "%.6f", t3 - t2);
        if (s == STEM_OK) s = stem_tensor_map_set_meta(&out, "seconds", buf);
        snprintf(buf, sizeof buf, "%.6f", t1 - t0);
        if (s == STEM_OK) s = stem_tensor_map_set_meta(&out, "load_seconds", buf);
        snprintf(buf, sizeof buf, "%zu", stem_arena_peak(arena));
        if (s == STEM_OK) s = stem_tensor_map_set_meta(&out, "arena_peak_bytes", buf);
        if (s == STEM_OK) s = stem_safetensors_save(out_path, &out);
    }
    if (s == STEM_OK)
        fprintf(stderr, "unet_run: %s on %s (%s): load %.2f s, forward %.3f s, arena peak %.1f MB\n", dir, be->name,
                stem_dtype_name(dt), t1 - t0, t3 - t2, (double)stem_arena_peak(arena) / 1e6);
    stem_tensor_map_free(&out);
    stem_arena_destroy(arena);
    stem_tensor_free(&x);
    stem_tensor_free(&c);
    stem_tensor_free(&y);
    stem_unet_free(u);
    stem_tensor_map_free(&in);
    stem_backend_close(be);
    return s;
}

int main(int argc, char **argv) {
    stem_blas_ensure_fast_core(argc, argv);
    if (argc < 4) return usage();
    const char *backend = "cpu";
    stem_dtype dt = STEM_F32;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) backend = argv[++i];
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            int d = stem_dtype_parse(argv[++i]);
            if (d < 0) return usage();
            dt = (stem_dtype)d;
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) stem_set_num_threads(atoi(argv[++i]));
        else return usage();
    }
    stem_status s = run(argv[1], argv[2], argv[3], backend, dt);
    if (s != STEM_OK) {
        fprintf(stderr, "unet_run: %s: %s\n", stem_status_name(s), stem_last_error());
        return 1;
    }
    return 0;
}
