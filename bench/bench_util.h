/* Shared helpers for the bench/ programs: wall-clock timing with backend
 * synchronisation, median/min statistics, one-line JSON output (stdout stays pure
 * JSON lines), the machine-facts line, the two roofline denominators (OpenBLAS sgemm
 * GFLOP/s and memcpy GB/s) and a plain-text summary table for stderr.
 *
 * Header-only on purpose: every function is static inline, so a benchmark includes
 * this file and links libstem + OpenBLAS, nothing else.
 *
 * Units: 1 GFLOP = 1e9 floating-point operations (a multiply-add counts 2),
 * 1 GB = 1e9 bytes, times in milliseconds unless a name says otherwise. */
#ifndef STEM_BENCH_UTIL_H
#define STEM_BENCH_UTIL_H

#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/backend.h"
#include "core/cpu_info.h"

/* ---- time ------------------------------------------------------------------------ */

/* Seconds on CLOCK_MONOTONIC. */
static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct bench_stats {
    double ms_median, ms_min, ms_max;
    int reps;
} bench_stats;

/* Sorts t[0..n) in place; median of an even count is the mean of the middle two. */
static inline bench_stats bench_stats_of(double *ms, int n) {
    bench_stats s = {0};
    if (n <= 0) return s;
    qsort(ms, (size_t)n, sizeof *ms, bench_cmp_double);
    s.ms_min = ms[0];
    s.ms_max = ms[n - 1];
    s.ms_median = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
    s.reps = n;
    return s;
}

/* The thing being timed: returns STEM_OK or an error (with stem_last_error() set). */
typedef stem_status (*bench_fn)(void *ctx);

/* One untimed warm-up call, then `reps` timed calls; the clock stops after the
 * backend's synchronize() (be may be NULL for host-only work). Stops at the first
 * error and returns it. */
static inline stem_status bench_time(bench_fn fn, void *ctx, stem_backend *be, int reps, bench_stats *out) {
    enum { MAX_REPS = 1000 };
    double ms[MAX_REPS];
    if (reps < 1) reps = 1;
    if (reps > MAX_REPS) reps = MAX_REPS;
    stem_status s = fn(ctx);
    if (s == STEM_OK && be) s = be->ops->synchronize(be);
    if (s != STEM_OK) return s;
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        s = fn(ctx);
        if (s == STEM_OK && be) s = be->ops->synchronize(be);
        double t1 = bench_now();
        if (s != STEM_OK) return s;
        ms[r] = 1e3 * (t1 - t0);
    }
    *out = bench_stats_of(ms, reps);
    return STEM_OK;
}

/* ---- JSON lines ------------------------------------------------------------------ */

/* Builds one JSON object on one line: bench_json_begin, then fields, then
 * bench_json_end, which prints it with a newline and flushes. Long values are
 * truncated rather than overflowing. */
typedef struct bench_json {
    char buf[4096];
    size_t len;
    int fields;
} bench_json;

static inline void bench_json_raw(bench_json *j, const char *fmt, ...) STEM_PRINTF(2, 3);
static inline void bench_json_raw(bench_json *j, const char *fmt, ...) {
    if (j->len >= sizeof j->buf - 1) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(j->buf + j->len, sizeof j->buf - j->len, fmt, ap);
    va_end(ap);
    if (n > 0) j->len += (size_t)n;
    if (j->len > sizeof j->buf - 1) j->len = sizeof j->buf - 1;
}

static inline void bench_json_key(bench_json *j, const char *key) {
    bench_json_raw(j, "%s\"%s\":", j->fields++ ? "," : "", key);
}

static inline void bench_json_begin(bench_json *j) {
    j->len = 0;
    j->fields = 0;
    bench_json_raw(j, "{");
}

static inline void bench_json_str(bench_json *j, const char *key, const char *val) {
    bench_json_key(j, key);
    if (!val) {
        bench_json_raw(j, "null");
        return;
    }
    bench_json_raw(j, "\"");
    for (const unsigned char *p = (const unsigned char *)val; *p; p++) {
        if (*p == '"' || *p == '\\') bench_json_raw(j, "\\%c", *p);
        else if (*p < 0x20) bench_json_raw(j, "\\u%04x", *p);
        else bench_json_raw(j, "%c", *p);
    }
    bench_json_raw(j, "\"");
}

/* Non-finite numbers become null (JSON has no nan/inf). */
static inline void bench_json_num(bench_json *j, const char *key, double val) {
    bench_json_key(j, key);
    if (isfinite(val)) bench_json_raw(j, "%.6g", val);
    else bench_json_raw(j, "null");
}

static inline void bench_json_int(bench_json *j, const char *key, long long val) {
    bench_json_key(j, key);
    bench_json_raw(j, "%lld", val);
}

static inline void bench_json_bool(bench_json *j, const char *key, bool val) {
    bench_json_key(j, key);
    bench_json_raw(j, "%s", val ? "true" : "false");
}

