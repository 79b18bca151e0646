/* `stem edit` against the PyTorch editing reference, through the command line: a golden of
 * refdata/golden/edit (refdata/gen/gen_edit.py, float64) holds a STEM inversion (the
 * latents of every step, the 8-bit frames), the prompts and options, and the edited latents
 * after steps 0, 1 and S-1. For tests/test_edit_cli.sh:
 *
 *   edit_golden_inversion folder GOLDEN MODEL DIR CONFIG
 *       DIR: the golden's inversion as `stem invert` writes one (options.json, manifest.json,
 *       latents/inv_SSS_tTTTT.safetensors, frames/input and frames/recon as PNG); CONFIG: the
 *       original's YAML with the golden's editing keys (latents_path DIR); prints the flags
 *       the YAML has no key for (--drop-tail, --edit-attention stem, --no-freeu, --freeu-gate:
 *       the FreeU-firing tiny UNet's golden gates at its 64/32 widths)
 *   edit_golden_inversion compare GOLDEN OUT
 *       OUT/latents/edit_*: within the golden's |got - ref| <= atol + rtol |ref| after steps
 *       0, 1 and S-1; prints the worst fraction of the tolerance per step
 * Exit status 0 on success, 1 with a message otherwise. */
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic_file.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "pipeline/latent_file.h"
#include "stem.h"

static int die(const char *what) {
    fprintf(stderr, "edit_golden_inversion: %s: %s\n", what, stem_last_error());
    return 1;
}

static const char *meta(const stem_tensor_map *g, const char *key) {
    const char *v = stem_tensor_map_get_meta(g, key);
    return v ? v : "";
}

/* "1,201,401" -> t[], returns the count */
static int parse_list(const char *s, int *t, int cap) {
    int n = 0;
    for (const char *p = s; *p && n < cap;) {
        t[n++] = atoi(p);
        p = strchr(p, ',');
        if (!p) break;
        p++;
    }
    return n;
}

static stem_status write_png_frames(const char *dir, const stem_tensor *px) {
    STEM_TRY(stem_mkdirs(dir));
    const int F = (int)px->shape[0], H = (int)px->shape[2], W = (int)px->shape[3];
    const uint8_t *src = px->data;
    for (int f = 0; f < F; f++) {
        stem_image img;
        STEM_TRY(stem_image_new(W, H, &img));
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < W * H; i++) img.rgb[3 * i + c] = src[((size_t)f * 3 + c) * (size_t)(W * H) + i];
        char path[PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/%05d.png", dir, f);
        stem_status s = stem_image_write_png(path, &img);
        stem_image_free(&img);
        STEM_TRY(s);
    }
    return STEM_OK;
}

static void yaml_str(FILE *f, const char *key, const char *v) {
    fprintf(f, "%s: '", key);
    for (const char *p = v; *p; p++) fputs(*p == '\'' ? "''" : (char[2]){*p, 0}, f);
    fputs("'\n", f);
}

