/* `stem edit`: TokenFlow editing (doc/algorithm.md §7) of a STEM-inverted video, inverting
 * it first when no inversion is given; resumable; atomic output.
 *
 * The job, step by step:
 *   locate       the inversion: --inversion DIR (or the config's latents_path), read and
 *                checked against the options; or the one this run makes (OUT/inversion)
 *   load         the model (the inversion's), its latents checked, the memory plan (of
 *                the frames an inversion to make will read), the outputs
 *   begin        OUT.partial: options.json, or --resume's checks of an interrupted run
 *   invert       without an inversion: `stem invert`'s job in-process, on the same model,
 *                into OUT.partial/inversion (resumed there with --resume)
 *   x_T          from the VAE encoding of the inversion's frames and its last latents
 *   edit         stem_edit_latents; each step's latents saved (latents/edit_*)
 *   write        decode; frames/edit, edit.mp4, sheet.png, metrics, manifest.json;
 *                OUT.partial -> OUT
 * Everything that can be known before the first step is checked before it, and an
 * existing inversion before anything is written. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backends/backends.h"
#include "cli/cli.h"
#include "cli/edit_job.h"
#include "cli/edit_plan.h"
#include "cli/output_dir.h"
#include "cli/video_input.h"
#include "io/frames.h"
#include "io/video_write.h"

#define CMD "stem edit"

/* After each pass (x NULL): progress, and Ctrl-C stops there (the step's work so far is
 * dropped). After each step: its latents are saved, then Ctrl-C stops. */
static stem_status on_step(void *user, int step, int steps, int t, int pass, int passes, const stem_tensor *x) {
    edit_job *j = user;
    (void)t;
    const int done = (step - j->first_step) * passes + (x ? passes : pass + 1);
    if (!x) {
        if (!cli_interrupted()) {
            stem_progress_update(&j->progress, done);
            return STEM_OK;
        }
        stem_progress_show(&j->progress, done);
        return stem_fail(STEM_E_IO, "interrupted during editing step %d of %d; %s: run the same command with "
                         "--resume to continue", step + 1, steps, step ? "the steps before it are saved"
                                                                       : "no step was finished");
    }
    STEM_TRY(stem_latent_store_save(&j->store, step, x));
    cli_device_peak_sample(&j->device);
    if (j->stop_after == step + 1) raise(SIGINT); /* the tests' deterministic Ctrl-C */
    if (!cli_interrupted()) return STEM_OK;       /* the last pass showed this count already */
    stem_progress_show(&j->progress, done);
    return stem_fail(STEM_E_IO, "interrupted after editing step %d of %d; the steps so far are saved: run the same "
                     "command with --resume to continue", step + 1, steps);
}

/* ---- load and begin ---------------------------------------------------------------------- */

static stem_status job_load(edit_job *j) {
    STEM_TRY(edit_job_load_model(j));
    if (!j->make) {
        STEM_TRY(edit_job_check_inversion(j));
        return edit_job_plan(j, j->inv.n_frames, j->inv.width, j->inv.height);
    }
    /* an inversion to make: the plan of the frames it will read (counted, not decoded) */
    cli_frames_probe probe;
    STEM_TRY(cli_frames_probe_open(&j->a.v, &probe));
    return edit_job_plan(j, probe.expected, probe.req.width, probe.req.height);
}

static stem_status job_begin(edit_job *j) {
    const cli_video_args *v = &j->a.v;
    j->options = edit_options_json(&j->a, &j->o);
    STEM_TRY(cli_output_begin(CMD, v->out, v->force, v->resume, v->quiet, j->options, &j->od));
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/latents", j->od.partial);
    return stem_mkdirs(path);
}

/* The inversion this run makes (or finished before it was interrupted), then read and
 * checked as a given one; the plan again for the frames it has (a video's count is known
 * only now): options.json follows when that changed it. */
