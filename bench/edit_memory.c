/* bench/edit_memory: the memory plan of an edit (src/pipeline/edit_memory.c) against the
 * memory an edit really takes, in one process.
 *
 *     bench/edit_memory MODEL_DIR SIZE FRAMES [--mem-limit GIB] [--steps S] [--plan-only]
 *
 * Loads MODEL_DIR (a diffusers folder) on the CPU in f32, plans an edit of FRAMES frames
 * of SIZE x SIZE pixels (latents: the VAE's size for them) under --mem-limit (default 16 GiB), prints the
 * plan, and unless --plan-only runs stem_edit_latents for S steps (default 1) with the
 * plan applied on synthetic inputs (Philox-normal inversion latents per step and z0, the
 * three contexts of real prompts). Measured: the process's peak resident memory during
 * the edit minus its resident memory just before it (the kernel's peak counter is reset
 * through /proc/self/clear_refs first), i.e. everything the edit allocates and touches:
 * caches, buffers, the UNet's arena, scratch. One UNet evaluation of one sample runs
 * before, so that the backend's working memory (OpenBLAS's per-thread GEMM buffers, the
 * kernel scratch cache) is resident already, as in `stem edit` after its VAE encode. The plan's device total leaves out the
 * weights, which are resident before the edit starts and so are not in the difference.
 * Run one frame count per process (freed memory may stay in the allocator otherwise).
 *
 * Output: one JSON line on stdout {"kind":"edit_memory", ...}; a summary on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "core/ops.h"
#include "pipeline/edit.h"
#include "stem.h"

/* VmRSS or VmHWM of this process, bytes (0 when unreadable). */
static size_t proc_status_bytes(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kb = 0, n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') kb = strtoull(line + n + 1, NULL, 10);
    if (f) fclose(f);
    return kb * 1024;
}

