/* bench/ops: every tensor op at the shapes Stable Diffusion 1.5 runs at 512x512
 * (latent 64x64, batch 2 = cond + uncond), against two denominators measured in the
 * same run: OpenBLAS sgemm GFLOP/s and memcpy GB/s (for a device backend, also the
 * backend's own GEMM and device copy, which then serve as the denominators).
 *
 *   bench/ops [--backend cpu|cuda] [--dtype f32|f16] [--reps N] [--filter SUBSTRING] [--quick]
 *
 * stdout: JSON lines only — one {"kind":"machine"}, one {"kind":"peak"} per
 * denominator measurement, one {"kind":"op"} per op case. stderr: a table.
 *
 * Work counted (stated once here, repeated next to each case):
 *   gemm / linear      FLOP = 2 m n k                       (bias add not counted)
 *   conv2d             FLOP = 2 n c_out h_out w_out c_in kh kw (bias not counted)
 *   attention          FLOP = 2 nq nk (d + dv) per (batch, head) (QK^T and PV; softmax not counted)
 *   argmax_cos         FLOP = 2 n m c                      (the a @ ref^T product; norms not counted)
 *   memory-bound ops   bytes = minimum bytes read + written once (each input read
 *                      once, each output written once), at the element size of the dtype. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backends.h"
#include "bench_ops.h"

#ifdef STEM_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

ops_bench_settings ops_bench;

/* ---- the denominators ---------------------------------------------------------------- */

static void peak_line(const char *name, const char *what, const bench_stats *st, double rate, bool flops,
                      stem_status s) {
    bench_json j;
    bench_json_begin(&j);
    bench_json_str(&j, "kind", "peak");
    bench_json_str(&j, "name", name);
    bench_json_str(&j, "case", what);
    if (s != STEM_OK) {
        bench_json_str(&j, "error", stem_last_error());
        bench_json_end(&j, stdout);
        bench_table_add(&ops_bench.table, name, what, 0, 0, NULL, NAN, stem_last_error());
        stem_clear_error();
        return;
    }
    if (st) {
        bench_json_int(&j, "reps", st->reps);
        bench_json_num(&j, "ms_median", st->ms_median);
        bench_json_num(&j, "ms_min", st->ms_min);
    }
    bench_json_num(&j, flops ? "gflops" : "gbps", rate);
    bench_json_end(&j, stdout);
    bench_table_add(&ops_bench.table, name, what, st ? st->ms_median : NAN, rate, flops ? "GFLOP/s" : "GB/s", NAN, NULL);
}

/* OpenBLAS sgemm (FLOP = 2 m n k) on the shapes that matter; returns the best. */
static double host_sgemm_peak(int reps) {
    static const int shapes[][3] = {
        {2048, 2048, 2048}, /* square */
        {4096, 320, 2880},  /* im2col of conv 3x3 320->320 at 64x64: [hw, c_in*9] @ [c_in*9, c_out] */
        {320, 4096, 2880},  /* the same with W on the left: [c_out, c_in*9] @ [c_in*9, hw] */
    };
    double best = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        int m = shapes[i][0], n = shapes[i][1], k = shapes[i][2];
        char what[64];
        snprintf(what, sizeof what, "cblas_sgemm %dx%dx%d (m n k)", m, n, k);
        bench_stats st = {0};
        stem_status s = bench_sgemm(m, n, k, reps, &st);
        double rate = s == STEM_OK ? 2.0 * m * n * k / (st.ms_median * 1e-3) * 1e-9 : 0;
        peak_line("sgemm", what, &st, rate, true, s);
        if (rate > best) best = rate;
    }
    return best;
}

/* memcpy of 256 MiB (DRAM), one thread and all OpenMP threads; GB/s = 2 * bytes / s.
 * Returns the best; *cached gets the rate of an 8 MiB copy on all threads, about the
 * working set of the [2,320,64,64] ops, which stay in L2/L3 between repetitions. */
static double host_memcpy_peak(int reps, double *cached) {
    const size_t bytes = (size_t)256 << 20;
    double best = 0;
    for (int par = 0; par < 2; par++) {
        bench_stats st = {0};
        stem_status s = bench_memcpy(bytes, par, reps, &st);
        double rate = s == STEM_OK ? 2.0 * (double)bytes / (st.ms_median * 1e-3) * 1e-9 : 0;
        peak_line("memcpy", par ? "256 MiB, OpenMP threads" : "256 MiB, 1 thread", &st, rate, false, s);
        if (rate > best) best = rate;
    }
    const size_t small = (size_t)8 << 20;
    bench_stats st = {0};
    stem_status s = bench_memcpy(small, true, 10 * reps, &st);
    *cached = s == STEM_OK ? 2.0 * (double)small / (st.ms_median * 1e-3) * 1e-9 : 0;
    peak_line("memcpy", "8 MiB, OpenMP threads (cache-resident; info)", &st, *cached, false, s);
    return best;
}

