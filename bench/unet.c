/* bench/unet: wall time and memory of one UNet forward (stem), one JSON line per
 * latent size after a machine-facts line. bench/unet_torch.py runs this next to
 * PyTorch + diffusers on the same weights and thread count and prints the ratios.
 *
 *   bench/unet UNET_DIR [--size N|HxW]... [--batch B] [--slice S] [--reps R] [--threads T]
 *              [--backend cpu|cuda] [--dtype f32|f16]
 *
 * --slice S runs the forward layer-major (stem_unet_forward_sliced): every module over
 * slices of S samples, default attention.
 *
 * Inputs are fixed pseudo-random latents and text context ([B, 77, cross_dim]), one
 * timestep per sample (981). Peak memory is the process's VmHWM (weights included)
 * read after each size, so run one size per process for a clean per-size peak. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "stem.h"
#include "backends/backends.h"
#include "models/unet.h"

typedef struct unet_bench {
    stem_unet *u;
    stem_arena *arena;
    stem_tensor x, c, y;
    float *t;
    int64_t batch, slice; /* slice 0: stem_unet_forward */
} unet_bench;

static stem_status bench_forward(void *ctx) {
    unet_bench *b = ctx;
    if (b->slice) return stem_unet_forward_sliced(b->u, b->arena, &b->x, b->t, b->batch, &b->c, NULL, b->slice, &b->y);
    return stem_unet_forward(b->u, b->arena, &b->x, b->t, b->batch, &b->c, NULL, &b->y);
}

static double vm_hwm_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    double kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atof(line + 6);
    fclose(f);
    return kb / 1024.0;
}

/* Uniform(-1.7, 1.7) from a 64-bit LCG: unit variance, reproducible. */
static stem_status fill_random(stem_tensor *t, uint64_t seed) {
    int64_t n = stem_numel(t);
    float *h = malloc((size_t)n * sizeof *h);
    if (!h) return stem_fail(STEM_E_NOMEM, "out of memory");
    uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        h[i] = (float)(((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0) * 1.7320508);
    }
    stem_tensor ht = stem_tensor_wrap(stem_cpu_backend(), STEM_F32, t->ndim, t->shape, h), dev;
    stem_status st = stem_tensor_to(&ht, t->backend, t->dtype, &dev);
    if (st == STEM_OK) st = stem_tensor_copy(&dev, t);
    stem_tensor_free(&dev);
    free(h);
    return st;
}

static int usage(void) {
    fprintf(stderr, "usage: bench/unet UNET_DIR [--size N|HxW]... [--batch B] [--slice S] [--reps R] [--threads T] "
                    "[--backend cpu|cuda] [--dtype f32|f16]\n");
    return 2;
}

int main(int argc, char **argv) {
    stem_blas_ensure_fast_core(argc, argv);
    if (argc < 2 || argv[1][0] == '-') return usage();
    const char *dir = argv[1], *backend = "cpu";
    int64_t hs[16], ws[16];
    int n_sizes = 0, reps = 3;
    int64_t batch = 2, slice = 0;
    stem_dtype dt = STEM_F32;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--size") && i + 1 < argc && n_sizes < 16) {
            long long h = 0, w = 0;
            int got = sscanf(argv[++i], "%lldx%lld", &h, &w);
            if (got < 1 || h < 1) return usage();
            hs[n_sizes] = h;
            ws[n_sizes++] = got == 2 ? w : h;
        } else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--slice") && i + 1 < argc) slice = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) stem_set_num_threads(atoi(argv[++i]));
        else if (!strcmp(argv[i], "--backend") && i + 1 < argc) backend = argv[++i];
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            int d = stem_dtype_parse(argv[++i]);
            if (d < 0) return usage();
            dt = (stem_dtype)d;
        } else return usage();
    }
    if (n_sizes == 0) {
        hs[0] = ws[0] = 32;
        hs[1] = ws[1] = 64;
        n_sizes = 2;
    }
    stem_backend *be;
    if (stem_backend_open(backend, &be) != STEM_OK) {
        fprintf(stderr, "bench/unet: %s\n", stem_last_error());
        return 1;
    }
    bench_machine m;
    bench_machine_collect(be, &m);
    bench_machine_print(&m, stdout);

    unet_bench b = {.batch = batch, .slice = slice};
    double t0 = bench_now();
    if (stem_unet_load(dir, be, dt, &b.u) != STEM_OK) {
        fprintf(stderr, "bench/unet: %s\n", stem_last_error());
        return 1;
    }
    double load_s = bench_now() - t0;
    const stem_unet_config *cfg = stem_unet_get_config(b.u);
    b.t = malloc((size_t)batch * sizeof *b.t);
    for (int64_t i = 0; i < batch; i++) b.t[i] = 981.0f;
    if (stem_arena_create(be, 64u << 20, &b.arena) != STEM_OK) return 1;
    int failed = 0;
    for (int si = 0; si < n_sizes; si++) {
        int64_t sx[4] = {batch, cfg->in_channels, hs[si], ws[si]}, sc[3] = {batch, 77, cfg->cross_attention_dim[0]};
        int64_t so[4] = {batch, cfg->out_channels, hs[si], ws[si]};
        bench_stats st;
        stem_status s = stem_tensor_new(be, dt, 4, sx, &b.x);
        if (s == STEM_OK) s = stem_tensor_new(be, dt, 3, sc, &b.c);
        if (s == STEM_OK) s = stem_tensor_new(be, dt, 4, so, &b.y);
        if (s == STEM_OK) s = fill_random(&b.x, 1);
        if (s == STEM_OK) s = fill_random(&b.c, 2);
        if (s == STEM_OK) s = bench_time(bench_forward, &b, be, reps, &st);
        if (s != STEM_OK) {
            fprintf(stderr, "bench/unet: %lldx%lld: %s\n", (long long)hs[si], (long long)ws[si], stem_last_error());
            failed = 1;
        } else {
            bench_json j;
            bench_json_begin(&j);
            bench_json_str(&j, "kind", "unet");
            bench_json_str(&j, "impl", "stem");
            bench_json_str(&j, "model", dir);
            bench_json_str(&j, "backend", be->name);
            bench_json_str(&j, "dtype", stem_dtype_name(dt));
            bench_json_int(&j, "batch", (long long)batch);
            bench_json_int(&j, "slice", (long long)(slice ? slice : batch));
            bench_json_int(&j, "h", (long long)hs[si]);
            bench_json_int(&j, "w", (long long)ws[si]);
            bench_json_int(&j, "threads", stem_num_threads());
            bench_json_int(&j, "reps", st.reps);
            bench_json_num(&j, "seconds", st.ms_median / 1e3);
            bench_json_num(&j, "seconds_min", st.ms_min / 1e3);
            bench_json_num(&j, "load_seconds", load_s);
            bench_json_num(&j, "vm_hwm_mb", vm_hwm_mb());
            bench_json_num(&j, "arena_peak_mb", (double)stem_arena_peak(b.arena) / 1e6);
            bench_json_int(&j, "params", (long long)stem_unet_param_count(b.u));
            bench_json_end(&j, stdout);
        }
        stem_tensor_free(&b.x);
        stem_tensor_free(&b.c);
        stem_tensor_free(&b.y);
    }
    stem_arena_destroy(b.arena);
    stem_unet_free(b.u);
    free(b.t);
    stem_backend_close(be);
    return failed;
}
