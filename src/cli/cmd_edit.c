/* `stem edit`: TokenFlow editing (doc/algorithm.md §7) of a STEM-inverted video, inverting
 * it first when no inversion is given; resumable; atomic output. The steps of the job:
 * check the inversion (or make it), load the model, plan memory, encode the prompts, x_T,
 * the editing loop (latents saved after every step), decode, frames / video / sheet /
 * metrics, manifest, rename DIR.partial to DIR. */
#include <json-c/json.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/backends.h"
#include "cli/cli.h"
#include "cli/edit_args.h"
#include "cli/edit_inversion.h"
#include "cli/edit_latents.h"
#include "cli/edit_manifest.h"
#include "cli/edit_outputs.h"
#include "cli/edit_plan.h"
#include "cli/invert_memory.h"
#include "cli/output_dir.h"
#include "cli/progress.h"
#include "io/atomic_file.h"
#include "io/frames.h"
#include "io/video_write.h"
#include "pipeline/latent_file.h"
#include "pipeline/resume_check.h"

static volatile sig_atomic_t interrupted;
static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

typedef struct edit_state {
    const edit_args *a;
    const char *dir; /* OUT.partial */
    const stem_ddim *ddim;
    stem_progress progress;
    int first_step, stop_after; /* stop_after: STEM_EDIT_TEST_INTERRUPT_AFTER_STEP (tests), 0: none */
    stem_backend *be;
    size_t device_peak;
} edit_state;

static void sample_device_memory(edit_state *st) {
    size_t available = 0, total = 0;
    if (st->be->kind != STEM_BACKEND_CUDA || !st->be->ops->memory_info ||
        st->be->ops->memory_info(st->be, &available, &total) != STEM_OK)
        return;
    if (total - available > st->device_peak) st->device_peak = total - available;
}

/* After each pass (x NULL): progress, and Ctrl-C stops there (the step's work so far is
 * dropped). After each step: its latents are saved, then Ctrl-C stops. */
static stem_status on_step(void *user, int step, int steps, int t, int pass, int passes, const stem_tensor *x) {
    edit_state *st = user;
    const int done = (step - st->first_step) * passes + (x ? passes : pass + 1);
    if (!x) {
        if (!interrupted) {
            stem_progress_update(&st->progress, done);
            return STEM_OK;
        }
        stem_progress_show(&st->progress, done);
        return stem_fail(STEM_E_IO, "interrupted during editing step %d of %d; %s: run the same command with "
                         "--resume to continue", step + 1, steps, step ? "the steps before it are saved"
                                                                       : "no step was finished");
    }
    char path[PATH_MAX + 64];
    edit_latents_path(st->dir, st->ddim, step, path, sizeof path);
    STEM_TRY(stem_latent_file_save(path, x, STEM_PHASE_EDITING, step, t));
    sample_device_memory(st);
    if (st->stop_after == step + 1) raise(SIGINT); /* the tests' deterministic Ctrl-C */
    if (!interrupted) return STEM_OK; /* the last pass showed this count already */
    stem_progress_show(&st->progress, done);
    return stem_fail(STEM_E_IO, "interrupted after editing step %d of %d; the steps so far are saved: run the same "
                     "command with --resume to continue", step + 1, steps);
}

static stem_status write_json(const char *path, json_object *o) {
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
    return stem_atomic_write(path, text, strlen(text));
}

/* FreeU's gate matches some hidden-state width of the up path (every level's width
 * appears there): otherwise it never acts, as in the original on small UNets. */
static bool freeu_acts(const stem_pipeline *p, const stem_freeu_options *f) {
    const stem_unet_config *c = stem_unet_get_config(p->unet);
    for (int i = 0; i < c->levels; i++)
        if (c->block_out_channels[i] == f->gate1 || c->block_out_channels[i] == f->gate2) return true;
    return false;
}

