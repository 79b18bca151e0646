/* The whole inversion pipeline (src/pipeline/invert.c) against the PyTorch/diffusers
 * reference: every refdata/golden/invert/<model>__<mode>__<scope>[_<variant>].safetensors
 * (made by refdata/gen/gen_invert.py: diffusers 0.20.2 UNet/VAE + transformers 4.33.3
 * CLIP in float64, attn1 replaced by doc/algorithm.md §5 with the EM's Philox draws of doc/algorithm.md §6;
 * 4 frames of refdata/clips/synthetic at 32x32, latents [4, 4, 8, 8], S = 10 DDIM steps,
 * t = 1 .. 901; prompt "a red square moving right").
 *
 * Per golden, on the CPU in f32 (stem_pipeline_load):
 *   - the attn1 sites in execution order (the EM counter's layer word) equal the
 *     reference's (metadata attn1_order);
 *   - the prompt's token ids (in.ids) and context (in.context) from the C tokenizer and
 *     text encoder;
 *   - the VAE: encode(in.frames) vs out.z0, decode(out.rec_z0) vs out.rec_frames;
 *   - inversion from out.z0 with in.context (so each stage is judged on the reference's
 *     inputs): the latents after steps 0, S/2, S-1 (captured by on_step, which must also
 *     report phase, index and the ascending timesteps of the metadata) vs
 *     out.inv_step<i>;
 *   - reconstruction from out.inv_step<S-1>: after steps 0 and S/2 vs out.rec_step<i>,
 *     the final latents vs out.rec_z0 (descending timesteps);
 *   - stem mode, resuming: inversion from out.inv_step<S/2> with first_step = S/2 + 1 and
 *     reconstruction from out.rec_step<S/2> with first_step = S/2 + 1 reach the same
 *     out.inv_step<S-1> / out.rec_z0 (the EM counter word `step` is the absolute step
 *     index), here with em.block = 96 so that the EM streams over several token blocks;
 *   - scope video (stem, inflated), layer-major: the UNet's modules over slices of 1 and
 *     of 3 frames (3 + 1: uneven) match the golden and the all-frames run.
 * Also (tiny-sd1, 8 frames of 16x16 latents): the arena peak of layer-major inversion
 * steps is below the all-frames one, and their latents agree.
 * Tolerances are the golden's (metadata rtol.<x> / atol.<x>, allclose elementwise):
 *   context 1e-4 / 1e-4; z0 and rec_frames rtol 1e-4, atol 1e-4 x max|ref|; latents
 *   rtol 1e-3 (stem) or 2e-4 (frame, inflated), atol = rtol x max|ref|. The generator
 *   runs the same pipeline in float32 (and with an ulp of noise on every q, k, v, eps)
 *   and requires every such trial within a quarter of these; the observed spread is in
 *   the metadata (spread.<x>) and is ~1e-5 of max|ref| on the latents.
 * CUDA (f32): the tiny-sd1 stem/video case runs on the GPU and must match the golden and
 * the CPU at the golden's tolerances; skipped with the reason when stem_backend_open
 * ("cuda") fails. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* test_model_util.h: mkdtemp, nftw */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/tokenizer.h"
#include "pipeline/invert.h"
#include "test_model_util.h"

#define CUDA_CASE "tiny-sd1__stem__video"

static stem_backend *cuda;
static char cuda_unavailable[512];

