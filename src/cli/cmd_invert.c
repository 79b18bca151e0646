/* `stem invert`: STEM inversion and DDIM reconstruction of a whole video, with
 * quality metrics, a contact sheet and a manifest; resumable; atomic output. */
#include <errno.h>
#include <json-c/json.h>
#include <png.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "io/atomic_file.h"
#include "io/contact_sheet.h"
#include "io/frames.h"
#include "io/metrics.h"
#include "io/video_write.h"
#include "io/yaml_config.h"
#include "pipeline/invert.h"

/* ---- options ---------------------------------------------------------------------- */

typedef struct invert_args {
    const char *model, *frames, *prompt, *out, *config, *backend;
    int n_frames, width, height, threads, fps;
    size_t mem_limit; /* bytes of UNet activations; 0 = default */
    stem_dtype dtype;
    stem_invert_options inv;
    stem_quantize quantize;
    bool resume, force, quiet, model_is_default, frames_is_default;
    char model_buf[PATH_MAX], frames_buf[PATH_MAX], prompt_buf[1024];
} invert_args;

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
            "  --model DIR            diffusers folder (model_index.json, unet/, vae/, text_encoder/, ...)\n"
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
            "  recon.mp4              the reconstruction as a video (when built with FFmpeg; even sizes)\n");
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

/* 70 % of what the backend can still allocate (RAM: MemAvailable; GPU: cudaMemGetInfo). */
static size_t default_mem_limit(stem_backend *be) {
    size_t available = 0, total = 0;
    if (be->ops->memory_info && be->ops->memory_info(be, &available, &total) == STEM_OK && available)
        return available / 10 * 7;
    return (size_t)8 << 30;
}

static void note_to_stderr(void *user, const char *message) {
    if (!*(const bool *)user) fprintf(stderr, "stem: note: %s\n", message);
}

