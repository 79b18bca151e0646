/* What `stem edit` checks and plans before its first step (see edit_job.h). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "backends/backends.h"
#include "cli/cli.h"
#include "cli/edit_job.h"
#include "cli/edit_plan.h"
#include "cli/invert_memory.h"
#include "cli/video_input.h"
#include "io/video_write.h"

#define CMD "stem edit"

stem_status edit_job_locate(edit_job *j) {
    const edit_args *a = &j->a;
    struct stat st;
    edit_inversion_what(a, j->what, sizeof j->what);
    if (a->inversion) {
        snprintf(j->inv_dir, sizeof j->inv_dir, "%s", a->inversion);
        /* the config's latents_path is made when missing (stem invert --config writes it) */
        j->make = a->inversion_from_config && !a->inversion_exists;
        char partial[PATH_MAX + 32];
        snprintf(partial, sizeof partial, "%s.partial", a->inversion);
        if (j->make && stat(partial, &st) == 0 && !a->v.resume)
            return stem_fail(STEM_E_ARG, "%s %s is not finished: %s holds an interrupted inversion; pass --resume to "
                             "continue it", j->what, a->inversion, partial);
    } else {
        /* OUT/inversion, made inside OUT.partial */
        snprintf(j->inv_dir, sizeof j->inv_dir, "%s.partial/inversion", a->v.out);
        j->make = true;
    }
    if (j->make) return STEM_OK;
    STEM_TRY(edit_inversion_read(j->inv_dir, j->what, &j->inv));
    return edit_inversion_check_args(&j->inv, a);
}

stem_status edit_job_load_model(edit_job *j) {
    cli_video_args v = j->a.v;
    if (!j->make) { /* the inversion's model and --model-config, unless given */
        v.model = edit_inversion_model(&j->inv, &j->a);
        v.model_config = edit_inversion_model_config(&j->inv, &j->a);
        v.model_is_default = false;
    }
    stem_status s = cli_model_open(CMD, &v, j->be, &j->p);
    if (s != STEM_OK && !j->make && !j->a.origin_model[0])
        return stem_error_context(s, "the model of %s %s (pass --model DIR|FILE if it moved)", j->what, j->inv.dir);
    j->loaded = s == STEM_OK;
    return s;
}

stem_status edit_job_check_inversion(edit_job *j) {
    const edit_inversion *inv = &j->inv;
    stem_ddim_free(&j->ddim);
    STEM_TRY(stem_ddim_init(&j->ddim, &j->p.schedule, inv->steps));
    STEM_TRY(stem_pipeline_geometry(&j->p, inv->height, inv->width, &j->g));
    if (j->g.out_w != inv->out_w || j->g.out_h != inv->out_h)
        return stem_fail(STEM_E_FORMAT, "%s %s: its frames decode to %dx%d, this model decodes %dx%d", j->what, inv->dir,
                         inv->out_w, inv->out_h, (int)j->g.out_w, (int)j->g.out_h);
    return edit_inversion_check_latents(&j->inv, &j->ddim, j->p.vae.cfg.latent_channels, j->g.latent_h, j->g.latent_w);
}

/* FreeU's gate matches some hidden-state width of the up path (every level's width
 * appears there): otherwise it never acts, as in the original on small UNets. */
static bool freeu_acts(const stem_pipeline *p, const stem_freeu_options *f) {
    const stem_unet_config *c = stem_unet_get_config(p->unet);
    for (int i = 0; i < c->levels; i++)
        if (c->block_out_channels[i] == f->gate1 || c->block_out_channels[i] == f->gate2) return true;
    return false;
}

stem_status edit_job_plan(edit_job *j, int64_t frames, int width, int height) {
    const edit_args *a = &j->a;
    edit_report *rep = &j->rep;
    stem_edit_options *o = &j->o;
    *o = a->edit;
    o->steps = j->make ? a->inv.inv.steps : j->inv.steps;
    STEM_TRY(stem_edit_options_check(o));
    STEM_TRY(stem_pipeline_geometry(&j->p, height, width, &j->g));
    if (stem_edit_frame_count(o, frames) < 1)
        return stem_fail(STEM_E_ARG, "--drop-tail with --batch-size %lld leaves none of the %lld frames",
                         (long long)o->batch_size, (long long)frames);
    rep->mem_limit = a->v.mem_limit ? a->v.mem_limit : cli_default_mem_limit(j->be);
    STEM_TRY(edit_plan(&j->p, o, frames, width, height, rep->mem_limit, &j->plan));
    stem_edit_apply_plan(&j->plan, o);
    const stem_frame_geometry *g = &j->g;
    if (a->v.quiet) goto sizes;
    if (j->plan.cache_on_host || j->plan.pivotal_sliced)
        edit_plan_print(stderr, &j->plan, o, frames, width, height, g->latent_h, g->latent_w, (int)g->out_w,
                        (int)g->out_h, rep->mem_limit);
    rep->freeu_acts = freeu_acts(&j->p, &o->freeu);
    const stem_unet_config *uc = stem_unet_get_config(j->p.unet);
    if (o->freeu.enabled && !rep->freeu_acts)
        fprintf(stderr, "stem: note: FreeU acts on hidden states of %lld and %lld channels (--freeu-gate); this UNet's "
                "widths are %d..%d, so it never fires (as in the original on such models)\n", (long long)o->freeu.gate1,
                (long long)o->freeu.gate2, uc->block_out_channels[0], uc->block_out_channels[uc->levels - 1]);
    if (j->plan.frames_edited < frames)
        fprintf(stderr, CMD ": --drop-tail: editing %lld of %lld frames (a multiple of --batch-size %lld)\n",
                (long long)j->plan.frames_edited, (long long)frames, (long long)o->batch_size);
sizes:
    rep->freeu_acts = freeu_acts(&j->p, &o->freeu);
    rep->frames_edited = j->plan.frames_edited;
    rep->out_w = (int)g->out_w;
    rep->out_h = (int)g->out_h;
    rep->no_video = edit_outputs_no_video(rep->out_w, rep->out_h);
    rep->video = !rep->no_video;
    if (rep->video) {
        char path[PATH_MAX + 16];
        snprintf(path, sizeof path, "%s/edit.mp4", a->v.out);
        STEM_TRY(stem_video_write_check(path, rep->out_w, rep->out_h, a->inv.fps));
    } else if (!a->v.quiet) {
        fprintf(stderr, "stem: note: no edit.mp4 (%s)\n", rep->no_video);
    }
    return STEM_OK;
}

stem_status edit_job_encode_prompts(edit_job *j) {
    const char *text[3] = {j->inv.prompt, j->a.negative_prompt, j->a.prompt};
    static const char *const names[3] = {"the inversion prompt", "--negative-prompt", "--prompt"};
    for (int i = 0; i < 3; i++) {
        stem_status s = stem_pipeline_encode_prompt(&j->p, text[i], &j->ctx[i], &j->rep.prompt_truncated[i]);
        if (s != STEM_OK) return stem_error_context(s, "%s", names[i]);
        if (j->rep.prompt_truncated[i])
            fprintf(stderr, "stem: warning: %s is longer than 77 CLIP tokens and was truncated (\"%.60s...\")\n",
                    names[i], text[i]);
    }
    return STEM_OK;
}
