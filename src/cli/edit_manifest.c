/* `stem edit`'s options.json and manifest.json (see edit_manifest.h). */
#include "cli/edit_manifest.h"

#include <limits.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backends.h"
#include "cli/cli.h"
#include "cli/progress.h"
#include "pipeline/resume_check.h"

static void add_str(json_object *o, const char *k, const char *v) { json_object_object_add(o, k, json_object_new_string(v)); }
static void add_int(json_object *o, const char *k, int64_t v) { json_object_object_add(o, k, json_object_new_int64(v)); }
static void add_num(json_object *o, const char *k, double v) { json_object_object_add(o, k, json_object_new_double(v)); }
/* a float option as its shortest decimal (1.2, not 1.2000000476837158) */
static void add_float(json_object *o, const char *k, float v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", (double)v);
    json_object_object_add(o, k, json_object_new_double(strtod(buf, NULL)));
}
static void add_bool(json_object *o, const char *k, bool v) { json_object_object_add(o, k, json_object_new_boolean(v)); }

json_object *edit_options_json(const edit_args *a, const stem_edit_options *o) {
    json_object *j = json_object_new_object();
    add_str(j, "prompt", a->prompt);
    add_str(j, "negative_prompt", a->negative_prompt);
    add_num(j, "guidance_scale", o->guidance_scale);
    add_num(j, "pnp_attn_t", o->pnp_attn_t);
    add_num(j, "pnp_f_t", o->pnp_f_t);
    add_int(j, "batch_size", o->batch_size);
    add_str(j, "tail", stem_edit_tail_name(o->tail));
    add_str(j, "edit_attention", stem_edit_attention_name(o->attention));
    add_int(j, "bases", o->em.bases);
    add_int(j, "em_iters", o->em.iters);
    add_float(j, "tau", o->em.tau);
    json_object_object_add(j, "seed", json_object_new_uint64(o->seed));
    json_object *fu = json_object_new_object();
    add_bool(fu, "enabled", o->freeu.enabled);
    add_float(fu, "b1", o->freeu.b1);
    add_float(fu, "b2", o->freeu.b2);
    add_float(fu, "s1", o->freeu.s1);
    add_float(fu, "s2", o->freeu.s2);
    add_int(fu, "gate1", o->freeu.gate1);
    add_int(fu, "gate2", o->freeu.gate2);
    json_object_object_add(j, "freeu", fu);
    add_int(j, "steps", o->steps);
    add_str(j, "backend", a->v.backend);
    add_str(j, "dtype", a->v.dtype == STEM_F16 ? "f16" : "f32");
    add_str(j, "quantize", a->inv.quantize == STEM_QUANTIZE_ROUND ? "round" : "truncate");
    add_int(j, "fps", a->inv.fps);
    if (a->v.config) add_str(j, "config", a->v.config);
    add_int(j, "frames_per_unet_evaluation", o->unet_frames);
    add_bool(j, "keyframe_caches_on_host", o->cache_on_host);
    if (a->inversion_exists) {
        add_str(j, "inversion", a->inversion);
    } else { /* the inversion this run makes: what it is made from */
        json_object *i = json_object_new_object();
        add_str(i, "into", a->inversion ? a->inversion : "OUT/inversion");
        add_str(i, "model", a->v.model);
        if (a->v.model_config) add_str(i, "model_config", a->v.model_config);
        add_str(i, "frames", a->v.frames);
        add_str(i, "prompt", a->inv.prompt);
        add_int(i, "n_frames", a->v.n_frames);
        add_int(i, "width", a->v.width);
        add_int(i, "height", a->v.height);
        add_str(i, "attention", stem_sa_mode_name(a->inv.inv.sa.mode));
        add_str(i, "em_scope", stem_em_scope_name(a->inv.inv.sa.scope));
        json_object_object_add(j, "inversion_made_from", i);
    }
    return j;
}

static json_object *size_json(int w, int h) {
    char buf[48];
    snprintf(buf, sizeof buf, "%dx%d", w, h);
    return json_object_new_string(buf);
}

