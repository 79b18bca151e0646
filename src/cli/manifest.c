/* The shared parts of manifest.json (see manifest.h). */
#include "cli/manifest.h"

#include <png.h>
#include <string.h>

#include "core/cpu_info.h"
#include "io/atomic_file.h"

void cli_device_peak_sample(cli_device_peak *d) {
    size_t available = 0, total = 0;
    if (!d->be || d->be->kind != STEM_BACKEND_CUDA || !d->be->ops->memory_info ||
        d->be->ops->memory_info(d->be, &available, &total) != STEM_OK)
        return;
    if (total - available > d->used) d->used = total - available;
}

json_object *cli_manifest_new(const char *tool, json_object *options) {
    json_object *manifest = json_object_new_object();
    json_object_object_add(manifest, "tool", json_object_new_string(tool));
    json_object_object_add(manifest, "options", json_object_get(options));
    return manifest;
}

void cli_manifest_environment(json_object *manifest, const stem_pipeline *p, size_t mem_limit,
                              const cli_device_peak *device) {
    stem_backend *be = p->be;
    json_object *env = json_object_new_object();
    json_object_object_add(env, "backend", json_object_new_string(be->ops->describe(be)));
    json_object_object_add(env, "openblas_core", json_object_new_string(stem_blas_core_name()));
    json_object_object_add(env, "threads", json_object_new_int(stem_num_threads()));
    json_object_object_add(env, "json_c", json_object_new_string(json_c_version()));
    json_object_object_add(env, "libpng", json_object_new_string(png_get_libpng_ver(NULL)));
    json_object_object_add(env, "mem_limit_bytes", json_object_new_uint64(mem_limit));
    /* the UNet's activations (and, layer-major, the all-frame state): the --mem-limit budget */
    json_object_object_add(env, "unet_activation_peak_bytes", json_object_new_uint64(stem_arena_peak(p->arena)));
    if (device && device->used)
        json_object_object_add(env, "device_memory_peak_bytes", json_object_new_uint64(device->used));
    json_object_object_add(manifest, "environment", env);
}

void cli_manifest_model(json_object *manifest, const char *model_path, const char *model_config,
                        const stem_pipeline *p, int64_t latent_w, int64_t latent_h) {
    json_object *model = json_object_new_object();
    json_object_object_add(model, "path", json_object_new_string(model_path));
    if (model_config && *model_config) json_object_object_add(model, "config", json_object_new_string(model_config));
    char fingerprint[17];
    if (stem_model_fingerprint(model_path, model_config, fingerprint) == STEM_OK)
        json_object_object_add(model, "fingerprint_fnv1a64", json_object_new_string(fingerprint));
    if (p->single_file) { /* what a single file does not hold */
        json_object_object_add(model, "tokenizer", json_object_new_string(p->tokenizer_from));
        json_object_object_add(model, "scheduler", json_object_new_string(p->scheduler_from));
    }
    json_object_object_add(model, "unet_parameters", json_object_new_int64(stem_unet_param_count(p->unet)));
    char lat[64];
    snprintf(lat, sizeof lat, "%lldx%lld", (long long)latent_w, (long long)latent_h);
    json_object_object_add(model, "latent_size", json_object_new_string(lat));
    json_object_object_add(manifest, "model", model);
}

json_object *cli_metrics_json(const stem_video_metrics *m) {
    json_object *o = json_object_new_object(), *psnr = json_object_new_array(), *ssim = json_object_new_array();
    for (int i = 0; i < m->frames; i++) {
        json_object_array_add(psnr, json_object_new_double(m->psnr[i]));
        json_object_array_add(ssim, json_object_new_double(m->ssim[i]));
    }
    json_object_object_add(o, "psnr_db", psnr);
    json_object_object_add(o, "ssim", ssim);
    json_object_object_add(o, "mean_psnr_db", json_object_new_double(m->mean_psnr));
    json_object_object_add(o, "mean_ssim", json_object_new_double(m->mean_ssim));
    json_object_object_add(o, "temporal_mad", json_object_new_double(m->temporal));
    return o;
}

stem_status cli_write_json(const char *path, json_object *o) {
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
    return stem_atomic_write(path, text, strlen(text));
}
