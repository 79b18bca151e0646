/* `stem invert`'s command line: flags, the original's YAML config and the defaults. */
#include "cli/invert_args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/yaml_config.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: stem invert [--model DIR] [--frames DIR|VIDEO] [--prompt TEXT] [--out DIR] [options]\n"
            "       stem invert --config CONFIG.yaml [options]\n"
            "\n"
            "Inverts a video with STEM (every self-attention reads EM bases estimated over the whole\n"
            "video), reconstructs it by DDIM sampling, and reports how close the reconstruction is.\n"
            "With no --model/--frames it runs the bundled tiny trained model (refdata/models/shapes-sd1)\n"
            "on a bundled held-out clip of its synthetic shapes (in about a minute on 2 cores); for\n"
            "Stable Diffusion pass a diffusers folder, e.g.\n"
            "--model ~/models/stable-diffusion-v1-5 (or set STEM_MODEL, or STEM_MODEL_SD15 /\n"
            "STEM_MODEL_SD21 for configs naming sd_version 1.5 / 2.1).\n"
            "\n"
            "input:\n"
            "  --model DIR|FILE       diffusers folder (model_index.json, unet/, vae/, text_encoder/, ...) or a\n"
            "                         single-file SD 1.x/2.x checkpoint (.safetensors, original LDM names): its\n"
            "                         configs come from the tensors' shapes and SD's fixed values, its tokenizer\n"
            "                         is the bundled CLIP one (refdata/tokenizer; SD 2.x: pad \"!\"), its scheduler\n"
            "                         SD's DDIM (scaled_linear 0.00085..0.012, steps_offset 1, epsilon: a 768-v\n"
            "                         v-prediction checkpoint is not supported)\n"
            "  --model-config DIR|FILE.json   overrides for --model: a diffusers folder of the same model (its\n"
            "                         unet/ vae/ text_encoder/ config.json, scheduler/, tokenizer/; no weights\n"
            "                         read) or {\"unet\": {...}, \"vae\": {...}, \"text_encoder\": {...},\n"
            "                         \"scheduler\": {...}, \"tokenizer\": \"DIR\"} (keys replace the derived ones)\n"
            "  --frames DIR|VIDEO     PNG/JPEG frames (sorted by name) or a video file\n"
            "  --prompt TEXT          inversion prompt (describes the input video)\n"
            "  --config FILE.yaml     the original STEM/TokenFlow config; flags given as well win\n"
            "  --n-frames N           first N frames (default: all)\n"
            "  --width W --height H   resize frames to exactly WxH, Lanczos (default: the first frame's size)\n"
            "algorithm:\n"
            "  --steps S              DDIM steps (default 50)\n"
            "  --attention MODE       stem (default) | frame (classic DDIM) | inflated (all-frame attention)\n"
            "  --em-scope SCOPE       video (default: one EM over all frames) | chunk (per --batch-size frames,\n"
            "                         as the original code does)\n"
            "  --batch-size N         frames per chunk with --em-scope chunk (default 8)\n"
            "  --bases M              EM bases (default 256)\n"
            "  --em-iters R           EM iterations (default 5)\n"
            "  --seed N               seed of the Philox stream for the EM initial bases (default 1)\n"
            "run:\n"
            "  --out DIR              output folder (default: stem-invert-out)\n"
            "  --backend cpu|cuda     (default cpu)   --dtype f32|f16 (default f32; f16 on cuda only)\n"
            "  --threads N            CPU threads (default: all cores)\n"
            "  --mem-limit SIZE       memory for UNet activations, e.g. 8G (default: 70%% of the free RAM,\n"
            "                         or of the free GPU memory with --backend cuda);\n"
            "                         --attention frame and --em-scope chunk evaluate fewer frames at a time\n"
            "                         to fit it; --em-scope video runs the UNet layer-major (each module on a\n"
            "                         few frames at a time; all frames' skips and attention keys/values kept)\n"
            "                         and stops early with a clear message when even that does not fit\n"
            "  --resume               continue an interrupted run from its last completed step\n"
            "  --force                replace an existing output folder\n"
            "  --quantize round|truncate   8-bit output rounding (default round; the original truncates)\n"
            "  --fps N                frame rate of recon.mp4 (default 10)\n"
            "  --quiet                no progress bar\n"
            "\n"
            "output (written to DIR.partial, renamed to DIR when complete):\n"
            "  manifest.json          options, model, versions, timings, metrics\n"
            "  latents/inv_SSS_tTTTT.safetensors   inverted latents after each step (\"latents\" [F,4,h,w])\n"
            "  latents/rec_SSS_tTTTT.safetensors   reconstruction latents after each step\n"
            "  frames/input, frames/vae, frames/recon   PNG frames: resized input, VAE round trip, reconstruction\n"
            "  sheet.png              input | VAE | reconstruction for a few frames\n"
            "  recon.mp4              the reconstruction as a video (when built with FFmpeg; even sizes)\n"
            "\n"
            "frame sizes: the VAE decodes to sides that are multiples of its downsampling factor (8 for SD),\n"
            "as the original does: 854x480 frames give 848x480 outputs. frames/vae, frames/recon, recon.mp4\n"
            "and sheet.png are that size; frames/input is the input as encoded. PSNR, SSIM and the temporal\n"
            "metric compare the outputs with the input's top-left region of the output size, where the\n"
            "decoded pixels lie (no resampling); manifest.json \"frame_sizes\" states the sizes and region.\n");
}