static int folder(const char *golden, const char *model, const char *dir, const char *config) {
    stem_tensor_map g;
    if (stem_safetensors_load(golden, -1, &g) != STEM_OK) return die(golden);
    stem_tensor *inv = stem_tensor_map_get(&g, "in.inv_latents"), *px = stem_tensor_map_get(&g, "in.pixels");
    if (!inv || !px || inv->ndim != 5 || px->ndim != 4) return die("golden without in.inv_latents / in.pixels");
    int t[64];
    const int S = parse_list(meta(&g, "inv_timesteps"), t, 64), F = (int)px->shape[0], H = (int)px->shape[2],
              W = (int)px->shape[3];
    if (S != inv->shape[0]) return die("inv_timesteps and in.inv_latents disagree");
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/latents", dir);
    if (stem_mkdirs(path) != STEM_OK) return die(path);
    for (int i = 0; i < S; i++) {
        int64_t shape[4] = {inv->shape[1], inv->shape[2], inv->shape[3], inv->shape[4]};
        size_t step = (size_t)(shape[0] * shape[1] * shape[2] * shape[3]);
        stem_tensor x = stem_tensor_wrap(inv->backend, STEM_F32, 4, shape, (float *)inv->data + (size_t)i * step);
        snprintf(path, sizeof path, "%s/latents/inv_%03d_t%04d.safetensors", dir, i, t[i]);
        if (stem_latent_file_save(path, &x, STEM_PHASE_INVERSION, i, t[i]) != STEM_OK) return die(path);
    }
    /* the 8-bit frames the inversion encoded, and (for the contact sheet only) as its "reconstruction" */
    snprintf(path, sizeof path, "%s/frames/input", dir);
    if (write_png_frames(path, px) != STEM_OK) return die(path);
    snprintf(path, sizeof path, "%s/frames/recon", dir);
    if (write_png_frames(path, px) != STEM_OK) return die(path);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "model", json_object_new_string(model));
    json_object_object_add(o, "frames", json_object_new_string(golden));
    json_object_object_add(o, "prompt", json_object_new_string(meta(&g, "prompt_inversion")));
    json_object_object_add(o, "n_frames", json_object_new_int(F));
    json_object_object_add(o, "width", json_object_new_int(W));
    json_object_object_add(o, "height", json_object_new_int(H));
    json_object_object_add(o, "steps", json_object_new_int(S));
    json_object_object_add(o, "attention", json_object_new_string("stem"));
    json_object_object_add(o, "em_scope", json_object_new_string("video"));
    json_object_object_add(o, "backend", json_object_new_string("cpu"));
    json_object_object_add(o, "dtype", json_object_new_string("f32"));
    json_object *m = json_object_new_object(), *fs = json_object_new_object(), *mo = json_object_new_object();
    json_object_object_add(m, "tool", json_object_new_string("stem invert (written from a PyTorch golden)"));
    char size[32], fp[17] = "";
    snprintf(size, sizeof size, "%dx%d", W, H);
    json_object_object_add(fs, "output", json_object_new_string(size));
    json_object_object_add(m, "frame_sizes", fs);
    if (stem_model_fingerprint(model, NULL, fp) == STEM_OK)
        json_object_object_add(mo, "fingerprint_fnv1a64", json_object_new_string(fp));
    json_object_object_add(m, "model", mo);
    int rc = 0;
    const char *const names[2] = {"options.json", "manifest.json"};
    json_object *objs[2] = {o, m};
    for (int i = 0; i < 2 && !rc; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        const char *text = json_object_to_json_string_ext(objs[i], JSON_C_TO_STRING_PRETTY);
        if (stem_atomic_write(path, text, strlen(text)) != STEM_OK) rc = die(path);
    }
    json_object_put(o);
    json_object_put(m);
    FILE *f = rc ? NULL : fopen(config, "w");
    if (!rc && !f) rc = die(config);
    if (f) { /* the original's keys, as its configs write them */
        fprintf(f, "# from %s\nseed: %s\ndevice: 'cpu'\n", golden, meta(&g, "seed"));
        yaml_str(f, "latents_path", dir);
        fprintf(f, "n_inversion_steps: %d\nn_timesteps: %d\nn_frames: %d\nwidth: %d\nheight: %d\n", S, S, F, W, H);
        yaml_str(f, "inversion_prompt", meta(&g, "prompt_inversion"));
        yaml_str(f, "prompt", meta(&g, "prompt"));
        yaml_str(f, "negative_prompt", meta(&g, "negative_prompt"));
        fprintf(f, "guidance_scale: %s\nbatch_size: %s\npnp_attn_t: %s\npnp_f_t: %s\n", meta(&g, "guidance_scale"),
                meta(&g, "batch_size"), meta(&g, "pnp_attn_t"), meta(&g, "pnp_f_t"));
        fclose(f);
        const char *gate = meta(&g, "freeu_gate_channels");
        printf("%s%s%s", !strcmp(meta(&g, "tail"), "drop") ? "--drop-tail " : "",
               !strcmp(meta(&g, "edit_attention"), "stem") ? "--edit-attention stem " : "",
               !strcmp(meta(&g, "freeu"), "off") ? "--no-freeu " : "");
        if (strcmp(meta(&g, "freeu"), "off") && *gate && strcmp(gate, "1280,640")) printf("--freeu-gate %s", gate);
        printf("\n");
    }
    stem_tensor_map_free(&g);
    return rc;
}

static int compare(const char *golden, const char *out) {
    stem_tensor_map g;
    if (stem_safetensors_load(golden, -1, &g) != STEM_OK) return die(golden);
    int t[64], rc = 0;
    const int S = parse_list(meta(&g, "timesteps"), t, 64);
    const int steps[3] = {0, 1, S - 1};
    for (int k = 0; k < 3 && !rc; k++) {
        char key[64], path[PATH_MAX + 64];
        snprintf(key, sizeof key, "out.edit_step%d", steps[k]);
        stem_tensor *ref = stem_tensor_map_get(&g, key), got = {0};
        snprintf(path, sizeof path, "%s/latents/edit_%03d_t%04d.safetensors", out, steps[k], t[steps[k]]);
        if (!ref) rc = die(key);
        else if (stem_tensor_new(stem_host(), STEM_F32, ref->ndim, ref->shape, &got) != STEM_OK ||
                 stem_latent_file_load(path, STEM_PHASE_EDITING, steps[k], t[steps[k]], &got) != STEM_OK)
            rc = die(path);
        char rk[80], ak[80];
        snprintf(rk, sizeof rk, "rtol.edit_step%d", steps[k]);
        snprintf(ak, sizeof ak, "atol.edit_step%d", steps[k]);
        const double rtol = atof(meta(&g, rk)), atol = atof(meta(&g, ak));
        double worst = 0;
        int64_t at = 0;
        for (int64_t i = 0; !rc && i < stem_numel(ref); i++) {
            const double r = ((const float *)ref->data)[i], d = fabs(((const float *)got.data)[i] - r);
            const double frac = d / (atol + rtol * fabs(r));
            if (!(frac <= worst)) worst = frac, at = i;
        }
        if (!rc) printf("step %d: worst %.3f of the tolerance (element %lld)\n", steps[k], worst, (long long)at);
        if (!rc && !(worst <= 1.0)) {
            fprintf(stderr, "edit_golden_inversion: %s: step %d is off the golden by %.2fx its tolerance\n", out,
                    steps[k], worst);
            rc = 1;
        }
        stem_tensor_free(&got);
    }
    stem_tensor_map_free(&g);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 6 && !strcmp(argv[1], "folder")) return folder(argv[2], argv[3], argv[4], argv[5]);
    if (argc == 4 && !strcmp(argv[1], "compare")) return compare(argv[2], argv[3]);
    fprintf(stderr, "usage: edit_golden_inversion folder GOLDEN MODEL DIR CONFIG | compare GOLDEN OUT\n");
    return 1;
}
