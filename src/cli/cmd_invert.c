/* `stem invert`: STEM inversion and DDIM reconstruction of a whole video, with
 * quality metrics, a contact sheet and a manifest; resumable; atomic output. */
#include <errno.h>
#include <json-c/json.h>
#include <png.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "backends/backends.h"
#include "cli/invert_args.h"
#include "cli/invert_memory.h"
#include "cli/output_dir.h"
#include "cli/progress.h"
#include "io/atomic_file.h"
#include "io/contact_sheet.h"
#include "io/frames.h"
#include "io/metrics.h"
#include "io/video_write.h"
#include "pipeline/invert.h"
#include "pipeline/latent_file.h"
#include "pipeline/resume_check.h"

/* ---- memory ----------------------------------------------------------------------- */


/* ---- interruption ------------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;
static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

/* ---- per-step saving and resume ------------------------------------------------------- */


typedef struct run_state {
    const invert_args *args;
    const char *dir; /* the .partial output folder */
    stem_progress progress;
    double seconds[2];
    stem_backend *be;
    size_t device_used_peak; /* GPU: max of (total - free) over the samples, 0 on the CPU */
} run_state;

/* GPU memory in use (cudaMemGetInfo: everything on the device, CUDA context included),
 * sampled after every step and around the VAE: the manifest reports the largest. */
static void sample_device_memory(run_state *st) {
    size_t available = 0, total = 0;
    if (st->be->kind != STEM_BACKEND_CUDA || !st->be->ops->memory_info ||
        st->be->ops->memory_info(st->be, &available, &total) != STEM_OK)
        return;
    if (total - available > st->device_used_peak) st->device_used_peak = total - available;
}

static void latents_path(char *buf, size_t len, const char *dir, stem_phase phase, int step, int t) {
    snprintf(buf, len, "%s/latents/%s_%03d_t%04d.safetensors", dir, phase == STEM_PHASE_INVERSION ? "inv" : "rec",
             step, t);
}


static stem_status on_step(void *user, stem_phase phase, int step, int steps, int t, const stem_tensor *x) {
    run_state *st = user;
    char path[PATH_MAX + 64];
    latents_path(path, sizeof path, st->dir, phase, step, t);
    STEM_TRY(stem_latent_file_save(path, x, phase, step, t));
    sample_device_memory(st);
    /* on interruption the last progress line shows the step the message names (a log
     * gets a line only every few seconds: it said 15 where the message said 16) */
    if (interrupted) stem_progress_show(&st->progress, step + 1);
    else stem_progress_update(&st->progress, step + 1);
    if (interrupted) return stem_fail(STEM_E_IO, "interrupted after %s step %d of %d; the steps so far are saved: "
                                      "run the same command with --resume to continue", stem_phase_name(phase),
                                      step + 1, steps);
    return STEM_OK;
}

/* The last step of `phase` whose latents are saved, -1 if none: loads them into x. Every
 * saved file of the phase is checked (checksum, step metadata): a damaged earlier step
 * would otherwise be carried into the finished folder. */
static stem_status find_resume_point(const char *dir, stem_phase phase, const stem_ddim *ddim, stem_tensor *x,
                                     int *last) {
    *last = -1;
    for (int i = ddim->steps - 1; i >= 0; i--) {
        int t = phase == STEM_PHASE_INVERSION ? ddim->timesteps[ddim->steps - 1 - i] : ddim->timesteps[i];
        char path[PATH_MAX + 64];
        latents_path(path, sizeof path, dir, phase, i, t);
        if (access(path, F_OK) != 0) continue;
        stem_status s = stem_latent_file_load(path, phase, i, t, *last < 0 ? x : NULL);
        if (s != STEM_OK)
            return stem_error_context(s, "--resume (start over with --force, or delete that file and resume)");
        if (*last < 0) *last = i;
    }
    return STEM_OK;
}

/* ---- options and metrics as JSON ------------------------------------------------------- */

