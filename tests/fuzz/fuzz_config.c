/* libFuzzer: one kind of config.json, chosen at build time (FUZZ_CONFIG_KIND):
 *   1 unet/config.json, 2 vae/config.json, 3 text_encoder/config.json,
 *   4 scheduler/scheduler_config.json, 5 model_index.json (a model folder's inspection). */
#include <sys/stat.h>

#include "fuzz_util.h"
#include "models/clip_text.h"
#include "models/model_config.h"
#include "models/sd_model.h"
#include "models/unet.h"
#include "models/vae.h"
#include "stem/ddim.h"

#ifndef FUZZ_CONFIG_KIND
#error "FUZZ_CONFIG_KIND must be 1..5"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char path[600];
#if FUZZ_CONFIG_KIND == 1
    fuzz_write(path, sizeof path, "config.json", data, n);
    stem_unet_config cfg;
    (void)stem_unet_config_load(path, &cfg);
#elif FUZZ_CONFIG_KIND == 2 || FUZZ_CONFIG_KIND == 3
    fuzz_write(path, sizeof path, "config.json", data, n);
    stem_config c;
    if (stem_config_load(path, &c) == STEM_OK) {
#if FUZZ_CONFIG_KIND == 2
        stem_vae_config cfg;
        (void)stem_vae_parse_config(&c, &cfg);
#else
        stem_clip_text_config cfg;
        (void)stem_clip_text_parse_config(&c, &cfg);
#endif
        stem_config_free(&c);
    }
#elif FUZZ_CONFIG_KIND == 4
    fuzz_write(path, sizeof path, "scheduler_config.json", data, n);
    stem_ddim_config cfg;
    if (stem_ddim_config_load(path, &cfg) == STEM_OK) {
        stem_ddim d; /* a loaded schedule must also give a usable 50-step DDIM */
        if (stem_ddim_init(&d, &cfg, 50) == STEM_OK) stem_ddim_free(&d);
    }
#else
    char dir[600];
    fuzz_path(dir, sizeof dir, "model");
    mkdir(dir, 0755);
    fuzz_write(path, sizeof path, "model/model_index.json", data, n);
    stem_sd_info info;
    (void)stem_sd_inspect(dir, &info);
#endif
    return 0;
}
