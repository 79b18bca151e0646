/* Attention call sites of the hook contract (src/models/unet_hooks.h) on tiny-sd1: a
 * replaced attn1 (its q/k/v taps do not fire and its output is the hook's), attn2's
 * site (its core can be observed and replaced) and the attention probabilities against
 * a direct computation. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_unet_util.h"

#define MAX_SITES 16

static golden_case g;
static stem_unet *u;
static stem_tensor plain; /* the forward without hooks */

static int setup(void **state) {
    (void)state;
    golden_open_named("tiny-sd1__t981_13x9", &g);
    u = load_unet("tiny-sd1", stem_cpu_backend(), STEM_F32);
    if (run_unet(u, g.sample, g.timesteps, g.context, NULL, &plain) != STEM_OK) fail_msg("%s", stem_last_error());
    return 0;
}

static int teardown(void **state) {
    (void)state;
    stem_tensor_free(&plain);
    stem_unet_free(u);
    stem_tensor_map_free(&g.file);
    return 0;
}

/* ---- replaced attn1 ------------------------------------------------------------------------ */

/* Keeps every site's attn1 output (host copies), counts the taps, and replays the kept
 * outputs as replacements at the sites in `replace` (zeros when `zeros`). */
typedef struct replay {
    stem_tensor out[MAX_SITES];
    bool record, zeros, replace[MAX_SITES];
    int taps[STEM_TAP_KIND_COUNT], core_calls, out_mismatch;
} replay;

static stem_status replay_tap(void *user, const stem_unet_tap *tap) {
    replay *r = user;
    int i = tap->attn->index;
    r->taps[tap->kind]++;
    if (tap->kind != STEM_TAP_ATTN1_OUT) return STEM_OK;
    if (r->record) return stem_tensor_to(tap->x, stem_cpu_backend(), STEM_F32, &r->out[i]);
    /* a replaced call's OUT tap sees the replacement */
    if (r->replace[i] && !r->zeros) {
        stem_compare cmp;
        STEM_TRY(stem_compare_tensors(tap->x, &r->out[i], 0, 0, &cmp));
        if (cmp.violations) r->out_mismatch++;
    }
    return STEM_OK;
}

static stem_status replay_replace(void *user, const stem_attn_site *site, const stem_tensor *x, stem_tensor *out,
                                  bool *replaced) {
    replay *r = user;
    (void)x;
    if (!r->replace[site->index]) return STEM_OK;
    *replaced = true;
    return r->zeros ? stem_affine(x, 0.0f, 0.0f, out) : stem_tensor_copy(&r->out[site->index], out);
}

static stem_status counting_core(void *user, const stem_attn_site *site, const stem_tensor *q, const stem_tensor *k,
                                 const stem_tensor *v, stem_tensor *out) {
    ((replay *)user)->core_calls++;
    return stem_attention_default(NULL, site, q, k, v, out);
}