/* The original's YAML keys onto our options; explicit flags (already set) win. */
static int apply_config(invert_args *a, const bool *flag_set) {
    stem_yaml_config c;
    stem_status s = stem_yaml_config_load(a->config, note_to_stderr, &a->quiet, &c);
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
    if (!flag_set[F_NFRAMES] && stem_yaml_config_has(&c, STEM_CFG_N_FRAMES)) a->n_frames = c.n_frames;
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

static int parse_args(int argc, char **argv, invert_args *a) {
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
        else if (!strcmp(f, "--frames")) { TAKES_VALUE(); a->frames = v; flag_set[1] = true; }
        else if (!strcmp(f, "--prompt")) { TAKES_VALUE(); a->prompt = v; flag_set[2] = true; }
        else if (!strcmp(f, "--out")) { TAKES_VALUE(); a->out = v; flag_set[3] = true; }
        else if (!strcmp(f, "--config")) { TAKES_VALUE(); a->config = v; }
        else if (!strcmp(f, "--n-frames")) { TAKES_VALUE(); rc = parse_int_flag(f, v, 1, 100000, &a->n_frames); flag_set[4] = true; }
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

/* ---- interruption ------------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;
static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

/* ---- per-step saving and resume ------------------------------------------------------- */

/* "512 KiB", "143 MiB", "12.5 GiB": sizes in messages, readable at any scale. */
typedef struct size_text {
    char s[32];
} size_text;

static size_text size_str(double bytes) {
    size_text t;
    if (bytes < 1048576.0)
        snprintf(t.s, sizeof t.s, "%.0f KiB", bytes / 1024.0);
    else if (bytes < 10.0 * 1073741824.0)
        snprintf(t.s, sizeof t.s, "%.0f MiB", bytes / 1048576.0);
    else
        snprintf(t.s, sizeof t.s, "%.1f GiB", bytes / 1073741824.0);
    return t;
}

typedef struct run_state {
    const invert_args *args;
    const char *dir; /* the .partial output folder */
    stem_progress progress;
    double seconds[2];
    stem_backend *be;
    size_t device_used_peak; /* GPU: max of (total - free) over the samples, 0 on the CPU */
} run_state;

/* GPU memory in use (cudaMemGetInfo: everything on the device, CUDA context included),
 * sampled after every step and around the VAE: the manifest reports the largest. */
static void sample_device_memory(run_state *st) {
    size_t available = 0, total = 0;
    if (st->be->kind != STEM_BACKEND_CUDA || !st->be->ops->memory_info ||
        st->be->ops->memory_info(st->be, &available, &total) != STEM_OK)
        return;
    if (total - available > st->device_used_peak) st->device_used_peak = total - available;
}

static void latents_path(char *buf, size_t len, const char *dir, stem_phase phase, int step, int t) {
    snprintf(buf, len, "%s/latents/%s_%03d_t%04d.safetensors", dir, phase == STEM_PHASE_INVERSION ? "inv" : "rec",
             step, t);
}

static stem_status save_latents(const char *path, const stem_tensor *x, stem_phase phase, int step, int t) {
    stem_tensor_map m;
    stem_tensor_map_init(&m);
    stem_tensor view = *x;
    view.owned = false;
    char buf[32];
    stem_status s = stem_tensor_map_put(&m, "latents", view);
    snprintf(buf, sizeof buf, "%d", t);
    if (s == STEM_OK) s = stem_tensor_map_set_meta(&m, "timestep", buf);
    snprintf(buf, sizeof buf, "%d", step);
    if (s == STEM_OK) s = stem_tensor_map_set_meta(&m, "step", buf);
    if (s == STEM_OK) s = stem_tensor_map_set_meta(&m, "phase", phase == STEM_PHASE_INVERSION ? "inversion" : "reconstruction");
    if (s == STEM_OK) s = stem_safetensors_save(path, &m);
    stem_tensor_map_free(&m);
    return s;
}

static stem_status on_step(void *user, stem_phase phase, int step, int steps, int t, const stem_tensor *x) {
    run_state *st = user;
    char path[PATH_MAX + 64];
    latents_path(path, sizeof path, st->dir, phase, step, t);
    STEM_TRY(save_latents(path, x, phase, step, t));
    sample_device_memory(st);
    stem_progress_update(&st->progress, step + 1);
    if (interrupted) return stem_fail(STEM_E_IO, "interrupted after %s step %d of %d; the steps so far are saved: "
                                      "run the same command with --resume to continue",
                                      phase == STEM_PHASE_INVERSION ? "inversion" : "reconstruction", step + 1, steps);
    return STEM_OK;
}

/* The last step of `phase` whose latents are saved, -1 if none: loads them into x. */
static stem_status find_resume_point(const char *dir, stem_phase phase, const stem_ddim *ddim, stem_tensor *x,
                                     int *last) {
    *last = -1;
    for (int i = ddim->steps - 1; i >= 0; i--) {
        int t = phase == STEM_PHASE_INVERSION ? ddim->timesteps[ddim->steps - 1 - i] : ddim->timesteps[i];
        char path[PATH_MAX + 64];
        latents_path(path, sizeof path, dir, phase, i, t);
        if (access(path, F_OK) != 0) continue;
        stem_tensor_map m;
        STEM_TRY(stem_safetensors_load(path, STEM_F32, &m));
        stem_tensor *saved = stem_tensor_map_get(&m, "latents");
        stem_status s = saved ? stem_tensor_copy(saved, x)
                              : stem_fail(STEM_E_FORMAT, "%s: no tensor 'latents'", path);
        stem_tensor_map_free(&m);
        if (s != STEM_OK) return stem_error_context(s, "resuming");
        *last = i;
        return STEM_OK;
    }
    return STEM_OK;
}

/* ---- the manifest ---------------------------------------------------------------------- */

static json_object *options_json(const invert_args *a, const stem_frames *fr) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "model", json_object_new_string(a->model));
    json_object_object_add(o, "frames", json_object_new_string(a->frames));
    json_object_object_add(o, "prompt", json_object_new_string(a->prompt));
    json_object_object_add(o, "n_frames", json_object_new_int(fr->count));
    json_object_object_add(o, "width", json_object_new_int(fr->width));
    json_object_object_add(o, "height", json_object_new_int(fr->height));
    json_object_object_add(o, "steps", json_object_new_int(a->inv.steps));
    json_object_object_add(o, "attention", json_object_new_string(stem_sa_mode_name(a->inv.sa.mode)));
    json_object_object_add(o, "em_scope", json_object_new_string(stem_em_scope_name(a->inv.sa.scope)));
    json_object_object_add(o, "batch_size", json_object_new_int64(a->inv.sa.batch_size));
    json_object_object_add(o, "bases", json_object_new_int64(a->inv.sa.em.bases));
    json_object_object_add(o, "em_iters", json_object_new_int64(a->inv.sa.em.iters));
    json_object_object_add(o, "tau", json_object_new_double(a->inv.sa.em.tau));
    json_object_object_add(o, "seed", json_object_new_uint64(a->inv.sa.em.seed));
    json_object_object_add(o, "backend", json_object_new_string(a->backend));
    json_object_object_add(o, "dtype", json_object_new_string(a->dtype == STEM_F16 ? "f16" : "f32"));
    json_object_object_add(o, "frames_per_unet_evaluation", json_object_new_int64(a->inv.unet_frames));
    /* true: each evaluation takes all frames, its modules the count above at a time */
    json_object_object_add(o, "layer_major_unet", json_object_new_boolean(stem_invert_layer_major(&a->inv, fr->count)));
    json_object_object_add(o, "quantize", json_object_new_string(a->quantize == STEM_QUANTIZE_ROUND ? "round" : "truncate"));
    if (a->config) json_object_object_add(o, "config", json_object_new_string(a->config));
    return o;
}

