/* bench/ops' cases: every tensor op at the shapes SD 1.5 runs at 512x512 (latent
 * 64x64, batch 2), with the work each is credited with (see bench_ops.c's header). */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_ops.h"

/* ---- one benchmark case ----------------------------------------------------------- */

enum { MAX_T = 6 };

typedef struct bench_case bench_case;
struct bench_case {
    const char *op;
    char what[80];
    bool compute;  /* compute-bound: work is FLOP; memory-bound: work is bytes */
    double work;
    stem_status (*run)(bench_case *c);
    stem_tensor t[MAX_T];
    int nt;
    stem_status err; /* the first setup failure */
    char err_msg[256];
    /* op parameters */
    int stride, pad[4], groups, heads, axis, perm[4];
    bool silu, bias;
    float scale;
    stem_unary_kind unary;
};

static bool matches_filter(const char *op, const char *what) {
    if (!ops_bench.filter || !*ops_bench.filter) return true;
    char full[160];
    snprintf(full, sizeof full, "%s %s", op, what);
    return strstr(full, ops_bench.filter) != NULL;
}

/* Starts a case; false when the filter skips it (nothing is allocated then). */
static bool begin(bench_case *c, const char *op, const char *fmt, ...) STEM_PRINTF(3, 4);
static bool begin(bench_case *c, const char *op, const char *fmt, ...) {
    memset(c, 0, sizeof *c);
    c->op = op;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->what, sizeof c->what, fmt, ap);
    va_end(ap);
    return matches_filter(op, c->what);
}

static void setup_fail(bench_case *c, stem_status s) {
    if (c->err != STEM_OK) return;
    c->err = s;
    snprintf(c->err_msg, sizeof c->err_msg, "%s", stem_last_error());
}

/* A new tensor of dtype `dt` on the bench backend; float tensors are filled with
 * Philox normals, integer ones are left for the caller. Returns a valid pointer even
 * on failure (an empty tensor), with the failure recorded in c->err. */
static stem_tensor *tensor_dt(bench_case *c, stem_dtype dt, int ndim, const int64_t *shape) {
    stem_tensor *t = &c->t[c->nt++];
    if (c->err != STEM_OK) return t;
    stem_status s = stem_tensor_new(ops_bench.be, dt, ndim, shape, t);
    if (s == STEM_OK && (dt == STEM_F32 || dt == STEM_F16 || dt == STEM_BF16))
        s = stem_philox_normal(1234, (uint32_t)c->nt, 0, 0, t);
    if (s != STEM_OK) setup_fail(c, s);
    return t;
}

/* A tensor of the bench dtype: T(c, 4, (int64_t[]){2, 320, 64, 64}). */
#define T(c, ndim, ...) tensor_dt((c), ops_bench.dtype, (ndim), (const int64_t[]){__VA_ARGS__})

/* Fills an I32 tensor with a fixed pseudo-random permutation-like pattern in [0, range). */
static void fill_i32(bench_case *c, stem_tensor *t, int32_t range) {
    if (c->err != STEM_OK) return;
    int64_t n = stem_numel(t);
    int32_t *host = malloc((size_t)n * sizeof *host);
    if (!host) {
        setup_fail(c, stem_fail(STEM_E_NOMEM, "index buffer of %lld entries", (long long)n));
        return;
    }
    for (int64_t i = 0; i < n; i++) host[i] = (int32_t)(((uint64_t)i * 2654435761u) % (uint64_t)range);
    stem_tensor h = stem_tensor_wrap(stem_cpu_backend(), STEM_I32, t->ndim, t->shape, host);
    stem_status s = stem_tensor_copy(&h, t);
    if (s != STEM_OK) setup_fail(c, s);
    free(host);
}

static size_t esize(void) { return stem_dtype_size(ops_bench.dtype); }

static stem_status run_case(void *ctx) {
    bench_case *c = ctx;
    return c->run(c);
}