static void replaced_attn1(void **state) {
    (void)state;
    const int n = stem_unet_attn1_count(u);
    replay r = {.record = true};
    const unsigned attn1_taps = STEM_TAP_BIT(STEM_TAP_NORM1) | STEM_TAP_BIT(STEM_TAP_ATTN1_Q) |
                                STEM_TAP_BIT(STEM_TAP_ATTN1_K) | STEM_TAP_BIT(STEM_TAP_ATTN1_V) |
                                STEM_TAP_BIT(STEM_TAP_ATTN1_OUT);
    stem_unet_hook_set set = {.user = &r, .tap = replay_tap, .tap_mask = attn1_taps,
                              .replace_self_attention = replay_replace, .self_attention = counting_core};
    stem_unet_hooks hooks = {.sets = &set, .n_sets = 1};
    stem_tensor got;
    if (run_unet(u, g.sample, g.timesteps, g.context, &hooks, &got) != STEM_OK) fail_msg("%s", stem_last_error());
    assert_int_equal(r.core_calls, n);
    stem_tensor_free(&got);

    /* every attn1 replaced by what to_out gave: no q/k/v, no core; the same result, bit for bit */
    memset(r.taps, 0, sizeof r.taps);
    r.record = false;
    r.core_calls = 0;
    for (int i = 0; i < n; i++) r.replace[i] = true;
    if (run_unet(u, g.sample, g.timesteps, g.context, &hooks, &got) != STEM_OK) fail_msg("%s", stem_last_error());
    assert_int_equal(r.taps[STEM_TAP_ATTN1_Q] + r.taps[STEM_TAP_ATTN1_K] + r.taps[STEM_TAP_ATTN1_V], 0);
    assert_int_equal(r.core_calls, 0);
    assert_int_equal(r.taps[STEM_TAP_NORM1], n);
    assert_int_equal(r.taps[STEM_TAP_ATTN1_OUT], n);
    assert_int_equal(r.out_mismatch, 0);
    assert_int_equal(compare("all attn1 replaced by their own outputs vs no hooks", &got, &plain, 0, 0), 0);
    stem_tensor_free(&got);

    /* one site (the mid block's) replaced by zeros: only its q/k/v are skipped, and the
     * replacement reaches the output */
    memset(r.taps, 0, sizeof r.taps);
    memset(r.replace, 0, sizeof r.replace);
    r.replace[2] = r.zeros = true;
    if (run_unet(u, g.sample, g.timesteps, g.context, &hooks, &got) != STEM_OK) fail_msg("%s", stem_last_error());
    for (int k = STEM_TAP_ATTN1_Q; k <= STEM_TAP_ATTN1_V; k++) assert_int_equal(r.taps[k], n - 1);
    assert_int_equal(r.core_calls, n - 1);
    stem_compare cmp;
    assert_int_equal(stem_compare_tensors(&got, &plain, 1e-3, 1e-3, &cmp), STEM_OK);
    print_message("mid attn1 replaced by zeros vs no hooks: max abs %.3g\n", cmp.max_abs);
    assert_true(cmp.max_abs > 1e-3);
    stem_tensor_free(&got);
    for (int i = 0; i < n; i++) stem_tensor_free(&r.out[i]);
}

/* ---- attn2 ---------------------------------------------------------------------------------- */

typedef struct cross_log {
    int calls, bad, replaced, taps;
    bool zero;
} cross_log;

/* Every attn2 replaced by zeros (what to_out would add). */
static stem_status cross_replace(void *user, const stem_attn_site *site, const stem_tensor *x, stem_tensor *out,
                                 bool *replaced) {
    cross_log *c = user;
    if (site->kind != STEM_ATTN_CROSS) c->bad++;
    c->replaced++;
    *replaced = true;
    return stem_affine(x, 0.0f, 0.0f, out);
}

static stem_status count_attn2_qkv(void *user, const stem_unet_tap *tap) {
    (void)tap;
    ((cross_log *)user)->taps++;
    return STEM_OK;
}

static stem_status cross_core(void *user, const stem_attn_site *site, const stem_tensor *q, const stem_tensor *k,
                              const stem_tensor *v, stem_tensor *out) {
    cross_log *c = user;
    const int64_t rows = site->span.branches * site->span.frames;
    /* the site of block `calls`, keys from the 77 text tokens */
    const char *attn1 = stem_unet_attn1_name(u, site->index);
    size_t len = strlen(site->name);
    if (site->kind != STEM_ATTN_CROSS || site->index != c->calls || len < 6 || strcmp(site->name + len - 6, ".attn2") ||
        strncmp(site->name, attn1, len - 1) || site->kv_tokens != g.context->shape[1] || k->shape[0] != rows ||
        k->shape[1] != site->kv_tokens || v->shape[1] != site->kv_tokens || q->shape[1] != site->tokens)
        c->bad++;
    c->calls++;
    if (c->zero) return stem_affine(q, 0.0f, 0.0f, out);
    return stem_attention_default(NULL, site, q, k, v, out);
}

