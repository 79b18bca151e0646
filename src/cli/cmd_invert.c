/* `stem invert`: STEM inversion and DDIM reconstruction of a whole video, with quality
 * metrics, a contact sheet and a manifest; resumable; atomic output.
 *
 * The job, step by step (cli_invert_run):
 *   load         probe the frames, load the model, plan memory, decode the frames, plan
 *                the outputs, encode the prompt, plan memory for the frames read
 *   begin        DIR.partial: options.json, or --resume's checks of an interrupted run
 *   encode       VAE: z0, and its round trip written as frames/vae (with frames/input)
 *   invert       z0 -> x_T, each step's latents saved (latents/inv_*)
 *   reconstruct  x_T -> z0', each step's latents saved (latents/rec_*)
 *   decode       VAE: the reconstruction
 *   write        frames/recon, recon.mp4, sheet.png, metrics, manifest.json; DIR.partial -> DIR
 * Everything that can be known before the first step is checked before it: the frames
 * and their count, the model's components, the sizes through the VAE and the UNet, the
 * outputs, the memory plan, the output folder. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "backends/backends.h"
#include "cli/invert_job.h"
#include "cli/invert_memory.h"
#include "cli/output_dir.h"
#include "core/host.h"

#define CMD "stem invert"

int cmd_invert(int argc, char **argv) {
    invert_args a;
    int rc = invert_parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    if (a.v.threads) stem_set_num_threads(a.v.threads);
    return a.dry_run ? cli_invert_dry_run(&a) : cli_invert_run(&a, NULL);
}

/* ---- load: frames, model, plans ---------------------------------------------------------- */

static stem_status job_load(invert_job *j) {
    const cli_video_args *v = &j->a->v;
    STEM_TRY(cli_frames_probe_open(v, &j->probe));
    if (!j->p) {
        STEM_TRY(cli_model_open(CMD, v, j->be, &j->own_pipeline));
        j->p = &j->own_pipeline;
        j->loaded = true;
    }
    /* the memory plan (cli/invert_memory.c) before any frame is decoded at the requested
     * size (--width 8192 --height 8192 ran 64 s and took 6.6 GB before the message), and
     * again below for the frames actually read */
    j->mem_limit = v->mem_limit ? v->mem_limit : cli_default_mem_limit(j->be);
    STEM_TRY(cli_invert_plan(j->p, &j->inv, j->probe.expected, j->probe.req.width, j->probe.req.height, j->mem_limit,
                             false));
    STEM_TRY(cli_frames_load(v, &j->probe, &j->fr));
    if (!v->quiet)
        fprintf(stderr, CMD ": %d frames %dx%d from %s\n", j->fr.count, j->fr.width, j->fr.height, v->frames);
    STEM_TRY(invert_plan_outputs(j));
    const invert_output_plan *out = &j->out;
    if (out->cropped && !v->quiet)
        fprintf(stderr, CMD ": the VAE (factor %d) decodes %s frames to %s: the outputs are %s, and the metrics "
                "compare them with the input's top-left %s\n", out->geo.factor, out->input_size, out->output_size,
                out->output_size, out->output_size);
    if (!out->video && !v->quiet) fprintf(stderr, "stem: note: no recon.mp4 (%s)\n", out->no_video);
    bool truncated = false;
    STEM_TRY(stem_pipeline_encode_prompt(j->p, j->a->prompt, &j->context, &truncated));
    if (truncated) fprintf(stderr, "stem: warning: the prompt is longer than 77 tokens and was truncated\n");
    return cli_invert_plan(j->p, &j->inv, j->fr.count, j->fr.width, j->fr.height, j->mem_limit, !v->quiet);
}

/* ---- begin: the output folder -------------------------------------------------------------- */

static stem_status job_begin(invert_job *j) {
    const cli_video_args *v = &j->a->v;
    j->options = invert_options_json(j);
    STEM_TRY(cli_output_begin(CMD, v->out, v->force, v->resume, v->quiet, j->options, &j->od));
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/latents", j->od.partial);
    STEM_TRY(stem_mkdirs(path));
    STEM_TRY(stem_ddim_init(&j->ddim, &j->p->schedule, j->inv.steps));
    STEM_TRY(stem_latent_store_for_phase(&j->stores[0], path, STEM_PHASE_INVERSION, &j->ddim));
    return stem_latent_store_for_phase(&j->stores[1], path, STEM_PHASE_RECONSTRUCTION, &j->ddim);
}