/* Times the case, prints its JSON line and table row, frees its tensors. */
static void finish(bench_case *c, bool compute, double work, stem_status (*run)(bench_case *)) {
    c->compute = compute;
    c->work = work;
    c->run = run;
    ops_bench.cases++;
    bench_stats st = {0};
    stem_status s = c->err;
    const char *msg = c->err_msg;
    if (s == STEM_OK) {
        s = bench_time(run_case, c, ops_bench.be, ops_bench.reps, &st);
        msg = stem_last_error();
    }
    bench_json j;
    bench_json_begin(&j);
    bench_json_str(&j, "kind", "op");
    bench_json_str(&j, "op", c->op);
    bench_json_str(&j, "case", c->what);
    bench_json_str(&j, "backend", ops_bench.backend_name);
    bench_json_str(&j, "dtype", stem_dtype_name(ops_bench.dtype));
    bench_json_str(&j, "bound", compute ? "compute" : "memory");
    if (s != STEM_OK) {
        char note[300];
        snprintf(note, sizeof note, "%s: %s", stem_status_name(s), msg);
        bench_json_str(&j, "error", note);
        bench_json_end(&j, stdout);
        bench_table_add(&ops_bench.table, c->op, c->what, 0, 0, NULL, NAN, note);
        ops_bench.failures++;
    } else {
        double sec = st.ms_median * 1e-3;
        double rate = sec > 0 ? work / sec * 1e-9 : NAN;
        double peak = compute ? ops_bench.gemm_peak : ops_bench.mem_peak;
        double pct = peak > 0 ? 100.0 * rate / peak : NAN;
        bench_json_int(&j, "reps", st.reps);
        bench_json_num(&j, "ms_median", st.ms_median);
        bench_json_num(&j, "ms_min", st.ms_min);
        if (compute) {
            bench_json_num(&j, "flop", work);
            bench_json_num(&j, "gflops", rate);
            bench_json_num(&j, "pct_sgemm_peak", pct);
        } else {
            bench_json_num(&j, "bytes", work);
            bench_json_num(&j, "gbps", rate);
            bench_json_num(&j, "pct_memcpy", pct);
            if (ops_bench.mem_cached > 0) bench_json_num(&j, "pct_memcpy_cached", 100.0 * rate / ops_bench.mem_cached);
        }
        bench_json_end(&j, stdout);
        bench_table_add(&ops_bench.table, c->op, c->what, st.ms_median, rate, compute ? "GFLOP/s" : "GB/s", pct, NULL);
    }
    for (int i = 0; i < c->nt; i++) stem_tensor_free(&c->t[i]);
    stem_clear_error();
}

/* ---- runners: t[] holds the operands in the order each case allocates them --------- */

static stem_status run_linear(bench_case *c) { return stem_linear(&c->t[0], &c->t[1], c->bias ? &c->t[2] : NULL, &c->t[c->nt - 1]); }
static stem_status run_conv(bench_case *c) {
    return stem_conv2d(&c->t[0], &c->t[1], &c->t[2], c->stride, c->stride, c->pad, &c->t[3]);
}
static stem_status run_group_norm(bench_case *c) {
    return stem_group_norm(&c->t[0], &c->t[1], &c->t[2], c->groups, 1e-5f, c->silu, &c->t[3]);
}
static stem_status run_layer_norm(bench_case *c) { return stem_layer_norm(&c->t[0], &c->t[1], &c->t[2], 1e-5f, &c->t[3]); }
static stem_status run_softmax(bench_case *c) { return stem_softmax(&c->t[0], c->scale, &c->t[1]); }
static stem_status run_unary(bench_case *c) { return stem_unary(c->unary, &c->t[0], &c->t[1]); }
static stem_status run_geglu(bench_case *c) { return stem_geglu(&c->t[0], &c->t[1]); }
static stem_status run_add(bench_case *c) { return stem_binary(STEM_BINARY_ADD, &c->t[0], &c->t[1], &c->t[2]); }
static stem_status run_upsample(bench_case *c) { return stem_upsample_nearest(&c->t[0], &c->t[1]); }
static stem_status run_concat(bench_case *c) {
    const stem_tensor *xs[2] = {&c->t[0], &c->t[1]};
    return stem_concat(xs, 2, c->axis, &c->t[2]);
}
static stem_status run_permute(bench_case *c) { return stem_permute(&c->t[0], c->perm, &c->t[1]); }
static stem_status run_timestep(bench_case *c) { return stem_timestep_embedding(&c->t[0], true, 0.0f, 10000.0f, &c->t[1]); }
static stem_status run_mha(bench_case *c) { return stem_attention_heads(&c->t[0], &c->t[1], &c->t[2], c->heads, c->scale, &c->t[3]); }
static stem_status run_attention(bench_case *c) { return stem_attention(&c->t[0], &c->t[1], &c->t[2], c->scale, &c->t[3]); }
static stem_status run_gather(bench_case *c) { return stem_gather_rows(&c->t[0], &c->t[1], &c->t[2]); }
static stem_status run_argmax_cos(bench_case *c) { return stem_argmax_cos(&c->t[0], &c->t[1], &c->t[2]); }
static stem_status run_mean_std(bench_case *c) { return stem_mean_std(&c->t[0], c->axis, &c->t[1], &c->t[2]); }
static stem_status run_philox(bench_case *c) { return stem_philox_normal(42, 7, 0, 0, &c->t[0]); }

