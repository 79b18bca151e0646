/* Streaming EM bases (doc/algorithm.md §5); see em.h for the math, the edge cases and why the
 * streaming is exact. Written once against the op front ends (core/ops.h and
 * stem/em_ops.h), so it runs wherever those run. Shapes: H heads, n tokens, d head
 * width, M bases, C = H*d. */
#include "stem/em.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/host.h"
#include "core/ops.h"

void stem_em_options_default(stem_em_options *o) {
    memset(o, 0, sizeof *o);
    o->bases = 256;
    o->iters = 5;
    o->tau = 0.01f;
    o->block = 65536;
}

stem_status stem_em_options_check(const stem_em_options *o) {
    if (o->bases < 1 || o->bases > (1 << 24)) return stem_fail(STEM_E_ARG, "em: bases must be in 1..2^24 (got %lld)", (long long)o->bases);
    if (o->iters < 0 || o->iters > 100000) return stem_fail(STEM_E_ARG, "em: iters must be >= 0 (got %lld)", (long long)o->iters);
    if (!(o->tau > 0.0f) || !isfinite(o->tau)) return stem_fail(STEM_E_ARG, "em: tau must be a positive number (got %g)", (double)o->tau);
    if (o->block < 1) return stem_fail(STEM_E_ARG, "em: block must be >= 1 token (got %lld)", (long long)o->block);
    if (o->phase > 255) return stem_fail(STEM_E_ARG, "em: phase %u does not fit 8 bits of the Philox counter", o->phase);
    if (o->step > 4095) return stem_fail(STEM_E_ARG, "em: step %u does not fit 12 bits of the Philox counter", o->step);
    if (o->chunk > 4095) return stem_fail(STEM_E_ARG, "em: chunk %u does not fit 12 bits of the Philox counter", o->chunk);
    return STEM_OK;
}

uint32_t stem_em_counter_w3(const stem_em_options *o) { return (o->phase << 24) | (o->step << 12) | o->chunk; }

/* ---- host-side checks on small tensors ------------------------------------------- */

/* Copies a (small) tensor to a host f32 array the caller frees. */
static stem_status to_host_f32(const stem_tensor *t, float **out) {
    stem_tensor h;
    STEM_TRY(stem_tensor_to(t, stem_host(), STEM_F32, &h));
    size_t bytes = stem_nbytes(&h);
    *out = malloc(bytes ? bytes : 1);
    if (!*out) {
        stem_tensor_free(&h);
        return stem_fail(STEM_E_NOMEM, "em: out of memory");
    }
    memcpy(*out, h.data, bytes);
    stem_tensor_free(&h);
    return STEM_OK;
}

/* STEM_E_ARG when stats (per-channel mean or std of `what`, [H, d] flattened) is not finite. */
static stem_status check_finite_stats(const stem_tensor *stats, int64_t d, const char *what) {
    float *x;
    STEM_TRY(to_host_f32(stats, &x));
    int64_t n = stem_numel(stats);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) {
            free(x);
            return stem_fail(STEM_E_ARG,
                             "em: %s has a non-finite value (NaN or Inf) in head %lld, channel %lld "
                             "(or values too large for f32 statistics)",
                             what, (long long)(i / d), (long long)(i % d));
        }
    free(x);
    return STEM_OK;
}

/* ---- the EM ------------------------------------------------------------------------- */

typedef struct em_work {
    stem_tensor mean, std;  /* k's per-channel statistics, f32 [H, d] (also for f16 k) */
    stem_tensor vmean;      /* v's per-channel mean, f32 [H, d]: only to find non-finite values */
    stem_tensor mu;         /* current bases, f32 [H, M, d] */
    stem_tensor zk, zv;     /* sum_n z_nj k_n and sum_n z_nj v_n, f32 [H, M, d] */
    stem_tensor zsum;       /* sum_n z_nj, f32 [H, M]; after finishing: sum + 1e-4, [H, M, 1] */
    stem_tensor vb;         /* V_base in f32 [H, M, d] */
} em_work;

static void em_work_free(em_work *w) {
    stem_tensor *all[] = {&w->mean, &w->std, &w->vmean, &w->mu, &w->zk, &w->zv, &w->zsum, &w->vb};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) stem_tensor_free(all[i]); /* arena's: not owned */
}