static void attn2_site(void **state) {
    (void)state;
    const int n = stem_unet_attn1_count(u);
    cross_log c = {0};
    stem_unet_hook_set set = {.user = &c, .cross_attention = cross_core};
    stem_unet_hooks hooks = {.sets = &set, .n_sets = 1};
    stem_tensor got;
    if (run_unet(u, g.sample, g.timesteps, g.context, &hooks, &got) != STEM_OK) fail_msg("%s", stem_last_error());
    assert_int_equal(c.calls, n);
    assert_int_equal(c.bad, 0);
    assert_int_equal(compare("observing attn2 core vs no hooks", &got, &plain, 0, 0), 0);
    stem_tensor_free(&got);
    /* an overriding attn2 core is really used */
    c = (cross_log){.zero = true};
    if (run_unet(u, g.sample, g.timesteps, g.context, &hooks, &got) != STEM_OK) fail_msg("%s", stem_last_error());
    stem_compare cmp;
    assert_int_equal(stem_compare_tensors(&got, &plain, 1e-3, 1e-3, &cmp), STEM_OK);
    print_message("zeroed cross-attention vs default: max abs %.3g\n", cmp.max_abs);
    assert_true(cmp.max_abs > 1e-3);
    stem_tensor_free(&got);
    /* attn2 replaced: no q/k/v (their taps do not fire), no core */
    c = (cross_log){0};
    set.replace_cross_attention = cross_replace;
    set.tap = count_attn2_qkv;
    set.tap_mask = STEM_TAP_BIT(STEM_TAP_ATTN2_Q) | STEM_TAP_BIT(STEM_TAP_ATTN2_K) | STEM_TAP_BIT(STEM_TAP_ATTN2_V);
    if (run_unet(u, g.sample, g.timesteps, g.context, &hooks, &got) != STEM_OK) fail_msg("%s", stem_last_error());
    assert_int_equal(c.replaced, n);
    assert_int_equal(c.calls + c.taps + c.bad, 0);
    assert_int_equal(stem_compare_tensors(&got, &plain, 1e-3, 1e-3, &cmp), STEM_OK);
    print_message("attn2 replaced by zeros vs default: max abs %.3g\n", cmp.max_abs);
    assert_true(cmp.max_abs > 1e-3);
    stem_tensor_free(&got);
}

/* ---- attention probabilities ------------------------------------------------------------------ */

/* Site 0's q and k (attn1 and attn2, from the taps) and its probabilities per row. */
typedef struct probs_log {
    stem_tensor q[2], k[2]; /* [rows, n, C], host */
    stem_tensor p[2][2];    /* [kind][row]: [heads, tokens, kv_tokens], host */
    int calls, asked;
} probs_log;

static stem_status keep_qk(void *user, const stem_unet_tap *tap) {
    probs_log *l = user;
    if (tap->attn->index != 0) return STEM_OK;
    int kind = tap->attn->kind;
    bool is_q = tap->kind == STEM_TAP_ATTN1_Q || tap->kind == STEM_TAP_ATTN2_Q;
    return stem_tensor_to(tap->x, stem_cpu_backend(), STEM_F32, is_q ? &l->q[kind] : &l->k[kind]);
}

static bool site0(void *user, const stem_attn_site *site) {
    ((probs_log *)user)->asked++;
    return site->index == 0;
}

static stem_status keep_probs(void *user, const stem_attn_site *site, int64_t row, const stem_tensor *p) {
    probs_log *l = user;
    l->calls++;
    if (site->index != 0 || row < 0 || row > 1) return stem_fail(STEM_E_ARG, "probabilities of an unasked site");
    return stem_tensor_to(p, stem_cpu_backend(), STEM_F32, &l->p[site->kind][row]);
}

/* max |p - softmax(q_h k_h^T / sqrt(d))| over heads, queries and keys, in double */
static double probs_error(const stem_tensor *q, const stem_tensor *k, const stem_tensor *p, int64_t row,
                          int64_t heads) {
    const int64_t n = q->shape[1], m = k->shape[1], C = q->shape[2], d = C / heads;
    const float *Q = (const float *)q->data + row * n * C, *K = (const float *)k->data + row * m * C;
    const float *P = p->data;
    double worst = 0, *s = malloc((size_t)m * sizeof *s);
    for (int64_t h = 0; h < heads; h++)
        for (int64_t i = 0; i < n; i++) {
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < m; j++) {
                double dot = 0;
                for (int64_t c = 0; c < d; c++) dot += (double)Q[i * C + h * d + c] * K[j * C + h * d + c];
                s[j] = dot / sqrt((double)d);
                if (s[j] > mx) mx = s[j];
            }
            for (int64_t j = 0; j < m; j++) sum += (s[j] = exp(s[j] - mx));
            for (int64_t j = 0; j < m; j++) {
                double e = fabs(P[(h * n + i) * m + j] - s[j] / sum);
                if (e > worst || isnan(e)) worst = isnan(e) ? INFINITY : e;
            }
        }
    free(s);
    return worst;
}

