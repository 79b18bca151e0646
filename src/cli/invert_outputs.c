/* What `stem invert` writes besides the latents: options.json, the output plan checked
 * before the first step, and at the end frames/recon, recon.mp4, sheet.png, the metrics
 * and manifest.json (see invert_job.h). */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/invert_job.h"
#include "io/contact_sheet.h"
#include "io/video_write.h"

stem_status invert_plan_outputs(invert_job *j) {
    const stem_frames *fr = &j->fr;
    invert_output_plan *o = &j->out;
    memset(o, 0, sizeof *o);
    stem_status s = stem_pipeline_geometry(j->p, fr->height, fr->width, &o->geo);
    if (s != STEM_OK) return stem_error_context(s, "%s (choose another --width/--height)", j->a->v.frames);
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
        snprintf(path, sizeof path, "%s/recon.mp4", j->a->v.out);
        STEM_TRY(stem_video_write_check(path, w, h, j->a->fps));
    }
    return STEM_OK;
}

json_object *invert_options_json(const invert_job *j) {
    const invert_args *a = j->a;
    const stem_invert_options *inv = &j->inv;
    const stem_frames *fr = &j->fr;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "model", json_object_new_string(a->v.model));
    if (a->v.model_config) json_object_object_add(o, "model_config", json_object_new_string(a->v.model_config));
    json_object_object_add(o, "frames", json_object_new_string(a->v.frames));
    json_object_object_add(o, "prompt", json_object_new_string(a->prompt));
    json_object_object_add(o, "n_frames", json_object_new_int(fr->count));
    json_object_object_add(o, "width", json_object_new_int(fr->width));
    json_object_object_add(o, "height", json_object_new_int(fr->height));
    json_object_object_add(o, "steps", json_object_new_int(inv->steps));
    json_object_object_add(o, "attention", json_object_new_string(stem_sa_mode_name(inv->sa.mode)));
    json_object_object_add(o, "em_scope", json_object_new_string(stem_em_scope_name(inv->sa.scope)));
    json_object_object_add(o, "batch_size", json_object_new_int64(inv->sa.batch_size));
    json_object_object_add(o, "bases", json_object_new_int64(inv->sa.em.bases));
    json_object_object_add(o, "em_iters", json_object_new_int64(inv->sa.em.iters));
    json_object_object_add(o, "tau", json_object_new_double(inv->sa.em.tau));
    json_object_object_add(o, "seed", json_object_new_uint64(inv->sa.em.seed));
    json_object_object_add(o, "backend", json_object_new_string(a->v.backend));
    json_object_object_add(o, "dtype", json_object_new_string(a->v.dtype == STEM_F16 ? "f16" : "f32"));
    json_object_object_add(o, "frames_per_unet_evaluation", json_object_new_int64(inv->unet_frames));
    /* true: each evaluation takes all frames, its modules the count above at a time */
    json_object_object_add(o, "layer_major_unet", json_object_new_boolean(stem_invert_layer_major(inv, fr->count)));
    json_object_object_add(o, "quantize",
                           json_object_new_string(a->quantize == STEM_QUANTIZE_ROUND ? "round" : "truncate"));
    if (a->v.config) json_object_object_add(o, "config", json_object_new_string(a->v.config));
    return o;
}

