/* bench/attention_modes: one self-attention layer at SD 1.5's top level (N = 64x64
 * tokens per frame, C = 320, 8 heads) over F frames, in each mode of doc/algorithm.md §5:
 *   stem      EM bases over all frames (M = 256, R = 5), then queries vs 256 bases
 *   inflated  every query vs the keys/values of all F frames (streaming, no (FN)^2 matrix)
 *   frame     per-frame attention
 * One case per process so that its peak memory is its own:
 *   bench/attention_modes --frames F --mode stem|inflated|frame [--reps R]
 * prints one JSON line: wall ms (median, min), peak RSS and the extra peak over the
 * inputs and output (VmHWM after - VmRSS before the calls, the warm-up included: what
 * the attention itself needed). bench/README.md has the table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backends.h"
#include "bench/bench_util.h"
#include "core/ops.h"
#include "stem/stem_attention.h"

static long status_kib(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n)) v = atol(line + n + 1);
    if (f) fclose(f);
    return v;
}

typedef struct attn_case {
    stem_tensor q, k, v, out;
    stem_sa_options o;
} attn_case;

static stem_status run_case(void *ctx) {
    attn_case *c = ctx;
    return stem_self_attention(&c->q, &c->k, &c->v, 8, &c->o, &c->out);
}

int main(int argc, char **argv) {
    stem_blas_ensure_fast_core(argc, argv);
    int frames = 8, reps = 3;
    const char *mode = "stem";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--frames")) frames = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--mode")) mode = argv[i + 1];
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench/attention_modes --frames F --mode stem|inflated|frame [--reps R]\n");
            return 2;
        }
    }
    attn_case c = {0};
    stem_sa_options_default(&c.o);
    if (frames < 1 || reps < 1 || stem_sa_mode_parse(mode, &c.o.mode) != STEM_OK) {
        fprintf(stderr, "bench/attention_modes: %s\n", frames < 1 || reps < 1 ? "bad --frames/--reps" : stem_last_error());
        return 2;
    }
    c.o.em.seed = 1;
    stem_backend *be = stem_cpu_backend();
    int64_t shape[3] = {frames, 4096, 320}; /* [F, N, C] token-major, as the UNet hands them over */
    stem_tensor *ts[4] = {&c.q, &c.k, &c.v, &c.out};
    for (int i = 0; i < 4; i++)
        if (stem_tensor_zeros(be, STEM_F32, 3, shape, ts[i]) != STEM_OK) return 1; /* pages touched now */
    for (int i = 0; i < 3; i++) stem_philox_normal(7, (uint32_t)i, 0, 0, ts[i]);
    long rss_before = status_kib("VmRSS:");
    bench_stats st;
    if (bench_time(run_case, &c, be, reps, &st) != STEM_OK) {
        fprintf(stderr, "bench/attention_modes: %s\n", stem_last_error());
        return 1;
    }
    long hwm = status_kib("VmHWM:");
    printf("{\"kind\":\"attention_mode\",\"mode\":\"%s\",\"frames\":%d,\"tokens\":%d,\"ms_median\":%.1f,"
           "\"ms_min\":%.1f,\"peak_rss_mib\":%.1f,\"extra_peak_mib\":%.1f,\"threads\":%d}\n",
           mode, frames, frames * 4096, st.ms_median, st.ms_min, hwm / 1024.0, (hwm - rss_before) / 1024.0,
           stem_num_threads());
    for (int i = 0; i < 4; i++) stem_tensor_free(ts[i]);
    return 0;
}