#define OK(expr)                                                          \
    do {                                                                  \
        stem_status s_ = (expr);                                          \
        if (s_ != STEM_OK) fail_msg("%s: %s", #expr, stem_last_error()); \
    } while (0)

/* ---- the golden file ----------------------------------------------------------------- */

typedef struct golden {
    stem_tensor_map file;
    char name[256], model[64];
    const char *prompt;
    stem_invert_options opt;
    int inv_steps[3], inv_ts[3], rec_steps[3], rec_ts[3];
} golden;

static void parse_ints(const stem_tensor_map *m, const char *key, int *out, int n) {
    const char *v = stem_tensor_map_get_meta(m, key);
    if (!v) fail_msg("golden lacks metadata '%s'", key);
    char *end;
    for (int i = 0; i < n; i++) {
        out[i] = (int)strtol(v, &end, 10);
        if (end == v) fail_msg("metadata %s = '%s': expected %d integers", key, v, n);
        v = *end == ',' ? end + 1 : end;
    }
}

static const char *meta_str(const stem_tensor_map *m, const char *key) {
    const char *v = stem_tensor_map_get_meta(m, key);
    if (!v) fail_msg("golden lacks metadata '%s'", key);
    return v;
}

static void golden_open(const char *path, golden *g) {
    memset(g, 0, sizeof *g);
    OK(stem_safetensors_load(path, -1, &g->file));
    const char *label = test_golden_label(path);
    snprintf(g->name, sizeof g->name, "%.*s", (int)(strlen(label) - strlen(".safetensors")), label);
    snprintf(g->model, sizeof g->model, "%s", meta_str(&g->file, "model"));
    g->prompt = meta_str(&g->file, "prompt");
    stem_invert_options_default(&g->opt);
    g->opt.steps = atoi(meta_str(&g->file, "steps"));
    OK(stem_sa_mode_parse(meta_str(&g->file, "mode"), &g->opt.sa.mode));
    OK(stem_em_scope_parse(meta_str(&g->file, "scope"), &g->opt.sa.scope));
    g->opt.sa.batch_size = atoll(meta_str(&g->file, "batch_size"));
    if (g->opt.sa.mode == STEM_SA_STEM) {
        g->opt.sa.em.bases = atoll(meta_str(&g->file, "bases"));
        g->opt.sa.em.iters = atoll(meta_str(&g->file, "iters"));
        g->opt.sa.em.tau = (float)atof(meta_str(&g->file, "tau"));
        g->opt.sa.em.seed = strtoull(meta_str(&g->file, "seed"), NULL, 10);
    }
    parse_ints(&g->file, "inv_steps", g->inv_steps, 3);
    parse_ints(&g->file, "inv_timesteps", g->inv_ts, 3);
    parse_ints(&g->file, "rec_steps", g->rec_steps, 3);
    parse_ints(&g->file, "rec_timesteps", g->rec_ts, 3);
    assert_int_equal(g->inv_steps[2], g->opt.steps - 1);
    assert_int_equal(g->rec_steps[2], g->opt.steps - 1);
}

/* allclose against out.<key> at the golden's rtol.<key> / atol.<key>; returns violations. */
static int64_t check(const golden *g, const char *what, const char *key, const stem_tensor *got) {
    char name[96], rk[96], ak[96], label[512];
    snprintf(name, sizeof name, "out.%s", key);
    snprintf(rk, sizeof rk, "rtol.%s", key);
    snprintf(ak, sizeof ak, "atol.%s", key);
    snprintf(label, sizeof label, "%s %s", what, key);
    return tm_compare(label, got, tm_require(&g->file, name), tm_meta_double(&g->file, rk),
                      tm_meta_double(&g->file, ak));
}

/* ---- on_step: capture the latents of chosen steps ------------------------------------- */

typedef struct capture {
    stem_phase phase;
    int steps;
    const int *want_steps, *want_ts; /* 3 (step, t) pairs to keep */
    int expect_next;                 /* next step index on_step must report */
    int errors;
    stem_tensor saved[3];
    bool have[3];
} capture;

static stem_status on_step(void *user, stem_phase phase, int step_index, int steps, int t, const stem_tensor *x) {
    capture *c = user;
    if (phase != c->phase || steps != c->steps || step_index != c->expect_next) {
        print_message("    on_step: phase %d step %d/%d, expected phase %d step %d/%d\n", (int)phase, step_index,
                      steps, (int)c->phase, c->expect_next, c->steps);
        c->errors++;
    }
    c->expect_next = step_index + 1;
    for (int i = 0; i < 3; i++)
        if (c->want_steps[i] == step_index) {
            if (t != c->want_ts[i]) {
                print_message("    on_step: step %d has t = %d, the reference %d\n", step_index, t, c->want_ts[i]);
                c->errors++;
            }
            stem_tensor_free(&c->saved[i]);
            STEM_TRY(stem_tensor_to(x, stem_cpu_backend(), STEM_F32, &c->saved[i]));
            c->have[i] = true;
        }
    return STEM_OK;
}

static void capture_free(capture *c) {
    for (int i = 0; i < 3; i++) stem_tensor_free(&c->saved[i]);
}

/* Runs one phase from `start` (a golden tensor) with first_step; captures as above. The
 * final latents go to *final (host f32). */
static void run_phase(stem_pipeline *p, const stem_tensor *ctx, const stem_invert_options *o, stem_phase phase,
                      int first_step, const stem_tensor *start, const int *steps, const int *ts, capture *c,
                      stem_tensor *final) {
    memset(c, 0, sizeof *c);
    c->phase = phase;
    c->steps = o->steps;
    c->want_steps = steps;
    c->want_ts = ts;
    c->expect_next = first_step;
    stem_tensor x;
    OK(stem_tensor_to(start, p->be, p->dtype, &x));
    stem_status s = phase == STEM_PHASE_INVERSION ? stem_invert_latents(p, ctx, o, first_step, &x, on_step, c)
                                                  : stem_reconstruct_latents(p, ctx, o, first_step, &x, on_step, c);
    if (s != STEM_OK) fail_msg("%s: %s", phase == STEM_PHASE_INVERSION ? "invert" : "reconstruct", stem_last_error());
    assert_int_equal(c->expect_next, o->steps);
    assert_int_equal(c->errors, 0);
    OK(stem_tensor_to(&x, stem_cpu_backend(), STEM_F32, final));
    stem_tensor_free(&x);
}

static void load_pipeline(const char *model, stem_backend *be, stem_pipeline *p) {
    if (stem_pipeline_load(tm_model_path(model, NULL), be, STEM_F32, p) != STEM_OK)
        fail_msg("loading %s: %s", model, stem_last_error());
}

/* Inversion + reconstruction on the golden's inputs; returns violations. out_inv[3],
 * out_rec[3] receive the captured latents (rec[2] = the final z0), host f32, owned. */
static int64_t run_and_check(stem_pipeline *p, const golden *g, const stem_invert_options *o, const char *what,
                             stem_tensor *out_inv, stem_tensor *out_rec) {
    stem_tensor ctx;
    OK(stem_tensor_to(tm_require(&g->file, "in.context"), p->be, p->dtype, &ctx));
    int64_t bad = 0;
    char key[64];
    capture c;
    stem_tensor final;
    run_phase(p, &ctx, o, STEM_PHASE_INVERSION, 0, tm_require(&g->file, "out.z0"), g->inv_steps, g->inv_ts, &c,
              &final);
    for (int i = 0; i < 3; i++) {
        assert_true(c.have[i]);
        snprintf(key, sizeof key, "inv_step%d", g->inv_steps[i]);
        bad += check(g, what, key, &c.saved[i]);
        if (out_inv) {
            out_inv[i] = c.saved[i];
            c.saved[i] = (stem_tensor){0};
        }
    }
    stem_tensor_free(&final);
    capture_free(&c);

    snprintf(key, sizeof key, "out.inv_step%d", g->opt.steps - 1);
    run_phase(p, &ctx, o, STEM_PHASE_RECONSTRUCTION, 0, tm_require(&g->file, key), g->rec_steps, g->rec_ts, &c,
              &final);
    for (int i = 0; i < 2; i++) {
        assert_true(c.have[i]);
        snprintf(key, sizeof key, "rec_step%d", g->rec_steps[i]);
        bad += check(g, what, key, &c.saved[i]);
    }
    assert_true(c.have[2]);
    bad += check(g, what, "rec_z0", &final);
    if (out_rec) {
        for (int i = 0; i < 2; i++) {
            out_rec[i] = c.saved[i];
            c.saved[i] = (stem_tensor){0};
        }
        out_rec[2] = final;
    } else {
        stem_tensor_free(&final);
    }
    capture_free(&c);
    stem_tensor_free(&ctx);
    return bad;
}

/* Inversion from out.inv_step<S/2> with first_step = S/2 + 1 must reach out.inv_step<S-1>,
 * reconstruction from out.rec_step<S/2> the same way out.rec_z0; em.block = 96. */
static int64_t resume_check(stem_pipeline *p, const golden *g) {
    int64_t bad = 0;
    stem_invert_options o = g->opt;
    o.sa.em.block = 96;
    int mid = g->inv_steps[1];
    int resume_inv[3] = {-1, -1, g->opt.steps - 1}, resume_inv_t[3] = {0, 0, g->inv_ts[2]};
    int resume_rec[3] = {-1, -1, g->opt.steps - 1}, resume_rec_t[3] = {0, 0, g->rec_ts[2]};
    char key[64];
    stem_tensor cctx, final;
    capture c;
    OK(stem_tensor_to(tm_require(&g->file, "in.context"), p->be, p->dtype, &cctx));
    snprintf(key, sizeof key, "out.inv_step%d", mid);
    run_phase(p, &cctx, &o, STEM_PHASE_INVERSION, mid + 1, tm_require(&g->file, key), resume_inv, resume_inv_t, &c,
              &final);
    snprintf(key, sizeof key, "inv_step%d", g->opt.steps - 1);
    bad += check(g, "resumed (block 96)", key, &final);
    stem_tensor_free(&final);
    capture_free(&c);
    assert_int_equal(g->rec_steps[1], mid);
    snprintf(key, sizeof key, "out.rec_step%d", mid);
    run_phase(p, &cctx, &o, STEM_PHASE_RECONSTRUCTION, mid + 1, tm_require(&g->file, key), resume_rec, resume_rec_t,
              &c, &final);
    bad += check(g, "resumed (block 96)", "rec_z0", &final);
    stem_tensor_free(&final);
    capture_free(&c);
    stem_tensor_free(&cctx);
    return bad;
}

/* The six captured latents of two runs (inv[3], rec[3]) against each other at the
 * golden's tolerances; returns violations. */
static int64_t compare_runs(const golden *g, const char *what, const stem_tensor *ai, const stem_tensor *ar,
                            const stem_tensor *bi, const stem_tensor *br) {
    int64_t bad = 0;
    char key[64], rk[96], ak[96], label[160];
    for (int i = 0; i < 6; i++) {
        const stem_tensor *a = i < 3 ? &ai[i] : &ar[i - 3], *b = i < 3 ? &bi[i] : &br[i - 3];
        if (i < 3) snprintf(key, sizeof key, "inv_step%d", g->inv_steps[i]);
        else if (i < 5) snprintf(key, sizeof key, "rec_step%d", g->rec_steps[i - 3]);
        else snprintf(key, sizeof key, "rec_z0");
        snprintf(rk, sizeof rk, "rtol.%s", key);
        snprintf(ak, sizeof ak, "atol.%s", key);
        snprintf(label, sizeof label, "%s %s", what, key);
        bad += tm_compare(label, a, b, tm_meta_double(&g->file, rk), tm_meta_double(&g->file, ak));
    }
    return bad;
}

static void free_runs(stem_tensor *inv, stem_tensor *rec) {
    for (int i = 0; i < 3; i++) {
        stem_tensor_free(&inv[i]);
        stem_tensor_free(&rec[i]);
    }
}

/* Scope video, layer-major: the UNet's modules over slices of 1 frame and of 3 frames
 * (3 + 1 of the golden's 4: uneven) match the golden and the all-frames run (all_inv,
 * all_rec) at the golden's tolerances; returns violations. */
static int64_t layer_major_check(stem_pipeline *p, const golden *g, const stem_tensor *all_inv,
                                 const stem_tensor *all_rec) {
    static const int64_t slices[2] = {1, 3};
    const int64_t F = tm_require(&g->file, "out.z0")->shape[0];
    int64_t bad = 0;
    for (int i = 0; i < 2; i++) {
        stem_invert_options o = g->opt;
        o.unet_frames = slices[i];
        assert_true(stem_invert_layer_major(&o, F));
        char what[96], vs[128];
        snprintf(what, sizeof what, "layer-major (slices of %lld)", (long long)slices[i]);
        snprintf(vs, sizeof vs, "%s vs all frames", what);
        stem_tensor inv[3], rec[3];
        bad += run_and_check(p, g, &o, what, inv, rec);
        /* Measured max |layer-major - all frames| over the CI matrix (Zen 5): <= 5.2e-5
         * (rec_z0, one thread), against atol >= 5.4e-4 of the golden: >= 10x. */
        bad += compare_runs(g, vs, inv, rec, all_inv, all_rec);
        free_runs(inv, rec);
    }
    return bad;
}

/* ---- the tests -------------------------------------------------------------------------- */

static void golden_cpu(void **state) {
    const char *path = *state;
    golden g;
    golden_open(path, &g);
    stem_pipeline p;
    load_pipeline(g.model, stem_cpu_backend(), &p);
    print_message("    %s: mode %s, scope %s, batch_size %lld, M %lld, R %lld, seed %llu, %d steps\n", g.name,
                  stem_sa_mode_name(g.opt.sa.mode), stem_em_scope_name(g.opt.sa.scope),
                  (long long)g.opt.sa.batch_size, (long long)g.opt.sa.em.bases, (long long)g.opt.sa.em.iters,
                  (unsigned long long)g.opt.sa.em.seed, g.opt.steps);
    int64_t bad = 0;

    /* the EM counter word w2 = attn1 index in execution order: the reference's order */
    const char *order = meta_str(&g.file, "attn1_order");
    int n_sites = stem_unet_attn1_count(p.unet);
    for (int i = 0; i < n_sites; i++) {
        const char *name = stem_unet_attn1_name(p.unet, i);
        size_t len = strlen(name);
        if (strncmp(order, name, len) != 0 || (order[len] != ',' && order[len] != '\0'))
            fail_msg("attn1 site %d is %s; the reference's order continues with %s", i, name, order);
        order += len + (order[len] == ',');
    }
    if (*order) fail_msg("the reference has more attn1 sites than the %d of the C UNet: %s", n_sites, order);

    int32_t ids[77];
    int n_real = 0;
    bool truncated = true;
    OK(stem_tokenize(p.tokenizer, g.prompt, ids, &n_real, &truncated));
    assert_false(truncated);
    const stem_tensor *want_ids = tm_require(&g.file, "in.ids");
    assert_int_equal(stem_numel(want_ids), 77);
    assert_memory_equal(ids, want_ids->data, sizeof ids);
    stem_tensor ctx;
    OK(stem_pipeline_encode_prompt(&p, g.prompt, &ctx, &truncated));
    bad += tm_compare("text encoder context", &ctx, tm_require(&g.file, "in.context"),
                      tm_meta_double(&g.file, "rtol.context"), tm_meta_double(&g.file, "atol.context"));
    stem_tensor_free(&ctx);

    /* VAE: encode the frames, decode the reference's reconstruction */
    const stem_tensor *frames = tm_require(&g.file, "in.frames"), *z0 = tm_require(&g.file, "out.z0");
    const stem_tensor *rec_z0 = tm_require(&g.file, "out.rec_z0"), *rec_frames = tm_require(&g.file, "out.rec_frames");
    int64_t h, w;
    stem_vae_latent_size(&p.vae, frames->shape[2], frames->shape[3], &h, &w);
    assert_int_equal(h, z0->shape[2]);
    assert_int_equal(w, z0->shape[3]);
    stem_tensor lat, dec;
    OK(stem_tensor_new(stem_cpu_backend(), STEM_F32, 4, z0->shape, &lat));
    OK(stem_tensor_new(stem_cpu_backend(), STEM_F32, 4, rec_frames->shape, &dec));
    OK(stem_vae_encode(&p.vae, frames, &lat));
    OK(stem_vae_decode(&p.vae, rec_z0, &dec));
    bad += check(&g, "vae encode", "z0", &lat);
    bad += check(&g, "vae decode", "rec_frames", &dec);
    stem_tensor_free(&lat);
    stem_tensor_free(&dec);

    /* inversion and reconstruction */
    stem_tensor inv[3], rec[3];
    bad += run_and_check(&p, &g, &g.opt, "cpu", inv, rec);

    /* scope video: the same layer-major, over slices of frames */
    if (g.opt.sa.mode != STEM_SA_FRAME && g.opt.sa.scope == STEM_SCOPE_VIDEO)
        bad += layer_major_check(&p, &g, inv, rec);
    free_runs(inv, rec);

    /* stem: resuming after step S/2 (the EM counter word `step` stays the absolute step
     * index), with a streaming EM over several token blocks */
    if (g.opt.sa.mode == STEM_SA_STEM) bad += resume_check(&p, &g);

    stem_pipeline_free(&p);
    stem_tensor_map_free(&g.file);
    assert_int_equal(bad, 0);
}

/* CUDA f32 against the golden and against the CPU (both at the golden's tolerances). */
static void golden_cuda_f32(void **state) {
    if (!cuda) {
        print_message("skipped: %s\n", cuda_unavailable);
        skip();
    }
    const char *path = *state;
    golden g;
    golden_open(path, &g);
    stem_pipeline pc, pg;
    load_pipeline(g.model, stem_cpu_backend(), &pc);
    load_pipeline(g.model, cuda, &pg);
    stem_tensor ci[3], cr[3], gi[3], gr[3];
    int64_t bad = run_and_check(&pc, &g, &g.opt, "cpu", ci, cr);
    bad += run_and_check(&pg, &g, &g.opt, "cuda f32", gi, gr);
    bad += compare_runs(&g, "cuda vs cpu", gi, gr, ci, cr);
    /* layer-major on the GPU: slices of 1 and 3 frames vs the golden and the CUDA run */
    bad += layer_major_check(&pg, &g, gi, gr);
    free_runs(ci, cr);
    free_runs(gi, gr);
    stem_pipeline_free(&pc);
    stem_pipeline_free(&pg);
    stem_tensor_map_free(&g.file);
    assert_int_equal(bad, 0);
}

/* Two inversion steps of 8 frames of 16x16 latents (the bundled default's size) with a
 * fresh arena; returns its peak, the latents in *x (host f32, owned). */
static size_t inversion_arena_peak(stem_pipeline *p, const stem_tensor *ctx, const stem_invert_options *o,
                                   const stem_tensor *z0, stem_tensor *x_out) {
    stem_arena *saved = p->arena, *fresh;
    OK(stem_arena_create(p->be, 64u << 20, &fresh));
    p->arena = fresh;
    stem_tensor x;
    OK(stem_tensor_to(z0, p->be, p->dtype, &x));
    stem_status s = stem_invert_latents(p, ctx, o, 0, &x, NULL, NULL);
    size_t peak = stem_arena_peak(fresh);
    p->arena = saved;
    stem_arena_destroy(fresh);
    if (s != STEM_OK) fail_msg("invert: %s", stem_last_error());
    OK(stem_tensor_to(&x, stem_cpu_backend(), STEM_F32, x_out));
    stem_tensor_free(&x);
    return peak;
}

/* Layer-major memory: the arena peak with slices of 1 and 3 frames (3 + 3 + 2) is below
 * the all-frames peak, for stem and inflated attention, and the latents agree (rtol
 * 1e-3, atol 1e-3 x max|x|: the stem goldens' tolerance). */
static void layer_major_arena_peak(void **state) {
    (void)state;
    stem_pipeline p;
    load_pipeline("tiny-sd1", stem_cpu_backend(), &p);
    int64_t shape[4] = {8, 4, 16, 16};
    stem_tensor z0, ctx;
    OK(stem_tensor_new(stem_cpu_backend(), STEM_F32, 4, shape, &z0));
    OK(stem_philox_normal(7, 0, 0, 0, &z0));
    bool truncated;
    OK(stem_pipeline_encode_prompt(&p, "a red square moving right", &ctx, &truncated));
    static const stem_sa_mode modes[2] = {STEM_SA_STEM, STEM_SA_INFLATED};
    for (int m = 0; m < 2; m++) {
        stem_invert_options o;
        stem_invert_options_default(&o);
        o.steps = 2;
        o.sa.mode = modes[m];
        o.sa.em.bases = 16;
        stem_tensor all, sliced;
        size_t peak_all = inversion_arena_peak(&p, &ctx, &o, &z0, &all);
        stem_invert_memory_plan plan;
        stem_invert_plan_memory(&p, &o, 8, 16, 16, 0, &plan);
        print_message("    %s, 8 frames 16x16: all frames at once: arena peak %zu bytes (estimate %zu)\n",
                      stem_sa_mode_name(o.sa.mode), peak_all, plan.needed_all);
        size_t prev = peak_all;
        for (int64_t slice = 3; slice >= 1; slice -= 2) {
            o.unet_frames = slice;
            size_t peak = inversion_arena_peak(&p, &ctx, &o, &z0, &sliced);
            print_message("    layer-major, slices of %lld: arena peak %zu bytes (%.0f %% of all frames; estimated "
                          "all-frame state %zu)\n", (long long)slice, peak, 100.0 * (double)peak / (double)peak_all,
                          plan.all_frame_state);
            assert_true(peak < prev);
            prev = peak;
            char label[64];
            snprintf(label, sizeof label, "slices of %lld vs all frames", (long long)slice);
            /* M = 16 bases, 2 steps: well-conditioned. Measured max |sliced - all| over the
             * CI matrix (Zen 5): 1.0e-6 (portable) .. 1.4e-6 (OpenBLAS Haswell), with
             * max |x| ~ 2.3; 2e-5 of max |x| is ~30x the worst. */
            assert_int_equal(tm_compare(label, &sliced, &all, 0, 2e-5 * tm_max_abs(&all)), 0);
            stem_tensor_free(&sliced);
        }
        stem_tensor_free(&all);
    }
    stem_tensor_free(&z0);
    stem_tensor_free(&ctx);
    stem_pipeline_free(&p);
}

/* ---- main ---------------------------------------------------------------------------------- */


int main(int argc, char **argv) {
    stem_blas_ensure_fast_core(argc, argv);
    if (stem_backend_open("cuda", &cuda) != STEM_OK) {
        snprintf(cuda_unavailable, sizeof cuda_unavailable, "%s", stem_last_error());
        fprintf(stderr, "test_invert: CUDA test skipped: %s\n", cuda_unavailable);
        cuda = NULL;
    }
    int n = 0;
    char **paths = test_list_golden_dir("invert", &n);
    if (n == 0) {
        fprintf(stderr, "test_invert: no goldens in %s/golden/invert (set STEM_REFDATA)\n", test_refdata_dir());
        return 1;
    }
    struct CMUnitTest *tests = calloc((size_t)n + 2, sizeof *tests);
    char **names = calloc((size_t)n + 2, sizeof *names);
    int k = 0, cuda_case = -1;
    for (int i = 0; i < n; i++) {
        const char *label = test_golden_label(paths[i]);
        size_t len = strlen(label) + 16;
        names[k] = malloc(len);
        snprintf(names[k], len, "%s cpu", label);
        tests[k] = (struct CMUnitTest){.name = names[k], .test_func = golden_cpu, .initial_state = paths[i]};
        k++;
        if (!strncmp(label, CUDA_CASE ".", strlen(CUDA_CASE) + 1)) cuda_case = i;
    }
    if (cuda_case < 0) {
        fprintf(stderr, "test_invert: golden %s is missing\n", CUDA_CASE);
        return 1;
    }
    names[k] = malloc(64);
    snprintf(names[k], 64, "%s cuda f32", CUDA_CASE);
    tests[k] = (struct CMUnitTest){.name = names[k], .test_func = golden_cuda_f32, .initial_state = paths[cuda_case]};
    k++;
    names[k] = malloc(64);
    snprintf(names[k], 64, "layer-major arena peak");
    tests[k] = (struct CMUnitTest){.name = names[k], .test_func = layer_major_arena_peak};
    k++;
    int failed = _cmocka_run_group_tests("invert", tests, (size_t)k, NULL, NULL);
    for (int i = 0; i < k; i++) free(names[i]);
    for (int i = 0; i < n; i++) free(paths[i]);
    free(names);
    free(paths);
    free(tests);
    if (cuda) stem_backend_close(cuda);
    return failed;
}
