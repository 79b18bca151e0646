/* bench/em: the streaming EM bases (src/stem/em.c) at Stable Diffusion 1.5's top UNet
 * level: F frames x 4096 tokens (64x64 latents), C = 320 channels, 8 heads (d = 40),
 * M = 256 bases, R = 5 iterations, Philox initial draw. One case per process, so that
 * the peak resident memory (VmHWM) belongs to that case alone; bench/em_torch.py runs
 * it next to the PyTorch dense formulation and prints the comparison.
 *
 *   bench/em [--frames F] [--tokens N] [--channels C] [--heads H] [--bases M]
 *            [--iters R] [--block B] [--reps K] [--backend cpu|cuda]
 *
 * stdout: the machine line, then one {"kind":"em",...} line: ms_median / ms_min over K
 * timed calls (after one untimed warm-up), cpu_ms_per_call (process CPU time per call,
 * all threads: meaningful when the machine is shared), input_mib (k and v, token-major [F*N, C]
 * f32), rss_inputs_mib (resident after the inputs exist), vmhwm_mib (peak resident)
 * and extra_peak_mib = vmhwm - rss_inputs: what the EM itself needed at its peak
 * (bases, statistics, kernel scratch, OpenBLAS buffers). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backends.h"
#include "bench/bench_util.h"
#include "core/ops.h"
#include "core/tensor.h"
#include "stem/em.h"

/* "VmHWM:  123456 kB" -> MiB; -1 when /proc is not there. */
static double proc_status_mib(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1.0;
    char line[256];
    double v = -1.0;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') {
            v = strtod(line + n + 1, NULL) / 1024.0;
            break;
        }
    fclose(f);
    return v;
}

typedef struct em_ctx {
    stem_tensor k, v, kb, vb;
    int64_t heads;
    stem_em_options o;
} em_ctx;

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static stem_status run_em(void *p) {
    em_ctx *c = p;
    return stem_em_bases_tokens(&c->k, &c->v, c->heads, NULL, &c->o, &c->kb, &c->vb);
}

static int parse_int(const char *flag, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) {
        fprintf(stderr, "bench/em: %s '%s': expected an integer in %ld..%ld\n", flag, s, lo, hi);
        return 2;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    stem_blas_ensure_fast_core(argc, argv);
    long frames = 8, tokens = 4096, channels = 320, heads = 8, bases = 256, iters = 5, block = 65536, reps = 3;
    const char *backend = "cpu";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: bench/em [--frames F] [--tokens N] [--channels C] [--heads H] [--bases M] [--iters R]\n"
                   "                [--block B] [--reps K] [--backend cpu|cuda]\n");
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench/em: unknown or incomplete argument '%s'\n", a);
            return 2;
        }
        const char *val = argv[++i];
        int rc;
        if (!strcmp(a, "--frames")) rc = parse_int(a, val, 1, 100000, &frames);
        else if (!strcmp(a, "--tokens")) rc = parse_int(a, val, 1, 1 << 24, &tokens);
        else if (!strcmp(a, "--channels")) rc = parse_int(a, val, 1, 1 << 16, &channels);
        else if (!strcmp(a, "--heads")) rc = parse_int(a, val, 1, 1024, &heads);
        else if (!strcmp(a, "--bases")) rc = parse_int(a, val, 1, 1 << 16, &bases);
        else if (!strcmp(a, "--iters")) rc = parse_int(a, val, 0, 1000, &iters);
        else if (!strcmp(a, "--block")) rc = parse_int(a, val, 1, 1L << 30, &block);
        else if (!strcmp(a, "--reps")) rc = parse_int(a, val, 1, 1000, &reps);
        else if (!strcmp(a, "--backend")) { backend = val; rc = 0; }
        else {
            fprintf(stderr, "bench/em: unknown argument '%s'\n", a);
            rc = 2;
        }
        if (rc) return rc;
    }
    stem_backend *be;
    if (stem_backend_open(backend, &be) != STEM_OK) {
        fprintf(stderr, "bench/em: %s\n", stem_last_error());
        return 1;
    }
    bench_machine m;
    bench_machine_collect(be, &m);
    bench_machine_print(&m, stdout);

    em_ctx c;
    memset(&c, 0, sizeof c);
    c.heads = heads;
    stem_em_options_default(&c.o);
    c.o.bases = bases;
    c.o.iters = iters;
    c.o.block = block;
    c.o.seed = 1;
    const int64_t n = (int64_t)frames * tokens, d = channels / heads;
    int64_t nc[2] = {n, channels}, hmd[3] = {heads, bases, d};
    stem_status s = stem_tensor_new(be, STEM_F32, 2, nc, &c.k);
    if (s == STEM_OK) s = stem_tensor_new(be, STEM_F32, 2, nc, &c.v);
    if (s == STEM_OK) s = stem_philox_normal(7, 1, 0, 0, &c.k); /* keys and values: standard normals */
    if (s == STEM_OK) s = stem_philox_normal(7, 2, 0, 0, &c.v);
    if (s == STEM_OK) s = stem_tensor_new(be, STEM_F32, 3, hmd, &c.kb);
    if (s == STEM_OK) s = stem_tensor_new(be, STEM_F32, 3, hmd, &c.vb);
    if (s == STEM_OK) s = be->ops->synchronize(be);
    double rss_inputs = proc_status_mib("VmRSS");
    bench_stats st = {0};
    double cpu0 = cpu_seconds();
    if (s == STEM_OK) s = bench_time(run_em, &c, be, (int)reps, &st);
    double cpu_ms = 1e3 * (cpu_seconds() - cpu0) / (double)(reps + 1); /* the warm-up call included */
    double hwm = proc_status_mib("VmHWM");

    bench_json j;
    bench_json_begin(&j);
    bench_json_str(&j, "kind", "em");
    bench_json_str(&j, "impl", "stem");
    bench_json_str(&j, "backend", backend);
    bench_json_int(&j, "frames", frames);
    bench_json_int(&j, "tokens", n);
    bench_json_int(&j, "channels", channels);
    bench_json_int(&j, "heads", heads);
    bench_json_int(&j, "bases", bases);
    bench_json_int(&j, "iters", iters);
    bench_json_int(&j, "block", block);
    bench_json_int(&j, "threads", m.threads);
    bench_json_num(&j, "input_mib", 2.0 * (double)n * channels * 4 / (1024.0 * 1024.0));
    if (s != STEM_OK) {
        bench_json_str(&j, "error", stem_last_error());
    } else {
        bench_json_num(&j, "ms_median", st.ms_median);
        bench_json_num(&j, "ms_min", st.ms_min);
        bench_json_int(&j, "reps", st.reps);
        bench_json_num(&j, "cpu_ms_per_call", cpu_ms);
        bench_json_num(&j, "rss_inputs_mib", rss_inputs);
        bench_json_num(&j, "vmhwm_mib", hwm);
        bench_json_num(&j, "extra_peak_mib", hwm - rss_inputs);
    }
    bench_json_end(&j, stdout);
    fprintf(stderr, "em: %ld frames x %ld tokens, C=%ld, %ld heads, M=%ld, R=%ld: %.1f ms (min %.1f, cpu %.1f), peak extra %.1f MiB\n",
            frames, tokens, channels, heads, bases, iters, st.ms_median, st.ms_min, cpu_ms, hwm - rss_inputs);
    stem_tensor_free(&c.k);
    stem_tensor_free(&c.v);
    stem_tensor_free(&c.kb);
    stem_tensor_free(&c.vb);
    return s == STEM_OK ? 0 : 1;
}