static inline void bench_json_end(bench_json *j, FILE *out) {
    bench_json_raw(j, "}");
    fprintf(out, "%s\n", j->buf);
    fflush(out);
}

/* ---- machine facts --------------------------------------------------------------- */

typedef struct bench_machine {
    char cpu_model[128];
    char cpu_flags[256]; /* the subset of /proc/cpuinfo flags that matters here */
    int logical_cpus;    /* "processor" entries in /proc/cpuinfo */
    const char *isa;     /* stem kernel level in use */
    int threads;
    const char *blas_core;
    const char *blas_coretype_env; /* OPENBLAS_CORETYPE as the process sees it */
    char backend[256];   /* backend describe() */
    char gpu[256];       /* empty unless the caller fills it */
    double load1;        /* 1-minute load average at start, -1 if unknown */
} bench_machine;

static inline void bench_trim(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
}

/* True when the space-separated list `flags` contains `word`. */
static inline bool bench_has_word(const char *flags, const char *word) {
    size_t n = strlen(word);
    for (const char *p = flags; (p = strstr(p, word)); p += n)
        if ((p == flags || p[-1] == ' ' || p[-1] == '\t') && (p[n] == ' ' || p[n] == '\n' || p[n] == 0)) return true;
    return false;
}

/* Fills everything but `gpu`; `be` may be NULL. */
static inline void bench_machine_collect(stem_backend *be, bench_machine *m) {
    memset(m, 0, sizeof *m);
    snprintf(m->cpu_model, sizeof m->cpu_model, "unknown");
    static const char *const wanted[] = {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq",
                                         "avx512bw", "avx512vl", "avx512_bf16", "avx512_vnni", "amx_tile"};
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[8192];
        bool have_model = false, have_flags = false;
        while (fgets(line, sizeof line, f)) {
            char *colon = strchr(line, ':');
            if (!colon) continue;
            const char *val = colon + 1 + (colon[1] == ' ');
            if (!strncmp(line, "processor", 9)) m->logical_cpus++;
            if (!have_model && !strncmp(line, "model name", 10)) {
                snprintf(m->cpu_model, sizeof m->cpu_model, "%s", val);
                bench_trim(m->cpu_model);
                have_model = true;
            }
            if (!have_flags && !strncmp(line, "flags", 5)) {
                size_t used = 0;
                for (size_t i = 0; i < sizeof wanted / sizeof *wanted; i++)
                    if (bench_has_word(val, wanted[i]) && used < sizeof m->cpu_flags)
                        used += (size_t)snprintf(m->cpu_flags + used, sizeof m->cpu_flags - used, "%s%s",
                                                 used ? " " : "", wanted[i]);
                have_flags = true;
            }
        }
        fclose(f);
    }
    m->isa = stem_cpu_isa_name();
    m->threads = stem_num_threads();
    m->blas_core = stem_blas_core_name();
    m->blas_coretype_env = getenv("OPENBLAS_CORETYPE");
    if (be && be->ops->describe) snprintf(m->backend, sizeof m->backend, "%s", be->ops->describe(be));
    m->load1 = -1.0;
    f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &m->load1) != 1) m->load1 = -1.0;
        fclose(f);
    }
}

/* One {"kind":"machine",...} line. */
static inline void bench_machine_print(const bench_machine *m, FILE *out) {
    char date[32] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm)) strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    bench_json j;
    bench_json_begin(&j);
    bench_json_str(&j, "kind", "machine");
    bench_json_str(&j, "date", date);
    bench_json_str(&j, "cpu", m->cpu_model);
    bench_json_str(&j, "cpu_vendor", stem_cpu_features_get()->vendor);
    bench_json_str(&j, "cpu_flags", m->cpu_flags);
    bench_json_int(&j, "logical_cpus", m->logical_cpus);
    bench_json_str(&j, "isa", m->isa);
    bench_json_int(&j, "threads", m->threads);
    bench_json_str(&j, "openblas_core", m->blas_core);
    bench_json_str(&j, "openblas_coretype_env", m->blas_coretype_env);
    bench_json_str(&j, "backend", m->backend);
    bench_json_str(&j, "gpu", m->gpu[0] ? m->gpu : NULL);
    bench_json_num(&j, "load1", m->load1);
    bench_json_end(&j, out);
}

/* ---- the denominators ------------------------------------------------------------ */

/* Best-effort aligned host allocation (64 bytes). */
static inline void *bench_alloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64)) return NULL;
    return p;
}

typedef struct bench_sgemm_ctx {
    int m, n, k;
    float *a, *b, *c;
} bench_sgemm_ctx;