static json_object *manifest_json(const invert_job *j) {
    const invert_output_plan *out = &j->out;
    json_object *manifest = cli_manifest_new("stem invert " STEM_VERSION, j->options);
    cli_manifest_environment(manifest, j->p, j->mem_limit, &j->device);
    cli_manifest_model(manifest, j->a->v.model, j->a->v.model_config, j->p, out->geo.latent_w, out->geo.latent_h);
    /* frames/input is the input; frames/vae, frames/recon, recon.mp4, sheet.png the output size */
    json_object *sizes = json_object_new_object();
    json_object_object_add(sizes, "input", json_object_new_string(out->input_size));
    json_object_object_add(sizes, "output", json_object_new_string(out->output_size));
    json_object_object_add(sizes, "vae_factor", json_object_new_int(out->geo.factor));
    json_object_object_add(sizes, "metrics_region", json_object_new_string(out->metrics_region));
    json_object_object_add(manifest, "frame_sizes", sizes);
    json_object *timing = json_object_new_object();
    json_object_object_add(timing, "vae_encode_s", json_object_new_double(j->t_encode));
    json_object_object_add(timing, "inversion_s", json_object_new_double(j->seconds[0]));
    json_object_object_add(timing, "reconstruction_s", json_object_new_double(j->seconds[1]));
    json_object_object_add(timing, "vae_decode_s", json_object_new_double(j->t_decode));
    json_object_object_add(timing, "total_s", json_object_new_double(stem_now_seconds() - j->t_start));
    json_object_object_add(timing, "resumed", json_object_new_boolean(j->resumed));
    json_object_object_add(manifest, "timing", timing);
    if (out->metrics) {
        json_object *metrics = json_object_new_object();
        json_object_object_add(metrics, "reconstruction_vs_input", cli_metrics_json(&j->m_rec));
        json_object_object_add(metrics, "vae_roundtrip_vs_input", cli_metrics_json(&j->m_vae));
        json_object_object_add(metrics, "reconstruction_vs_vae_roundtrip", cli_metrics_json(&j->m_rec_vae));
        json_object_object_add(manifest, "metrics", metrics);
    }
    return manifest;
}

stem_status invert_write_outputs(invert_job *j) {
    const invert_args *a = j->a;
    const char *dir = j->od.partial;
    char path[PATH_MAX + 64];
    /* frames, video, sheet, metrics: all at the output size, against the input's region */
    const stem_tensor *host_in = j->out.cropped ? &j->host_in_crop : &j->fr.pixels;
    snprintf(path, sizeof path, "%s/frames/recon", dir);
    STEM_TRY(stem_frames_write_dir(path, &j->host_rec, a->quantize));
    if (j->out.video) {
        snprintf(path, sizeof path, "%s/recon.mp4", dir);
        STEM_TRY(stem_video_write(path, &j->host_rec, a->fps, a->quantize));
    }
    const stem_tensor *columns[3] = {host_in, &j->host_vae, &j->host_rec};
    snprintf(path, sizeof path, "%s/sheet.png", dir);
    STEM_TRY(stem_contact_sheet_write(path, columns, 3, 4));
    if (j->out.metrics) {
        STEM_TRY(stem_video_metrics_compute(host_in, &j->host_rec, &j->m_rec));
        STEM_TRY(stem_video_metrics_compute(host_in, &j->host_vae, &j->m_vae));
        STEM_TRY(stem_video_metrics_compute(&j->host_vae, &j->host_rec, &j->m_rec_vae));
    }
    json_object *manifest = manifest_json(j);
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    stem_status s = cli_write_json(path, manifest);
    json_object_put(manifest);
    return s;
}

void invert_print_summary(const invert_job *j) {
    const stem_video_metrics *r = &j->m_rec, *v = &j->m_vae, *rv = &j->m_rec_vae;
    if (j->out.metrics)
        printf("reconstruction vs input:  PSNR %.2f dB  SSIM %.4f  temporal %.5f\n"
               "VAE round trip vs input:  PSNR %.2f dB  SSIM %.4f  temporal %.5f\n"
               "reconstruction vs VAE:    PSNR %.2f dB  SSIM %.4f\n",
               r->mean_psnr, r->mean_ssim, r->temporal, v->mean_psnr, v->mean_ssim, v->temporal, rv->mean_psnr,
               rv->mean_ssim);
    printf("wrote %s (manifest.json, latents/, frames/, sheet.png%s) in %.1f s\n", j->a->v.out,
           j->out.video ? ", recon.mp4" : "", stem_now_seconds() - j->t_start);
    if (j->a->v.model_is_default)
        printf("this was the bundled tiny model (trained on 64x64 synthetic shapes only): for real videos, download "
               "Stable Diffusion 1.5 or 2.1-base as a diffusers folder and pass --model DIR (or set STEM_MODEL)\n");
}