/* <source tree>/refdata, or $STEM_REFDATA. */
static const char *refdata_dir(void) {
    const char *env = getenv("STEM_REFDATA");
    return env && *env ? env : STEM_SOURCE_DIR "/refdata";
}

static int parse_int_flag(const char *flag, const char *v, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "stem invert: %s must be an integer in %d..%d, not '%s'\n", flag, lo, hi, v);
        return 2;
    }
    *out = (int)x;
    return 0;
}

/* "8G", "512M", "1.5G", "100000000" -> bytes. */
static int parse_size_flag(const char *flag, const char *v, size_t *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    double unit = 1;
    if (*end == 'K' || *end == 'k') unit = 1024.0, end++;
    else if (*end == 'M' || *end == 'm') unit = 1024.0 * 1024, end++;
    else if (*end == 'G' || *end == 'g') unit = 1024.0 * 1024 * 1024, end++;
    if (*end == 'B' || *end == 'b') end++;
    if (errno || end == v || *end || x <= 0) {
        fprintf(stderr, "stem invert: %s must be a size such as 8G or 512M, not '%s'\n", flag, v);
        return 2;
    }
    *out = (size_t)(x * unit);
    return 0;
}


void invert_note_to_stderr(void *user, const char *message) {
    if (!*(const bool *)user) fprintf(stderr, "stem: note: %s\n", message);
}

/* The original's YAML keys onto our options; explicit flags (already set) win. */
static int apply_config(invert_args *a, const bool *flag_set) {
    stem_yaml_config c;
    stem_status s = stem_yaml_config_load(a->config, invert_note_to_stderr, &a->quiet, &c);
    if (s != STEM_OK) return cli_report(s);
    enum { F_MODEL, F_FRAMES, F_PROMPT, F_OUT, F_NFRAMES, F_WIDTH, F_HEIGHT, F_STEPS, F_SEED, F_BATCH, F_BACKEND };
    if (!flag_set[F_FRAMES] && c.data_path) {
        snprintf(a->frames_buf, sizeof a->frames_buf, "%s", c.data_path);
        a->frames = a->frames_buf;
        a->frames_is_default = false;
    }
    if (!flag_set[F_PROMPT] && c.inversion_prompt) {
        snprintf(a->prompt_buf, sizeof a->prompt_buf, "%s", c.inversion_prompt);
        a->prompt = a->prompt_buf;
    }
    if (!flag_set[F_NFRAMES] && stem_yaml_config_has(&c, STEM_CFG_N_FRAMES)) {
        a->n_frames = c.n_frames;
        snprintf(a->n_frames_name, sizeof a->n_frames_name, "n_frames (%s)", a->config);
    }
    if (!flag_set[F_WIDTH] && stem_yaml_config_has(&c, STEM_CFG_WIDTH)) a->width = c.width;
    if (!flag_set[F_HEIGHT] && stem_yaml_config_has(&c, STEM_CFG_HEIGHT)) a->height = c.height;
    if (!flag_set[F_STEPS] && stem_yaml_config_has(&c, STEM_CFG_N_INVERSION_STEPS)) a->inv.steps = c.n_inversion_steps;
    if (!flag_set[F_SEED] && stem_yaml_config_has(&c, STEM_CFG_SEED)) a->inv.sa.em.seed = (uint64_t)c.seed;
    if (!flag_set[F_BATCH] && stem_yaml_config_has(&c, STEM_CFG_BATCH_SIZE)) a->inv.sa.batch_size = c.batch_size;
    if (!flag_set[F_BACKEND] && c.device && !strncmp(c.device, "cuda", 4)) a->backend = "cuda";
    if (!flag_set[F_MODEL]) {
        /* sd_version names a model; resolve it from the environment, never a download */
        char var[64] = "STEM_MODEL_SD";
        size_t n = strlen(var);
        for (const char *p = c.sd_version ? c.sd_version : "1.5"; *p && n < sizeof var - 1; p++)
            if (*p != '.') var[n++] = *p;
        var[n] = '\0';
        const char *dir = getenv(var);
        if (!dir || !*dir) dir = getenv("STEM_MODEL");
        if (!dir || !*dir) {
            fprintf(stderr, "stem invert: %s names sd_version '%s': pass --model DIR or set %s (or STEM_MODEL) "
                            "to its diffusers folder\n", a->config, c.sd_version ? c.sd_version : "1.5", var);
            stem_yaml_config_free(&c);
            return 2;
        }
        snprintf(a->model_buf, sizeof a->model_buf, "%s", dir);
        a->model = a->model_buf;
        a->model_is_default = false;
    }
    if (!flag_set[F_OUT] && (c.latents_path || c.output_path)) {
        static char out_buf[PATH_MAX];
        snprintf(out_buf, sizeof out_buf, "%s", c.latents_path ? c.latents_path : c.output_path);
        a->out = out_buf;
    }
    stem_yaml_config_free(&c);
    return 0;
}