/* For a device backend: its own GEMM (4096^3, bench dtype) and device-to-device copy. */
typedef struct dev_ctx {
    stem_tensor a, b, c;
    size_t bytes;
} dev_ctx;
static stem_status dev_gemm_run(void *p) {
    dev_ctx *d = p;
    return stem_matmul(&d->a, &d->b, false, false, 1.0f, 0.0f, &d->c);
}
static stem_status dev_copy_run(void *p) {
    dev_ctx *d = p;
    return ops_bench.be->ops->copy(ops_bench.be, d->b.data, d->a.data, d->bytes);
}

static void device_peaks(double *gemm, double *copy) {
    dev_ctx d = {0};
    bench_stats st = {0};
    const int64_t n = 4096, sq[2] = {n, n};
    stem_status s = stem_tensor_new(ops_bench.be, ops_bench.dtype, 2, sq, &d.a);
    if (s == STEM_OK) s = stem_tensor_new(ops_bench.be, ops_bench.dtype, 2, sq, &d.b);
    if (s == STEM_OK) s = stem_tensor_new(ops_bench.be, ops_bench.dtype, 2, sq, &d.c);
    if (s == STEM_OK) s = stem_philox_normal(1, 0, 0, 0, &d.a);
    if (s == STEM_OK) s = stem_philox_normal(2, 0, 0, 0, &d.b);
    if (s == STEM_OK) s = bench_time(dev_gemm_run, &d, ops_bench.be, ops_bench.reps, &st);
    *gemm = s == STEM_OK ? 2.0 * n * n * n / (st.ms_median * 1e-3) * 1e-9 : 0;
    peak_line("backend_gemm", "stem_matmul 4096x4096x4096", &st, *gemm, true, s);
    stem_tensor_free(&d.a);
    stem_tensor_free(&d.b);
    stem_tensor_free(&d.c);

    const int64_t words[1] = {(int64_t)((256u << 20) / 4)};
    memset(&d, 0, sizeof d);
    d.bytes = (size_t)256 << 20;
    s = stem_tensor_new(ops_bench.be, STEM_F32, 1, words, &d.a);
    if (s == STEM_OK) s = stem_tensor_zeros(ops_bench.be, STEM_F32, 1, words, &d.b);
    if (s == STEM_OK) s = ops_bench.be->ops->memset0(ops_bench.be, d.a.data, d.bytes);
    if (s == STEM_OK) s = bench_time(dev_copy_run, &d, ops_bench.be, ops_bench.reps, &st);
    *copy = s == STEM_OK ? 2.0 * (double)d.bytes / (st.ms_median * 1e-3) * 1e-9 : 0;
    peak_line("backend_copy", "device copy 256 MiB", &st, *copy, false, s);
    stem_tensor_free(&d.a);
    stem_tensor_free(&d.b);
}

/* ---- main ------------------------------------------------------------------------------ */

static void usage(FILE *out) {
    fprintf(out,
            "usage: bench/ops [--backend cpu|cuda] [--dtype f32|f16] [--reps N] [--filter SUBSTRING] [--quick]\n"
            "\n"
            "Times every tensor op at SD 1.5 512x512 shapes (batch 2) and prints one JSON line per\n"
            "measurement on stdout, then a table on stderr. Denominators, measured in the same run:\n"
            "OpenBLAS sgemm GFLOP/s (compute-bound ops) and memcpy GB/s (memory-bound ops).\n"
            "\n"
            "  --backend NAME    cpu (default) or cuda\n"
            "  --dtype NAME      f32 (default) or f16 (storage dtype of every float tensor)\n"
            "  --reps N          timed repetitions after one warm-up (default 5)\n"
            "  --filter TEXT     only cases whose \"op case\" contains TEXT (e.ops_bench. conv2d, 64x64)\n"
            "  --quick           2 repetitions unless --reps is given\n");
}

