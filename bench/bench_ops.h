/* bench/ops' pieces: the run-wide settings (bench_ops.c parses them and measures the
 * denominators) and the op cases (bench_ops_cases.c). */
#ifndef STEM_BENCH_OPS_H
#define STEM_BENCH_OPS_H

#include "bench_util.h"
#include "stem.h"

/* ---- run-wide settings ------------------------------------------------------------ */

typedef struct ops_bench_settings {
    stem_backend *be;
    const char *backend_name;
    stem_dtype dtype;
    int reps;
    const char *filter;
    double gemm_peak;   /* GFLOP/s: the compute denominator */
    double mem_peak;    /* GB/s: the memory denominator */
    double mem_cached;  /* GB/s: memcpy of a cache-sized buffer (host backends; 0 otherwise) */
    bench_table table;
    int cases, failures;
} ops_bench_settings;

extern ops_bench_settings ops_bench;

/* Times every op case (filtered by ops_bench.filter), adding JSON lines to stdout and
 * rows to ops_bench.table; counts cases and failures. */
void bench_ops_run_all(void);

#endif
