/* `stem edit`'s command line: flags, the original's YAML config and the defaults. */
#include "cli/edit_args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/yaml_config.h"

/* the caption of the bundled clip, and an edit of it (the tiny model hardly follows text) */
#define DEFAULT_INVERSION_PROMPT "a green circle moving right and a red square moving right on a yellow background"
#define DEFAULT_EDIT_PROMPT "a blue circle moving right and a red square moving right on a yellow background"
/* the original's configs' negative prompt */
#define DEFAULT_NEGATIVE_PROMPT "ugly, blurry, low res, unrealistic, unaesthetic"

static void usage(FILE *out) {
    fprintf(out,
            "usage: stem edit --prompt TEXT [--inversion DIR] [--out DIR] [options]\n"
            "       stem edit --config CONFIG.yaml [options]\n"
            "\n"
            "Edits a video with TokenFlow (doc/algorithm.md §7) on a STEM inversion: every frame is\n"
            "sampled again from the inversion's noisiest latents under the new --prompt, with the\n"
            "inverted latents of every step as the source branch (plug-and-play injection of the\n"
            "source's attention queries/keys and one up-block's features), keyframes edited together\n"
            "(extended attention, or STEM bases with --edit-attention stem) and every other frame\n"
            "taking its keyframes' attention outputs through token flow, so the edit stays consistent\n"
            "over time. FreeU is on by default, as in the original.\n"
            "\n"
            "  stem edit --prompt \"a blue circle moving right and a red square moving right on a yellow background\"\n"
            "      inverts the bundled clip with the bundled tiny model into OUT/inversion, then edits it\n"
            "      (the tiny model was trained on synthetic shapes and hardly follows text: expect a\n"
            "      faithful reconstruction more than an edit)\n"
            "  stem edit --inversion tennis-inv --prompt \"Spider-Man is playing tennis\" --out tennis-edit\n"
            "      edits a finished `stem invert` folder (model, frames, size, steps come from it)\n"
            "  stem invert --config refdata/configs/config_pnp_tennis.yaml    # writes latents_path\n"
            "  stem edit --config refdata/configs/config_pnp_tennis.yaml      # reads it, writes output_path\n"
            "      the original's two steps with its YAML unchanged (stem edit alone inverts into\n"
            "      latents_path first when it does not exist)\n"
            "\n"
            "the inversion:\n"
            "  --inversion DIR        a finished `stem invert` output; checked: complete, the latents of every\n"
            "                         step, and the same model/frames/size/steps as any flag below asks\n"
            "  without --inversion stem edit first runs `stem invert` into OUT/inversion with these:\n"
            "  --model DIR            diffusers folder (default: the bundled refdata/models/shapes-sd1)\n"
            "  --frames DIR|VIDEO     input frames (default: the bundled clip refdata/clips/shapes)\n"
            "  --inversion-prompt TEXT  describes the input video\n"
            "  --n-frames N  --width W --height H  --steps S  --attention MODE  --em-scope SCOPE\n"
            "                         as in `stem invert --help` (steps: DDIM steps of inversion and edit)\n"
            "editing:\n"
            "  --prompt TEXT          the edit (what the video should show)\n"
            "  --negative-prompt TEXT (default \"" DEFAULT_NEGATIVE_PROMPT "\")\n"
            "  --config FILE.yaml     the original's config: prompt, negative_prompt, guidance_scale,\n"
            "                         n_timesteps, pnp_attn_t, pnp_f_t, batch_size, latents_path (the\n"
            "                         inversion), output_path (--out) and the inversion's keys; flags win\n"
            "  --guidance-scale G     classifier-free guidance (default 7.5; 0..100)\n"
            "  --pnp-attn-t F         fraction of the steps with attention Q/K injection (default 0.5; 0..1)\n"
            "  --pnp-f-t F            fraction of the steps with feature (conv) injection (default 0.8; 0..1)\n"
            "  --batch-size N         frames per chunk, one keyframe each (default 8)\n"
            "  --drop-tail            edit only a multiple of --batch-size frames, as the original does\n"
            "                         (default: every frame; the last chunk is shorter)\n"
            "  --edit-attention extended|stem   the keyframes' joint attention: extended (the original's,\n"
            "                         O(n^2) in the keyframes) or STEM bases over them (O(n M))\n"
            "  --bases M --em-iters R EM bases and iterations (--edit-attention stem, and the inversion)\n"
            "  --seed N               Philox seed of keyframes and EM draws (default 1)\n"
            "  --no-freeu             FreeU off\n"
            "  --freeu-b1 B --freeu-b2 B --freeu-s1 S --freeu-s2 S   FreeU factors (1.2, 1.4, 0.9, 0.2)\n"
            "  --freeu-gate C1,C2     hidden-state channels where (b1, s1) / (b2, s2) act (default 1280,640:\n"
            "                         SD 1.5's up blocks, the original's gate; other UNets never match it)\n"
            "run:\n"
            "  --out DIR              output folder (default: stem-edit-out)\n"
            "  --backend cpu|cuda     (default cpu)   --dtype f32|f16 (default f32; f16 on cuda only)\n"
            "  --threads N            CPU threads (default: all cores)\n"
            "  --mem-limit SIZE       device memory for activations and keyframe caches, e.g. 8G (default:\n"
            "                         70%% of the free RAM, or GPU memory with --backend cuda); whatever the\n"
            "                         frame count, caches that do not fit stay on the host\n"
            "  --dry-run              print the memory plan (device and host bytes per part, frames per UNet\n"
            "                         evaluation) and stop; with --n-frames, --width and --height and no\n"
            "                         --frames, no frame is read\n"
            "  --resume               continue an interrupted run (the same options) from its last step\n"
            "  --force                replace an existing output folder (only one stem wrote)\n"
            "  --quantize round|truncate   8-bit output rounding (default round)\n"
            "  --fps N                frame rate of edit.mp4 (default 10)\n"
            "  --quiet                no progress bar\n"
            "\n"
            "output (written to DIR.partial, renamed to DIR when complete):\n"
            "  manifest.json          every option, model fingerprint, versions, timings, frames edited,\n"
            "                         temporal consistency of the edit next to the input's\n"
            "  latents/edit_SSS_tTTTT.safetensors   edited latents after each step (\"latents\" [Fe,4,h,w])\n"
            "  frames/edit/*.png      the edited frames\n"
            "  edit.mp4               the edit as a video (when built with FFmpeg; even sizes)\n"
            "  sheet.png              input | reconstruction | edit for a few frames\n"
            "  inversion/             the inversion, when stem edit ran it (reuse: --inversion DIR/inversion)\n");
}

