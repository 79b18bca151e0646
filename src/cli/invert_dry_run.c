/* `stem invert --dry-run`: the memory plan of a run, without running it or writing
 * anything (see invert_job.h).
 *
 * The frames are counted without being decoded where that is possible: a folder's image
 * files are counted and the first one is decoded for its size (only when --width/--height
 * leave it open); a video is decoded frame by frame (one at a time) to count it, up to
 * --n-frames; `--frames N` (a count, no such path) with --width and --height plans N
 * frames without any input. The model is loaded on the backend as the run would load it
 * (the plan needs its UNet and VAE; the default memory limit is what is free after it). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "backends/backends.h"
#include "cli/invert_job.h"
#include "cli/invert_memory.h"
#include "cli/output_dir.h"

#define CMD "stem invert"

/* --frames N: a positive count, when no file or folder of that name exists. */
static int frames_count_arg(const char *frames) {
    struct stat st;
    if (!*frames || stat(frames, &st) == 0) return 0;
    char *end;
    long n = strtol(frames, &end, 10);
    return *end || n < 1 || n > 100000 ? 0 : (int)n;
}

/* The frames the run would take: count, size, and how that was found (`how`). */
static stem_status plan_frames(const cli_video_args *v, int *count, int *width, int *height, char *how, size_t len) {
    const int n = frames_count_arg(v->frames);
    if (n) {
        if (!v->width || !v->height)
            return stem_fail(STEM_E_ARG, "--frames %d (a count) needs --width and --height", n);
        *count = v->n_frames && v->n_frames < n ? v->n_frames : n;
        *width = v->width, *height = v->height;
        snprintf(how, len, "--frames %d is a count: no input read", n);
        return STEM_OK;
    }
    cli_frames_probe probe;
    STEM_TRY(cli_frames_probe_open(v, &probe));
    *width = probe.req.width, *height = probe.req.height;
    const char *count_name = *v->n_frames_name ? v->n_frames_name : "n_frames";
    int known = probe.available;
    if (known < 0) { /* a video: counted by decoding, one frame at a time */
        stem_frame_source *src;
        STEM_TRY(stem_frame_source_open(v->frames, cli_note_to_stderr, (void *)&v->quiet, &src));
        stem_status s = STEM_OK;
        bool done = false;
        known = 0;
        while (s == STEM_OK && (!v->n_frames || known < v->n_frames)) {
            stem_image frame = {0};
            s = stem_frame_source_next(src, &frame, &done);
            stem_image_free(&frame);
            if (s == STEM_OK && done) break;
            if (s == STEM_OK) known++;
        }
        stem_frame_source_close(src);
        STEM_TRY(s);
        if (!known) return stem_fail(STEM_E_FORMAT, "'%s': no frames could be read", v->frames);
        snprintf(how, len, "a video, %s%d frames decoded to count them", done ? "all " : "the first ", known);
    } else {
        snprintf(how, len, "%d image file%s counted%s", known, known == 1 ? "" : "s",
                 probe.probed_first ? ", the first decoded for its size" : ", none decoded");
    }
    if (v->n_frames > known)
        return stem_fail(STEM_E_ARG, "'%s' has %d frame%s, but %s asks for %d", v->frames, known,
                         known == 1 ? "" : "s", count_name, v->n_frames);
    *count = v->n_frames ? v->n_frames : known;
    return STEM_OK;
}

static void row(const char *what, double bytes, const char *note) {
    printf("  %-38s %14.0f  %10s%s%s\n", what, bytes, cli_size_str(bytes).s, note ? "  " : "", note ? note : "");
}

/* The plan, part by part (bytes; the UNet's activations are the estimate --mem-limit
 * bounds, everything else is exact for the shapes). */