static stem_status encode_prompts(stem_pipeline *p, const edit_args *a, const edit_inversion *inv, stem_tensor ctx[3],
                                  bool truncated[3]) {
    const char *text[3] = {inv->prompt, a->negative_prompt, a->prompt};
    static const char *const names[3] = {"the inversion prompt", "--negative-prompt", "--prompt"};
    for (int i = 0; i < 3; i++) {
        stem_status s = stem_pipeline_encode_prompt(p, text[i], &ctx[i], &truncated[i]);
        if (s != STEM_OK) return stem_error_context(s, "%s", names[i]);
        if (truncated[i])
            fprintf(stderr, "stem: warning: %s is longer than 77 CLIP tokens and was truncated (\"%.60s...\")\n",
                    names[i], text[i]);
    }
    return STEM_OK;
}

/* Where the inversion is, or where it will be made first (*make). */
static stem_status locate_inversion(const edit_args *a, char *dir, size_t len, bool *make) {
    struct stat st;
    if (a->inversion) {
        snprintf(dir, len, "%s", a->inversion);
        char p2[PATH_MAX + 16];
        snprintf(p2, sizeof p2, "%s.partial", a->inversion);
        /* the config's latents_path: made there when missing (stem invert --config writes it) */
        *make = a->inversion_from_config && stat(a->inversion, &st) != 0;
        if (*make && stat(p2, &st) == 0 && !a->resume)
            return stem_fail(STEM_E_ARG, "latents_path %s (%s) is not finished: %s holds an interrupted inversion; "
                             "pass --resume to continue it", a->inversion, a->config, p2);
        return STEM_OK;
    }
    /* OUT/inversion, made inside OUT.partial; an interrupted run's finished one is reused */
    snprintf(dir, len, "%s.partial/inversion", a->out);
    *make = !a->resume || stat(dir, &st) != 0;
    return STEM_OK;
}

/* Everything that can be known once the inversion exists, checked before the first step. */
typedef struct prepared {
    stem_pipeline p;
    bool have_pipeline;
    stem_ddim ddim;
    stem_frame_geometry g;
    stem_edit_memory_plan plan;
    stem_edit_options o;
} prepared;

