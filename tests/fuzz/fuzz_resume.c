/* libFuzzer: an output folder read back by --resume and --force: the input is options.json,
 * a latents file and manifest.json separated by FUZZ_SEPARATOR, placed as
 * OUT.partial/options.json, OUT.partial/latents/inv_000_t0001.safetensors and
 * OUT/manifest.json. */
#include <json-c/json.h>

#include "cli/output_dir.h"
#include "backends/backends.h"
#include "core/backend.h"
#include "fuzz_util.h"
#include "pipeline/latent_file.h"
#include "pipeline/resume_check.h"

static json_object *now_options(void) {
    static const char *const text = "{\"model\": \"m\", \"frames\": \"f\", \"prompt\": \"p\", \"n_frames\": 1, "
                                    "\"steps\": 1, \"attention\": \"stem\", \"tau\": 1.0}";
    return json_tokener_parse(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    const uint8_t *part[3];
    size_t len[3];
    fuzz_split(data, n, part, len, 3);
    char out[600], partial[600], path[600];
    fuzz_path(out, sizeof out, "run");
    fuzz_path(partial, sizeof partial, "run.partial");
    stem_remove_tree(out);
    stem_remove_tree(partial);
    fuzz_path(path, sizeof path, "run.partial/latents");
    stem_mkdirs(path);
    stem_mkdirs(out);

    /* options.json, compared as --resume does */
    fuzz_write(path, sizeof path, "run.partial/options.json", part[0] ? part[0] : (const uint8_t *)"", len[0]);
    json_object *old = json_object_from_file(path), *now = now_options();
    if (old) (void)stem_resume_compare_options(path, old, now);
    if (old) json_object_put(old);
    json_object_put(now);

    /* one saved latent, checked and loaded into a [1, 4, 2, 2] tensor, then checked only */
    fuzz_write(path, sizeof path, "run.partial/latents/inv_000_t0001.safetensors", part[1] ? part[1] : (const uint8_t *)"",
               len[1]);
    int64_t shape[4] = {1, 4, 2, 2};
    stem_tensor x;
    if (stem_tensor_zeros(stem_cpu_backend(), STEM_F32, 4, shape, &x) != STEM_OK) abort();
    (void)stem_latent_file_load(path, STEM_PHASE_INVERSION, 0, 1, &x);
    (void)stem_latent_file_load(path, STEM_PHASE_INVERSION, 0, 1, NULL);
    stem_tensor_free(&x);

    /* a stale temporary file next to it, and the sweep */
    fuzz_write(path, sizeof path, "run.partial/latents/inv_000_t0001.safetensors.tmp.999999999", NULL, 0);
    (void)stem_resume_remove_stale_temps(partial, NULL);

    /* manifest.json: may --force replace this folder? */
    fuzz_write(path, sizeof path, "run/manifest.json", part[2] ? part[2] : (const uint8_t *)"", len[2]);
    (void)cli_output_replaceable(out, "--force");
    (void)cli_output_check(out, true, true);
    return 0;
}