int main(int argc, char **argv) {
    /* before anything touches OpenBLAS (may re-exec with OPENBLAS_CORETYPE set) */
    stem_blas_ensure_fast_core(argc, argv);

    ops_bench.backend_name = "cpu";
    ops_bench.dtype = STEM_F32;
    int reps = -1;
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            quick = true;
        } else if (!strcmp(a, "--backend") && has_val) {
            ops_bench.backend_name = argv[++i];
        } else if (!strcmp(a, "--dtype") && has_val) {
            int dt = stem_dtype_parse(argv[++i]);
            if (dt != STEM_F32 && dt != STEM_F16) {
                fprintf(stderr, "bench/ops: --dtype '%s': expected f32 or f16\n", argv[i]);
                return 2;
            }
            ops_bench.dtype = (stem_dtype)dt;
        } else if (!strcmp(a, "--reps") && has_val) {
            char *end;
            errno = 0;
            long r = strtol(argv[++i], &end, 10);
            if (errno || *end || r < 1 || r > 1000) {
                fprintf(stderr, "bench/ops: --reps '%s': expected an integer in 1..1000\n", argv[i]);
                return 2;
            }
            reps = (int)r;
        } else if (!strcmp(a, "--filter") && has_val) {
            ops_bench.filter = argv[++i];
        } else {
            fprintf(stderr, "bench/ops: unknown or incomplete argument '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    ops_bench.reps = reps > 0 ? reps : quick ? 2 : 5;

    stem_status s = stem_backend_open(ops_bench.backend_name, &ops_bench.be);
    if (s != STEM_OK) {
        fprintf(stderr, "bench/ops: %s\n", stem_last_error());
        return s == STEM_E_ARG ? 2 : 1;
    }

    bench_machine m;
    bench_machine_collect(ops_bench.be, &m);
#ifdef STEM_HAVE_CUDA
    if (ops_bench.be->kind == STEM_BACKEND_CUDA) {
        int dev = 0;
        struct cudaDeviceProp prop;
        if (cudaGetDevice(&dev) == cudaSuccess && cudaGetDeviceProperties(&prop, dev) == cudaSuccess)
            snprintf(m.gpu, sizeof m.gpu, "%s", prop.name);
    }
#endif
    bench_machine_print(&m, stdout);

    /* denominators: always the host ones; a device backend also gets its own */
    /* at least 3 repetitions: a noisy denominator skews every percentage */
    int peak_reps = ops_bench.reps < 3 ? 3 : ops_bench.reps;
    ops_bench.gemm_peak = host_sgemm_peak(peak_reps);
    ops_bench.mem_peak = host_memcpy_peak(peak_reps, &ops_bench.mem_cached);
    if (!ops_bench.be->host_memory) {
        ops_bench.mem_cached = 0;
        device_peaks(&ops_bench.gemm_peak, &ops_bench.mem_peak);
    }
    bench_json j;
    bench_json_begin(&j);
    bench_json_str(&j, "kind", "peak");
    bench_json_str(&j, "name", "denominators");
    bench_json_str(&j, "compute", ops_bench.be->host_memory ? "sgemm_peak (best OpenBLAS cblas_sgemm above)"
                                                    : "backend_gemm (stem_matmul 4096^3)");
    bench_json_str(&j, "memory", ops_bench.be->host_memory ? "memcpy (best of 1 thread / OpenMP threads)"
                                                   : "backend_copy (device copy)");
    bench_json_num(&j, "sgemm_peak", ops_bench.gemm_peak);
    bench_json_num(&j, "memcpy_gbps", ops_bench.mem_peak);
    if (ops_bench.mem_cached > 0) bench_json_num(&j, "memcpy_cached_gbps", ops_bench.mem_cached);
    bench_json_end(&j, stdout);

    double t_start = bench_now();
    bench_ops_run_all();
    double wall = bench_now() - t_start;

    /* the load at the end tells whether something else ran meanwhile */
    double load_end = -1;
    FILE *lf = fopen("/proc/loadavg", "r");
    if (lf) {
        if (fscanf(lf, "%lf", &load_end) != 1) load_end = -1;
        fclose(lf);
    }
    bench_json_begin(&j);
    bench_json_str(&j, "kind", "summary");
    bench_json_int(&j, "cases", ops_bench.cases);
    bench_json_int(&j, "failures", ops_bench.failures);
    bench_json_num(&j, "ops_wall_s", wall);
    bench_json_num(&j, "load1_end", load_end);
    bench_json_end(&j, stdout);

    fprintf(stderr, "\nbench/ops: backend %s, dtype %s, %d reps (median), %s\n", ops_bench.backend_name,
            stem_dtype_name(ops_bench.dtype), ops_bench.reps, m.backend);
    fprintf(stderr, "denominators: compute %.1f GFLOP/s, memory %.1f GB/s\n\n", ops_bench.gemm_peak, ops_bench.mem_peak);
    bench_table_print(&ops_bench.table, stderr);
    if (ops_bench.failures) fprintf(stderr, "\n%d case(s) failed; see the \"error\" fields\n", ops_bench.failures);
    bench_table_free(&ops_bench.table);
    stem_backend_close(ops_bench.be);
    return ops_bench.failures ? 1 : 0;
}