static json_object *options_json(const invert_args *a, const stem_frames *fr) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "model", json_object_new_string(a->model));
    if (a->model_config) json_object_object_add(o, "model_config", json_object_new_string(a->model_config));
    json_object_object_add(o, "frames", json_object_new_string(a->frames));
    json_object_object_add(o, "prompt", json_object_new_string(a->prompt));
    json_object_object_add(o, "n_frames", json_object_new_int(fr->count));
    json_object_object_add(o, "width", json_object_new_int(fr->width));
    json_object_object_add(o, "height", json_object_new_int(fr->height));
    json_object_object_add(o, "steps", json_object_new_int(a->inv.steps));
    json_object_object_add(o, "attention", json_object_new_string(stem_sa_mode_name(a->inv.sa.mode)));
    json_object_object_add(o, "em_scope", json_object_new_string(stem_em_scope_name(a->inv.sa.scope)));
    json_object_object_add(o, "batch_size", json_object_new_int64(a->inv.sa.batch_size));
    json_object_object_add(o, "bases", json_object_new_int64(a->inv.sa.em.bases));
    json_object_object_add(o, "em_iters", json_object_new_int64(a->inv.sa.em.iters));
    json_object_object_add(o, "tau", json_object_new_double(a->inv.sa.em.tau));
    json_object_object_add(o, "seed", json_object_new_uint64(a->inv.sa.em.seed));
    json_object_object_add(o, "backend", json_object_new_string(a->backend));
    json_object_object_add(o, "dtype", json_object_new_string(a->dtype == STEM_F16 ? "f16" : "f32"));
    json_object_object_add(o, "frames_per_unet_evaluation", json_object_new_int64(a->inv.unet_frames));
    /* true: each evaluation takes all frames, its modules the count above at a time */
    json_object_object_add(o, "layer_major_unet", json_object_new_boolean(stem_invert_layer_major(&a->inv, fr->count)));
    json_object_object_add(o, "quantize", json_object_new_string(a->quantize == STEM_QUANTIZE_ROUND ? "round" : "truncate"));
    if (a->config) json_object_object_add(o, "config", json_object_new_string(a->config));
    return o;
}

static json_object *metrics_json(const stem_video_metrics *m) {
    json_object *o = json_object_new_object(), *psnr = json_object_new_array(), *ssim = json_object_new_array();
    for (int i = 0; i < m->frames; i++) {
        json_object_array_add(psnr, json_object_new_double(m->psnr[i]));
        json_object_array_add(ssim, json_object_new_double(m->ssim[i]));
    }
    json_object_object_add(o, "psnr_db", psnr);
    json_object_object_add(o, "ssim", ssim);
    json_object_object_add(o, "mean_psnr_db", json_object_new_double(m->mean_psnr));
    json_object_object_add(o, "mean_ssim", json_object_new_double(m->mean_ssim));
    json_object_object_add(o, "temporal_mad", json_object_new_double(m->temporal));
    return o;
}

static stem_status write_json(const char *path, json_object *o) {
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
    return stem_atomic_write(path, text, strlen(text));
}

/* Options must match an interrupted run's to resume it (bit-identical results). */
static stem_status check_resume_options(const char *dir, json_object *options) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/options.json", dir);
    json_object *old = json_object_from_file(path);
    if (!old) return stem_fail(STEM_E_ARG, "--resume: %s has no readable options.json; start over with --force", dir);
    stem_status s = stem_resume_compare_options(path, old, options);
    json_object_put(old);
    return s;
}

/* ---- before the first step: what the run will write ------------------------------------- */

/* Sizes and outputs, all decided (and checked) before the first UNet evaluation, so
 * that a run does not fail at its end for a reason it could have seen at its start. */
typedef struct output_plan {
    stem_frame_geometry geo; /* input -> latents -> UNet levels -> decoded frames */
    bool cropped;            /* decoded frames smaller than the input: metrics on its top-left */
    bool video;              /* recon.mp4 */
    const char *no_video;    /* why not, when !video */
    bool metrics;            /* PSNR/SSIM/temporal (SSIM needs 11x11) */
    char input_size[48], output_size[48], metrics_region[128];
} output_plan;