static json_object *metrics_json(const stem_video_metrics *m) {
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

static stem_status write_json(const char *path, json_object *o) {
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
    return stem_atomic_write(path, text, strlen(text));
}

/* Options must match an interrupted run's to resume it (bit-identical results). */
static stem_status check_resume_options(const char *dir, json_object *options) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/options.json", dir);
    json_object *old = json_object_from_file(path);
    if (!old) return stem_fail(STEM_E_ARG, "--resume: %s has no readable options.json; start over with --force", dir);
    bool same = json_object_equal(old, options);
    json_object_put(old);
    if (!same)
        return stem_fail(STEM_E_ARG, "--resume: the options differ from the interrupted run's (%s); use the same "
                                     "options, or --force to start over", path);
    return STEM_OK;
}

/* ---- the command ------------------------------------------------------------------------ */

static stem_status host_copy(const stem_tensor *t, stem_tensor *host) {
    return stem_tensor_to(t, stem_cpu_backend(), STEM_F32, host);
}

int cmd_invert(int argc, char **argv) {
    invert_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    if (a.threads) stem_set_num_threads(a.threads);

    struct stat st_out;
    if (!a.resume && !a.force && stat(a.out, &st_out) == 0) {
        fprintf(stderr, "stem invert: %s already exists: pass --force to replace it\n", a.out);
        return 2;
    }
    stem_backend *be;
    if ((rc = cli_open_backend(a.backend, &be)) != 0) return rc;

    double t_start = stem_now_seconds();
    stem_frames fr = {0};
    stem_pipeline p;
    bool have_pipeline = false;
    stem_outdir od = {0};
    stem_tensor pixels = {0}, z0 = {0}, x = {0}, context = {0}, vae_px = {0}, rec_px = {0}, host_vae = {0},
                host_rec = {0};
    stem_video_metrics m_rec = {0}, m_vae = {0}, m_rec_vae = {0};
    json_object *options = NULL, *manifest = NULL;
    stem_ddim ddim = {0};
    run_state st = {.args = &a};
    char path[PATH_MAX + 64];
    stem_status s;

    /* frames: first the source size, so that the default size is "unchanged" */
    stem_frames_request req = {.path = a.frames, .n_frames = a.n_frames, .width = a.width, .height = a.height,
                               .note = note_to_stderr, .note_user = &a.quiet};
    if (!req.width || !req.height) {
        stem_frame_source *src;
        stem_image first = {0};
        bool done = false;
        s = stem_frame_source_open(a.frames, note_to_stderr, &a.quiet, &src);
        if (s == STEM_OK) {
            s = stem_frame_source_next(src, &first, &done);
            if (s == STEM_OK && done) s = stem_fail(STEM_E_FORMAT, "%s: no frames", a.frames);
            if (s == STEM_OK) {
                if (!req.width) req.width = first.width;
                if (!req.height) req.height = first.height;
            }
            stem_image_free(&first);
            stem_frame_source_close(src);
        }
        if (s != STEM_OK) goto fail;
    }
    if ((s = stem_frames_load(&req, &fr)) != STEM_OK) goto fail;
    if (fr.mixed_sizes && !a.quiet) fprintf(stderr, "stem: warning: %s: frames differ in size; each was resized to %dx%d\n", a.frames, fr.width, fr.height);

    if (!a.quiet) {
        fprintf(stderr, "stem invert: %d frames %dx%d from %s\n", fr.count, fr.width, fr.height, a.frames);
        fprintf(stderr, "stem invert: model %s%s on %s\n", a.model,
                a.model_is_default ? " (bundled tiny shapes model; real SD 1.5 / 2.1: --model DIR or STEM_MODEL)" : "",
                be->ops->describe(be));
    }
    if ((s = stem_pipeline_load(a.model, be, a.dtype, &p)) != STEM_OK) goto fail;
    have_pipeline = true;
    bool truncated = false;
    if ((s = stem_pipeline_encode_prompt(&p, a.prompt, &context, &truncated)) != STEM_OK) goto fail;
    if (truncated) fprintf(stderr, "stem: warning: the prompt is longer than 77 tokens and was truncated\n");

    /* memory budget: how many frames the UNet's modules may take at once. Without
     * --mem-limit all frames unless they would not fit 70 % of the available RAM; then
     * frame attention and chunk scope split them into evaluations, video scope runs
     * each evaluation layer-major over slices. The count is part of options.json, so
     * --resume runs it the same way. */
    int64_t h, w;
    stem_vae_latent_size(&p.vae, fr.height, fr.width, &h, &w);
    size_t limit = a.mem_limit ? a.mem_limit : default_mem_limit(be);
    stem_invert_memory_plan plan;
    stem_invert_plan_memory(&p, &a.inv, fr.count, h, w, limit, &plan);
    a.inv.unet_frames = plan.needed_all <= limit ? fr.count : plan.unet_frames;
    if (!plan.fits && plan.layer_major) {
        s = stem_fail(STEM_E_ARG, "--attention %s --em-scope video keeps every frame's skip connections, hidden state "
                      "and attention keys/values: about %s for %d frames, plus %s for one frame at a "
                      "time, over the %s memory limit; raise --mem-limit, use fewer frames, or --em-scope chunk "
                      "(the original's per-chunk bases)", stem_sa_mode_name(a.inv.sa.mode),
                      size_str((double)plan.all_frame_state).s, fr.count,
                      size_str((double)(plan.needed - plan.all_frame_state)).s, size_str((double)limit).s);
        goto fail;
    }
    if (!plan.fits) {
        s = stem_fail(STEM_E_ARG, "--attention %s --em-scope %s evaluates all %d frames at once: about %s of UNet "
                      "activations, over the %s memory limit; raise --mem-limit or use fewer frames",
                      stem_sa_mode_name(a.inv.sa.mode), stem_em_scope_name(a.inv.sa.scope), fr.count,
                      size_str((double)plan.needed_all).s, size_str((double)limit).s);
        goto fail;
    }
    if (!a.quiet && stem_invert_layer_major(&a.inv, fr.count))
        fprintf(stderr, "stem invert: layer-major UNet: each module over %lld of the %d frames at a time (memory "
                "limit %s; all frames at once need about %s)\n", (long long)a.inv.unet_frames, fr.count,
                size_str((double)limit).s, size_str((double)plan.needed_all).s);
    else if (!a.quiet && a.inv.unet_frames < fr.count)
        fprintf(stderr, "stem invert: %lld frames per UNet evaluation (memory limit %s)\n",
                (long long)a.inv.unet_frames, size_str((double)limit).s);

    /* output folder: everything goes to DIR.partial and is renamed when complete */
    if (a.force && !a.resume && stat(a.out, &st_out) == 0 && (s = stem_remove_tree(a.out)) != STEM_OK) goto fail;
    if ((s = stem_outdir_begin(a.out, &od)) != STEM_OK) goto fail;
    if (od.reused && !a.resume) {
        if ((s = stem_remove_tree(od.partial)) != STEM_OK || (s = stem_outdir_begin(a.out, &od)) != STEM_OK) goto fail;
    }
    st.dir = od.partial;
    st.be = be;
    options = options_json(&a, &fr);
    snprintf(path, sizeof path, "%s/options.json", od.partial);
    if (a.resume && od.reused) {
        if ((s = check_resume_options(od.partial, options)) != STEM_OK) goto fail;
    } else if ((s = write_json(path, options)) != STEM_OK) goto fail;
    snprintf(path, sizeof path, "%s/latents", od.partial);
    if ((s = stem_mkdirs(path)) != STEM_OK) goto fail;

    /* VAE encode: z0 [F, 4, h, w] */


    int64_t lshape[4] = {fr.count, p.vae.cfg.latent_channels, h, w};
    if ((s = stem_tensor_to(&fr.pixels, be, a.dtype, &pixels)) != STEM_OK ||
        (s = stem_tensor_new(be, a.dtype, 4, lshape, &z0)) != STEM_OK ||
        (s = stem_tensor_new(be, a.dtype, 4, lshape, &x)) != STEM_OK)
        goto fail;
    double t0 = stem_now_seconds();
    if ((s = stem_vae_encode(&p.vae, &pixels, &z0)) != STEM_OK) goto fail;
    double t_encode = stem_now_seconds() - t0;

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    if ((s = stem_ddim_init(&ddim, &p.schedule, a.inv.steps)) != STEM_OK) goto fail;

    /* inversion (resuming after the last saved step when there is one) */
    int last_inv = -1, last_rec = -1;
    if (a.resume && (s = find_resume_point(od.partial, STEM_PHASE_INVERSION, &ddim, &x, &last_inv)) != STEM_OK) goto fail;
    if (last_inv < 0 && (s = stem_tensor_copy(&z0, &x)) != STEM_OK) goto fail;
    if (a.resume && last_inv == ddim.steps - 1 &&
        (s = find_resume_point(od.partial, STEM_PHASE_RECONSTRUCTION, &ddim, &x, &last_rec)) != STEM_OK)
        goto fail;
    if (a.resume && !a.quiet)
        fprintf(stderr, "stem invert: resuming after inversion step %d/%d, reconstruction step %d/%d\n", last_inv + 1,
                ddim.steps, last_rec + 1, ddim.steps);
    t0 = stem_now_seconds();
    stem_progress_begin(&st.progress, "inversion", a.inv.steps, a.quiet);
    if (last_inv + 1 < a.inv.steps) {
        stem_progress_update(&st.progress, last_inv + 1);
        s = stem_invert_latents(&p, &context, &a.inv, last_inv + 1, &x, on_step, &st);
        if (s != STEM_OK) goto fail;
    }
    stem_progress_end(&st.progress);
    st.seconds[0] = stem_now_seconds() - t0;

    /* reconstruction from x_T with the same attention */
    t0 = stem_now_seconds();
    stem_progress_begin(&st.progress, "reconstruction", a.inv.steps, a.quiet);
    if (last_rec + 1 < a.inv.steps) {
        stem_progress_update(&st.progress, last_rec + 1);
        s = stem_reconstruct_latents(&p, &context, &a.inv, last_rec + 1, &x, on_step, &st);
        if (s != STEM_OK) goto fail;
    }
    stem_progress_end(&st.progress);
    st.seconds[1] = stem_now_seconds() - t0;

    /* decode: the VAE round trip (z0) and the reconstruction (x) */
    t0 = stem_now_seconds();
    if ((s = stem_tensor_new(be, a.dtype, 4, fr.pixels.shape, &vae_px)) != STEM_OK ||
        (s = stem_tensor_new(be, a.dtype, 4, fr.pixels.shape, &rec_px)) != STEM_OK ||
        (s = stem_vae_decode(&p.vae, &z0, &vae_px)) != STEM_OK || (s = stem_vae_decode(&p.vae, &x, &rec_px)) != STEM_OK ||
        (s = host_copy(&vae_px, &host_vae)) != STEM_OK || (s = host_copy(&rec_px, &host_rec)) != STEM_OK)
        goto fail;
    double t_decode = stem_now_seconds() - t0;
    sample_device_memory(&st);

    /* frames, sheet, metrics */
    static const char *const frame_dirs[3] = {"input", "vae", "recon"};
    const stem_tensor *columns[3] = {&fr.pixels, &host_vae, &host_rec};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/frames/%s", od.partial, frame_dirs[i]);
        if ((s = stem_frames_write_dir(path, columns[i], a.quantize)) != STEM_OK) goto fail;
    }
    if (stem_video_write_available() && fr.width % 2 == 0 && fr.height % 2 == 0) {
        snprintf(path, sizeof path, "%s/recon.mp4", od.partial);
        if ((s = stem_video_write(path, &host_rec, a.fps, a.quantize)) != STEM_OK) goto fail;
    } else if (!a.quiet) {
        fprintf(stderr, "stem: note: no recon.mp4 (%s)\n",
                stem_video_write_available() ? "odd frame size" : "built without FFmpeg");
    }
    snprintf(path, sizeof path, "%s/sheet.png", od.partial);
    if ((s = stem_contact_sheet_write(path, columns, 3, 4)) != STEM_OK) goto fail;
    bool have_ssim = fr.width >= 11 && fr.height >= 11;
    if (have_ssim && ((s = stem_video_metrics_compute(&fr.pixels, &host_rec, &m_rec)) != STEM_OK ||
                      (s = stem_video_metrics_compute(&fr.pixels, &host_vae, &m_vae)) != STEM_OK ||
                      (s = stem_video_metrics_compute(&host_vae, &host_rec, &m_rec_vae)) != STEM_OK))
        goto fail;

    manifest = json_object_new_object();
    json_object_object_add(manifest, "tool", json_object_new_string("stem invert " STEM_VERSION));
    json_object_object_add(manifest, "options", json_object_get(options));
    json_object *env = json_object_new_object();
    json_object_object_add(env, "backend", json_object_new_string(be->ops->describe(be)));
    json_object_object_add(env, "openblas_core", json_object_new_string(stem_blas_core_name()));
    json_object_object_add(env, "threads", json_object_new_int(stem_num_threads()));
    json_object_object_add(env, "json_c", json_object_new_string(json_c_version()));
    json_object_object_add(env, "libpng", json_object_new_string(png_get_libpng_ver(NULL)));
    json_object_object_add(env, "mem_limit_bytes", json_object_new_uint64(limit));
    /* the UNet's activations (and, layer-major, the all-frame state): the --mem-limit budget */
    json_object_object_add(env, "unet_activation_peak_bytes", json_object_new_uint64(stem_arena_peak(p.arena)));
    if (st.device_used_peak)
        json_object_object_add(env, "device_memory_peak_bytes", json_object_new_uint64(st.device_used_peak));
    json_object_object_add(manifest, "environment", env);
    json_object *model = json_object_new_object();
    json_object_object_add(model, "path", json_object_new_string(a.model));
    char fingerprint[17];
    if (stem_model_fingerprint(a.model, fingerprint) == STEM_OK)
        json_object_object_add(model, "fingerprint_fnv1a64", json_object_new_string(fingerprint));
    json_object_object_add(model, "unet_parameters", json_object_new_int64(stem_unet_param_count(p.unet)));
    char lat[64];
    snprintf(lat, sizeof lat, "%lldx%lld", (long long)w, (long long)h);
    json_object_object_add(model, "latent_size", json_object_new_string(lat));
    json_object_object_add(manifest, "model", model);
    json_object *timing = json_object_new_object();
    json_object_object_add(timing, "vae_encode_s", json_object_new_double(t_encode));
    json_object_object_add(timing, "inversion_s", json_object_new_double(st.seconds[0]));
    json_object_object_add(timing, "reconstruction_s", json_object_new_double(st.seconds[1]));
    json_object_object_add(timing, "vae_decode_s", json_object_new_double(t_decode));
    json_object_object_add(timing, "total_s", json_object_new_double(stem_now_seconds() - t_start));
    json_object_object_add(timing, "resumed", json_object_new_boolean(last_inv >= 0 || last_rec >= 0));
    json_object_object_add(manifest, "timing", timing);
    if (have_ssim) {
        json_object *metrics = json_object_new_object();
        json_object_object_add(metrics, "reconstruction_vs_input", metrics_json(&m_rec));
        json_object_object_add(metrics, "vae_roundtrip_vs_input", metrics_json(&m_vae));
        json_object_object_add(metrics, "reconstruction_vs_vae_roundtrip", metrics_json(&m_rec_vae));
        json_object_object_add(manifest, "metrics", metrics);
    }
    snprintf(path, sizeof path, "%s/manifest.json", od.partial);
    if ((s = write_json(path, manifest)) != STEM_OK) goto fail;
    if ((s = stem_outdir_commit(&od, a.force || a.resume)) != STEM_OK) goto fail;

    if (have_ssim)
        printf("reconstruction vs input:  PSNR %.2f dB  SSIM %.4f  temporal %.5f\n"
               "VAE round trip vs input:  PSNR %.2f dB  SSIM %.4f  temporal %.5f\n"
               "reconstruction vs VAE:    PSNR %.2f dB  SSIM %.4f\n",
               m_rec.mean_psnr, m_rec.mean_ssim, m_rec.temporal, m_vae.mean_psnr, m_vae.mean_ssim, m_vae.temporal,
               m_rec_vae.mean_psnr, m_rec_vae.mean_ssim);
    printf("wrote %s (manifest.json, latents/, frames/, sheet.png%s) in %.1f s\n", a.out,
           stem_video_write_available() && fr.width % 2 == 0 && fr.height % 2 == 0 ? ", recon.mp4" : "",
           stem_now_seconds() - t_start);
    if (a.model_is_default)
        printf("this was the bundled tiny model (trained on 64x64 synthetic shapes only): for real videos, download "
               "Stable Diffusion 1.5 or 2.1-base as a diffusers folder and pass --model DIR (or set STEM_MODEL)\n");
    rc = 0;
    goto done;
fail:
    rc = cli_report(s);
    if (od.partial && !a.quiet && st.dir)
        fprintf(stderr, "stem invert: partial results stay in %s (not a finished run); --resume continues it\n",
                od.partial);
done:
    if (options) json_object_put(options);
    if (manifest) json_object_put(manifest);
    stem_video_metrics_free(&m_rec);
    stem_video_metrics_free(&m_vae);
    stem_video_metrics_free(&m_rec_vae);
    stem_ddim_free(&ddim);
    stem_tensor_free(&pixels);
    stem_tensor_free(&z0);
    stem_tensor_free(&x);
    stem_tensor_free(&context);
    stem_tensor_free(&vae_px);
    stem_tensor_free(&rec_px);
    stem_tensor_free(&host_vae);
    stem_tensor_free(&host_rec);
    if (have_pipeline) stem_pipeline_free(&p);
    stem_frames_free(&fr);
    stem_outdir_free(&od);
    stem_backend_close(be);
    return rc;
}
