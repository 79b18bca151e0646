/* `stem info --model PATH`: what a model folder or single-file checkpoint holds, and
 * whether stem can run it. Reads headers and configs only; loads no weights. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "models/sd_model.h"

static void info_usage(FILE *out) {
    fprintf(out,
            "usage: stem info --model PATH\n"
            "\n"
            "PATH is a diffusers Stable Diffusion folder (model_index.json, text_encoder/, tokenizer/,\n"
            "unet/, vae/, scheduler/) or a single-file original (LDM) checkpoint (.safetensors).\n"
            "Prints the components present and missing, parameter counts, weight dtypes, the detected\n"
            "SD version (1.x: CLIP ViT-L text encoder, quick_gelu, 1x1-conv projections; 2.x: OpenCLIP,\n"
            "gelu, linear projections) and the scheduler; for a checkpoint, what its tensor names map\n"
            "to. Exits 1 when a required component is missing or broken, 2 on bad usage.\n");
}

int cmd_info(int argc, char **argv) {
    const char *model = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            info_usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--model") && i + 1 < argc) {
            model = argv[++i];
        } else if (!strncmp(argv[i], "--model=", 8)) {
            model = argv[i] + 8;
        } else {
            fprintf(stderr, "stem info: unexpected argument '%s'\n\n", argv[i]);
            info_usage(stderr);
            return 2;
        }
    }
    if (!model) {
        fprintf(stderr, "stem info: --model PATH is required\n\n");
        info_usage(stderr);
        return 2;
    }
    stem_sd_info info;
    stem_status s = stem_sd_inspect(model, &info);
    if (s != STEM_OK) return cli_report(s);
    stem_sd_info_print(&info, stdout);
    if (info.missing) {
        fprintf(stderr, "stem: %s: %d required component%s missing or broken (see above)\n", model, info.missing,
                info.missing == 1 ? "" : "s");
        return 1;
    }
    return 0;
}
