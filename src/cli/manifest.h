/* manifest.json: what every command that writes a folder records, in this order:
 *   "tool"         "stem COMMAND VERSION" (what --force recognises, cli/output_dir.h)
 *   "options"      the command's options (its options.json)
 *   "environment"  backend, OpenBLAS core, threads, library versions, the memory limit and
 *                  the UNet activations' and the device's peaks
 *   "model"        path, --model-config, fingerprint, UNet parameters, latent size
 * and then the command's own sections (frame sizes, timing, metrics). */
#ifndef STEM_CLI_MANIFEST_H
#define STEM_CLI_MANIFEST_H

#include <json-c/json.h>

#include "io/metrics.h"
#include "pipeline/pipeline.h"

/* The device memory a run has used so far (cudaMemGetInfo: everything on the device, the
 * CUDA context included): sample it after every step and around the VAE. */
typedef struct cli_device_peak {
    stem_backend *be;
    size_t used; /* GPU: max of (total - free) over the samples; 0 on the CPU */
} cli_device_peak;
void cli_device_peak_sample(cli_device_peak *d);

/* {"tool": "stem CMD VERSION", "options": options (a new reference)}. */
json_object *cli_manifest_new(const char *tool, json_object *options);
/* "environment": the backend, the library versions, mem_limit, the arena's peak (the
 * UNet's activations: the --mem-limit budget) and the device's (when sampled). */
void cli_manifest_environment(json_object *manifest, const stem_pipeline *p, size_t mem_limit,
                              const cli_device_peak *device);
/* "model": path, --model-config (when given), fingerprint of both (when computable),
 * for a single file where its tokenizer and scheduler came from, UNet parameters,
 * latent size "WxH". */
void cli_manifest_model(json_object *manifest, const char *model_path, const char *model_config,
                        const stem_pipeline *p, int64_t latent_w, int64_t latent_h);

/* {"psnr_db": [...], "ssim": [...], "mean_psnr_db", "mean_ssim", "temporal_mad"}. */
json_object *cli_metrics_json(const stem_video_metrics *m);

/* Pretty JSON, written atomically. */
stem_status cli_write_json(const char *path, json_object *o);

#endif