/* <source tree>/refdata, or $STEM_REFDATA. */
static const char *refdata_dir(void) {
    const char *env = getenv("STEM_REFDATA");
    return env && *env ? env : STEM_SOURCE_DIR "/refdata";
}

static int parse_int_flag(const char *flag, const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "stem edit: %s must be an integer in %ld..%ld, not '%s'\n", flag, lo, hi, v);
        return 2;
    }
    *out = x;
    return 0;
}

static int parse_number_flag(const char *flag, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || x < lo || x > hi) {
        fprintf(stderr, "stem edit: %s must be a number in [%g, %g], not '%s'\n", flag, lo, hi, v);
        return 2;
    }
    *out = x;
    return 0;
}

static int parse_float_flag(const char *flag, const char *v, double lo, double hi, float *out) {
    double x = 0;
    int rc = parse_number_flag(flag, v, lo, hi, &x);
    *out = (float)x;
    return rc;
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
    if (errno || end == v || *end || !(x > 0) || x * unit > 1e18) {
        fprintf(stderr, "stem edit: %s must be a size such as 8G or 512M, not '%s'\n", flag, v);
        return 2;
    }
    *out = (size_t)(x * unit);
    return 0;
}

static int parse_gate(const char *v, int64_t *g1, int64_t *g2) {
    char *end;
    errno = 0;
    long a = strtol(v, &end, 10), b = -1;
    if (!errno && end != v && *end == ',') {
        const char *w = end + 1;
        b = strtol(w, &end, 10);
        if (end == w) b = -1;
    }
    if (errno || *end || a < 1 || b < 1 || a > 1 << 20 || b > 1 << 20) {
        fprintf(stderr, "stem edit: --freeu-gate must be two channel counts C1,C2 (e.g. 1280,640), not '%s'\n", v);
        return 2;
    }
    *g1 = a;
    *g2 = b;
    return 0;
}