int invert_parse_args(int argc, char **argv, invert_args *a) {
    memset(a, 0, sizeof *a);
    stem_invert_options_default(&a->inv);
    a->inv.sa.em.seed = 1;
    a->backend = "cpu";
    a->dtype = STEM_F32;
    a->out = "stem-invert-out";
    a->fps = 10;
    bool flag_set[16] = {false};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
#define TAKES_VALUE()                                                                    \
    do {                                                                                 \
        if (!v) {                                                                        \
            fprintf(stderr, "stem invert: %s needs a value (see stem invert --help)\n", f); \
            return 2;                                                                    \
        }                                                                                \
        i++;                                                                             \
    } while (0)
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) { usage(stdout); return -1; }
        else if (!strcmp(f, "--resume")) a->resume = true;
        else if (!strcmp(f, "--force")) a->force = true;
        else if (!strcmp(f, "--quiet")) a->quiet = true;
        else if (!strcmp(f, "--model")) { TAKES_VALUE(); a->model = v; flag_set[0] = true; }
        else if (!strcmp(f, "--model-config")) { TAKES_VALUE(); a->model_config = v; }
        else if (!strcmp(f, "--frames")) { TAKES_VALUE(); a->frames = v; flag_set[1] = true; }
        else if (!strcmp(f, "--prompt")) { TAKES_VALUE(); a->prompt = v; flag_set[2] = true; }
        else if (!strcmp(f, "--out")) { TAKES_VALUE(); a->out = v; flag_set[3] = true; }
        else if (!strcmp(f, "--config")) { TAKES_VALUE(); a->config = v; }
        else if (!strcmp(f, "--n-frames")) {
            TAKES_VALUE();
            rc = parse_int_flag(f, v, 1, 100000, &a->n_frames);
            snprintf(a->n_frames_name, sizeof a->n_frames_name, "--n-frames");
            flag_set[4] = true;
        }
        else if (!strcmp(f, "--width")) { TAKES_VALUE(); rc = parse_int_flag(f, v, 8, 8192, &a->width); flag_set[5] = true; }
        else if (!strcmp(f, "--height")) { TAKES_VALUE(); rc = parse_int_flag(f, v, 8, 8192, &a->height); flag_set[6] = true; }
        else if (!strcmp(f, "--steps")) { TAKES_VALUE(); rc = parse_int_flag(f, v, 1, 1000, &a->inv.steps); flag_set[7] = true; }
        else if (!strcmp(f, "--seed")) {
            TAKES_VALUE();
            char *end;
            errno = 0;
            unsigned long long x = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-') {
                fprintf(stderr, "stem invert: --seed must be a non-negative integer, not '%s'\n", v);
                return 2;
            }
            a->inv.sa.em.seed = x;
            flag_set[8] = true;
        } else if (!strcmp(f, "--batch-size")) {
            TAKES_VALUE();
            int b;
            rc = parse_int_flag(f, v, 1, 4096, &b);
            a->inv.sa.batch_size = b;
            flag_set[9] = true;
        } else if (!strcmp(f, "--bases")) {
            TAKES_VALUE();
            int m;
            rc = parse_int_flag(f, v, 1, 65536, &m);
            a->inv.sa.em.bases = m;
        } else if (!strcmp(f, "--em-iters")) {
            TAKES_VALUE();
            int r;
            rc = parse_int_flag(f, v, 0, 1000, &r);
            a->inv.sa.em.iters = r;
        } else if (!strcmp(f, "--threads")) { TAKES_VALUE(); rc = parse_int_flag(f, v, 1, 1024, &a->threads); }
        else if (!strcmp(f, "--fps")) { TAKES_VALUE(); rc = parse_int_flag(f, v, 1, 240, &a->fps); }
        else if (!strcmp(f, "--mem-limit")) { TAKES_VALUE(); rc = parse_size_flag(f, v, &a->mem_limit); }
        else if (!strcmp(f, "--backend")) { TAKES_VALUE(); a->backend = v; flag_set[10] = true; }
        else if (!strcmp(f, "--dtype")) {
            TAKES_VALUE();
            if (!strcmp(v, "f32")) a->dtype = STEM_F32;
            else if (!strcmp(v, "f16")) a->dtype = STEM_F16;
            else { fprintf(stderr, "stem invert: --dtype must be f32 or f16, not '%s'\n", v); return 2; }
        } else if (!strcmp(f, "--attention")) {
            TAKES_VALUE();
            if (stem_sa_mode_parse(v, &a->inv.sa.mode) != STEM_OK) { fprintf(stderr, "stem invert: --attention: %s\n", stem_last_error()); return 2; }
        } else if (!strcmp(f, "--em-scope")) {
            TAKES_VALUE();
            if (stem_em_scope_parse(v, &a->inv.sa.scope) != STEM_OK) { fprintf(stderr, "stem invert: --em-scope: %s\n", stem_last_error()); return 2; }
        } else if (!strcmp(f, "--quantize")) {
            TAKES_VALUE();
            if (stem_quantize_parse(v, &a->quantize) != STEM_OK) { fprintf(stderr, "stem invert: --quantize: %s\n", stem_last_error()); return 2; }
        } else {
            fprintf(stderr, "stem invert: unknown option '%s' (see stem invert --help)\n", f);
            return 2;
        }
        if (rc) return rc;