/* ---- encode: z0 and the VAE round trip ------------------------------------------------------- */

static stem_status host_copy(const stem_tensor *t, stem_tensor *host) {
    return stem_tensor_to(t, stem_host(), STEM_F32, host);
}

/* z0 [F, 4, h, w]; the round trip decode(z0) [F, 3, out_h, out_w] now, into the buffer
 * the reconstruction's decode reuses at the end; frames/input (the input as encoded) and
 * frames/vae */
static stem_status job_encode(invert_job *j) {
    const stem_dtype dt = j->p->dtype; /* --dtype, or the given pipeline's */
    const stem_frame_geometry *g = &j->out.geo;
    int64_t lshape[4] = {j->fr.count, j->p->vae.cfg.latent_channels, g->latent_h, g->latent_w};
    int64_t dshape[4] = {j->fr.count, 3, g->out_h, g->out_w};
    stem_tensor pixels = {0}; /* the input [F, 3, H, W] on the backend, until encoded */
    STEM_TRY(stem_tensor_to(&j->fr.pixels, j->be, dt, &pixels));
    stem_status s = stem_tensor_new(j->be, dt, 4, lshape, &j->z0);
    if (s == STEM_OK) s = stem_tensor_new(j->be, dt, 4, lshape, &j->x);
    double t0 = stem_now_seconds();
    if (s == STEM_OK) s = stem_vae_encode(&j->p->vae, &pixels, &j->z0);
    j->t_encode = stem_now_seconds() - t0;
    stem_tensor_free(&pixels);
    STEM_TRY(s);
    t0 = stem_now_seconds();
    STEM_TRY(stem_tensor_new(j->be, dt, 4, dshape, &j->dec));
    STEM_TRY(stem_vae_decode(&j->p->vae, &j->z0, &j->dec));
    STEM_TRY(host_copy(&j->dec, &j->host_vae));
    j->t_decode = stem_now_seconds() - t0;
    if (j->out.cropped) STEM_TRY(stem_pixels_crop(&j->fr.pixels, g->out_h, g->out_w, &j->host_in_crop));
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/frames/input", j->od.partial);
    STEM_TRY(stem_frames_write_dir(path, &j->fr.pixels, j->a->quantize));
    snprintf(path, sizeof path, "%s/frames/vae", j->od.partial);
    return stem_frames_write_dir(path, &j->host_vae, j->a->quantize);
}

/* ---- invert, reconstruct: the DDIM loops, each step saved ------------------------------------ */

static stem_status on_step(void *user, stem_phase phase, int step, int steps, int t, const stem_tensor *x) {
    invert_job *j = user;
    (void)t;
    STEM_TRY(stem_latent_store_save(&j->stores[phase == STEM_PHASE_INVERSION ? 0 : 1], step, x));
    cli_device_peak_sample(&j->device);
    /* on interruption the last progress line shows the step the message names (a log
     * gets a line only every few seconds: it said 15 where the message said 16) */
    if (cli_interrupted()) stem_progress_show(&j->progress, step + 1);
    else stem_progress_update(&j->progress, step + 1);
    if (cli_interrupted())
        return stem_fail(STEM_E_IO, "interrupted after %s step %d of %d; the steps so far are saved: run the same "
                         "command with --resume to continue", stem_phase_name(phase), step + 1, steps);
    return STEM_OK;
}

/* The last saved step of a store (-1: none), its latents loaded into x. */
static stem_status resume_point(invert_job *j, int which, int *last) {
    stem_status s = stem_latent_store_resume_point(&j->stores[which], &j->x, last);
    if (s != STEM_OK) stem_error_context(s, "--resume (start over with --force, or delete that file and resume)");
    return s;
}

/* One loop from step first; its time into seconds[which]. */
static stem_status run_loop(invert_job *j, int which, int first) {
    const double t0 = stem_now_seconds();
    stem_progress_begin(&j->progress, which == 0 ? "inversion" : "reconstruction", j->inv.steps, j->a->v.quiet);
    if (first < j->inv.steps) {
        stem_progress_update(&j->progress, first);
        STEM_TRY(which == 0 ? stem_invert_latents(j->p, &j->context, &j->inv, first, &j->x, on_step, j)
                            : stem_reconstruct_latents(j->p, &j->context, &j->inv, first, &j->x, on_step, j));
    }
    stem_progress_end(&j->progress);
    j->seconds[which] = stem_now_seconds() - t0;
    return STEM_OK;
}