/* ---- the cases ---------------------------------------------------------------------- */

/* y[rows, n] = x[rows, k] @ w[n, k]^T (+ bias): FLOP = 2 rows n k. */
static void linear_case(const char *what, int64_t rows, int64_t k, int64_t n, bool bias) {
    bench_case c;
    if (!begin(&c, "linear", "%s", what)) return;
    T(&c, 2, rows, k);
    T(&c, 2, n, k);
    if (bias) T(&c, 1, n);
    T(&c, 2, rows, n);
    c.bias = bias;
    finish(&c, true, 2.0 * rows * n * k, run_linear);
}

/* 'same' padding k/2, bias on: FLOP = 2 n c_out h_out w_out c_in k k. */
static void conv_case(const char *what, int64_t n, int64_t cin, int64_t h, int64_t w, int64_t cout, int k, int stride) {
    bench_case c;
    if (!begin(&c, "conv2d", "%s", what)) return;
    int p = k / 2;
    int64_t ho = stem_conv_out_size(h, k, stride, p, p), wo = stem_conv_out_size(w, k, stride, p, p);
    T(&c, 4, n, cin, h, w);
    T(&c, 4, cout, cin, k, k);
    T(&c, 1, cout);
    T(&c, 4, n, cout, ho, wo);
    c.stride = stride;
    for (int i = 0; i < 4; i++) c.pad[i] = p;
    finish(&c, true, 2.0 * n * cout * ho * wo * cin * k * k, run_conv);
}

/* bytes = read x + write y (gamma/beta: 2c elements, counted). */
static void group_norm_case(int64_t n, int64_t ch, int64_t h, int64_t w, bool silu) {
    bench_case c;
    if (!begin(&c, "group_norm", "32g [%lld,%lld,%lld,%lld]%s", (long long)n, (long long)ch, (long long)h,
               (long long)w, silu ? " +silu" : ""))
        return;
    T(&c, 4, n, ch, h, w);
    T(&c, 1, ch);
    T(&c, 1, ch);
    T(&c, 4, n, ch, h, w);
    c.groups = 32;
    c.silu = silu;
    finish(&c, false, (2.0 * n * ch * h * w + 2.0 * ch) * esize(), run_group_norm);
}

static void add_cases(void) {
    bench_case c;
    /* bytes = read a + read b + write y */
    if (begin(&c, "add", "[2,320,64,64]+[2,320,1,1] bcast")) {
        T(&c, 4, 2, 320, 64, 64);
        T(&c, 4, 2, 320, 1, 1);
        T(&c, 4, 2, 320, 64, 64);
        finish(&c, false, (2.0 * 2 * 320 * 64 * 64 + 2 * 320) * esize(), run_add);
    }
    if (begin(&c, "add", "[2,320,64,64]+[2,320,64,64]")) {
        T(&c, 4, 2, 320, 64, 64);
        T(&c, 4, 2, 320, 64, 64);
        T(&c, 4, 2, 320, 64, 64);
        finish(&c, false, 3.0 * 2 * 320 * 64 * 64 * esize(), run_add);
    }
}