static inline stem_status bench_sgemm_run(void *ctx) {
    bench_sgemm_ctx *g = ctx;
    /* row-major C[m, n] = A[m, k] @ B[k, n] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->m, g->n, g->k, 1.0f, g->a, g->k, g->b, g->n, 0.0f,
                g->c, g->n);
    return STEM_OK;
}

/* OpenBLAS sgemm on m x n x k; FLOP = 2 m n k. Returns STEM_E_NOMEM when the
 * buffers cannot be allocated. */
static inline stem_status bench_sgemm(int m, int n, int k, int reps, bench_stats *st) {
    bench_sgemm_ctx g = {m, n, k, bench_alloc((size_t)m * k * 4), bench_alloc((size_t)k * n * 4),
                         bench_alloc((size_t)m * n * 4)};
    stem_status s = STEM_E_NOMEM;
    if (g.a && g.b && g.c) {
        for (size_t i = 0; i < (size_t)m * k; i++) g.a[i] = (float)((i * 7919u) % 1000u) * 1e-3f - 0.5f;
        for (size_t i = 0; i < (size_t)k * n; i++) g.b[i] = (float)((i * 104729u) % 1000u) * 1e-3f - 0.5f;
        s = bench_time(bench_sgemm_run, &g, NULL, reps, st);
    }
    free(g.a);
    free(g.b);
    free(g.c);
    return s;
}

typedef struct bench_memcpy_ctx {
    char *dst;
    const char *src;
    size_t bytes;
    bool parallel;
} bench_memcpy_ctx;

static inline stem_status bench_memcpy_run(void *ctx) {
    bench_memcpy_ctx *c = ctx;
#ifdef _OPENMP
    if (c->parallel) {
#pragma omp parallel
        {
            size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
            size_t chunk = (c->bytes / nt + 63) & ~(size_t)63;
            size_t lo = t * chunk < c->bytes ? t * chunk : c->bytes;
            size_t hi = lo + chunk < c->bytes ? lo + chunk : c->bytes;
            memcpy(c->dst + lo, c->src + lo, hi - lo);
        }
        return STEM_OK;
    }
#endif
    memcpy(c->dst, c->src, c->bytes);
    return STEM_OK;
}

/* memcpy between two `bytes`-sized host buffers, on one thread or split across the
 * OpenMP threads; GB/s counts read + write = 2 * bytes per copy. */
static inline stem_status bench_memcpy(size_t bytes, bool parallel, int reps, bench_stats *st) {
    char *src = bench_alloc(bytes), *dst = bench_alloc(bytes);
    stem_status s = STEM_E_NOMEM;
    if (src && dst) {
        memset(src, 1, bytes); /* fault every page in before timing */
        memset(dst, 2, bytes);
        bench_memcpy_ctx c = {dst, src, bytes, parallel};
        s = bench_time(bench_memcpy_run, &c, NULL, reps, st);
    }
    free(src);
    free(dst);
    return s;
}

/* ---- the stderr table ------------------------------------------------------------ */

typedef struct bench_row {
    char op[32], what[64];
    double ms, rate; /* rate in GFLOP/s or GB/s */
    const char *unit; /* "GFLOP/s" or "GB/s" */
    double pct;      /* % of the matching peak; NAN if none */
    char note[96];   /* an error, when the measurement failed */
} bench_row;

typedef struct bench_table {
    bench_row *rows;
    int count, cap;
} bench_table;

static inline void bench_table_add(bench_table *t, const char *op, const char *what, double ms, double rate,
                                   const char *unit, double pct, const char *note) {
    if (t->count == t->cap) {
        int cap = t->cap ? 2 * t->cap : 64;
        bench_row *r = realloc(t->rows, (size_t)cap * sizeof *r);
        if (!r) return;
        t->rows = r;
        t->cap = cap;
    }
    bench_row *r = &t->rows[t->count++];
    memset(r, 0, sizeof *r);
    /* cut to the columns (the precision also tells gcc the cut is meant) */
    snprintf(r->op, sizeof r->op, "%.*s", (int)sizeof r->op - 1, op);
    snprintf(r->what, sizeof r->what, "%.*s", (int)sizeof r->what - 1, what);
    r->ms = ms;
    r->rate = rate;
    r->unit = unit ? unit : "";
    r->pct = pct;
    if (note) snprintf(r->note, sizeof r->note, "%.*s", (int)sizeof r->note - 1, note);
}

static inline void bench_table_print(const bench_table *t, FILE *out) {
    fprintf(out, "%-18s %-44s %10s %10s %-8s %8s\n", "op", "case", "ms", "rate", "unit", "% peak");
    for (int i = 0; i < t->count; i++) {
        const bench_row *r = &t->rows[i];
        if (r->note[0]) {
            fprintf(out, "%-18s %-44s  %s\n", r->op, r->what, r->note);
            continue;
        }
        char pct[16] = "-";
        if (isfinite(r->pct)) snprintf(pct, sizeof pct, "%.0f%%", r->pct);
        fprintf(out, "%-18s %-44s %10.3f %10.2f %-8s %8s\n", r->op, r->what, r->ms, r->rate, r->unit, pct);
    }
}

static inline void bench_table_free(bench_table *t) {
    free(t->rows);
    t->rows = NULL;
    t->count = t->cap = 0;
}

#endif