static stem_status plan_outputs(const invert_args *a, const stem_pipeline *p, const stem_frames *fr, output_plan *o) {
    memset(o, 0, sizeof *o);
    stem_status s = stem_pipeline_geometry(p, fr->height, fr->width, &o->geo);
    if (s != STEM_OK) return stem_error_context(s, "%s (choose another --width/--height)", a->frames);
    const int w = (int)o->geo.out_w, h = (int)o->geo.out_h;
    o->cropped = w != fr->width || h != fr->height;
    o->metrics = w >= 11 && h >= 11;
    snprintf(o->input_size, sizeof o->input_size, "%dx%d", fr->width, fr->height);
    snprintf(o->output_size, sizeof o->output_size, "%dx%d", w, h);
    snprintf(o->metrics_region, sizeof o->metrics_region, "top-left %dx%d of the input%s", w, h,
             o->cropped ? "" : " (all of it)");
    long sheet_w, sheet_h;
    s = stem_contact_sheet_size(3, 4, fr->count, h, w, &sheet_w, &sheet_h);
    if (s != STEM_OK) return stem_error_context(s, "%dx%d output frames (choose a smaller --width/--height)", w, h);
    o->video = stem_video_write_available() && w % 2 == 0 && h % 2 == 0;
    o->no_video = !stem_video_write_available() ? "built without FFmpeg" : o->video ? NULL : "odd frame size";
    if (o->video) {
        char path[PATH_MAX + 16];
        snprintf(path, sizeof path, "%s/recon.mp4", a->out);
        STEM_TRY(stem_video_write_check(path, w, h, a->fps));
    }
    return STEM_OK;
}

/* ---- the manifest ---------------------------------------------------------------------- */

typedef struct run_results {
    const stem_pipeline *p;
    const output_plan *out;
    size_t mem_limit;
    double t_start, t_encode, t_decode;
    bool resumed;
    const stem_video_metrics *rec, *vae, *rec_vae;
} run_results;

static json_object *manifest_json(const invert_args *a, const run_state *st, json_object *options,
                                  const run_results *r) {
    stem_backend *be = st->be;
    json_object *manifest = json_object_new_object();
    json_object_object_add(manifest, "tool", json_object_new_string("stem invert " STEM_VERSION));
    json_object_object_add(manifest, "options", json_object_get(options));
    json_object *env = json_object_new_object();
    json_object_object_add(env, "backend", json_object_new_string(be->ops->describe(be)));
    json_object_object_add(env, "openblas_core", json_object_new_string(stem_blas_core_name()));
    json_object_object_add(env, "threads", json_object_new_int(stem_num_threads()));
    json_object_object_add(env, "json_c", json_object_new_string(json_c_version()));
    json_object_object_add(env, "libpng", json_object_new_string(png_get_libpng_ver(NULL)));
    json_object_object_add(env, "mem_limit_bytes", json_object_new_uint64(r->mem_limit));
    /* the UNet's activations (and, layer-major, the all-frame state): the --mem-limit budget */
    json_object_object_add(env, "unet_activation_peak_bytes", json_object_new_uint64(stem_arena_peak(r->p->arena)));
    if (st->device_used_peak)
        json_object_object_add(env, "device_memory_peak_bytes", json_object_new_uint64(st->device_used_peak));
    json_object_object_add(manifest, "environment", env);
    json_object *model = json_object_new_object();
    json_object_object_add(model, "path", json_object_new_string(a->model));
    char fingerprint[17];
    if (a->model_config) json_object_object_add(model, "config", json_object_new_string(a->model_config));
    if (stem_model_fingerprint(a->model, a->model_config, fingerprint) == STEM_OK)
        json_object_object_add(model, "fingerprint_fnv1a64", json_object_new_string(fingerprint));
    if (r->p->single_file) { /* what a single file does not hold */
        json_object_object_add(model, "tokenizer", json_object_new_string(r->p->tokenizer_from));
        json_object_object_add(model, "scheduler", json_object_new_string(r->p->scheduler_from));
    }
    json_object_object_add(model, "unet_parameters", json_object_new_int64(stem_unet_param_count(r->p->unet)));
    char lat[64];
    snprintf(lat, sizeof lat, "%lldx%lld", (long long)r->out->geo.latent_w, (long long)r->out->geo.latent_h);
    json_object_object_add(model, "latent_size", json_object_new_string(lat));
    json_object_object_add(manifest, "model", model);
    /* frames/input is the input; frames/vae, frames/recon, recon.mp4, sheet.png the output size */
    json_object *sizes = json_object_new_object();
    json_object_object_add(sizes, "input", json_object_new_string(r->out->input_size));
    json_object_object_add(sizes, "output", json_object_new_string(r->out->output_size));
    json_object_object_add(sizes, "vae_factor", json_object_new_int(r->out->geo.factor));
    json_object_object_add(sizes, "metrics_region", json_object_new_string(r->out->metrics_region));
    json_object_object_add(manifest, "frame_sizes", sizes);
    json_object *timing = json_object_new_object();
    json_object_object_add(timing, "vae_encode_s", json_object_new_double(r->t_encode));
    json_object_object_add(timing, "inversion_s", json_object_new_double(st->seconds[0]));
    json_object_object_add(timing, "reconstruction_s", json_object_new_double(st->seconds[1]));
    json_object_object_add(timing, "vae_decode_s", json_object_new_double(r->t_decode));
    json_object_object_add(timing, "total_s", json_object_new_double(stem_now_seconds() - r->t_start));
    json_object_object_add(timing, "resumed", json_object_new_boolean(r->resumed));
    json_object_object_add(manifest, "timing", timing);
    if (r->out->metrics) {
        json_object *metrics = json_object_new_object();
        json_object_object_add(metrics, "reconstruction_vs_input", metrics_json(r->rec));
        json_object_object_add(metrics, "vae_roundtrip_vs_input", metrics_json(r->vae));
        json_object_object_add(metrics, "reconstruction_vs_vae_roundtrip", metrics_json(r->rec_vae));
        json_object_object_add(manifest, "metrics", metrics);
    }
    return manifest;
}