/* An f32 temporary: from the workspace's arena, or a device tensor of its own. */
static stem_status work_tensor(const stem_em_workspace *ws, stem_backend *be, int ndim, const int64_t *shape,
                               stem_tensor *t) {
    if (ws && ws->arena) return stem_arena_tensor(ws->arena, STEM_F32, ndim, shape, t);
    return stem_tensor_new(be, STEM_F32, ndim, shape, t);
}

/* Per-channel mean (and unbiased std) of a heads view over its n tokens, as f32 [H, d]
 * (f32 also for f16 k: the initial bases are not rounded to f16). */
static stem_status channel_stats(const stem_heads_view *x, const stem_em_workspace *ws, stem_tensor *mean,
                                 stem_tensor *std) {
    stem_backend *be = x->t->backend;
    int64_t hd[2] = {x->heads, x->d};
    STEM_TRY(work_tensor(ws, be, 2, hd, mean));
    if (std) STEM_TRY(work_tensor(ws, be, 2, hd, std));
    stem_tensor view;
    if (x->layout == STEM_HEADS_MAJOR) { /* [H, n, d] over axis 1 -> [H, d] */
        return stem_mean_std(x->t, 1, mean, std);
    }
    /* token-major [n, C] over axis 0 -> [C] = [H, d] flattened */
    int64_t nc[2] = {x->n, x->heads * x->d}, c[1] = {x->heads * x->d};
    stem_tensor m1, s1;
    STEM_TRY(stem_tensor_reshape(x->t, 2, nc, &view));
    STEM_TRY(stem_tensor_reshape(mean, 1, c, &m1));
    if (std) STEM_TRY(stem_tensor_reshape(std, 1, c, &s1));
    return stem_mean_std(&view, 0, &m1, std ? &s1 : NULL);
}

/* mu[H, M, d] = mean + std * N(0, 1), the normals of doc/algorithm.md §6: head h draws its M x d
 * block with counter (block index, h, layer, w3). */
static stem_status draw_initial_bases(const stem_heads_view *k, const stem_em_options *o, em_work *w) {
    const int64_t H = k->heads, d = k->d;
    for (int64_t h = 0; h < H; h++) {
        stem_tensor head;
        STEM_TRY(stem_tensor_narrow0(&w->mu, h, 1, &head)); /* [1, M, d] */
        STEM_TRY(stem_philox_normal(o->seed, (uint32_t)h, o->layer, stem_em_counter_w3(o), &head));
    }
    int64_t h1d[3] = {H, 1, d};
    stem_tensor mean3, std3;
    STEM_TRY(stem_tensor_reshape(&w->mean, 3, h1d, &mean3));
    STEM_TRY(stem_tensor_reshape(&w->std, 3, h1d, &std3));
    STEM_TRY(stem_binary(STEM_BINARY_MUL, &w->mu, &std3, &w->mu)); /* [H, M, d] * [H, 1, d] */
    return stem_binary(STEM_BINARY_ADD, &w->mu, &mean3, &w->mu);
}

/* One pass over all tokens in blocks: zk, zsum (and zv) for the current bases. */
static stem_status accumulate_all(const stem_heads_view *k, const stem_heads_view *v, const stem_em_options *o,
                                  em_work *w, bool with_v) {
    const int64_t n = k->n;
    int64_t hm[2] = {k->heads, o->bases};
    stem_tensor zsum2;
    STEM_TRY(stem_tensor_reshape(&w->zsum, 2, hm, &zsum2));
    for (int64_t r0 = 0; r0 < n; r0 += o->block) {
        int64_t rows = n - r0 < o->block ? n - r0 : o->block;
        STEM_TRY(stem_em_block(k, v, r0, rows, &w->mu, o->tau, STEM_EM_NORM_EPS, r0 == 0, &w->zk, &zsum2,
                               with_v ? &w->zv : NULL));
    }
    return STEM_OK;
}

/* out[H, M, d] = acc / (zsum + 1e-4); zsum already holds the denominator. */
static stem_status finish(const stem_tensor *acc, const stem_tensor *den, stem_tensor *out) {
    return stem_binary(STEM_BINARY_DIV, acc, den, out); /* [H, M, d] / [H, M, 1] */
}

