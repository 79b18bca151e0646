/* Registry entries for the STEM algorithm's ops, so that anyone can run them with
 * `stem op` and check them against a reference (refdata/gen/gen_stem.py makes the
 * golden files refdata/golden/ops/{em,stem_attention,ddim}__*.safetensors):
 *   em              EM bases per head (stem/em.h)
 *   stem_attention  self-attention in stem / frame / inflated mode over a frame scope
 *   ddim            the DDIM schedule and steps (stem/ddim.h), config from attributes */
#include <string.h>

#include "core/host.h"
#include "core/op_registry.h"
#include "core/ops.h"
#include "stem/ddim.h"
#include "stem/em.h"
#include "stem/stem_attention.h"
#include "stem/stem_ops.h"

/* ---- helpers ------------------------------------------------------------------------ */

static stem_status attr_u32(const stem_op_def *op, const stem_attrs *a, const char *name, uint32_t max, uint32_t *out) {
    int64_t v;
    STEM_TRY(stem_attr_int(op, a, name, &v));
    if (v < 0 || v > (int64_t)max) return stem_fail(STEM_E_ARG, "op %s: %s must be in 0..%u", op->name, name, max);
    *out = (uint32_t)v;
    return STEM_OK;
}

/* The EM attributes shared by em and stem_attention. */
static stem_status em_attrs(const stem_op_def *op, const stem_attrs *a, stem_em_options *o) {
    stem_em_options_default(o);
    double tau;
    int64_t seed;
    STEM_TRY(stem_attr_int(op, a, "bases", &o->bases));
    STEM_TRY(stem_attr_int(op, a, "iters", &o->iters));
    STEM_TRY(stem_attr_float(op, a, "tau", &tau));
    STEM_TRY(stem_attr_int(op, a, "seed", &seed));
    STEM_TRY(stem_attr_int(op, a, "block", &o->block));
    STEM_TRY(attr_u32(op, a, "layer", 0xffffffffu, &o->layer));
    STEM_TRY(attr_u32(op, a, "phase", 255, &o->phase));
    STEM_TRY(attr_u32(op, a, "step", 4095, &o->step));
    o->tau = (float)tau;
    o->seed = (uint64_t)seed;
    return stem_em_options_check(o);
}

#define IO(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NO_INPUTS ((const char *const[]){NULL})
#define ATTRS(...) ((const stem_attr_spec[]){__VA_ARGS__, {NULL, 0, NULL, NULL}})

#define EM_ATTRS                                                                                          \
    {"bases", STEM_ATTR_INT, "256", "M, bases per head"},                                                 \
    {"iters", STEM_ATTR_INT, "5", "R, EM iterations (0: K_base = init, V_base from its responsibilities)"}, \
    {"tau", STEM_ATTR_FLOAT, "0.01", "softmax temperature of the E-step"},                                 \
    {"seed", STEM_ATTR_INT, "0", "Philox key of the initial draw (doc/algorithm.md §6)"},                               \
    {"block", STEM_ATTR_INT, "65536", "tokens per streamed em_block call (memory does not depend on it)"},           \
    {"layer", STEM_ATTR_INT, "0", "counter word w2: attention-layer index"},                               \
    {"phase", STEM_ATTR_INT, "0", "counter w3 bits 24..31: 0 inversion, 1 reconstruction, 2 editing"},     \
    {"step", STEM_ATTR_INT, "0", "counter w3 bits 12..23: timestep index within the phase"}

/* ---- em --------------------------------------------------------------------------------- */

static stem_status run_em(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in, const stem_attrs *a,
                          stem_tensor_map *out) {
    const stem_tensor *k = NULL, *v = NULL, *init = stem_tensor_map_get(in, "init");
    STEM_TRY(stem_op_input(op, in, "k", &k));
    STEM_TRY(stem_op_input(op, in, "v", &v));
    stem_em_options o;
    int64_t chunk;
    STEM_TRY(em_attrs(op, a, &o));
    STEM_TRY(stem_attr_int(op, a, "chunk", &chunk));
    if (chunk < 0 || chunk > 4095) return stem_fail(STEM_E_ARG, "op em: chunk must be in 0..4095");
    o.chunk = (uint32_t)chunk;
    if (k->ndim != 3) return stem_fail(STEM_E_SHAPE, "op em: k must be [heads, tokens, head_dim]");
    int64_t shape[3] = {k->shape[0], o.bases, k->shape[2]};
    stem_tensor *kb, *vb;
    STEM_TRY(stem_op_output(be, out, "k_base", k->dtype, 3, shape, &kb));
    STEM_TRY(stem_op_output(be, out, "v_base", k->dtype, 3, shape, &vb));
    return stem_em_bases(k, v, init, &o, kb, vb);
}