static void attention_probs(void **state) {
    (void)state;
    probs_log l = {0};
    stem_unet_hook_set set = {.user = &l, .tap = keep_qk, .attention_probs = keep_probs, .wants_probs = site0,
                              .tap_mask = STEM_TAP_BIT(STEM_TAP_ATTN1_Q) | STEM_TAP_BIT(STEM_TAP_ATTN1_K) |
                                          STEM_TAP_BIT(STEM_TAP_ATTN2_Q) | STEM_TAP_BIT(STEM_TAP_ATTN2_K)};
    stem_unet_hooks hooks = {.sets = &set, .n_sets = 1};
    stem_tensor got;
    if (run_unet(u, g.sample, g.timesteps, g.context, &hooks, &got) != STEM_OK) fail_msg("%s", stem_last_error());
    /* asked at every attn1 and attn2 site, given only at site 0: 2 kinds x 2 rows */
    assert_int_equal(l.asked, 2 * stem_unet_attn1_count(u));
    assert_int_equal(l.calls, 4);
    assert_int_equal(compare("observing probabilities vs no hooks", &got, &plain, 0, 0), 0);
    const int64_t heads = stem_unet_get_config(u)->heads[0];
    for (int kind = 0; kind < 2; kind++)
        for (int64_t row = 0; row < 2; row++) {
            const stem_tensor *p = &l.p[kind][row];
            assert_int_equal(p->ndim, 3);
            assert_int_equal(p->shape[0], heads);
            assert_int_equal(p->shape[1], l.q[kind].shape[1]);
            assert_int_equal(p->shape[2], l.k[kind].shape[1]);
            double err = probs_error(&l.q[kind], &l.k[kind], p, row, heads);
            print_message("%s probabilities, row %lld: max |stem - direct| %.3g\n", kind ? "attn2" : "attn1",
                          (long long)row, err);
            /* f32 scores and softmax vs double: entries ~1/kv_tokens (1/117, 1/77), each
             * with the f32 rounding of a d-term dot product and an exp, a few ulp of
             * ~1e-2. Measured 2.8e-9 .. 1.2e-8 over the CI matrix; 1e-6 leaves ~80x for
             * other kernels and BLAS cores, and is still ~1e-4 of an entry. */
            assert_true(err <= 1e-6);
            stem_tensor_free(&l.p[kind][row]);
        }
    for (int kind = 0; kind < 2; kind++) {
        stem_tensor_free(&l.q[kind]);
        stem_tensor_free(&l.k[kind]);
    }
    stem_tensor_free(&got);
}

/* Probabilities cannot be had in a two-phase attn1 (the keys are the collect hook's). */
static stem_status collect_nothing(void *user, const stem_attn_site *site, const stem_tensor *k,
                                   const stem_tensor *v) {
    (void)user, (void)site, (void)k, (void)v;
    return STEM_OK;
}

static void probs_refused_in_two_phases(void **state) {
    (void)state;
    probs_log l = {0};
    stem_unet_hook_set sets[2] = {
        {.user = &l, .attention_probs = keep_probs, .wants_probs = site0},
        {.self_attention = stem_attention_default, .self_attention_collect = collect_nothing},
    };
    stem_unet_hooks hooks = {.sets = sets, .n_sets = 2};
    stem_tensor got;
    assert_int_equal(run_unet_sliced(u, g.sample, g.timesteps, g.context, &hooks, 1, &got), STEM_E_ARG);
    print_message("error: %s\n", stem_last_error());
    assert_non_null(strstr(stem_last_error(), "two-phase"));
}

int main(int argc, char **argv) {
    stem_blas_ensure_fast_core(argc, argv);
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(replaced_attn1),
        cmocka_unit_test(attn2_site),
        cmocka_unit_test(attention_probs),
        cmocka_unit_test(probs_refused_in_two_phases),
    };
    return cmocka_run_group_tests_name("unet attention hooks", tests, setup, teardown);
}