void edit_inversion_what(const edit_args *a, char *buf, size_t len) {
    if (a->inversion_from_config) snprintf(buf, len, "latents_path (%s)", a->config);
    else snprintf(buf, len, "%s", a->inversion ? "--inversion" : "the inversion");
}

void edit_note_to_stderr(void *user, const char *message) {
    if (!*(const bool *)user) fprintf(stderr, "stem: note: %s\n", message);
}

static int inv_flag(edit_args *a, const char *flag, const char *value) {
    if (a->inv_argc + 2 > EDIT_INV_ARGV_MAX) {
        fprintf(stderr, "stem edit: too many inversion flags\n");
        return 2;
    }
    a->inv_argv[a->inv_argc++] = flag;
    if (value) a->inv_argv[a->inv_argc++] = value;
    return 0;
}

/* The config's editing keys onto our options (explicit flags, already set, win); its
 * inversion keys are `stem invert --config`'s (handed on with the file). */
static int apply_config(edit_args *a, bool prompt_set, bool negative_set, bool out_set, bool inversion_set,
                        bool guidance_set, bool attn_t_set, bool f_t_set) {
    stem_yaml_config c;
    stem_status s = stem_yaml_config_load(a->config, edit_note_to_stderr, &a->quiet, &c);
    if (s != STEM_OK) return cli_report(s);
    if (!prompt_set && c.prompt) {
        snprintf(a->prompt_buf, sizeof a->prompt_buf, "%s", c.prompt);
        a->prompt = a->prompt_buf;
    }
    if (!negative_set && stem_yaml_config_has(&c, STEM_CFG_NEGATIVE_PROMPT) && c.negative_prompt) {
        snprintf(a->negative_buf, sizeof a->negative_buf, "%s", c.negative_prompt);
        a->negative_prompt = a->negative_buf;
    }
    if (!guidance_set && stem_yaml_config_has(&c, STEM_CFG_GUIDANCE_SCALE)) a->edit.guidance_scale = c.guidance_scale;
    if (!attn_t_set && stem_yaml_config_has(&c, STEM_CFG_PNP_ATTN_T)) a->edit.pnp_attn_t = c.pnp_attn_t;
    if (!f_t_set && stem_yaml_config_has(&c, STEM_CFG_PNP_F_T)) a->edit.pnp_f_t = c.pnp_f_t;
    if (!a->batch_set && stem_yaml_config_has(&c, STEM_CFG_BATCH_SIZE)) a->edit.batch_size = c.batch_size;
    if (!a->seed_set && stem_yaml_config_has(&c, STEM_CFG_SEED)) a->edit.seed = (uint64_t)c.seed;
    /* what the inversion must match (stem invert --config reads the same keys) */
#define FROM_CONFIG(field, name_field, slot, key)                                                           \
    do {                                                                                                   \
        snprintf(a->names_buf[slot], sizeof a->names_buf[slot], "%s (%s)", key, a->config);                \
        a->name_field = a->names_buf[slot];                                                                \
    } while (0)
    if (!a->steps && stem_yaml_config_has(&c, STEM_CFG_N_TIMESTEPS)) {
        a->steps = c.n_timesteps;
        FROM_CONFIG(steps, steps_name, 0, "n_timesteps");
    }
    if (!a->n_frames && stem_yaml_config_has(&c, STEM_CFG_N_FRAMES) && c.n_frames > 0) {
        a->n_frames = c.n_frames;
        FROM_CONFIG(n_frames, n_frames_name, 1, "n_frames");
    }
    if (!a->width && stem_yaml_config_has(&c, STEM_CFG_WIDTH)) {
        a->width = c.width;
        FROM_CONFIG(width, width_name, 2, "width");
    }
    if (!a->height && stem_yaml_config_has(&c, STEM_CFG_HEIGHT)) {
        a->height = c.height;
        FROM_CONFIG(height, height_name, 3, "height");
    }
    if (!a->frames && c.data_path) {
        snprintf(a->frames_buf, sizeof a->frames_buf, "%s", c.data_path);
        a->frames = a->frames_buf;
        FROM_CONFIG(frames, frames_name, 4, "data_path");
    }
    if (!a->inversion_prompt && c.inversion_prompt) {
        snprintf(a->inversion_prompt_buf, sizeof a->inversion_prompt_buf, "%s", c.inversion_prompt);
        a->inversion_prompt = a->inversion_prompt_buf;
        FROM_CONFIG(inversion_prompt, inversion_prompt_name, 5, "inversion_prompt");
    }
#undef FROM_CONFIG
    if (!a->backend_set && c.device && !strncmp(c.device, "cuda", 4)) {
        a->backend = "cuda"; /* as stem invert --config does */
        if (inv_flag(a, "--backend", "cuda")) return 2;
    }
    if (!out_set && c.output_path) {
        snprintf(a->out_buf, sizeof a->out_buf, "%s", c.output_path);
        a->out = a->out_buf;
    }
    if (!inversion_set && c.latents_path) {
        snprintf(a->inversion_buf, sizeof a->inversion_buf, "%s", c.latents_path);
        a->inversion = a->inversion_buf;
        a->inversion_from_config = true;
    }
    stem_yaml_config_free(&c);
    return 0;
}

