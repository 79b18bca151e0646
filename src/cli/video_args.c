/* The shared options of the commands that run the model over a video (see video_args.h). */
#include "cli/video_args.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/yaml_config.h"

/* <source tree>/refdata, or $STEM_REFDATA. */
static const char *refdata_dir(void) {
    const char *env = getenv("STEM_REFDATA");
    return env && *env ? env : STEM_SOURCE_DIR "/refdata";
}

void cli_note_to_stderr(void *user, const char *message) {
    if (!*(const bool *)user) fprintf(stderr, "stem: note: %s\n", message);
}

void cli_video_defaults(cli_video_args *v, const char *default_out) {
    memset(v, 0, sizeof *v);
    v->backend = "cpu";
    v->dtype = STEM_F32;
    v->out = default_out;
    snprintf(v->out_help, sizeof v->out_help, "output folder (default: %s)", default_out);
}

void cli_video_add_input(cli_table *t, cli_video_args *v) {
    cli_add(t, (cli_option){.name = "--model", .value = "DIR|FILE", .kind = CLI_STRING, .to.s = &v->model,
                            .help = "diffusers folder (model_index.json, unet/, vae/, text_encoder/, ...) or a\n"
                                    "single-file SD 1.x/2.x checkpoint (.safetensors, original LDM names): its\n"
                                    "configs come from the tensors' shapes and SD's fixed values, its tokenizer\n"
                                    "is the bundled CLIP one (refdata/tokenizer; SD 2.x: pad \"!\"), its scheduler\n"
                                    "SD's DDIM (scaled_linear 0.00085..0.012, steps_offset 1, epsilon: a 768-v\n"
                                    "v-prediction checkpoint is not supported)"});
    cli_add(t, (cli_option){.name = "--model-config", .value = "DIR|FILE.json", .kind = CLI_STRING,
                            .to.s = &v->model_config,
                            .help = "overrides for --model: a diffusers folder of the same model (its\n"
                                    "unet/ vae/ text_encoder/ config.json, scheduler/, tokenizer/; no weights\n"
                                    "read) or {\"unet\": {...}, \"vae\": {...}, \"text_encoder\": {...},\n"
                                    "\"scheduler\": {...}, \"tokenizer\": \"DIR\"} (keys replace the derived ones)"});
    cli_add(t, (cli_option){.name = "--frames", .value = "DIR|VIDEO", .kind = CLI_STRING, .to.s = &v->frames,
                            .yaml = "data_path", .store = v->frames_buf, .store_len = sizeof v->frames_buf,
                            .help = "PNG/JPEG frames (sorted by name) or a video file"});
}

void cli_video_add_shape(cli_table *t, cli_video_args *v) {
    cli_add(t, (cli_option){.name = "--config", .value = "FILE.yaml", .kind = CLI_STRING, .to.s = &v->config,
                            .help = "the original STEM/TokenFlow config; flags given as well win"});
    cli_add(t, (cli_option){.name = "--n-frames", .value = "N", .kind = CLI_INT, .to.i = &v->n_frames, .lo = 1,
                            .hi = 100000, .yaml = "n_frames", .origin = v->n_frames_name,
                            .origin_len = sizeof v->n_frames_name, .help = "first N frames (default: all)"});
    cli_add(t, (cli_option){.name = "--width", .value = "W", .kind = CLI_INT, .to.i = &v->width, .lo = 8, .hi = 8192,
                            .yaml = "width",
                            .help = "resize frames to exactly W wide, Lanczos (default: the first frame's width)"});
    cli_add(t, (cli_option){.name = "--height", .value = "H", .kind = CLI_INT, .to.i = &v->height, .lo = 8,
                            .hi = 8192, .yaml = "height",
                            .help = "... and H high (default: the first frame's height)"});
}