static stem_status check_output(const char *what, const stem_tensor *t, const stem_heads_view *k, int64_t M) {
    char sb[STEM_SHAPE_STR_LEN];
    if (t->ndim != 3 || t->shape[0] != k->heads || t->shape[1] != M || t->shape[2] != k->d)
        return stem_fail(STEM_E_SHAPE, "em: %s has shape %s, expected [%lld, %lld, %lld]", what,
                         stem_shape_str(t, sb, sizeof sb), (long long)k->heads, (long long)M, (long long)k->d);
    if (t->backend != k->t->backend) return stem_fail(STEM_E_ARG, "em: %s lives on another backend than k", what);
    if (t->dtype != STEM_F32 && t->dtype != k->t->dtype)
        return stem_fail(STEM_E_DTYPE, "em: %s is %s, expected f32 or k's %s", what, stem_dtype_name(t->dtype),
                         stem_dtype_name(k->t->dtype));
    return STEM_OK;
}

/* The deferred check: stats [H, d] (f32) into row `row` of ws->check [3, C], copied by the
 * first EM into it, added by the next. */
static stem_status defer_check(const stem_em_workspace *ws, int64_t row, const stem_tensor *stats) {
    stem_tensor r, flat;
    int64_t one_c[2] = {1, stem_numel(stats)};
    STEM_TRY(stem_tensor_narrow0(ws->check, row, 1, &r));
    STEM_TRY(stem_tensor_reshape(stats, 2, one_c, &flat));
    if (!*ws->check_used) return stem_tensor_copy(&flat, &r);
    return stem_binary(STEM_BINARY_ADD, &r, &flat, &r);
}

/* Non-finite inputs: any NaN/Inf makes its channel's mean non-finite (std: values too
 * large for f32 statistics). Tested now on the host, or deferred into ws->check. */
static stem_status check_stats(const stem_em_workspace *ws, const em_work *w, int64_t d) {
    if (!ws || !ws->check) {
        STEM_TRY(check_finite_stats(&w->mean, d, "k"));
        STEM_TRY(check_finite_stats(&w->vmean, d, "v"));
        return w->std.data ? check_finite_stats(&w->std, d, "k") : STEM_OK;
    }
    char a[STEM_SHAPE_STR_LEN];
    const int64_t C = stem_numel(&w->mean);
    if (ws->check->ndim != 2 || ws->check->shape[0] != 3 || ws->check->shape[1] != C ||
        ws->check->dtype != STEM_F32)
        return stem_fail(STEM_E_SHAPE, "em: check has shape %s, expected f32 [3, %lld]",
                         stem_shape_str(ws->check, a, sizeof a), (long long)C);
    STEM_TRY(defer_check(ws, 0, &w->mean));
    STEM_TRY(defer_check(ws, 1, w->std.data ? &w->std : &w->mean));
    STEM_TRY(defer_check(ws, 2, &w->vmean));
    *ws->check_used = true;
    return STEM_OK;
}