/* ---- the command ------------------------------------------------------------------------ */

static stem_status host_copy(const stem_tensor *t, stem_tensor *host) {
    return stem_tensor_to(t, stem_cpu_backend(), STEM_F32, host);
}

/* What the frames will be, before any is decoded at the requested size: the request
 * (the first frame's size when --width/--height or the config leave it open) and the
 * count (an upper bound for a video, which is counted only by decoding it). */
static stem_status probe_frames(invert_args *a, stem_frames_request *req, int *expected) {
    *req = (stem_frames_request){.path = a->frames, .n_frames = a->n_frames, .n_frames_name = a->n_frames_name,
                                 .width = a->width, .height = a->height, .note = invert_note_to_stderr,
                                 .note_user = &a->quiet};
    stem_frame_source *src;
    STEM_TRY(stem_frame_source_open(a->frames, invert_note_to_stderr, &a->quiet, &src));
    stem_status s = STEM_OK;
    int count = stem_frame_source_count(src); /* -1: a video */
    *expected = a->n_frames;
    if (!*expected || (count > 0 && count < *expected)) *expected = count > 0 ? count : 1;
    if (!req->width || !req->height) {
        stem_image first = {0};
        bool done = false;
        s = stem_frame_source_next(src, &first, &done);
        if (s == STEM_OK && done) s = stem_fail(STEM_E_FORMAT, "%s: no frames", a->frames);
        if (s == STEM_OK) {
            if (!req->width) req->width = first.width;
            if (!req->height) req->height = first.height;
        }
        stem_image_free(&first);
    }
    stem_frame_source_close(src);
    return s;
}

static stem_status load_frames(const invert_args *a, const stem_frames_request *req, stem_frames *fr) {
    STEM_TRY(stem_frames_load(req, fr));
    if (fr->mixed_sizes && !a->quiet)
        fprintf(stderr, "stem: warning: %s: frames differ in size; each was resized to %dx%d\n", a->frames, fr->width,
                fr->height);
    return STEM_OK;
}