json_object *edit_manifest_json(const edit_args *a, json_object *options, const edit_report *r) {
    const stem_pipeline *p = r->p;
    json_object *m = cli_manifest_new("stem edit " STEM_VERSION, options), *o;

    o = json_object_new_object();
    add_str(o, "path", r->inversion_path);
    add_bool(o, "made_by_this_run", r->inversion_made);
    add_str(o, "prompt", r->inv->prompt);
    add_str(o, "frames", r->inv->frames);
    add_int(o, "steps", r->inv->steps);
    add_str(o, "attention", r->inv->attention);
    add_str(o, "em_scope", r->inv->em_scope);
    add_str(o, "x_T_checksum_fnv1a64", r->inv->x_T_checksum);
    /* x_T = add_noise(z0, eps, T) with eps from z0 and the inversion's last latents */
    add_str(o, "z0", "the VAE encoding of the inversion's frames/input");
    json_object_object_add(m, "inversion", o);

    cli_manifest_environment(m, p, r->mem_limit, r->device);
    int64_t lh, lw;
    stem_vae_latent_size(&p->vae, r->inv->height, r->inv->width, &lh, &lw);
    cli_manifest_model(m, p->model_dir, p->model_config, p, lw, lh);

    o = json_object_new_object();
    add_int(o, "input", r->inv->n_frames);
    add_int(o, "edited", r->frames_edited);
    add_str(o, "tail", stem_edit_tail_name(a->edit.tail));
    add_int(o, "dropped", r->inv->n_frames - r->frames_edited);
    add_int(o, "chunks", r->plan->chunks);
    json_object_object_add(o, "input_size", size_json(r->inv->width, r->inv->height));
    json_object_object_add(o, "output_size", size_json(r->out_w, r->out_h));
    add_bool(o, "video", r->video);
    if (!r->video) add_str(o, "no_video_because", r->no_video);
    json_object_object_add(m, "frames", o);

    o = json_object_new_object();
    const int S = r->inv->steps;
    add_int(o, "qk_injection_steps", (int64_t)floor(S * a->edit.pnp_attn_t));
    add_int(o, "conv_injection_steps", (int64_t)floor(S * a->edit.pnp_f_t));
    add_bool(o, "freeu_acts", a->edit.freeu.enabled && r->freeu_acts);
    json_object_object_add(m, "editing", o);

    o = json_object_new_object();
    add_int(o, "plan_device_bytes", (int64_t)r->plan->device_bytes);
    add_int(o, "plan_host_bytes", (int64_t)r->plan->host_bytes);
    add_int(o, "plan_cache_bytes", (int64_t)r->plan->cache_bytes);
    add_bool(o, "cache_on_host", r->plan->cache_on_host);
    add_bool(o, "pivotal_sliced", r->plan->pivotal_sliced);
    add_int(o, "pivotal_keyframes_per_slice", r->plan->unet_frames);
    json_object_object_add(m, "memory", o);

    o = json_object_new_object();
    add_num(o, "inversion_s", r->t_inversion);
    add_num(o, "vae_encode_s", r->t_encode);
    add_num(o, "editing_s", r->t_edit);
    add_num(o, "source_latents_read_s", r->t_source);
    add_num(o, "vae_decode_s", r->t_decode);
    add_num(o, "outputs_s", r->t_outputs);
    add_num(o, "total_s", stem_now_seconds() - r->t_start);
    const int done = S - r->first_step;
    if (done > 0 && r->frames_edited > 0) add_num(o, "editing_s_per_frame_step", r->t_edit / ((double)done * (double)r->frames_edited));
    add_bool(o, "resumed", r->first_step > 0);
    if (r->first_step > 0) add_int(o, "resumed_after_step", r->first_step);
    json_object_object_add(m, "timing", o);

    const edit_metrics *em = r->metrics;
    o = json_object_new_object();
    add_str(o, "definition", "pixels in [0, 1]; temporal_mad_vs_input = mean |(x_t - x_{t-1}) - (input_t - input_{t-1})| "
            "(0: x changes from frame to frame exactly as the input does); mean_abs_frame_difference = mean |x_t - x_{t-1}|");
    json_object *t = json_object_new_object();
    add_num(t, "edit", em->temporal_edit);
    add_num(t, "reconstruction", em->temporal_reconstruction);
    json_object_object_add(o, "temporal_mad_vs_input", t);
    t = json_object_new_object();
    add_num(t, "input", em->flicker_input);
    add_num(t, "reconstruction", em->flicker_reconstruction);
    add_num(t, "edit", em->flicker_edit);
    json_object_object_add(o, "mean_abs_frame_difference", t);
    json_object_object_add(m, "metrics", o);

    static const char *const names[3] = {"inversion_prompt", "negative_prompt", "prompt"};
    o = json_object_new_object();
    for (int i = 0; i < 3; i++) add_bool(o, names[i], r->prompt_truncated[i]);
    json_object_object_add(m, "prompt_truncated_to_77_tokens", o);
    return m;
}