static stem_status job_invert(edit_job *j) {
    struct stat st;
    char manifest[PATH_MAX + 32];
    snprintf(manifest, sizeof manifest, "%s/manifest.json", j->inv_dir);
    const double t0 = stem_now_seconds();
    if (!(j->a.v.resume && stat(manifest, &st) == 0)) STEM_TRY(edit_inversion_run(&j->a, j->inv_dir, &j->p));
    cli_interrupt_catch();
    j->rep.t_inversion = stem_now_seconds() - t0;
    STEM_TRY(edit_inversion_read(j->inv_dir, j->what, &j->inv));
    STEM_TRY(edit_inversion_check_args(&j->inv, &j->a));
    STEM_TRY(edit_job_check_inversion(j));
    const int64_t unet_frames = j->o.unet_frames;
    const bool on_host = j->o.cache_on_host;
    const bool quiet = j->a.v.quiet;
    j->a.v.quiet = true; /* said once already */
    stem_status s = edit_job_plan(j, j->inv.n_frames, j->inv.width, j->inv.height);
    j->a.v.quiet = quiet;
    STEM_TRY(s);
    if (j->o.unet_frames == unet_frames && j->o.cache_on_host == on_host) return STEM_OK;
    json_object_put(j->options);
    j->options = edit_options_json(&j->a, &j->o);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/options.json", j->od.partial);
    return cli_write_json(path, j->options);
}

/* ---- x_T and the loop -------------------------------------------------------------------- */

static stem_status job_edit(edit_job *j) {
    STEM_TRY(edit_job_encode_prompts(j));
    int64_t lshape[4] = {j->plan.frames_edited, j->p.vae.cfg.latent_channels, j->g.latent_h, j->g.latent_w};
    STEM_TRY(stem_tensor_new(j->be, j->p.dtype, 4, lshape, &j->x));
    STEM_TRY(edit_latents_store(j->od.partial, &j->ddim, &j->store));
    edit_source_init(&j->src, &j->inv, &j->ddim);
    int last = -1;
    if (j->a.v.resume) STEM_TRY(edit_latents_resume_point(&j->store, &j->x, &last));
    if (last < 0) STEM_TRY(edit_latents_initial(&j->p, &j->inv, &j->src, j->o.batch_size, &j->x, &j->rep.t_encode));
    j->first_step = j->rep.first_step = last + 1;
    if (j->od.reused && !j->a.v.quiet)
        fprintf(stderr, CMD ": resuming after editing step %d/%d\n", last + 1, j->o.steps);
    const char *stop = getenv("STEM_EDIT_TEST_INTERRUPT_AFTER_STEP");
    j->stop_after = stop ? atoi(stop) : 0;
    const stem_edit_inputs in = {.source = edit_source_read, .source_user = &j->src, .context_source = &j->ctx[0],
                                 .context_negative = &j->ctx[1], .context_target = &j->ctx[2]};
    const double t0 = stem_now_seconds();
    if (j->first_step < j->o.steps) {
        stem_progress_begin_units(&j->progress, "editing", (j->o.steps - j->first_step) * (int)(j->plan.chunks + 1),
                                  "pass", "passes (per step: 1 pivotal + 1 per chunk)", j->a.v.quiet);
        STEM_TRY(stem_edit_latents(&j->p, &in, &j->o, j->first_step, &j->x, NULL, on_step, j));
        stem_progress_end(&j->progress);
    }
    j->rep.t_edit = stem_now_seconds() - t0;
    j->rep.t_source = j->src.seconds;
    edit_source_free(&j->src);
    return STEM_OK;
}

/* ---- write ------------------------------------------------------------------------------- */

static stem_status job_write(edit_job *j) {
    char path[PATH_MAX + 32], final_inv[PATH_MAX + 16];
    double t0 = stem_now_seconds();
    STEM_TRY(edit_latents_decode(&j->p, &j->x, j->o.batch_size, j->g.out_h, j->g.out_w, &j->host));
    j->rep.t_decode = stem_now_seconds() - t0;
    cli_device_peak_sample(&j->device);
    t0 = stem_now_seconds();
    snprintf(path, sizeof path, "%s/frames/edit", j->od.partial);
    STEM_TRY(stem_frames_write_dir(path, &j->host, j->a.inv.quantize));
    if (j->rep.video) {
        snprintf(path, sizeof path, "%s/edit.mp4", j->od.partial);
        STEM_TRY(stem_video_write(path, &j->host, j->a.inv.fps, j->a.inv.quantize));
    }
    snprintf(path, sizeof path, "%s/sheet.png", j->od.partial);
    STEM_TRY(edit_outputs_compare(&j->inv, &j->host, path, &j->metrics));
    j->rep.t_outputs = stem_now_seconds() - t0;
    snprintf(final_inv, sizeof final_inv, "%s/inversion", j->a.v.out);
    j->rep.p = &j->p;
    j->rep.inv = &j->inv;
    j->rep.inversion_path = j->a.inversion ? j->inv.dir : final_inv;
    j->rep.inversion_made = j->make;
    j->rep.plan = &j->plan;
    j->rep.metrics = &j->metrics;
    j->rep.device = &j->device;
    j->manifest = edit_manifest_json(&j->a, j->options, &j->rep);
    snprintf(path, sizeof path, "%s/manifest.json", j->od.partial);
    STEM_TRY(cli_write_json(path, j->manifest));
    return stem_outdir_commit(&j->od, j->a.v.force || j->a.v.resume);
}