static void print_plan(const invert_args *a, const stem_pipeline *p, const stem_invert_options *inv,
                       const stem_frame_geometry *g, int F, int W, int H, size_t limit) {
    const size_t ds = stem_dtype_size(p->dtype), f32 = sizeof(float);
    const double lat = (double)F * (double)p->vae.cfg.latent_channels * (double)(g->latent_h * g->latent_w) * (double)ds;
    const double in_dev = (double)F * 3.0 * W * H * (double)ds;
    const double out_px = (double)F * 3.0 * (double)(g->out_h * g->out_w); /* elements */
    const double ctx = 77.0 * (double)p->text.cfg.hidden * (double)ds;
    const double weights = (double)(stem_unet_param_count(p->unet) + p->vae.params + p->text.params) * (double)ds;
    stem_invert_memory_plan plan;
    stem_invert_plan_memory(p, inv, F, g->latent_h, g->latent_w, limit, &plan);
    stem_frame_batching b;
    stem_frame_batching_plan(&inv->sa, inv->unet_frames, F, &b);
    const double unet = b.layer_major || b.per_eval < F ? (double)plan.needed : (double)plan.needed_all;

    printf("UNet:   ");
    if (b.layer_major)
        printf("layer-major: one evaluation of all %d frames per step, each module over %lld frame%s at a time\n", F,
               (long long)b.slice, b.slice == 1 ? "" : "s");
    else if (b.per_eval < F)
        printf("%lld frames per evaluation (%lld evaluations per step)\n", (long long)b.per_eval,
               (long long)((F + b.per_eval - 1) / b.per_eval));
    else
        printf("all %d frames in each evaluation (not layer-major)\n", F);
    printf("        frames_per_unet_evaluation %lld, layer_major_unet %s (as options.json would say)\n",
           (long long)inv->unet_frames, b.layer_major ? "true" : "false");
    printf("limit:  %zu bytes (%s)%s\n", limit, cli_size_str((double)limit).s,
           a->v.mem_limit ? " (--mem-limit)" : " (default: 70% of the free memory after loading the model)");

    const bool cpu = p->be->kind != STEM_BACKEND_CUDA;
    printf("\ndevice: %s%s\n", p->be->ops->describe(p->be), cpu ? " (the CPU backend: host RAM)" : "");
    printf("  %-38s %14s  %10s\n", "", "bytes", "");
    row("weights (parameters x dtype)", weights, NULL);
    row("UNet activations (estimate)", unet, "the --mem-limit budget");
    if (b.layer_major)
        row("  of which all-frame state", (double)plan.all_frame_state, "skips, hidden state, keys/values");
    if (plan.needed_all != (size_t)unet) row("  (all frames at once would need)", (double)plan.needed_all, NULL);
    row("latents z0, x, eps, next", 4 * lat, NULL);
    row("prompt context [1, 77, X]", ctx, NULL);
    row("input frames (until encoded)", in_dev, NULL);
    row("decoded frames", out_px * (double)ds, NULL);
    const double dev_total = weights + unet + 4 * lat + ctx + out_px * (double)ds;
    row("total during the DDIM loops", dev_total, "plus the allocator's and the backend's own");
    row("VAE activations (at most)", (double)p->vae.mem_budget, "its chunk budget, before and after the loops");

    printf("\nhost\n");
    row("frames [F, 3, H, W] f32", (double)F * 3.0 * W * H * (double)f32, NULL);
    row("VAE round trip + reconstruction f32", 2 * out_px * (double)f32, NULL);
    const bool cropped = g->out_h != H || g->out_w != W;
    if (cropped) row("input region for the metrics f32", out_px * (double)f32, "decoded frames are smaller");
    row("total", (double)F * 3.0 * W * H * (double)f32 + (cropped ? 3 : 2) * out_px * (double)f32, NULL);

    printf("\ndisk\n");
    row("latents (one file per step per loop)", 2.0 * inv->steps * lat, NULL);
}

int cli_invert_dry_run(const invert_args *a) {
    const cli_video_args *v = &a->v;
    int F = 0, W = 0, H = 0;
    char how[160] = "";
    stem_status s = plan_frames(v, &F, &W, &H, how, sizeof how);
    if (s != STEM_OK) return cli_report(s);
    stem_backend *be;
    int rc = cli_open_backend(v->backend, &be);
    if (rc) return rc;
    cli_video_args quiet = *v;
    quiet.quiet = true; /* the plan goes to stdout; no "model ... on ..." line */
    stem_pipeline p;
    s = cli_model_open(CMD, &quiet, be, &p);
    if (s != STEM_OK) {
        stem_backend_close(be);
        return cli_report(s);
    }
    stem_frame_geometry g;
    s = stem_pipeline_geometry(&p, H, W, &g);
    if (s != STEM_OK) stem_error_context(s, "%s (choose another --width/--height)", v->frames);
    const size_t limit = v->mem_limit ? v->mem_limit : cli_default_mem_limit(be);
    stem_invert_options inv = a->inv;
    stem_status fit = s == STEM_OK ? cli_invert_plan(&p, &inv, F, W, H, limit, false) : s;
    char why[1024] = "";
    if (fit != STEM_OK) snprintf(why, sizeof why, "%s", stem_last_error());
    if (s == STEM_OK) {
        printf("stem invert --dry-run: the memory plan; nothing was run or written\n");
        printf("frames: %d frame%s %dx%d from %s (%s)\n", F, F == 1 ? "" : "s", W, H, v->frames, how);
        printf("model:  %s, %s\n", v->model, p.dtype == STEM_F16 ? "f16" : "f32");
        printf("sizes:  latents [%d, %lld, %lld, %lld]; outputs %lldx%lld (VAE factor %d)\n", F,
               (long long)p.vae.cfg.latent_channels, (long long)g.latent_h, (long long)g.latent_w,
               (long long)g.out_w, (long long)g.out_h, g.factor);
        print_plan(a, &p, &inv, &g, F, W, H, limit);
        stem_status out = cli_output_check(v->out, v->force, v->resume);
        printf("\noutput: %s: %s\n", v->out, out == STEM_OK ? "may be written" : stem_last_error());
        if (fit != STEM_OK) printf("\nthe run would stop before its first step:\n");
    }
    fflush(stdout);
    if (fit != STEM_OK) fprintf(stderr, "stem: %s\n", why);
    rc = fit == STEM_OK ? 0 : fit == STEM_E_ARG ? 2 : 1;
    stem_pipeline_free(&p);
    stem_backend_close(be);
    return rc;
}