static stem_status prepare(const edit_args *a, edit_inversion *inv, stem_backend *be, prepared *pr, edit_report *rep) {
    const char *model = a->model ? a->model : inv->model;
    if (!a->quiet) fprintf(stderr, "stem edit: model %s on %s; inversion %s\n", model, be->ops->describe(be), inv->dir);
    stem_status s = stem_pipeline_load(model, be, a->dtype, &pr->p);
    if (s != STEM_OK)
        return a->model ? s : stem_error_context(s, "the model of %s %s (pass --model DIR if it moved)", inv->what, inv->dir);
    pr->have_pipeline = true;
    stem_edit_options *o = &pr->o;
    *o = a->edit;
    o->steps = inv->steps;
    STEM_TRY(stem_edit_options_check(o));
    STEM_TRY(stem_ddim_init(&pr->ddim, &pr->p.schedule, o->steps));
    stem_frame_geometry *g = &pr->g;
    STEM_TRY(stem_pipeline_geometry(&pr->p, inv->height, inv->width, g));
    if (g->out_w != inv->out_w || g->out_h != inv->out_h)
        return stem_fail(STEM_E_FORMAT, "%s %s: its frames decode to %dx%d, this model decodes %dx%d", inv->what, inv->dir,
                         inv->out_w, inv->out_h, (int)g->out_w, (int)g->out_h);
    STEM_TRY(edit_inversion_check_latents(inv, &pr->ddim, pr->p.vae.cfg.latent_channels, g->latent_h, g->latent_w));
    if (stem_edit_frame_count(o, inv->n_frames) < 1)
        return stem_fail(STEM_E_ARG, "--drop-tail with --batch-size %lld leaves none of the %d frames",
                         (long long)o->batch_size, inv->n_frames);
    rep->mem_limit = a->mem_limit ? a->mem_limit : cli_default_mem_limit(be);
    stem_edit_memory_plan *plan = &pr->plan;
    STEM_TRY(edit_plan(&pr->p, o, inv->n_frames, inv->width, inv->height, rep->mem_limit, plan));
    stem_edit_apply_plan(plan, o);
    if (!a->quiet && (plan->cache_on_host || plan->pivotal_sliced))
        edit_plan_print(stderr, plan, o, inv->n_frames, inv->width, inv->height, g->latent_h, g->latent_w,
                        (int)g->out_w, (int)g->out_h, rep->mem_limit);
    rep->freeu_acts = freeu_acts(&pr->p, &o->freeu);
    const stem_unet_config *uc = stem_unet_get_config(pr->p.unet);
    if (o->freeu.enabled && !rep->freeu_acts && !a->quiet)
        fprintf(stderr, "stem: note: FreeU acts on hidden states of %lld and %lld channels (--freeu-gate); this "
                "UNet's widths are %d..%d, so it never fires (as in the original on such models)\n",
                (long long)o->freeu.gate1, (long long)o->freeu.gate2, uc->block_out_channels[0],
                uc->block_out_channels[uc->levels - 1]);
    rep->frames_edited = plan->frames_edited;
    if (plan->frames_edited < inv->n_frames && !a->quiet)
        fprintf(stderr, "stem edit: --drop-tail: editing %lld of %d frames (a multiple of --batch-size %lld)\n",
                (long long)plan->frames_edited, inv->n_frames, (long long)o->batch_size);
    rep->out_w = (int)g->out_w;
    rep->out_h = (int)g->out_h;
    rep->no_video = edit_outputs_no_video(rep->out_w, rep->out_h);
    rep->video = !rep->no_video;
    if (rep->video) {
        char path[PATH_MAX + 16];
        snprintf(path, sizeof path, "%s/edit.mp4", a->out);
        STEM_TRY(stem_video_write_check(path, rep->out_w, rep->out_h, a->fps));
    } else if (!a->quiet) {
        fprintf(stderr, "stem: note: no edit.mp4 (%s)\n", rep->no_video);
    }
    return STEM_OK;
}

