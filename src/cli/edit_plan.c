/* `stem edit`'s memory plan and dry run (see edit_plan.h). */
#include "cli/edit_plan.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backends/backends.h"
#include "cli/cli.h"
#include "cli/edit_inversion.h"
#include "cli/invert_memory.h"
#include "io/frames.h"
#include "pipeline/invert.h"
#include "stem/stem_attention.h"

edit_size_text edit_size_str(double bytes) {
    edit_size_text t;
    if (bytes < 1048576.0)
        snprintf(t.s, sizeof t.s, "%.0f KiB", bytes / 1024.0);
    else if (bytes < 10.0 * 1073741824.0)
        snprintf(t.s, sizeof t.s, "%.0f MiB", bytes / 1048576.0);
    else
        snprintf(t.s, sizeof t.s, "%.1f GiB", bytes / 1073741824.0);
    return t;
}

stem_status edit_plan(const stem_pipeline *p, const stem_edit_options *o, int64_t frames, int width, int height,
                      size_t limit, stem_edit_memory_plan *plan) {
    int64_t h, w;
    stem_vae_latent_size(&p->vae, height, width, &h, &w);
    stem_edit_plan_memory(p, o, frames, h, w, limit, plan);
    if (plan->fits) return STEM_OK;
    return stem_fail(STEM_E_ARG, "editing %lld frames of %dx%d (batch size %lld) needs about %s of device memory even "
                     "with the keyframe caches on the host and the pivotal pass over slices of keyframes (latents %s, "
                     "one chunk's evaluation %s), over the %s memory limit; raise --mem-limit, lower --batch-size, or "
                     "use smaller frames", (long long)plan->frames_edited, width, height, (long long)o->batch_size,
                     edit_size_str((double)plan->device_bytes).s, edit_size_str((double)plan->latent_bytes).s,
                     edit_size_str((double)plan->normal_bytes).s, edit_size_str((double)limit).s);
}

void edit_plan_print(FILE *f, const stem_edit_memory_plan *plan, const stem_edit_options *o, int64_t frames, int width,
                     int height, int64_t latent_h, int64_t latent_w, int out_w, int out_h, size_t limit) {
    const double decoded = (double)plan->frames_edited * 3.0 * out_w * out_h * sizeof(float);
    fprintf(f, "edit plan: %lld frames of %dx%d (latents %lldx%lld), %lld edited (tail: %s), batch size %lld: %lld "
            "chunks, %lld keyframes; memory limit %s\n", (long long)frames, width, height, (long long)latent_w,
            (long long)latent_h, (long long)plan->frames_edited, stem_edit_tail_name(o->tail),
            (long long)o->batch_size, (long long)plan->chunks, (long long)plan->keyframes,
            edit_size_str((double)limit).s);
    fprintf(f, "  %-7s %-72s %10s\n", "where", "part", "bytes");
    fprintf(f, "  %-7s %-72s %10s\n", "device", "latents: x, next x, one batch's samples/eps/contexts, guided eps",
            edit_size_str((double)plan->latent_bytes).s);
    char what[128];
    snprintf(what, sizeof what, "keyframe caches: norm1 (source) + attn1 outputs (3 branches) x %lld",
             (long long)plan->keyframes);
    fprintf(f, "  %-7s %-72s %10s\n", plan->cache_on_host ? "host" : "device", what,
            edit_size_str((double)plan->cache_bytes).s);
    if (plan->pivotal_sliced)
        snprintf(what, sizeof what, "pivotal pass: all-keyframe state + a slice of %lld keyframes x 3 branches",
                 (long long)plan->unet_frames);
    else
        snprintf(what, sizeof what, "pivotal pass: %lld keyframes x 3 branches at once", (long long)plan->keyframes);
    fprintf(f, "  %-7s %-72s %10s\n", "device", what, edit_size_str((double)plan->pivotal_bytes).s);
    snprintf(what, sizeof what, "normal pass: one chunk, %lld frames x 3 branches",
             (long long)(plan->frames_edited < o->batch_size ? plan->frames_edited : o->batch_size));
    fprintf(f, "  %-7s %-72s %10s\n", "device", what, edit_size_str((double)plan->normal_bytes).s);
    fprintf(f, "  %-7s %-72s %10s\n", "device", "total (latents + the larger pass + caches kept there)",
            edit_size_str((double)plan->device_bytes).s);
    fprintf(f, "  %-7s %-72s %10s\n", "host", "total of the plan (caches kept there)",
            edit_size_str((double)plan->host_bytes).s);
    snprintf(what, sizeof what, "decoded edit frames %dx%d kept for edit.mp4 and the metrics", out_w, out_h);
    fprintf(f, "  %-7s %-72s %10s\n", "host", what, edit_size_str(decoded).s);
    fprintf(f, "frames per UNet evaluation: pivotal pass %lld keyframes per branch%s, normal pass %lld per branch; "
            "%s\n", (long long)plan->keyframes,
            plan->pivotal_sliced ? " (layer-major: each module over a slice at a time)" : "",
            (long long)(plan->frames_edited < o->batch_size ? plan->frames_edited : o->batch_size),
            plan->fits ? "fits" : "DOES NOT FIT");
}

/* What the run would edit: from the inversion folder, or from the frames request. */
typedef struct dry_input {
    const char *model;
    int frames, width, height, steps;
} dry_input;

