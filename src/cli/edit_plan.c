/* `stem edit`'s memory plan and dry run (see edit_plan.h). */
#include "cli/edit_plan.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backends/backends.h"
#include "cli/cli.h"
#include "cli/edit_inversion.h"
#include "cli/invert_memory.h"
#include "cli/video_input.h"
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
    const char *model, *model_config;
    int frames, width, height, steps;
} dry_input;

/* --frames N: a positive count, when no file or folder of that name exists (as stem
 * invert --dry-run takes it). */
static int frames_count_arg(const char *frames) {
    struct stat st;
    if (!frames || !*frames || stat(frames, &st) == 0) return 0;
    char *end;
    long n = strtol(frames, &end, 10);
    return *end || n < 1 || n > 100000 ? 0 : (int)n;
}

static int probe(edit_args *a, dry_input *in, edit_inversion *inv) {
    stem_status s;
    const cli_video_args *v = &a->v;
    if (a->inversion && a->inversion_exists) {
        char what[PATH_MAX + 32];
        edit_inversion_what(a, what, sizeof what);
        if ((s = edit_inversion_read(a->inversion, what, inv)) != STEM_OK || (s = edit_inversion_check_args(inv, a)) != STEM_OK)
            return cli_report(s);
        *in = (dry_input){.model = edit_inversion_model(inv, a), .model_config = edit_inversion_model_config(inv, a),
                          .frames = inv->n_frames, .width = inv->width, .height = inv->height, .steps = inv->steps};
        return 0;
    }
    *in = (dry_input){.model = v->model, .model_config = v->model_config, .steps = a->inv.inv.steps};
    const int n = frames_count_arg(v->frames);
    if (n) {
        if (!v->width || !v->height) {
            fprintf(stderr, "stem edit: --frames %d (a count) needs --width and --height\n", n);
            return 2;
        }
        *in = (dry_input){.model = v->model, .model_config = v->model_config,
                          .frames = v->n_frames && v->n_frames < n ? v->n_frames : n,
                          .width = v->width, .height = v->height, .steps = a->inv.inv.steps};
        return 0;
    }
    /* the frames as stem invert would take them: a folder's files counted, the first decoded
     * for its size when --width/--height leave it open */
    cli_frames_probe pr;
    if ((s = cli_frames_probe_open(v, &pr)) != STEM_OK) return cli_report(s);
    if (pr.available > 0 && v->n_frames > pr.available) {
        s = stem_fail(STEM_E_ARG, "'%s' has %d frames, but %s asks for %d", v->frames, pr.available,
                      v->n_frames_name[0] ? v->n_frames_name : "--n-frames", v->n_frames);
        return cli_report(s);
    }
    in->frames = pr.expected, in->width = pr.req.width, in->height = pr.req.height;
    return 0;
}

int edit_dry_run(edit_args *a) {
    dry_input in = {0};
    edit_inversion inv;
    int rc = probe(a, &in, &inv);
    if (rc) return rc;
    stem_backend *be;
    if ((rc = cli_open_backend(a->v.backend, &be)) != 0) return rc;
    stem_pipeline p;
    /* structure and sizes only: no weight is read (a folder of config.json files will do, or
     * a single file's header) */
    stem_status s = stem_pipeline_load_shapes(in.model, in.model_config, be, a->v.dtype, &p);
    if (s != STEM_OK) {
        stem_backend_close(be);
        return cli_report(s);
    }
    const size_t limit = a->v.mem_limit ? a->v.mem_limit : cli_default_mem_limit(be);
    stem_edit_options o = a->edit;
    o.steps = in.steps;
    stem_frame_geometry g;
    stem_edit_memory_plan plan;
    if ((s = stem_edit_options_check(&o)) == STEM_OK && (s = stem_pipeline_geometry(&p, in.height, in.width, &g)) == STEM_OK) {
        printf("stem edit --dry-run: model %s (%s), %d DDIM steps, edit attention %s%s\n", in.model,
               be->ops->describe(be), in.steps, stem_edit_attention_name(o.attention),
               a->inversion_exists ? "" : " (the inversion would run first)");
        stem_edit_plan_memory(&p, &o, in.frames, g.latent_h, g.latent_w, limit, &plan);
        edit_plan_print(stdout, &plan, &o, in.frames, in.width, in.height, g.latent_h, g.latent_w, (int)g.out_w,
                        (int)g.out_h, limit);
        if (!a->inversion_exists) {
            /* the inversion stem edit runs first (stem invert's plan, with the inversion flags given) */
            stem_invert_options io = a->inv.inv;
            io.steps = in.steps;
            io.sa.batch_size = o.batch_size;
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
    stem_pipeline_free(&p);
    stem_backend_close(be);
    return rc;
}