static stem_status em_run(const stem_heads_view *k, const stem_heads_view *v, const stem_tensor *init,
                          const stem_em_options *o, const stem_em_workspace *ws, stem_tensor *k_base,
                          stem_tensor *v_base, em_work *w) {
    STEM_TRY(stem_em_options_check(o));
    const int64_t H = k->heads, M = o->bases, d = k->d, n = k->n;
    stem_backend *be = k->t->backend;
    if (v->heads != H || v->d != d || v->n != n || v->t->backend != be || v->layout != k->layout ||
        v->t->dtype != k->t->dtype) {
        char a[STEM_SHAPE_STR_LEN], b[STEM_SHAPE_STR_LEN];
        return stem_fail(STEM_E_SHAPE, "em: v %s does not match k %s (same shape, dtype and backend)",
                         stem_shape_str(v->t, b, sizeof b), stem_shape_str(k->t, a, sizeof a));
    }
    if (n < 1) return stem_fail(STEM_E_SHAPE, "em: k has no tokens");
    STEM_TRY(check_output("k_base", k_base, k, M));
    STEM_TRY(check_output("v_base", v_base, k, M));
    if (init) {
        char sb[STEM_SHAPE_STR_LEN];
        if (init->ndim != 3 || init->shape[0] != H || init->shape[1] != M || init->shape[2] != d)
            return stem_fail(STEM_E_SHAPE, "em: init has shape %s, expected [%lld, %lld, %lld] (heads, bases, head_dim)",
                             stem_shape_str(init, sb, sizeof sb), (long long)H, (long long)M, (long long)d);
        if (init->backend != be) return stem_fail(STEM_E_ARG, "em: init lives on another backend than k");
    }

    /* The mean/std of k are needed for the initial draw anyway; v's mean is one extra
     * pass over v, for the non-finite check. */
    STEM_TRY(channel_stats(k, ws, &w->mean, init ? NULL : &w->std));
    STEM_TRY(channel_stats(v, ws, &w->vmean, NULL));
    STEM_TRY(check_stats(ws, w, d));

    int64_t hmd[3] = {H, M, d}, hm1[3] = {H, M, 1};
    STEM_TRY(work_tensor(ws, be, 3, hmd, &w->mu));
    STEM_TRY(work_tensor(ws, be, 3, hmd, &w->zk));
    STEM_TRY(work_tensor(ws, be, 3, hmd, &w->zv));
    STEM_TRY(work_tensor(ws, be, 3, hm1, &w->zsum));
    if (init) {
        float *x;
        STEM_TRY(to_host_f32(init, &x));
        for (int64_t i = 0; i < H * M * d; i++)
            if (!isfinite(x[i])) {
                free(x);
                return stem_fail(STEM_E_ARG, "em: init has a non-finite value (NaN or Inf) at head %lld, basis %lld, channel %lld",
                                 (long long)(i / (M * d)), (long long)(i / d % M), (long long)(i % d));
            }
        free(x);
        STEM_TRY(stem_cast(init, &w->mu));
    } else {
        STEM_TRY(draw_initial_bases(k, o, w));
    }

    /* R iterations: a pass over the tokens (E-step and M-step sums), then the M-step's
     * division. The last pass also sums z v. R = 0: one pass with the initial bases for
     * V_base only; K_base stays the initial bases. */
    const int64_t passes = o->iters > 0 ? o->iters : 1;
    stem_tensor *vb_out = v_base->dtype == STEM_F32 ? v_base : NULL;
    if (!vb_out) {
        STEM_TRY(work_tensor(ws, be, 3, hmd, &w->vb));
        vb_out = &w->vb;
    }
    for (int64_t r = 0; r < passes; r++) {
        bool last = r == passes - 1;
        STEM_TRY(accumulate_all(k, v, o, w, last));
        STEM_TRY(stem_affine(&w->zsum, 1.0f, STEM_EM_SUM_EPS, &w->zsum)); /* sum z + 1e-4 */
        if (o->iters > 0) STEM_TRY(finish(&w->zk, &w->zsum, &w->mu));    /* mu = sum z k / (sum z + 1e-4) */
        if (last) STEM_TRY(finish(&w->zv, &w->zsum, vb_out));
    }
    STEM_TRY(k_base->dtype == STEM_F32 ? stem_tensor_copy(&w->mu, k_base) : stem_cast(&w->mu, k_base));
    if (vb_out != v_base) STEM_TRY(stem_cast(vb_out, v_base));
    return STEM_OK;
}

stem_status stem_em_bases_view(const stem_heads_view *k, const stem_heads_view *v, const stem_tensor *init,
                               const stem_em_options *o, const stem_em_workspace *ws, stem_tensor *k_base,
                               stem_tensor *v_base) {
    em_work w;
    memset(&w, 0, sizeof w);
    stem_status s = em_run(k, v, init, o, ws, k_base, v_base, &w);
    em_work_free(&w);
    return s;
}

stem_status stem_em_bases(const stem_tensor *k, const stem_tensor *v, const stem_tensor *init,
                          const stem_em_options *o, stem_tensor *k_base, stem_tensor *v_base) {
    stem_heads_view kv, vv;
    STEM_TRY(stem_heads_view_make(k, STEM_HEADS_MAJOR, 0, "em: k", &kv));
    STEM_TRY(stem_heads_view_make(v, STEM_HEADS_MAJOR, kv.heads, "em: v", &vv));
    return stem_em_bases_view(&kv, &vv, init, o, NULL, k_base, v_base);
}

stem_status stem_em_bases_tokens(const stem_tensor *k, const stem_tensor *v, int64_t heads, const stem_tensor *init,
                                 const stem_em_options *o, stem_tensor *k_base, stem_tensor *v_base) {
    stem_heads_view kv, vv;
    STEM_TRY(stem_heads_view_make(k, STEM_TOKENS_MAJOR, heads, "em: k", &kv));
    STEM_TRY(stem_heads_view_make(v, STEM_TOKENS_MAJOR, heads, "em: v", &vv));
    return stem_em_bases_view(&kv, &vv, init, o, NULL, k_base, v_base);
}