int edit_parse_args(int argc, char **argv, edit_args *a) {
    memset(a, 0, sizeof *a);
    stem_edit_options_default(&a->edit);
    a->backend = "cpu";
    a->dtype = STEM_F32;
    a->out = "stem-edit-out";
    a->fps = 10;
    a->negative_prompt = DEFAULT_NEGATIVE_PROMPT;
    bool prompt_set = false, negative_set = false, out_set = false, inversion_set = false, guidance_set = false,
         attn_t_set = false, f_t_set = false;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        long n = 0;
#define TAKES_VALUE()                                                                      \
    do {                                                                                   \
        if (!v) {                                                                          \
            fprintf(stderr, "stem edit: %s needs a value (see stem edit --help)\n", f);    \
            return 2;                                                                      \
        }                                                                                  \
        i++;                                                                               \
    } while (0)
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) { usage(stdout); return -1; }
        else if (!strcmp(f, "--resume")) a->resume = true;
        else if (!strcmp(f, "--force")) a->force = true;
        else if (!strcmp(f, "--quiet")) a->quiet = true;
        else if (!strcmp(f, "--dry-run")) a->dry_run = true;
        else if (!strcmp(f, "--drop-tail")) a->edit.tail = STEM_EDIT_TAIL_DROP;
        else if (!strcmp(f, "--no-freeu")) a->edit.freeu.enabled = false;
        else if (!strcmp(f, "--inversion")) { TAKES_VALUE(); a->inversion = v; inversion_set = true; }
        else if (!strcmp(f, "--prompt")) { TAKES_VALUE(); a->prompt = v; prompt_set = true; }
        else if (!strcmp(f, "--negative-prompt")) { TAKES_VALUE(); a->negative_prompt = v; negative_set = true; }
        else if (!strcmp(f, "--out")) { TAKES_VALUE(); a->out = v; out_set = true; }
        else if (!strcmp(f, "--config")) { TAKES_VALUE(); a->config = v; rc = inv_flag(a, f, v); }
        else if (!strcmp(f, "--model")) { TAKES_VALUE(); a->model = v; rc = inv_flag(a, f, v); }
        else if (!strcmp(f, "--frames")) {
            TAKES_VALUE();
            a->frames = v, a->frames_name = f, a->inversion_flags = true;
            rc = inv_flag(a, f, v);
        } else if (!strcmp(f, "--inversion-prompt")) {
            TAKES_VALUE();
            a->inversion_prompt = v, a->inversion_prompt_name = f, a->inversion_flags = true;
            rc = inv_flag(a, "--prompt", v);
        } else if (!strcmp(f, "--attention") || !strcmp(f, "--em-scope")) {
            TAKES_VALUE();
            if (f[2] == 'a') a->attention = v;
            else a->em_scope = v;
            a->inversion_flags = true;
            rc = inv_flag(a, f, v);
        }
        else if (!strcmp(f, "--n-frames")) {
            TAKES_VALUE();
            if (!(rc = parse_int_flag(f, v, 1, 100000, &n))) a->n_frames = (int)n, a->n_frames_name = f, rc = inv_flag(a, f, v);
        } else if (!strcmp(f, "--width") || !strcmp(f, "--height")) {
            TAKES_VALUE();
            if (!(rc = parse_int_flag(f, v, 8, 8192, &n))) {
                if (f[2] == 'w') a->width = (int)n, a->width_name = f;
                else a->height = (int)n, a->height_name = f;
                rc = inv_flag(a, f, v);
            }
        } else if (!strcmp(f, "--steps")) {
            TAKES_VALUE();
            if (!(rc = parse_int_flag(f, v, 1, 1000, &n))) a->steps = (int)n, a->steps_name = "--steps", rc = inv_flag(a, f, v);
        } else if (!strcmp(f, "--seed")) {
            TAKES_VALUE();
            char *end;
            errno = 0;
            unsigned long long x = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-') {
                fprintf(stderr, "stem edit: --seed must be a non-negative integer, not '%s'\n", v);
                return 2;
            }
            a->edit.seed = x;
            a->seed_set = true;
            rc = inv_flag(a, f, v);
        } else if (!strcmp(f, "--batch-size")) {
            TAKES_VALUE();
            if (!(rc = parse_int_flag(f, v, 1, 4096, &n))) a->edit.batch_size = n, a->batch_set = true, rc = inv_flag(a, f, v);
        } else if (!strcmp(f, "--bases")) {
            TAKES_VALUE();
            if (!(rc = parse_int_flag(f, v, 1, 65536, &n))) a->edit.em.bases = n, a->bases_set = true, rc = inv_flag(a, f, v);
        } else if (!strcmp(f, "--em-iters")) {
            TAKES_VALUE();
            if (!(rc = parse_int_flag(f, v, 0, 1000, &n))) a->edit.em.iters = n, a->em_iters_set = true, rc = inv_flag(a, f, v);
        } else if (!strcmp(f, "--guidance-scale")) {
            TAKES_VALUE();
            rc = parse_number_flag(f, v, 0, 100, &a->edit.guidance_scale);
            guidance_set = true;
        } else if (!strcmp(f, "--pnp-attn-t")) {
            TAKES_VALUE();
            rc = parse_number_flag(f, v, 0, 1, &a->edit.pnp_attn_t);
            attn_t_set = true;
        } else if (!strcmp(f, "--pnp-f-t")) {
            TAKES_VALUE();
            rc = parse_number_flag(f, v, 0, 1, &a->edit.pnp_f_t);
            f_t_set = true;
        } else if (!strcmp(f, "--freeu-b1")) { TAKES_VALUE(); rc = parse_float_flag(f, v, 0, 10, &a->edit.freeu.b1); }
        else if (!strcmp(f, "--freeu-b2")) { TAKES_VALUE(); rc = parse_float_flag(f, v, 0, 10, &a->edit.freeu.b2); }
        else if (!strcmp(f, "--freeu-s1")) { TAKES_VALUE(); rc = parse_float_flag(f, v, 0, 10, &a->edit.freeu.s1); }
        else if (!strcmp(f, "--freeu-s2")) { TAKES_VALUE(); rc = parse_float_flag(f, v, 0, 10, &a->edit.freeu.s2); }
        else if (!strcmp(f, "--freeu-gate")) { TAKES_VALUE(); rc = parse_gate(v, &a->edit.freeu.gate1, &a->edit.freeu.gate2); }
        else if (!strcmp(f, "--edit-attention")) {
            TAKES_VALUE();
            if (stem_edit_attention_parse(v, &a->edit.attention) != STEM_OK) {
                fprintf(stderr, "stem edit: --edit-attention: %s\n", stem_last_error());
                return 2;
            }
        } else if (!strcmp(f, "--threads")) {
            TAKES_VALUE();
            if (!(rc = parse_int_flag(f, v, 1, 1024, &n))) a->threads = (int)n, rc = inv_flag(a, f, v);
        } else if (!strcmp(f, "--fps")) {
            TAKES_VALUE();
            if (!(rc = parse_int_flag(f, v, 1, 240, &n))) a->fps = (int)n, rc = inv_flag(a, f, v);
        } else if (!strcmp(f, "--mem-limit")) {
            TAKES_VALUE();
            if (!(rc = parse_size_flag(f, v, &a->mem_limit))) rc = inv_flag(a, f, v);
        } else if (!strcmp(f, "--backend")) { TAKES_VALUE(); a->backend = v, a->backend_set = true; rc = inv_flag(a, f, v); }
        else if (!strcmp(f, "--dtype")) {
            TAKES_VALUE();
            if (!strcmp(v, "f32")) a->dtype = STEM_F32;
            else if (!strcmp(v, "f16")) a->dtype = STEM_F16;
            else { fprintf(stderr, "stem edit: --dtype must be f32 or f16, not '%s'\n", v); return 2; }
            rc = inv_flag(a, f, v);
        } else if (!strcmp(f, "--quantize")) {
            TAKES_VALUE();
            if (stem_quantize_parse(v, &a->quantize) != STEM_OK) { fprintf(stderr, "stem edit: --quantize: %s\n", stem_last_error()); return 2; }
            rc = inv_flag(a, f, v);
        } else {
            fprintf(stderr, "stem edit: unknown option '%s' (see stem edit --help)\n", f);
            return 2;
        }
        if (rc) return rc;