int cmd_invert(int argc, char **argv) {
    invert_args a;
    int rc = invert_parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    if (a.threads) stem_set_num_threads(a.threads);

    struct stat st_out;
    stem_status s = cli_output_check(a.out, a.force, a.resume); /* --force replaces only stem's own output */
    if (s != STEM_OK) return cli_report(s);
    stem_backend *be;
    if ((rc = cli_open_backend(a.backend, &be)) != 0) return rc;

    run_results res = {.t_start = stem_now_seconds()};
    stem_frames fr = {0};
    stem_pipeline p;
    bool have_pipeline = false;
    stem_outdir od = {0};
    /* pixels: the input [F, 3, H, W] on the backend; dec: decoder output [F, 3, out_h, out_w]
     * on the backend, for z0 and then for x; host_in: the input's region the outputs cover */
    stem_tensor pixels = {0}, z0 = {0}, x = {0}, context = {0}, dec = {0}, host_vae = {0}, host_rec = {0},
                host_in_crop = {0};
    stem_video_metrics m_rec = {0}, m_vae = {0}, m_rec_vae = {0};
    json_object *options = NULL, *manifest = NULL;
    stem_ddim ddim = {0};
    run_state st = {.args = &a};
    output_plan out;
    char path[PATH_MAX + 64];

    /* everything that can be known before the first step is checked before it: the frames
     * (and their count), the model's components, the sizes through the VAE and the UNet,
     * the outputs, the memory plan, the output folder */
    stem_frames_request req;
    int expected_frames;
    if ((s = probe_frames(&a, &req, &expected_frames)) != STEM_OK) goto fail;
    if (!a.quiet)
        fprintf(stderr, "stem invert: model %s%s on %s\n", a.model,
                a.model_is_default ? " (bundled tiny shapes model; real SD 1.5 / 2.1: --model DIR or STEM_MODEL)" : "",
                be->ops->describe(be));
    if ((s = stem_pipeline_load_config(a.model, a.model_config, be, a.dtype, &p)) != STEM_OK) goto fail;
    have_pipeline = true;
    if (p.single_file && !a.quiet)
        fprintf(stderr, "stem invert: single-file checkpoint: tokenizer: %s; scheduler: %s\n", p.tokenizer_from,
                p.scheduler_from);
    /* the memory plan (cli/invert_memory.c) before any frame is decoded at the requested
     * size (--width 8192 --height 8192 ran 64 s and took 6.6 GB before the message), and
     * again below for the frames actually read */
    res.mem_limit = a.mem_limit ? a.mem_limit : cli_default_mem_limit(be);
    if ((s = cli_invert_plan(&p, &a.inv, expected_frames, req.width, req.height, res.mem_limit, false)) != STEM_OK)
        goto fail;
    if ((s = load_frames(&a, &req, &fr)) != STEM_OK) goto fail;
    if (!a.quiet) fprintf(stderr, "stem invert: %d frames %dx%d from %s\n", fr.count, fr.width, fr.height, a.frames);
    res.p = &p;
    res.out = &out;
    if ((s = plan_outputs(&a, &p, &fr, &out)) != STEM_OK) goto fail;
    if (out.cropped && !a.quiet)
        fprintf(stderr, "stem invert: the VAE (factor %d) decodes %s frames to %s: the outputs are %s, and the "
                "metrics compare them with the input's top-left %s\n", out.geo.factor, out.input_size,
                out.output_size, out.output_size, out.output_size);
    if (!out.video && !a.quiet) fprintf(stderr, "stem: note: no recon.mp4 (%s)\n", out.no_video);
    bool truncated = false;
    if ((s = stem_pipeline_encode_prompt(&p, a.prompt, &context, &truncated)) != STEM_OK) goto fail;
    if (truncated) fprintf(stderr, "stem: warning: the prompt is longer than 77 tokens and was truncated\n");
    if ((s = cli_invert_plan(&p, &a.inv, fr.count, fr.width, fr.height, res.mem_limit, !a.quiet)) != STEM_OK) goto fail;

    /* output folder: everything goes to DIR.partial and is renamed when complete; checked
     * again here, just before anything is removed (cli/output_dir.h) */
    if ((s = cli_output_check(a.out, a.force, a.resume)) != STEM_OK) goto fail;
    if (a.force && !a.resume && stat(a.out, &st_out) == 0 && (s = stem_remove_tree(a.out)) != STEM_OK) goto fail;
    if ((s = stem_outdir_begin(a.out, &od)) != STEM_OK) goto fail;
    if (od.reused && !a.resume) {
        if ((s = stem_remove_tree(od.partial)) != STEM_OK || (s = stem_outdir_begin(a.out, &od)) != STEM_OK) goto fail;
    }
    int stale = 0;
    if (a.resume && od.reused && (s = stem_resume_remove_stale_temps(od.partial, &stale)) != STEM_OK) goto fail;
    if (stale && !a.quiet)
        fprintf(stderr, "stem invert: removed %d stale temporary file%s (an interrupted write) from %s\n", stale,
                stale == 1 ? "" : "s", od.partial);
    st.dir = od.partial;
    st.be = be;
    options = options_json(&a, &fr);
    snprintf(path, sizeof path, "%s/options.json", od.partial);
    if (a.resume && od.reused) {
        if ((s = check_resume_options(od.partial, options)) != STEM_OK) goto fail;
    } else if ((s = write_json(path, options)) != STEM_OK) goto fail;
    snprintf(path, sizeof path, "%s/latents", od.partial);
    if ((s = stem_mkdirs(path)) != STEM_OK) goto fail;

    /* VAE encode: z0 [F, 4, h, w]; the round trip decode(z0) [F, 3, out_h, out_w] now, into
     * the buffer the reconstruction's decode reuses at the end */
    int64_t lshape[4] = {fr.count, p.vae.cfg.latent_channels, out.geo.latent_h, out.geo.latent_w};
    int64_t dshape[4] = {fr.count, 3, out.geo.out_h, out.geo.out_w};
    if ((s = stem_tensor_to(&fr.pixels, be, a.dtype, &pixels)) != STEM_OK ||
        (s = stem_tensor_new(be, a.dtype, 4, lshape, &z0)) != STEM_OK ||
        (s = stem_tensor_new(be, a.dtype, 4, lshape, &x)) != STEM_OK)
        goto fail;
    double t0 = stem_now_seconds();
    if ((s = stem_vae_encode(&p.vae, &pixels, &z0)) != STEM_OK) goto fail;
    res.t_encode = stem_now_seconds() - t0;
    stem_tensor_free(&pixels);
    t0 = stem_now_seconds();
    if ((s = stem_tensor_new(be, a.dtype, 4, dshape, &dec)) != STEM_OK || (s = stem_vae_decode(&p.vae, &z0, &dec)) != STEM_OK ||
        (s = host_copy(&dec, &host_vae)) != STEM_OK)
        goto fail;
    res.t_decode = stem_now_seconds() - t0;
    const stem_tensor *host_in = &fr.pixels; /* what the outputs are compared with */
    if (out.cropped) {
        if ((s = stem_pixels_crop(&fr.pixels, out.geo.out_h, out.geo.out_w, &host_in_crop)) != STEM_OK) goto fail;
        host_in = &host_in_crop;
    }
    static const char *const frame_dirs[3] = {"input", "vae", "recon"};
    const stem_tensor *written[2] = {&fr.pixels, &host_vae}; /* frames/input: the input as encoded */
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/frames/%s", od.partial, frame_dirs[i]);
        if ((s = stem_frames_write_dir(path, written[i], a.quantize)) != STEM_OK) goto fail;
    }

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    if ((s = stem_ddim_init(&ddim, &p.schedule, a.inv.steps)) != STEM_OK) goto fail;

    /* inversion (resuming after the last saved step when there is one) */
    int last_inv = -1, last_rec = -1;
    if (a.resume && (s = find_resume_point(od.partial, STEM_PHASE_INVERSION, &ddim, &x, &last_inv)) != STEM_OK) goto fail;
    if (last_inv < 0 && (s = stem_tensor_copy(&z0, &x)) != STEM_OK) goto fail;
    if (a.resume && last_inv == ddim.steps - 1 &&
        (s = find_resume_point(od.partial, STEM_PHASE_RECONSTRUCTION, &ddim, &x, &last_rec)) != STEM_OK)
        goto fail;
    res.resumed = last_inv >= 0 || last_rec >= 0;
    if (a.resume && !a.quiet)
        fprintf(stderr, "stem invert: resuming after inversion step %d/%d, reconstruction step %d/%d\n", last_inv + 1,
                ddim.steps, last_rec + 1, ddim.steps);
    t0 = stem_now_seconds();
    stem_progress_begin(&st.progress, "inversion", a.inv.steps, a.quiet);
    if (last_inv + 1 < a.inv.steps) {
        stem_progress_update(&st.progress, last_inv + 1);
        s = stem_invert_latents(&p, &context, &a.inv, last_inv + 1, &x, on_step, &st);
        if (s != STEM_OK) goto fail;
    }
    stem_progress_end(&st.progress);
    st.seconds[0] = stem_now_seconds() - t0;

    /* reconstruction from x_T with the same attention */
    t0 = stem_now_seconds();
    stem_progress_begin(&st.progress, "reconstruction", a.inv.steps, a.quiet);
    if (last_rec + 1 < a.inv.steps) {
        stem_progress_update(&st.progress, last_rec + 1);
        s = stem_reconstruct_latents(&p, &context, &a.inv, last_rec + 1, &x, on_step, &st);
        if (s != STEM_OK) goto fail;
    }
    stem_progress_end(&st.progress);
    st.seconds[1] = stem_now_seconds() - t0;

    /* decode the reconstruction (x) */
    t0 = stem_now_seconds();
    if ((s = stem_vae_decode(&p.vae, &x, &dec)) != STEM_OK || (s = host_copy(&dec, &host_rec)) != STEM_OK) goto fail;
    res.t_decode += stem_now_seconds() - t0;
    sample_device_memory(&st);

    /* frames, video, sheet, metrics: all at the output size, against the input's region */
    snprintf(path, sizeof path, "%s/frames/%s", od.partial, frame_dirs[2]);
    if ((s = stem_frames_write_dir(path, &host_rec, a.quantize)) != STEM_OK) goto fail;
    if (out.video) {
        snprintf(path, sizeof path, "%s/recon.mp4", od.partial);
        if ((s = stem_video_write(path, &host_rec, a.fps, a.quantize)) != STEM_OK) goto fail;
    }
    const stem_tensor *columns[3] = {host_in, &host_vae, &host_rec};
    snprintf(path, sizeof path, "%s/sheet.png", od.partial);
    if ((s = stem_contact_sheet_write(path, columns, 3, 4)) != STEM_OK) goto fail;
    if (out.metrics && ((s = stem_video_metrics_compute(host_in, &host_rec, &m_rec)) != STEM_OK ||
                        (s = stem_video_metrics_compute(host_in, &host_vae, &m_vae)) != STEM_OK ||
                        (s = stem_video_metrics_compute(&host_vae, &host_rec, &m_rec_vae)) != STEM_OK))
        goto fail;
    res.rec = &m_rec;
    res.vae = &m_vae;
    res.rec_vae = &m_rec_vae;
    manifest = manifest_json(&a, &st, options, &res);
    snprintf(path, sizeof path, "%s/manifest.json", od.partial);
    if ((s = write_json(path, manifest)) != STEM_OK) goto fail;
    if ((s = stem_outdir_commit(&od, a.force || a.resume)) != STEM_OK) goto fail;

    if (out.metrics)
        printf("reconstruction vs input:  PSNR %.2f dB  SSIM %.4f  temporal %.5f\n"
               "VAE round trip vs input:  PSNR %.2f dB  SSIM %.4f  temporal %.5f\n"
               "reconstruction vs VAE:    PSNR %.2f dB  SSIM %.4f\n",
               m_rec.mean_psnr, m_rec.mean_ssim, m_rec.temporal, m_vae.mean_psnr, m_vae.mean_ssim, m_vae.temporal,
               m_rec_vae.mean_psnr, m_rec_vae.mean_ssim);
    printf("wrote %s (manifest.json, latents/, frames/, sheet.png%s) in %.1f s\n", a.out, out.video ? ", recon.mp4" : "",
           stem_now_seconds() - res.t_start);
    if (a.model_is_default)
        printf("this was the bundled tiny model (trained on 64x64 synthetic shapes only): for real videos, download "
               "Stable Diffusion 1.5 or 2.1-base as a diffusers folder and pass --model DIR (or set STEM_MODEL)\n");
    rc = 0;
    goto done;
fail:
    rc = cli_report(s);
    if (od.partial && !a.quiet && st.dir)
        fprintf(stderr, "stem invert: partial results stay in %s (not a finished run); --resume continues it\n",
                od.partial);
done:
    if (options) json_object_put(options);
    if (manifest) json_object_put(manifest);
    stem_video_metrics_free(&m_rec);
    stem_video_metrics_free(&m_vae);
    stem_video_metrics_free(&m_rec_vae);
    stem_ddim_free(&ddim);
    stem_tensor_free(&pixels);
    stem_tensor_free(&z0);
    stem_tensor_free(&x);
    stem_tensor_free(&context);
    stem_tensor_free(&dec);
    stem_tensor_free(&host_vae);
    stem_tensor_free(&host_rec);
    stem_tensor_free(&host_in_crop);
    if (have_pipeline) stem_pipeline_free(&p);
    stem_frames_free(&fr);
    stem_outdir_free(&od);
    stem_backend_close(be);
    return rc;
}