/* inversion, resuming after the last saved step when there is one, then the
 * reconstruction from x_T with the same attention */
static stem_status job_invert_and_reconstruct(invert_job *j) {
    const bool resume = j->a->v.resume;
    int last_inv = -1, last_rec = -1;
    cli_interrupt_catch();
    if (resume) STEM_TRY(resume_point(j, 0, &last_inv));
    if (last_inv < 0) STEM_TRY(stem_tensor_copy(&j->z0, &j->x));
    if (resume && last_inv == j->ddim.steps - 1) STEM_TRY(resume_point(j, 1, &last_rec));
    j->resumed = last_inv >= 0 || last_rec >= 0;
    if (resume && !j->a->v.quiet)
        fprintf(stderr, CMD ": resuming after inversion step %d/%d, reconstruction step %d/%d\n", last_inv + 1,
                j->ddim.steps, last_rec + 1, j->ddim.steps);
    STEM_TRY(run_loop(j, 0, last_inv + 1));
    return run_loop(j, 1, last_rec + 1);
}

/* ---- decode ----------------------------------------------------------------------------------- */

static stem_status job_decode(invert_job *j) {
    const double t0 = stem_now_seconds();
    STEM_TRY(stem_vae_decode(&j->p->vae, &j->x, &j->dec));
    STEM_TRY(host_copy(&j->dec, &j->host_rec));
    j->t_decode += stem_now_seconds() - t0;
    cli_device_peak_sample(&j->device);
    return STEM_OK;
}

/* ---- the job ---------------------------------------------------------------------------------- */

static void job_free(invert_job *j) {
    if (j->options) json_object_put(j->options);
    stem_video_metrics_free(&j->m_rec);
    stem_video_metrics_free(&j->m_vae);
    stem_video_metrics_free(&j->m_rec_vae);
    stem_ddim_free(&j->ddim);
    stem_tensor *tensors[] = {&j->z0, &j->x, &j->context, &j->dec, &j->host_vae, &j->host_rec, &j->host_in_crop};
    for (size_t i = 0; i < sizeof tensors / sizeof *tensors; i++) stem_tensor_free(tensors[i]);
    if (j->loaded) stem_pipeline_free(&j->own_pipeline);
    stem_frames_free(&j->fr);
    stem_outdir_free(&j->od);
    if (j->own_backend) stem_backend_close(j->be);
}

int cli_invert_run(const invert_args *a, stem_pipeline *p) {
    invert_job j = {.a = a, .inv = a->inv, .p = p, .t_start = stem_now_seconds()};
    /* --force replaces only stem's own output: checked before any work, and again before
     * anything is removed (cli/output_dir.h) */
    stem_status s = cli_output_check(a->v.out, a->v.force, a->v.resume);
    if (s != STEM_OK) return cli_report(s);
    if (p) {
        j.be = p->be;
    } else {
        int rc = cli_open_backend(a->v.backend, &j.be);
        if (rc) return rc;
        j.own_backend = true;
    }
    j.device.be = j.be;
    size_t arena_mark = p ? stem_arena_mark(p->arena) : 0;
    if ((s = job_load(&j)) == STEM_OK && (s = job_begin(&j)) == STEM_OK && (s = job_encode(&j)) == STEM_OK &&
        (s = job_invert_and_reconstruct(&j)) == STEM_OK && (s = job_decode(&j)) == STEM_OK &&
        (s = invert_write_outputs(&j)) == STEM_OK)
        s = stem_outdir_commit(&j.od, a->v.force || a->v.resume);
    int rc = 0;
    if (s == STEM_OK) {
        invert_print_summary(&j);
    } else {
        rc = cli_report(s);
        if (j.od.partial && !a->v.quiet)
            fprintf(stderr, CMD ": partial results stay in %s (not a finished run); --resume continues it\n",
                    j.od.partial);
    }
    if (p) stem_arena_reset(p->arena, arena_mark);
    job_free(&j);
    return rc;
}