static int probe(edit_args *a, dry_input *in, edit_inversion *inv) {
    stem_status s;
    if (a->inversion) {
        struct stat st;
        if (stat(a->inversion, &st) == 0 || !a->inversion_from_config) {
            char what[PATH_MAX + 32];
            edit_inversion_what(a, what, sizeof what);
            if ((s = edit_inversion_read(a->inversion, what, inv)) != STEM_OK || (s = edit_inversion_check_args(inv, a)) != STEM_OK)
                return cli_report(s);
            *in = (dry_input){.model = a->model ? a->model : inv->model, .frames = inv->n_frames, .width = inv->width,
                              .height = inv->height, .steps = inv->steps};
            return 0;
        }
    }
    const char *env = getenv("STEM_MODEL");
    *in = (dry_input){.model = a->model ? a->model : env && *env ? env : NULL, .frames = a->n_frames,
                      .width = a->width, .height = a->height, .steps = a->steps ? a->steps : 50};
    if (!in->model) {
        fprintf(stderr, "stem edit: --dry-run needs --model DIR (or STEM_MODEL) here\n");
        return 2;
    }
    if (a->frames || !a->n_frames || !a->width || !a->height) {
        /* the first frame's size and the count, as stem invert would take them */
        char def[PATH_MAX];
        snprintf(def, sizeof def, "%s/clips/shapes", getenv("STEM_REFDATA") && *getenv("STEM_REFDATA")
                                                          ? getenv("STEM_REFDATA") : STEM_SOURCE_DIR "/refdata");
        const char *path = a->frames ? a->frames : def;
        stem_frame_source *src;
        if ((s = stem_frame_source_open(path, edit_note_to_stderr, &a->quiet, &src)) != STEM_OK) return cli_report(s);
        int count = stem_frame_source_count(src);
        stem_image first = {0};
        bool done = false;
        s = stem_frame_source_next(src, &first, &done);
        if (s == STEM_OK && done) s = stem_fail(STEM_E_FORMAT, "%s: no frames", path);
        if (s == STEM_OK) {
            if (!in->width) in->width = first.width;
            if (!in->height) in->height = first.height;
            if (count > 0 && in->frames > count)
                s = stem_fail(STEM_E_ARG, "'%s' has %d frames, but --n-frames asks for %d", path, count, in->frames);
            if (!in->frames) in->frames = count > 0 ? count : 1;
        }
        stem_image_free(&first);
        stem_frame_source_close(src);
        if (s != STEM_OK) return cli_report(s);
    }
    return 0;
}

int edit_dry_run(edit_args *a) {
    dry_input in = {0};
    edit_inversion inv;
    int rc = probe(a, &in, &inv);
    if (rc) return rc;
    stem_backend *be;
    if ((rc = cli_open_backend(a->backend, &be)) != 0) return rc;
    stem_pipeline p;
    /* structure and sizes only: no weight is read (a folder of config.json files will do) */
    stem_status s = stem_pipeline_load_shapes(in.model, be, a->dtype, &p);
    if (s != STEM_OK) {
        stem_backend_close(be);
        return cli_report(s);
    }
    const size_t limit = a->mem_limit ? a->mem_limit : cli_default_mem_limit(be);
    stem_edit_options o = a->edit;
    o.steps = in.steps;
    stem_frame_geometry g;
    stem_edit_memory_plan plan;
    if ((s = stem_edit_options_check(&o)) == STEM_OK && (s = stem_pipeline_geometry(&p, in.height, in.width, &g)) == STEM_OK) {
        printf("stem edit --dry-run: model %s (%s), %d DDIM steps, edit attention %s%s\n", in.model,
               be->ops->describe(be), in.steps, stem_edit_attention_name(o.attention),
               a->inversion ? "" : " (the inversion would run first into OUT/inversion)");
        stem_edit_plan_memory(&p, &o, in.frames, g.latent_h, g.latent_w, limit, &plan);
        edit_plan_print(stdout, &plan, &o, in.frames, in.width, in.height, g.latent_h, g.latent_w, (int)g.out_w,
                        (int)g.out_h, limit);
        if (!a->inversion) {
            /* the inversion stem edit runs first (stem invert's plan, with the inversion flags given) */
            stem_invert_options io;
            stem_invert_options_default(&io);
            io.steps = in.steps;
            io.sa.batch_size = o.batch_size;
            if ((a->attention && stem_sa_mode_parse(a->attention, &io.sa.mode) != STEM_OK) ||
                (a->em_scope && stem_em_scope_parse(a->em_scope, &io.sa.scope) != STEM_OK)) {
                rc = cli_report(STEM_E_ARG);
                goto done;
            }
            stem_invert_memory_plan ip;
            stem_invert_plan_memory(&p, &io, in.frames, g.latent_h, g.latent_w, limit, &ip);
            printf("inversion plan (--attention %s --em-scope %s): ", stem_sa_mode_name(io.sa.mode),
                   stem_em_scope_name(io.sa.scope));
            if (ip.needed_all <= limit)
                printf("all %d frames in one UNet evaluation, %s of activations; fits\n", in.frames,
                       edit_size_str((double)ip.needed_all).s);
            else if (!ip.layer_major)
                printf("%lld of the %d frames per UNet evaluation, %s of activations; %s\n", (long long)ip.unet_frames,
                       in.frames, edit_size_str((double)ip.needed).s, ip.fits ? "fits" : "DOES NOT FIT");
            else
                printf("layer-major: %s kept for all %d frames + each module over %lld frames at a time, %s in all; "
                       "%s\n", edit_size_str((double)ip.all_frame_state).s, in.frames, (long long)ip.unet_frames,
                       edit_size_str((double)ip.needed).s,
                       ip.fits ? "fits" : "DOES NOT FIT (--em-scope chunk evaluates a chunk at a time)");
        }
        rc = plan.fits ? 0 : 1;
    } else {
        rc = cli_report(s);
    }
done:
    stem_pipeline_free(&p);
    stem_backend_close(be);
    return rc;
}