int cmd_edit(int argc, char **argv) {
    edit_args a;
    int rc = edit_parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    if (a.threads) stem_set_num_threads(a.threads);
    if (a.dry_run) return edit_dry_run(&a);

    edit_report rep = {.t_start = stem_now_seconds()};
    edit_inversion inv;
    char inv_dir[PATH_MAX], path[PATH_MAX + 64];
    char what[PATH_MAX + 32];
    bool make = false;
    edit_inversion_what(&a, what, sizeof what);
    stem_status s = cli_output_check(a.out, a.force, a.resume);
    if (s == STEM_OK) s = locate_inversion(&a, inv_dir, sizeof inv_dir, &make);
    /* an inversion that exists is checked before anything is written */
    if (s == STEM_OK && !make) {
        s = edit_inversion_read(inv_dir, what, &inv);
        if (s == STEM_OK) s = edit_inversion_check_args(&inv, &a);
    }
    if (s != STEM_OK) return cli_report(s);
    stem_backend *be;
    if ((rc = cli_open_backend(a.backend, &be)) != 0) return rc;

    stem_outdir od = {0};
    prepared pr = {0};
    stem_tensor ctx[3] = {{0}}, x = {0}, host = {0};
    json_object *options = NULL, *manifest = NULL;
    edit_source src = {.mapped_step = -1};
    edit_state st = {.a = &a, .be = be};
    edit_metrics metrics = {0};
    struct stat sb;
    if (!make && (s = prepare(&a, &inv, be, &pr, &rep)) != STEM_OK) goto fail;

    /* the output folder: OUT.partial, renamed to OUT when complete (cli/output_dir.h) */
    if (a.force && !a.resume && stat(a.out, &sb) == 0 && (s = stem_remove_tree(a.out)) != STEM_OK) goto fail;
    if ((s = stem_outdir_begin(a.out, &od)) != STEM_OK) goto fail;
    if (od.reused && !a.resume &&
        ((s = stem_remove_tree(od.partial)) != STEM_OK || (s = stem_outdir_begin(a.out, &od)) != STEM_OK))
        goto fail;
    int stale = 0;
    if (a.resume && od.reused && (s = stem_resume_remove_stale_temps(od.partial, &stale)) != STEM_OK) goto fail;
    if (stale && !a.quiet) fprintf(stderr, "stem edit: removed %d stale temporary file(s) from %s\n", stale, od.partial);
    st.dir = od.partial;
    /* options.json first (it marks the folder as stem's); complete once the inversion and the
     * plan are known (the late keys, edit_manifest.h) */
    options = edit_options_json(&a, NULL, &a.edit);
    snprintf(path, sizeof path, "%s/options.json", od.partial);
    if (a.resume && od.reused) {
        if ((s = edit_options_check_resume(od.partial, options)) != STEM_OK) goto fail;
    } else if ((s = write_json(path, options)) != STEM_OK) {
        goto fail;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    rep.inversion_made = !a.inversion || make;
    if (make) {
        double t0 = stem_now_seconds();
        if ((s = edit_inversion_run(&a, inv_dir)) != STEM_OK) goto fail;
        signal(SIGINT, on_signal); /* stem invert installed its own */
        signal(SIGTERM, on_signal);
        rep.t_inversion = stem_now_seconds() - t0;
        if ((s = edit_inversion_read(inv_dir, what, &inv)) != STEM_OK || (s = edit_inversion_check_args(&inv, &a)) != STEM_OK ||
            (s = prepare(&a, &inv, be, &pr, &rep)) != STEM_OK)
            goto fail;
    }
    if (interrupted) {
        s = stem_fail(STEM_E_IO, "interrupted before editing; run the same command with --resume to continue");
        goto fail;
    }
    st.ddim = &pr.ddim;
    stem_pipeline *p = &pr.p;
    const stem_edit_options *o = &pr.o;
    const stem_frame_geometry *g = &pr.g;
    /* the complete options: checked against an interrupted run's, then written */
    json_object_put(options);
    options = edit_options_json(&a, &inv, o);
    if (a.resume && od.reused && (s = edit_options_check_resume(od.partial, options)) != STEM_OK) goto fail;
    if ((s = write_json(path, options)) != STEM_OK) goto fail;
    snprintf(path, sizeof path, "%s/latents", od.partial);
    if ((s = stem_mkdirs(path)) != STEM_OK) goto fail;
    /* the prompts, x_T (or the resume point), the editing loop */
    if ((s = encode_prompts(p, &a, &inv, ctx, rep.prompt_truncated)) != STEM_OK) goto fail;
    int64_t lshape[4] = {pr.plan.frames_edited, p->vae.cfg.latent_channels, g->latent_h, g->latent_w};
    if ((s = stem_tensor_new(be, a.dtype, 4, lshape, &x)) != STEM_OK) goto fail;
    edit_source_init(&src, &inv, &pr.ddim);
    int last = -1;
    if (a.resume && (s = edit_latents_resume_point(od.partial, &pr.ddim, &x, &last)) != STEM_OK) goto fail;
    if (last < 0 && (s = edit_latents_initial(p, &inv, &src, o->batch_size, &x, &rep.t_encode)) != STEM_OK) goto fail;
    st.first_step = rep.first_step = last + 1;
    if (a.resume && od.reused && !a.quiet) fprintf(stderr, "stem edit: resuming after editing step %d/%d\n", last + 1, o->steps);
    const char *stop = getenv("STEM_EDIT_TEST_INTERRUPT_AFTER_STEP");
    st.stop_after = stop ? atoi(stop) : 0;
    const stem_edit_inputs in = {.source = edit_source_read, .source_user = &src, .context_source = &ctx[0],
                                 .context_negative = &ctx[1], .context_target = &ctx[2]};
    double t0 = stem_now_seconds();
    if (st.first_step < o->steps) {
        stem_progress_begin_units(&st.progress, "editing", (o->steps - st.first_step) * (int)(pr.plan.chunks + 1), "pass",
                                  "passes (per step: 1 pivotal + 1 per chunk)", a.quiet);
        if ((s = stem_edit_latents(p, &in, o, st.first_step, &x, NULL, on_step, &st)) != STEM_OK) goto fail;
        stem_progress_end(&st.progress);
    }
    rep.t_edit = stem_now_seconds() - t0;
    rep.t_source = src.seconds;
    edit_source_free(&src);

    /* decode, then frames, video, sheet, metrics, manifest */
    t0 = stem_now_seconds();
    if ((s = edit_latents_decode(p, &x, o->batch_size, g->out_h, g->out_w, &host)) != STEM_OK) goto fail;
    rep.t_decode = stem_now_seconds() - t0;
    sample_device_memory(&st);
    t0 = stem_now_seconds();
    snprintf(path, sizeof path, "%s/frames/edit", od.partial);
    if ((s = stem_frames_write_dir(path, &host, a.quantize)) != STEM_OK) goto fail;
    if (rep.video) {
        snprintf(path, sizeof path, "%s/edit.mp4", od.partial);
        if ((s = stem_video_write(path, &host, a.fps, a.quantize)) != STEM_OK) goto fail;
    }
    snprintf(path, sizeof path, "%s/sheet.png", od.partial);
    if ((s = edit_outputs_compare(&inv, &host, path, &metrics)) != STEM_OK) goto fail;
    rep.t_outputs = stem_now_seconds() - t0;
    rep.p = p;
    rep.inv = &inv;
    char final_inv[PATH_MAX + 16];
    snprintf(final_inv, sizeof final_inv, "%s/inversion", a.out);
    rep.inversion_path = a.inversion ? inv.dir : final_inv;
    rep.plan = &pr.plan;
    rep.metrics = &metrics;
    rep.device_peak = st.device_peak;
    manifest = edit_manifest_json(&a, options, &rep);
    snprintf(path, sizeof path, "%s/manifest.json", od.partial);
    if ((s = write_json(path, manifest)) != STEM_OK) goto fail;
    if ((s = stem_outdir_commit(&od, a.force || a.resume)) != STEM_OK) goto fail;

    printf("temporal MAD vs input: edit %.5f, reconstruction %.5f (mean |frame difference|: input %.5f, edit %.5f)\n",
           metrics.temporal_edit, metrics.temporal_reconstruction, metrics.flicker_input, metrics.flicker_edit);
    printf("wrote %s: frames/edit/ (%lld frames), %ssheet.png (input | reconstruction | edit), latents/, manifest.json"
           "%s in %.1f s\n", a.out, (long long)pr.plan.frames_edited, rep.video ? "edit.mp4, " : "",
           !a.inversion ? ", inversion/" : "", stem_now_seconds() - rep.t_start);
    if (!a.inversion)
        printf("another edit of the same video reuses the inversion: stem edit --inversion %s/inversion --prompt ...\n",
               a.out);
    if (strstr(p->model_dir, "refdata/models/shapes-sd1"))
        printf("this was the bundled tiny model (trained on 64x64 synthetic shapes; it hardly follows text): for real "
               "videos pass --model DIR with Stable Diffusion 1.5 or 2.1-base (or set STEM_MODEL)\n");
    rc = 0;
    goto done;
fail:
    rc = cli_report(s);
    if (od.partial && !a.quiet && st.dir)
        fprintf(stderr, "stem edit: partial results stay in %s (not a finished run); --resume continues it\n", od.partial);
done:
    if (options) json_object_put(options);
    if (manifest) json_object_put(manifest);
    edit_source_free(&src);
    stem_ddim_free(&pr.ddim);
    for (int i = 0; i < 3; i++) stem_tensor_free(&ctx[i]);
    stem_tensor_free(&x);
    stem_tensor_free(&host);
    if (pr.have_pipeline) stem_pipeline_free(&pr.p);
    stem_outdir_free(&od);
    stem_backend_close(be);
    return rc;
}