void cli_video_add_run(cli_table *t, cli_video_args *v) {
    cli_add(t, (cli_option){.name = "--out", .value = "DIR", .kind = CLI_STRING, .to.s = &v->out, .help = v->out_help});
    cli_add(t, (cli_option){.name = "--backend", .value = "cpu|cuda", .kind = CLI_STRING, .to.s = &v->backend,
                            .help = "(default cpu)"});
    cli_add(t, (cli_option){.name = "--dtype", .value = "f32|f16", .kind = CLI_CHOICE, .to.any = &v->dtype,
                            .choice = cli_choice_dtype, .help = "(default f32; f16 on cuda only)"});
    cli_add(t, (cli_option){.name = "--threads", .value = "N", .kind = CLI_INT, .to.i = &v->threads, .lo = 1,
                            .hi = 1024, .help = "CPU threads (default: all cores)"});
    cli_add(t, (cli_option){.name = "--mem-limit", .value = "SIZE", .kind = CLI_SIZE, .to.size = &v->mem_limit,
                            .help = "memory for UNet activations, e.g. 8G (default: 70% of the free RAM,\n"
                                    "or of the free GPU memory with --backend cuda)"});
    cli_add(t, (cli_option){.name = "--resume", .kind = CLI_BOOL, .to.b = &v->resume,
                            .help = "continue an interrupted run from its last completed step"});
    cli_add(t, (cli_option){.name = "--force", .kind = CLI_BOOL, .to.b = &v->force,
                            .help = "replace an existing output folder (only one stem wrote)"});
    cli_add(t, (cli_option){.name = "--quiet", .kind = CLI_BOOL, .to.b = &v->quiet, .help = "no progress bar"});
}

/* sd_version names a model: resolve it from the environment, never a download. */
static int model_from_sd_version(const char *cmd, const stem_yaml_config *c, cli_video_args *v) {
    char var[64] = "STEM_MODEL_SD";
    size_t n = strlen(var);
    for (const char *p = c->sd_version ? c->sd_version : "1.5"; *p && n < sizeof var - 1; p++)
        if (*p != '.') var[n++] = *p;
    var[n] = '\0';
    const char *dir = getenv(var);
    if (!dir || !*dir) dir = getenv("STEM_MODEL");
    if (!dir || !*dir) {
        fprintf(stderr, "%s: %s names sd_version '%s': pass --model DIR or set %s (or STEM_MODEL) to its diffusers "
                        "folder\n", cmd, v->config, c->sd_version ? c->sd_version : "1.5", var);
        return 2;
    }
    snprintf(v->model_buf, sizeof v->model_buf, "%s", dir);
    v->model = v->model_buf;
    return 0;
}

/* The original's YAML keys onto the options; explicit flags (already set) win. */
static int apply_config(const char *cmd, cli_table *t, cli_video_args *v, const char *const *out_keys) {
    stem_yaml_config c;
    stem_status s = stem_yaml_config_load(v->config, cli_note_to_stderr, &v->quiet, &c);
    if (s != STEM_OK) return cli_report(s);
    int rc = cli_apply_yaml(cmd, &c, t);
    /* device defaults to "cuda" in the original's configs: any config asks for the GPU */
    if (!rc && !cli_given(t, "--backend") && c.device && !strncmp(c.device, "cuda", 4)) v->backend = "cuda";
    if (!rc && !cli_given(t, "--model")) rc = model_from_sd_version(cmd, &c, v);
    for (const char *const *k = out_keys; !rc && k && *k && !cli_given(t, "--out"); k++) {
        char buf[64];
        int key = stem_config_key_find(*k);
        const char *text = key < 0 ? NULL : stem_yaml_config_text(&c, (stem_config_key)key, buf, sizeof buf);
        if (text && stem_yaml_config_has(&c, (stem_config_key)key)) {
            snprintf(v->out_buf, sizeof v->out_buf, "%s", text);
            v->out = v->out_buf;
            break;
        }
    }
    stem_yaml_config_free(&c);
    return rc;
}

int cli_video_resolve(const char *cmd, cli_table *t, cli_video_args *v, const char *const *out_keys) {
    if (v->dtype == STEM_F16 && strcmp(v->backend, "cuda") != 0) {
        fprintf(stderr, "%s: --dtype f16 needs --backend cuda (the CPU backend computes in f32)\n", cmd);
        return 2;
    }
    if (!v->model) {
        const char *env = getenv("STEM_MODEL");
        if (env && *env) v->model = env;
    }
    if (v->config) {
        int rc = apply_config(cmd, t, v, out_keys);
        if (rc) return rc;
    }
    if (!v->model) {
        snprintf(v->model_buf, sizeof v->model_buf, "%s/models/shapes-sd1", refdata_dir());
        v->model = v->model_buf;
        v->model_is_default = true;
    }
    if (!v->frames) {
        snprintf(v->frames_buf, sizeof v->frames_buf, "%s/clips/shapes", refdata_dir());
        v->frames = v->frames_buf;
        v->frames_is_default = true;
    }
    return 0;
}