static int reset_peak(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return -1;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* Synthetic inversion latents: frame f at step s from the Philox stream. */
static stem_status source_latents(void *user, int inv_step, int64_t f0, int64_t n, stem_tensor *out) {
    (void)user;
    for (int64_t f = 0; f < n; f++) {
        stem_tensor row;
        STEM_TRY(stem_tensor_narrow0(out, f, 1, &row));
        STEM_TRY(stem_philox_normal(7, (uint32_t)(f0 + f), (uint32_t)inv_step, 1u << 20, &row));
    }
    return STEM_OK;
}

static double gib(size_t b) { return (double)b / 1073741824.0; }

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL_DIR SIZE FRAMES [--mem-limit GIB] [--steps S] [--plan-only]\n", argv[0]);
        return 2;
    }
    const char *model = argv[1];
    const int64_t size = atoll(argv[2]), frames = atoll(argv[3]);
    double limit_gib = 16;
    int steps = 1;
    bool plan_only = false;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--mem-limit") && i + 1 < argc) limit_gib = atof(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--plan-only")) plan_only = true;
        else {
            fprintf(stderr, "edit_memory: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (size < 8 || frames < 1 || steps < 1 || !(limit_gib > 0)) {
        fprintf(stderr, "edit_memory: SIZE >= 8, FRAMES >= 1, --steps >= 1, --mem-limit > 0\n");
        return 2;
    }
    stem_pipeline p;
    if (stem_pipeline_load(model, stem_cpu_backend(), STEM_F32, &p) != STEM_OK) {
        fprintf(stderr, "edit_memory: %s\n", stem_last_error());
        return 1;
    }
    int64_t h, w;
    stem_vae_latent_size(&p.vae, size, size, &h, &w);
    const size_t limit = (size_t)(limit_gib * 1073741824.0);
    stem_edit_options o;
    stem_edit_options_default(&o);
    o.steps = steps;
    stem_edit_memory_plan plan;
    stem_edit_plan_memory(&p, &o, frames, h, w, limit, &plan);
    stem_edit_apply_plan(&plan, &o);
    fprintf(stderr,
            "plan: %lld frames %lldx%lld (latents %lldx%lld), %lld keyframes; caches %.2f GiB (%s), pivotal %.2f GiB "
            "(%s, %lld keyframes per slice), normal %.2f GiB, latents %.3f GiB; device %.2f GiB, host %.2f GiB; %s\n",
            (long long)frames, (long long)size, (long long)size, (long long)h, (long long)w,
            (long long)plan.keyframes, gib(plan.cache_bytes), plan.cache_on_host ? "host" : "device",
            gib(plan.pivotal_bytes), plan.pivotal_sliced ? "layer-major" : "all at once", (long long)plan.unet_frames,
            gib(plan.normal_bytes), gib(plan.latent_bytes), gib(plan.device_bytes), gib(plan.host_bytes),
            plan.fits ? "fits" : "DOES NOT FIT");
    size_t before = 0, peak = 0;
    double seconds = 0;
    stem_status s = STEM_OK;
    if (!plan_only) {
        stem_tensor ctx[3] = {{0}}, z0 = {0}, xinv = {0}, x = {0};
        static const char *const prompts[3] = {"a red square moving right", "ugly, blurry, low res",
                                               "a blue disc drifting right, oil painting"};
        bool truncated;
        for (int i = 0; i < 3 && s == STEM_OK; i++) s = stem_pipeline_encode_prompt(&p, prompts[i], &ctx[i], &truncated);
        int64_t shape[4] = {plan.frames_edited, 4, h, w};
        if (s == STEM_OK) s = stem_tensor_new(p.be, p.dtype, 4, shape, &z0);
        if (s == STEM_OK) s = stem_tensor_new(p.be, p.dtype, 4, shape, &xinv);
        if (s == STEM_OK) s = stem_tensor_new(p.be, p.dtype, 4, shape, &x);
        if (s == STEM_OK) s = stem_philox_normal(7, 0, 0, 2u << 20, &z0);
        if (s == STEM_OK) s = source_latents(NULL, steps - 1, 0, plan.frames_edited, &xinv);
        if (s == STEM_OK) s = stem_edit_initial_latents(&p, steps, &z0, &xinv, &x);
        const stem_edit_inputs in = {.source = source_latents, .context_source = &ctx[0],
                                     .context_negative = &ctx[1], .context_target = &ctx[2]};
        /* warm-up: one UNet evaluation of one sample, so that the backend's working memory
         * (OpenBLAS's per-thread GEMM buffers, the kernel scratch) is resident before the
         * measurement starts, as it is in `stem edit` after the inversion or VAE encode */
        if (s == STEM_OK) {
            stem_tensor one, eps1;
            const float t = 981.0f;
            s = stem_tensor_narrow0(&x, 0, 1, &one);
            if (s == STEM_OK) s = stem_tensor_new(p.be, p.dtype, 4, one.shape, &eps1);
            if (s == STEM_OK) s = stem_unet_forward(p.unet, p.arena, &one, &t, 1, &ctx[0], NULL, &eps1);
            stem_tensor_free(&eps1);
        }
        if (s == STEM_OK) {
            before = proc_status_bytes("VmRSS");
            if (reset_peak() != 0) fprintf(stderr, "edit_memory: cannot reset the peak (/proc/self/clear_refs)\n");
            double t0 = bench_now();
            s = stem_edit_latents(&p, &in, &o, 0, &x, NULL, NULL, NULL);
            seconds = bench_now() - t0;
            peak = proc_status_bytes("VmHWM");
        }
        for (int i = 0; i < 3; i++) stem_tensor_free(&ctx[i]);
        stem_tensor_free(&z0);
        stem_tensor_free(&xinv);
        stem_tensor_free(&x);
    }
    if (s != STEM_OK) {
        fprintf(stderr, "edit_memory: %s\n", stem_last_error());
        stem_pipeline_free(&p);
        return 1;
    }
    const size_t measured = peak > before ? peak - before : 0;
    const size_t planned = plan.device_bytes + plan.host_bytes;
    printf("{\"kind\":\"edit_memory\",\"model\":\"%s\",\"size\":%lld,\"frames\":%lld,\"steps\":%d,"
           "\"mem_limit_bytes\":%zu,\"keyframes\":%lld,\"pivotal_sliced\":%s,\"unet_frames\":%lld,"
           "\"cache_on_host\":%s,\"plan_cache_bytes\":%zu,\"plan_pivotal_bytes\":%zu,\"plan_normal_bytes\":%zu,"
           "\"plan_latent_bytes\":%zu,\"plan_device_bytes\":%zu,\"plan_host_bytes\":%zu,\"fits\":%s",
           model, (long long)size, (long long)frames, steps, limit, (long long)plan.keyframes,
           plan.pivotal_sliced ? "true" : "false", (long long)plan.unet_frames, plan.cache_on_host ? "true" : "false",
           plan.cache_bytes, plan.pivotal_bytes, plan.normal_bytes, plan.latent_bytes, plan.device_bytes,
           plan.host_bytes, plan.fits ? "true" : "false");
    if (!plan_only)
        printf(",\"rss_before_bytes\":%zu,\"measured_peak_bytes\":%zu,\"measured_over_plan\":%.4f,\"edit_s\":%.3f,"
               "\"threads\":%d,\"arena_peak_bytes\":%zu",
               before, measured, planned ? (double)measured / (double)planned : 0.0, seconds, stem_num_threads(),
               stem_arena_peak(p.arena));
    printf("}\n");
    if (!plan_only)
        fprintf(stderr, "measured: %.3f GiB over the %.3f GiB resident before the edit (plan %.3f GiB: measured / plan "
                "%.3f) in %.1f s\n", gib(measured), gib(before), gib(planned),
                planned ? (double)measured / (double)planned : 0.0, seconds);
    stem_pipeline_free(&p);
    return 0;
}