/* ---- stem_attention ----------------------------------------------------------------------- */

static stem_status run_stem_attention(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                                      const stem_attrs *a, stem_tensor_map *out) {
    const stem_tensor *q = NULL, *k = NULL, *v = NULL;
    STEM_TRY(stem_op_input(op, in, "q", &q));
    STEM_TRY(stem_op_input(op, in, "k", &k));
    STEM_TRY(stem_op_input(op, in, "v", &v));
    stem_sa_options o;
    stem_sa_options_default(&o);
    const char *mode, *scope;
    int64_t frames;
    STEM_TRY(stem_attr_string(op, a, "mode", &mode));
    STEM_TRY(stem_attr_string(op, a, "scope", &scope));
    STEM_TRY(stem_sa_mode_parse(mode, &o.mode));
    STEM_TRY(stem_em_scope_parse(scope, &o.scope));
    STEM_TRY(stem_attr_int(op, a, "frames", &frames));
    STEM_TRY(stem_attr_int(op, a, "batch_size", &o.batch_size));
    STEM_TRY(em_attrs(op, a, &o.em));
    stem_tensor *y;
    STEM_TRY(stem_op_output(be, out, "out", q->dtype, q->ndim, q->shape, &y));
    return stem_self_attention_heads(q, k, v, frames, &o, y);
}

/* ---- ddim --------------------------------------------------------------------------------- */

static stem_status ddim_config_attrs(const stem_op_def *op, const stem_attrs *a, stem_ddim_config *c) {
    stem_ddim_config_default(c);
    const char *schedule, *spacing;
    int64_t train, offset;
    bool one;
    STEM_TRY(stem_attr_float(op, a, "beta_start", &c->beta_start));
    STEM_TRY(stem_attr_float(op, a, "beta_end", &c->beta_end));
    STEM_TRY(stem_attr_string(op, a, "schedule", &schedule));
    STEM_TRY(stem_attr_string(op, a, "spacing", &spacing));
    STEM_TRY(stem_attr_int(op, a, "train_steps", &train));
    STEM_TRY(stem_attr_int(op, a, "steps_offset", &offset));
    STEM_TRY(stem_attr_bool(op, a, "set_alpha_to_one", &one));
    STEM_TRY(stem_beta_schedule_parse(schedule, &c->schedule));
    STEM_TRY(stem_timestep_spacing_parse(spacing, &c->spacing));
    if (train < 1 || train > 1000000 || offset < 0 || offset > 1000000)
        return stem_fail(STEM_E_ARG, "op ddim: train_steps must be in 1..10^6 and steps_offset >= 0");
    c->train_steps = (int)train;
    c->steps_offset = (int)offset;
    c->set_alpha_to_one = one;
    return STEM_OK;
}

static stem_status run_ddim_with(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in,
                                 const stem_attrs *a, stem_tensor_map *out, const stem_ddim *s) {
    const char *which;
    int64_t t;
    STEM_TRY(stem_attr_string(op, a, "which", &which));
    STEM_TRY(stem_attr_int(op, a, "t", &t));
    if (!strcmp(which, "timesteps") || !strcmp(which, "alphas")) {
        bool ts = which[0] == 't';
        int64_t shape[2] = {s->steps, 2};
        stem_tensor host;
        STEM_TRY(stem_tensor_new(stem_host(), ts ? STEM_I32 : STEM_F32, ts ? 1 : 2, shape, &host));
        for (int i = 0; i < s->steps; i++) {
            int ti = s->timesteps[i];
            if (ts) ((int32_t *)host.data)[i] = ti;
            else {
                ((float *)host.data)[2 * i] = (float)stem_ddim_alpha(s, ti);
                ((float *)host.data)[2 * i + 1] = (float)stem_ddim_alpha_prev(s, ti);
            }
        }
        stem_tensor dev;
        stem_status st = stem_tensor_to(&host, be, host.dtype, &dev);
        stem_tensor_free(&host);
        STEM_TRY(st);
        return stem_tensor_map_put(out, "y", dev);
    }
    stem_ddim_kind kind;
    if (!strcmp(which, "invert")) kind = STEM_DDIM_INVERT;
    else if (!strcmp(which, "sample")) kind = STEM_DDIM_SAMPLE;
    else if (!strcmp(which, "add_noise")) kind = STEM_DDIM_ADD_NOISE;
    else return stem_fail(STEM_E_ARG, "op ddim: which='%s' is not one of timesteps, alphas, invert, sample, add_noise", which);
    const stem_tensor *x = NULL, *eps = NULL;
    STEM_TRY(stem_op_input(op, in, "x", &x));
    STEM_TRY(stem_op_input(op, in, "eps", &eps));
    if (t < 0 || t > 1000000) return stem_fail(STEM_E_ARG, "op ddim: t=%lld is not a timestep", (long long)t);
    stem_tensor *y;
    STEM_TRY(stem_op_output(be, out, "y", x->dtype, x->ndim, x->shape, &y));
    return kind == STEM_DDIM_INVERT   ? stem_ddim_invert_step(s, (int)t, x, eps, y)
           : kind == STEM_DDIM_SAMPLE ? stem_ddim_sample_step(s, (int)t, x, eps, y)
                                      : stem_ddim_add_noise(s, (int)t, x, eps, y);
}