#undef TAKES_VALUE
    }
    if (a->dtype == STEM_F16 && strcmp(a->backend, "cuda") != 0) {
        fprintf(stderr, "stem edit: --dtype f16 needs --backend cuda (the CPU backend computes in f32)\n");
        return 2;
    }
    if (a->config) {
        int rc = apply_config(a, prompt_set, negative_set, out_set, inversion_set, guidance_set, attn_t_set, f_t_set);
        if (rc) return rc;
    }
    if (a->inversion && a->inversion_flags && !a->inversion_from_config) {
        fprintf(stderr, "stem edit: --inversion %s is a finished inversion: %s would make another; drop it, or drop "
                "--inversion to invert first\n", a->inversion,
                a->frames_name && a->frames_name[0] == '-' ? "--frames"
                : a->inversion_prompt_name && a->inversion_prompt_name[0] == '-' ? "--inversion-prompt"
                : a->attention ? "--attention" : "--em-scope");
        return 2;
    }
    if (!a->prompt) {
        if (a->inversion || a->frames || a->config) {
            fprintf(stderr, "stem edit: --prompt is required: a sentence describing the edited video "
                            "(e.g. --prompt \"Spider-Man is playing tennis\")\n");
            return 2;
        }
        a->prompt = DEFAULT_EDIT_PROMPT; /* the bundled clip */
    }
    /* the bundled default: its model, clip and caption (stem invert's defaults), spelled out
     * so that the checks and the manifest name them */
    if (!a->inversion && !a->config) {
        if (!a->model && !getenv("STEM_MODEL")) {
            snprintf(a->model_buf, sizeof a->model_buf, "%s/models/shapes-sd1", refdata_dir());
            a->model = a->model_buf;
        }
        if (!a->frames && !a->inversion_prompt) {
            a->inversion_prompt = DEFAULT_INVERSION_PROMPT;
            a->inversion_prompt_name = "the default --inversion-prompt";
            if (inv_flag(a, "--prompt", a->inversion_prompt)) return 2;
        }
        if (!a->inversion_prompt) {
            fprintf(stderr, "stem edit: --inversion-prompt is required with --frames: a sentence describing the "
                            "input video (e.g. --inversion-prompt \"A man is playing tennis.\")\n");
            return 2;
        }
    }
    stem_em_options em = a->edit.em;
    em.seed = a->edit.seed;
    if (stem_em_options_check(&em) != STEM_OK) {
        fprintf(stderr, "stem edit: %s\n", stem_last_error());
        return 2;
    }
    return 0;
}
