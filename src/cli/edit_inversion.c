/* The inversion `stem edit` works on (see edit_inversion.h). */
#include "cli/edit_inversion.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/invert_job.h"
#include "cli/progress.h"
#include "core/backend.h"
#include "core/host.h"
#include "core/tensor_map.h"
#include "io/safetensors.h"
#include "pipeline/latent_file.h"
#include "pipeline/latent_store.h"

/* ---- reading the folder --------------------------------------------------------------- */

static json_object *read_json(const char *dir, const char *name, char *path, size_t len) {
    snprintf(path, len, "%s/%s", dir, name);
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (1 << 24)) return NULL;
    json_object *o = json_object_from_file(path);
    if (o && !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

static stem_status get_string(json_object *o, const char *path, const char *key, char *out, size_t len) {
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return stem_fail(STEM_E_FORMAT, "%s: no string \"%s\" (not written by this stem invert?)", path, key);
    if (snprintf(out, len, "%s", json_object_get_string(v)) >= (int)len)
        return stem_fail(STEM_E_FORMAT, "%s: \"%s\" is too long", path, key);
    return STEM_OK;
}

static stem_status get_int(json_object *o, const char *path, const char *key, int lo, int hi, int *out) {
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
        return stem_fail(STEM_E_FORMAT, "%s: no integer \"%s\" (not written by this stem invert?)", path, key);
    int64_t x = json_object_get_int64(v);
    if (x < lo || x > hi) return stem_fail(STEM_E_FORMAT, "%s: \"%s\" is %lld, not in %d..%d", path, key, (long long)x, lo, hi);
    *out = (int)x;
    return STEM_OK;
}

stem_status edit_inversion_read(const char *dir, const char *what, edit_inversion *inv) {
    memset(inv, 0, sizeof *inv);
    snprintf(inv->what, sizeof inv->what, "%s", what);
    const char *W = inv->what;
    if (snprintf(inv->dir, sizeof inv->dir, "%s", dir) >= (int)sizeof inv->dir)
        return stem_fail(STEM_E_ARG, "%s: the path is too long", W);
    char path[PATH_MAX + 32];
    struct stat st;
    if (stat(dir, &st) != 0) {
        snprintf(path, sizeof path, "%s.partial", dir);
        if (stat(path, &st) == 0)
            return stem_fail(STEM_E_ARG, "%s %s is not finished: %s holds an interrupted stem invert; "
                             "complete it with the same `stem invert` command and --resume", W, dir, path);
        return stem_fail(STEM_E_ARG, "%s %s: no such folder (it should be what `stem invert --out %s` "
                         "wrote)", W, dir, dir);
    }
    if (!S_ISDIR(st.st_mode)) return stem_fail(STEM_E_ARG, "%s %s is not a folder", W, dir);
    json_object *options = NULL, *manifest = read_json(dir, "manifest.json", path, sizeof path), *v, *w;
    stem_status s = STEM_OK;
    if (!manifest) {
        bool has_options = (options = read_json(dir, "options.json", path, sizeof path)) != NULL;
        s = stem_fail(STEM_E_ARG, "%s %s has no readable manifest.json: %s", W, dir,
                      has_options ? "an unfinished stem invert (the manifest is written last); finish it with "
                                    "--resume" : "not a `stem invert` output");
        goto done;
    }
    if (!json_object_object_get_ex(manifest, "tool", &v) || !json_object_is_type(v, json_type_string) ||
        strncmp(json_object_get_string(v), "stem invert", 11) != 0) {
        s = stem_fail(STEM_E_ARG, "%s %s: manifest.json was not written by `stem invert` (its \"tool\" is "
                      "%s)", W, dir, v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "missing");
        goto done;
    }
    if (json_object_object_get_ex(manifest, "model", &v) && json_object_object_get_ex(v, "fingerprint_fnv1a64", &w) &&
        json_object_is_type(w, json_type_string))
        snprintf(inv->fingerprint, sizeof inv->fingerprint, "%s", json_object_get_string(w));
    char size[64] = "";
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    if (!json_object_object_get_ex(manifest, "frame_sizes", &v) ||
        (s = get_string(v, path, "output", size, sizeof size)) != STEM_OK ||
        sscanf(size, "%dx%d", &inv->out_w, &inv->out_h) != 2 || inv->out_w < 1 || inv->out_h < 1) {
        s = stem_fail(STEM_E_FORMAT, "%s: no frame_sizes.output \"WxH\"", path);
        goto done;
    }
    if (!(options = read_json(dir, "options.json", path, sizeof path))) {
        s = stem_fail(STEM_E_FORMAT, "%s %s has no readable options.json", W, dir);
        goto done;
    }
    if ((s = get_string(options, path, "model", inv->model, sizeof inv->model)) != STEM_OK ||
        (s = get_string(options, path, "frames", inv->frames, sizeof inv->frames)) != STEM_OK ||
        (s = get_string(options, path, "prompt", inv->prompt, sizeof inv->prompt)) != STEM_OK ||
        (s = get_string(options, path, "attention", inv->attention, sizeof inv->attention)) != STEM_OK ||
        (s = get_string(options, path, "em_scope", inv->em_scope, sizeof inv->em_scope)) != STEM_OK ||
        (s = get_string(options, path, "backend", inv->backend, sizeof inv->backend)) != STEM_OK ||
        (s = get_string(options, path, "dtype", inv->dtype, sizeof inv->dtype)) != STEM_OK ||
        (s = get_int(options, path, "n_frames", 1, 1000000, &inv->n_frames)) != STEM_OK ||
        (s = get_int(options, path, "width", 1, 1 << 16, &inv->width)) != STEM_OK ||
        (s = get_int(options, path, "height", 1, 1 << 16, &inv->height)) != STEM_OK ||
        (s = get_int(options, path, "steps", 1, 1000, &inv->steps)) != STEM_OK)
        goto done;
    if (json_object_object_get_ex(options, "model_config", &v) &&
        (s = get_string(options, path, "model_config", inv->model_config, sizeof inv->model_config)) != STEM_OK)
        goto done;
    snprintf(path, sizeof path, "%s/frames/input", dir);
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        s = stem_fail(STEM_E_FORMAT, "%s %s has no frames/input (the frames it inverted)", W, dir);
done:
    if (options) json_object_put(options);
    if (manifest) json_object_put(manifest);
    return s;
}

/* ---- checking it against the command line ------------------------------------------------ */

/* Two paths name the same file (both resolve), or are equal as text. */
static bool same_path(const char *a, const char *b) {
    char ra[PATH_MAX], rb[PATH_MAX];
    if (realpath(a, ra) && realpath(b, rb)) return strcmp(ra, rb) == 0;
    return strcmp(a, b) == 0;
}

const char *edit_inversion_model(const edit_inversion *inv, const edit_args *a) {
    return a->origin_model[0] ? a->v.model : inv->model;
}

const char *edit_inversion_model_config(const edit_inversion *inv, const edit_args *a) {
    return a->v.model_config ? a->v.model_config : inv->model_config[0] ? inv->model_config : NULL;
}

stem_status edit_inversion_check_args(const edit_inversion *inv, const edit_args *a) {
    const char *d = inv->dir, *W = inv->what;
    const cli_video_args *v = &a->v;
    if (a->origin_model[0] || v->model_config) {
        /* the model with its --model-config: the fingerprint covers both */
        const char *model = edit_inversion_model(inv, a), *config = edit_inversion_model_config(inv, a);
        const char *flag = a->origin_model[0] ? "--model" : "--model-config";
        char fp[17], given[PATH_MAX * 2 + 64], its[PATH_MAX * 2 + 32];
        STEM_TRY(stem_model_fingerprint(model, config, fp));
        snprintf(given, sizeof given, "%s%s%s%s%s", a->origin_model[0] ? "--model " : "model ", model,
                 config ? " --model-config " : "", config ? config : "",
                 config && !v->model_config ? " (the inversion's)" : "");
        snprintf(its, sizeof its, "%s%s%s", inv->model, inv->model_config[0] ? " --model-config " : "",
                 inv->model_config);
        if (!inv->fingerprint[0])
            return stem_fail(STEM_E_ARG, "%s %s: its manifest.json has no model fingerprint to compare %s with", W, d,
                             given);
        if (strcmp(fp, inv->fingerprint))
            return stem_fail(STEM_E_ARG, "%s (fingerprint %s) is not the model of %s %s (%s, fingerprint %s): invert "
                             "with this model, or drop %s", given, fp, W, d, its, inv->fingerprint, flag);
    }
    if (a->origin_frames[0] && !same_path(v->frames, inv->frames))
        return stem_fail(STEM_E_ARG, "%s %s: %s %s inverted %s", a->origin_frames, v->frames, W, d, inv->frames);
    if (v->n_frames && v->n_frames != inv->n_frames)
        return stem_fail(STEM_E_ARG, "%s %d: %s %s has %d frames", v->n_frames_name, v->n_frames, W, d, inv->n_frames);
    if (v->width && v->width != inv->width)
        return stem_fail(STEM_E_ARG, "%s %d: %s %s is %dx%d", a->origin_width, v->width, W, d, inv->width, inv->height);
    if (v->height && v->height != inv->height)
        return stem_fail(STEM_E_ARG, "%s %d: %s %s is %dx%d", a->origin_height, v->height, W, d, inv->width,
                         inv->height);
    if (a->origin_steps[0] && a->inv.inv.steps != inv->steps)
        return stem_fail(STEM_E_ARG, "%s %d: %s %s has %d steps, and an edit samples on the inversion's timesteps; "
                         "invert with %d steps, or drop it", a->origin_steps, a->inv.inv.steps, W, d, inv->steps,
                         a->inv.inv.steps);
    if (a->origin_prompt[0] && a->inv.prompt && strcmp(a->inv.prompt, inv->prompt))
        return stem_fail(STEM_E_ARG, "%s \"%s\": %s %s was inverted with \"%s\"", a->origin_prompt, a->inv.prompt, W,
                         d, inv->prompt);
    if (a->origin_attention[0] && strcmp(stem_sa_mode_name(a->inv.inv.sa.mode), inv->attention))
        return stem_fail(STEM_E_ARG, "--attention %s: %s %s used %s", stem_sa_mode_name(a->inv.inv.sa.mode), W, d,
                         inv->attention);
    if (a->origin_scope[0] && strcmp(stem_em_scope_name(a->inv.inv.sa.scope), inv->em_scope))
        return stem_fail(STEM_E_ARG, "--em-scope %s: %s %s used %s", stem_em_scope_name(a->inv.inv.sa.scope), W, d,
                         inv->em_scope);
    return STEM_OK;
}

stem_status edit_inversion_latents_path(const edit_inversion *inv, const stem_ddim *ddim, int step, char *buf,
                                        size_t len) {
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/latents", inv->dir);
    stem_latent_store store;
    STEM_TRY(stem_latent_store_for_phase(&store, dir, STEM_PHASE_INVERSION, ddim));
    return stem_latent_store_path(&store, step, buf, len);
}

stem_status edit_inversion_check_latents(edit_inversion *inv, const stem_ddim *ddim, int64_t c, int64_t h, int64_t w) {
    char path[PATH_MAX + 64];
    for (int i = 0; i < ddim->steps; i++) {
        STEM_TRY(edit_inversion_latents_path(inv, ddim, i, path, sizeof path));
        if (access(path, F_OK) != 0)
            return stem_fail(STEM_E_FORMAT, "%s %s: the latents of inversion step %d of %d are missing (%s)",
                             inv->what, inv->dir, i + 1, ddim->steps, path);
        stem_tensor_map m;
        STEM_TRY(stem_safetensors_inspect(path, &m));
        stem_tensor *t = stem_tensor_map_get(&m, "latents");
        bool ok = t && t->ndim == 4 && t->shape[0] == inv->n_frames && t->shape[1] == c && t->shape[2] == h &&
                  t->shape[3] == w;
        stem_tensor_map_free(&m);
        if (!ok)
            return stem_fail(STEM_E_FORMAT, "%s: not latents [%d, %lld, %lld, %lld] (the inversion's frames and "
                             "this model's latent size)", path, inv->n_frames, (long long)c, (long long)h, (long long)w);
        /* checksum and step metadata (reads the file once) */
        STEM_TRY(stem_latent_file_load(path, STEM_PHASE_INVERSION, i, ddim->timesteps[ddim->steps - 1 - i], NULL));
    }
    stem_tensor_map m;
    STEM_TRY(stem_safetensors_inspect(path, &m));
    const char *sum = stem_tensor_map_get_meta(&m, "checksum_fnv1a64");
    snprintf(inv->x_T_checksum, sizeof inv->x_T_checksum, "%s", sum ? sum : "");
    stem_tensor_map_free(&m);
    return STEM_OK;
}

/* ---- running one --------------------------------------------------------------------- */

stem_status edit_inversion_run(const edit_args *a, const char *dir, stem_pipeline *p) {
    char partial[PATH_MAX + 16];
    snprintf(partial, sizeof partial, "%s.partial", dir);
    struct stat st;
    invert_args ia;
    edit_inversion_args(a, dir, a->v.resume && stat(partial, &st) == 0, &ia);
    if (!a->v.quiet) fprintf(stderr, "stem edit: inverting first, into %s\n", dir);
    fflush(stdout);
    int rc = cli_invert_run(&ia, p); /* the job of `stem invert`, on the model loaded here */
    fflush(stdout);
    if (rc != 0)
        return stem_fail(rc == 2 ? STEM_E_ARG : STEM_E_IO, "the inversion into %s stopped (its message is above)%s",
                         dir, stat(partial, &st) == 0 ? "; --resume continues it" : "");
    return STEM_OK;
}

/* ---- streaming the source branch ------------------------------------------------------ */

void edit_source_init(edit_source *src, const edit_inversion *inv, const stem_ddim *ddim) {
    memset(src, 0, sizeof *src);
    src->inv = inv;
    src->ddim = ddim;
    src->mapped_step = -1;
}

void edit_source_free(edit_source *src) {
    if (src->map) {
        stem_tensor_map_free(src->map);
        free(src->map);
    }
    src->map = NULL;
    src->mapped_step = -1;
}

stem_status edit_source_read(void *user, int inv_step, int64_t f0, int64_t n, stem_tensor *out) {
    edit_source *src = user;
    double t0 = stem_now_seconds();
    if (inv_step < 0 || inv_step >= src->ddim->steps)
        return stem_fail(STEM_E_ARG, "source latents: inversion step %d of %d", inv_step, src->ddim->steps);
    if (src->mapped_step != inv_step) {
        edit_source_free(src);
        char path[PATH_MAX + 64];
        STEM_TRY(edit_inversion_latents_path(src->inv, src->ddim, inv_step, path, sizeof path));
        if (!(src->map = malloc(sizeof(stem_tensor_map)))) return stem_fail(STEM_E_NOMEM, "source latents: out of memory");
        stem_status s = stem_safetensors_load(path, -1, src->map); /* mapped as stored */
        if (s != STEM_OK) {
            free(src->map);
            src->map = NULL;
            return s;
        }
        src->mapped_step = inv_step;
    }
    stem_tensor *all = stem_tensor_map_get(src->map, "latents"), view, conv = {0};
    if (!all) return stem_fail(STEM_E_FORMAT, "inversion step %d: no tensor 'latents'", inv_step);
    if (f0 < 0 || n < 1 || f0 + n > all->shape[0])
        return stem_fail(STEM_E_ARG, "source latents: frames %lld..%lld of %lld", (long long)f0, (long long)(f0 + n - 1),
                         (long long)all->shape[0]);
    STEM_TRY(stem_tensor_narrow0(all, f0, n, &view));
    stem_status s;
    if (view.dtype == out->dtype) {
        s = stem_tensor_copy(&view, out);
    } else {
        s = stem_tensor_to(&view, stem_host(), out->dtype, &conv);
        if (s == STEM_OK) s = stem_tensor_copy(&conv, out);
        stem_tensor_free(&conv);
    }
    src->seconds += stem_now_seconds() - t0;
    return s;
}

json_object *edit_inversion_json(const edit_inversion *inv) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "path", json_object_new_string(inv->dir));
    json_object_object_add(o, "model", json_object_new_string(inv->model));
    if (inv->model_config[0]) json_object_object_add(o, "model_config", json_object_new_string(inv->model_config));
    json_object_object_add(o, "model_fingerprint_fnv1a64", json_object_new_string(inv->fingerprint));
    json_object_object_add(o, "frames", json_object_new_string(inv->frames));
    json_object_object_add(o, "prompt", json_object_new_string(inv->prompt));
    json_object_object_add(o, "n_frames", json_object_new_int(inv->n_frames));
    json_object_object_add(o, "width", json_object_new_int(inv->width));
    json_object_object_add(o, "height", json_object_new_int(inv->height));
    json_object_object_add(o, "steps", json_object_new_int(inv->steps));
    json_object_object_add(o, "attention", json_object_new_string(inv->attention));
    json_object_object_add(o, "em_scope", json_object_new_string(inv->em_scope));
    json_object_object_add(o, "x_T_checksum_fnv1a64", json_object_new_string(inv->x_T_checksum));
    return o;
}