#undef TAKES_VALUE
    }
    if (a->dtype == STEM_F16 && strcmp(a->backend, "cuda") != 0) {
        fprintf(stderr, "stem invert: --dtype f16 needs --backend cuda (the CPU backend computes in f32)\n");
        return 2;
    }
    if (!a->model) {
        const char *env = getenv("STEM_MODEL");
        if (env && *env) a->model = env;
    }
    if (a->config) {
        int rc = apply_config(a, flag_set);
        if (rc) return rc;
    }
    if (!a->model) {
        snprintf(a->model_buf, sizeof a->model_buf, "%s/models/shapes-sd1", refdata_dir());
        a->model = a->model_buf;
        a->model_is_default = true;
    }
    if (!a->frames) {
        snprintf(a->frames_buf, sizeof a->frames_buf, "%s/clips/shapes", refdata_dir());
        a->frames = a->frames_buf;
        a->frames_is_default = true;
    }
    if (!a->prompt) {
        if (!a->frames_is_default) {
            fprintf(stderr, "stem invert: --prompt is required: a sentence describing the input video "
                            "(e.g. --prompt \"A man is playing tennis.\")\n");
            return 2;
        }
        /* the caption of the bundled clip (refdata/clips/shapes.txt) */
        a->prompt = "a green circle moving right and a red square moving right on a yellow background";
    }
    if (stem_em_options_check(&a->inv.sa.em) != STEM_OK) {
        fprintf(stderr, "stem invert: %s\n", stem_last_error());
        return 2;
    }
    return 0;
}