static stem_status run_ddim(const stem_op_def *op, stem_backend *be, const stem_tensor_map *in, const stem_attrs *a,
                            stem_tensor_map *out) {
    stem_ddim_config c;
    int64_t steps;
    STEM_TRY(ddim_config_attrs(op, a, &c));
    STEM_TRY(stem_attr_int(op, a, "steps", &steps));
    if (steps < 1 || steps > c.train_steps)
        return stem_fail(STEM_E_ARG, "op ddim: steps must be in 1..%d", c.train_steps);
    stem_ddim s;
    STEM_TRY(stem_ddim_init(&s, &c, (int)steps));
    stem_status st = run_ddim_with(op, be, in, a, out, &s);
    stem_ddim_free(&s);
    return st;
}

/* ---- the table ---------------------------------------------------------------------------- */

static const stem_op_def op_em = {
    "em",
    "EM bases per head (doc/algorithm.md §5): k, v [heads, n, d] (init [heads, M, d] optional) -> k_base, v_base [heads, M, d]",
    IO("k", "v", "init?"),
    IO("k_base", "v_base"),
    ATTRS(EM_ATTRS, {"chunk", STEM_ATTR_INT, "0", "counter w3 bits 0..11: chunk index"}),
    run_em,
};

static const stem_op_def op_stem_attention = {
    "stem_attention",
    "self-attention over frame scopes: mode stem (queries vs EM bases), frame, or inflated (all frames in scope)",
    IO("q", "k", "v"),
    IO("out"),
    ATTRS({"mode", STEM_ATTR_STRING, "stem", "stem | frame | inflated"},
          {"frames", STEM_ATTR_INT, "1", "frames in the token axis (rows frame-major)"},
          {"scope", STEM_ATTR_STRING, "video", "video (all frames) | chunk (batch_size frames; counter chunk = index)"},
          {"batch_size", STEM_ATTR_INT, "8", "frames per chunk with scope chunk"}, EM_ATTRS),
    run_stem_attention,
};

static const stem_op_def op_ddim = {
    "ddim",
    "DDIM schedule (timesteps, alphas) and steps (invert, sample, add_noise: y = c1 x + c2 eps), doc/algorithm.md §4",
    IO("x?", "eps?"),
    IO("y"),
    ATTRS({"which", STEM_ATTR_STRING, "timesteps", "timesteps | alphas | invert | sample | add_noise"},
          {"steps", STEM_ATTR_INT, "50", "inference steps S"},
          {"t", STEM_ATTR_INT, "0", "timestep (invert: target t; sample: current t; add_noise: any)"},
          {"beta_start", STEM_ATTR_FLOAT, "0.00085", "scheduler_config beta_start"},
          {"beta_end", STEM_ATTR_FLOAT, "0.012", "scheduler_config beta_end"},
          {"schedule", STEM_ATTR_STRING, "scaled_linear", "beta_schedule: scaled_linear | linear"},
          {"spacing", STEM_ATTR_STRING, "leading", "timestep_spacing: leading | trailing | linspace"},
          {"steps_offset", STEM_ATTR_INT, "1", "scheduler_config steps_offset"},
          {"set_alpha_to_one", STEM_ATTR_BOOL, "0", "final alpha 1 (else alpha_0)"},
          {"train_steps", STEM_ATTR_INT, "1000", "num_train_timesteps T"}),
    run_ddim,
};

/* timesteps: y int32 [S] descending; alphas: y [S, 2] = (abar_t, abar_prev(t)) per timestep. */
const stem_op_def *const stem_algorithm_ops[] = {&op_em, &op_stem_attention, &op_ddim, NULL};