static void print_summary(const edit_job *j) {
    const edit_metrics *m = &j->metrics;
    const char *out = j->a.v.out;
    printf("temporal MAD vs input: edit %.5f, reconstruction %.5f (mean |frame difference|: input %.5f, edit %.5f)\n",
           m->temporal_edit, m->temporal_reconstruction, m->flicker_input, m->flicker_edit);
    printf("wrote %s: frames/edit/ (%lld frames), %ssheet.png (input | reconstruction | edit), latents/, manifest.json"
           "%s in %.1f s\n", out, (long long)j->plan.frames_edited, j->rep.video ? "edit.mp4, " : "",
           j->a.inversion ? "" : ", inversion/", stem_now_seconds() - j->rep.t_start);
    if (!j->a.inversion)
        printf("another edit of the same video reuses the inversion: stem edit --inversion %s/inversion --prompt ...\n",
               out);
    if (strstr(j->p.model_dir, "refdata/models/shapes-sd1"))
        printf("this was the bundled tiny model (trained on 64x64 synthetic shapes; it hardly follows text): for real "
               "videos pass --model DIR with Stable Diffusion 1.5 or 2.1-base (or set STEM_MODEL)\n");
}

static void job_free(edit_job *j) {
    if (j->options) json_object_put(j->options);
    if (j->manifest) json_object_put(j->manifest);
    edit_source_free(&j->src);
    stem_ddim_free(&j->ddim);
    for (int i = 0; i < 3; i++) stem_tensor_free(&j->ctx[i]);
    stem_tensor_free(&j->x);
    stem_tensor_free(&j->host);
    if (j->loaded) stem_pipeline_free(&j->p);
    stem_outdir_free(&j->od);
    if (j->be) stem_backend_close(j->be);
}

int cmd_edit(int argc, char **argv) {
    static edit_job job; /* large (paths); one per process */
    edit_job *j = &job;
    memset(j, 0, sizeof *j);
    int rc = edit_parse_args(argc, argv, &j->a);
    if (rc) return rc < 0 ? 0 : rc;
    if (j->a.v.threads) stem_set_num_threads(j->a.v.threads);
    if (j->a.dry_run) return edit_dry_run(&j->a);
    j->rep.t_start = stem_now_seconds();
    j->src.mapped_step = -1;
    stem_status s = cli_output_check(j->a.v.out, j->a.v.force, j->a.v.resume);
    if (s == STEM_OK) s = edit_job_locate(j); /* an existing inversion is checked before anything else */
    if (s != STEM_OK) return cli_report(s);
    if ((rc = cli_open_backend(j->a.v.backend, &j->be)) != 0) return rc;
    j->device.be = j->be;
    if ((s = job_load(j)) == STEM_OK && (s = job_begin(j)) == STEM_OK) {
        cli_interrupt_catch();
        if (!j->make || (s = job_invert(j)) == STEM_OK) {
            if (cli_interrupted())
                s = stem_fail(STEM_E_IO, "interrupted before editing; run the same command with --resume to continue");
            if (s == STEM_OK && (s = job_edit(j)) == STEM_OK) s = job_write(j);
        }
    }
    if (s == STEM_OK) {
        print_summary(j);
        rc = 0;
    } else {
        rc = cli_report(s);
        if (j->od.partial && !j->a.v.quiet)
            fprintf(stderr, CMD ": partial results stay in %s (not a finished run); --resume continues it\n",
                    j->od.partial);
    }
    job_free(j);
    return rc;
}