/* self: q, k, v [b, n, heads*d]; FLOP = 2 nq nk (d + dv) per (batch, head). */
static void mha_case(const char *what, int64_t b, int64_t nq, int64_t nk, int64_t ch, int heads) {
    bench_case c;
    if (!begin(&c, "mha", "%s", what)) return;
    T(&c, 3, b, nq, ch);
    T(&c, 3, b, nk, ch);
    T(&c, 3, b, nk, ch);
    T(&c, 3, b, nq, ch);
    int64_t d = ch / heads;
    c.heads = heads;
    c.scale = 1.0f / sqrtf((float)d);
    finish(&c, true, 2.0 * b * heads * nq * nk * (2.0 * d), run_mha);
}

void bench_ops_run_all(void) {
    bench_case c;
    const size_t es = esize();

    /* -- GEMM-bound ------------------------------------------------------------------ */
    linear_case("[8192,320]->320 (attn q/k/v/out, 64x64)", 8192, 320, 320, false);
    linear_case("[8192,320]->2560 +bias (GEGLU proj)", 8192, 320, 2560, true);
    linear_case("[8192,1280]->320 +bias (ff out)", 8192, 1280, 320, true);
    linear_case("[154,768]->320 (cross k/v)", 154, 768, 320, false);
    linear_case("[2048,640]->640 (attn, 32x32)", 2048, 640, 640, false);
    linear_case("[512,1280]->1280 (attn, 16x16)", 512, 1280, 1280, false);

    conv_case("3x3 320->320 64x64 b2", 2, 320, 64, 64, 320, 3, 1);
    conv_case("3x3 640->640 32x32 b2", 2, 640, 32, 32, 640, 3, 1);
    conv_case("3x3 1280->1280 16x16 b2", 2, 1280, 16, 16, 1280, 3, 1);
    conv_case("3x3 s2 320 64x64->32x32 b2", 2, 320, 64, 64, 320, 3, 2);
    conv_case("1x1 640->320 64x64 b2 (shortcut)", 2, 640, 64, 64, 320, 1, 1);
    conv_case("3x3 4->320 64x64 b2 (conv_in)", 2, 4, 64, 64, 320, 3, 1);
    conv_case("3x3 320->4 64x64 b2 (conv_out)", 2, 320, 64, 64, 4, 3, 1);

    mha_case("self [2,4096,320] h8 d40", 2, 4096, 4096, 320, 8);
    mha_case("self [2,1024,640] h8 d80", 2, 1024, 1024, 640, 8);
    mha_case("cross [2,4096,320] x [2,77,320] h8", 2, 4096, 77, 320, 8);
    /* head-major: q, k, v [16, 4096, 40]; FLOP = 2 nq nk (d + dv) per batch entry */
    if (begin(&c, "attention", "self [16,4096,40] head-major")) {
        T(&c, 3, 16, 4096, 40);
        T(&c, 3, 16, 4096, 40);
        T(&c, 3, 16, 4096, 40);
        T(&c, 3, 16, 4096, 40);
        c.scale = 1.0f / sqrtf(40.0f);
        finish(&c, true, 2.0 * 16 * 4096 * 4096 * 80.0, run_attention);
    }
    /* a[1, 4096, 320] vs ref[1, 8192, 320]: FLOP = 2 n m c */
    if (begin(&c, "argmax_cos", "[1,4096,320] vs [1,8192,320]")) {
        T(&c, 3, 1, 4096, 320);
        T(&c, 3, 1, 8192, 320);
        tensor_dt(&c, STEM_I32, 2, (const int64_t[]){1, 4096});
        finish(&c, true, 2.0 * 4096 * 8192 * 320, run_argmax_cos);
    }

    /* -- memory-bound ------------------------------------------------------------------ */
    group_norm_case(2, 320, 64, 64, true);
    group_norm_case(2, 320, 64, 64, false);
    group_norm_case(2, 1280, 16, 16, true);
    /* bytes = read x + write y (+ gamma, beta) */
    if (begin(&c, "layer_norm", "[8192,320]")) {
        T(&c, 2, 8192, 320);
        T(&c, 1, 320);
        T(&c, 1, 320);
        T(&c, 2, 8192, 320);
        finish(&c, false, (2.0 * 8192 * 320 + 640) * es, run_layer_norm);
    }
    /* bytes = read x + write y */
    if (begin(&c, "softmax", "[32768,77] (cross-attn scores)")) {
        T(&c, 2, 32768, 77);
        T(&c, 2, 32768, 77);
        c.scale = 1.0f / sqrtf(40.0f);
        finish(&c, false, 2.0 * 32768 * 77 * es, run_softmax);
    }
    /* bytes = read x + write y */
    if (begin(&c, "gelu", "[8192,2560]")) {
        T(&c, 2, 8192, 2560);
        T(&c, 2, 8192, 2560);
        c.unary = STEM_UNARY_GELU;
        finish(&c, false, 2.0 * 8192 * 2560 * es, run_unary);
    }
    /* bytes = read x[8192, 2560] + write y[8192, 1280] */
    if (begin(&c, "geglu", "[8192,2560]->[8192,1280]")) {
        T(&c, 2, 8192, 2560);
        T(&c, 2, 8192, 1280);
        finish(&c, false, (8192.0 * 2560 + 8192.0 * 1280) * es, run_geglu);
    }
    /* bytes = read x + write y */
    if (begin(&c, "silu", "[2,320,64,64]")) {
        T(&c, 4, 2, 320, 64, 64);
        T(&c, 4, 2, 320, 64, 64);
        c.unary = STEM_UNARY_SILU;
        finish(&c, false, 2.0 * 2 * 320 * 64 * 64 * es, run_unary);
    }
    add_cases();
    /* bytes = read x + write y (4x the input) */
    if (begin(&c, "upsample_nearest", "[2,1280,16,16]->32x32")) {
        T(&c, 4, 2, 1280, 16, 16);
        T(&c, 4, 2, 1280, 32, 32);
        finish(&c, false, (2.0 * 1280 * 16 * 16 + 2.0 * 1280 * 32 * 32) * es, run_upsample);
    }
    /* bytes = read both inputs + write y */
    if (begin(&c, "concat", "2x[2,320,64,64] axis 1")) {
        T(&c, 4, 2, 320, 64, 64);
        T(&c, 4, 2, 320, 64, 64);
        T(&c, 4, 2, 640, 64, 64);
        c.axis = 1;
        finish(&c, false, 4.0 * 2 * 320 * 64 * 64 * es, run_concat);
    }
    /* bytes = read x + write y */
    if (begin(&c, "permute", "[2,4096,8,40]->[2,8,4096,40]")) {
        T(&c, 4, 2, 4096, 8, 40);
        T(&c, 4, 2, 8, 4096, 40);
        memcpy(c.perm, (int[]){0, 2, 1, 3}, sizeof c.perm);
        finish(&c, false, 2.0 * 2 * 4096 * 8 * 40 * es, run_permute);
    }
    /* t is always f32; bytes = read t + write y. Latency-bound at this size. */
    if (begin(&c, "timestep_embedding", "[2]->[2,320]")) {
        tensor_dt(&c, STEM_F32, 1, (const int64_t[]){2});
        T(&c, 2, 2, 320);
        finish(&c, false, 2.0 * 4 + 2.0 * 320 * es, run_timestep);
    }
    /* bytes = read the gathered rows + read idx + write y */
    if (begin(&c, "gather_rows", "[4096,320] by 4096 idx")) {
        T(&c, 2, 4096, 320);
        stem_tensor *idx = tensor_dt(&c, STEM_I32, 1, (const int64_t[]){4096});
        fill_i32(&c, idx, 4096);
        T(&c, 2, 4096, 320);
        finish(&c, false, 2.0 * 4096 * 320 * es + 4096.0 * 4, run_gather);
    }
    /* over axis 0 of x[32768, 40]; bytes = read x + write mean, std */
    if (begin(&c, "mean_std", "[32768,40] axis 0")) {
        T(&c, 2, 32768, 40);
        T(&c, 1, 40);
        T(&c, 1, 40);
        c.axis = 0;
        finish(&c, false, (32768.0 * 40 + 80) * es, run_mean_std);
    }
    /* bytes = write y. Philox + Box-Muller are ALU work: % of memcpy is no target here. */
    if (begin(&c, "philox_normal", "[256,40,8]")) {
        T(&c, 3, 256, 40, 8);
        finish(&c, false, 256.0 * 40 * 8 * es, run_philox);
    }
}
