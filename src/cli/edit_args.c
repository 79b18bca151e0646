/* `stem edit`'s command line: its options table, the original's YAML config and the
 * defaults (see edit_args.h). */
#include "cli/edit_args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/options.h"

#define CMD "stem edit"

/* an edit of the bundled clip's caption (the tiny model hardly follows text) */
#define DEFAULT_EDIT_PROMPT "a blue circle moving right and a red square moving right on a yellow background"
/* the original's configs' negative prompt */
#define DEFAULT_NEGATIVE_PROMPT "ugly, blurry, low res, unrealistic, unaesthetic"

static stem_status choice_attention(const char *v, void *to) { return stem_sa_mode_parse(v, to); }
static stem_status choice_em_scope(const char *v, void *to) { return stem_em_scope_parse(v, to); }
static stem_status choice_quantize(const char *v, void *to) { return stem_quantize_parse(v, to); }
static stem_status choice_edit_attention(const char *v, void *to) { return stem_edit_attention_parse(v, to); }

/* "C1,C2" -> gate1, gate2 */
static stem_status choice_gate(const char *v, void *to) {
    stem_freeu_options *f = to;
    char *end;
    errno = 0;
    long a = strtol(v, &end, 10), b = -1;
    if (!errno && end != v && *end == ',') {
        const char *w = end + 1;
        b = strtol(w, &end, 10);
        if (end == w) b = -1;
    }
    if (errno || *end || a < 1 || b < 1 || a > 1 << 20 || b > 1 << 20)
        return stem_fail(STEM_E_ARG, "must be two channel counts C1,C2 (e.g. 1280,640), not '%s'", v);
    f->gate1 = a;
    f->gate2 = b;
    return STEM_OK;
}

#define ORIGIN(buf) .origin = (buf), .origin_len = sizeof(buf)

static void edit_table(cli_table *t, edit_args *a) {
    stem_edit_options *o = &a->edit;
    cli_section(t, "the inversion:");
    cli_add(t, (cli_option){.name = "--inversion", .value = "DIR", .kind = CLI_STRING, .to.s = &a->inversion,
                            .yaml = "latents_path", .store = a->inversion_buf, .store_len = sizeof a->inversion_buf,
                            ORIGIN(a->origin_inversion),
                            .help = "a finished `stem invert` output; checked: complete, the latents of every\n"
                                    "step, the same model/frames/size/steps as any option below asks.\n"
                                    "Without it stem edit first runs `stem invert` into OUT/inversion with:"});
    cli_video_add_input(t, &a->v);
    cli_option *r = cli_find(t, "--model");
    r->origin = a->origin_model, r->origin_len = sizeof a->origin_model;
    r->help = "diffusers folder or single-file .safetensors checkpoint, as stem invert\n"
              "takes it (default: the inversion's; without one the bundled\nrefdata/models/shapes-sd1)";
    r = cli_find(t, "--model-config");
    r->help = "overrides for --model: a diffusers folder of the same model (its\n"
              "unet/ vae/ text_encoder/ config.json, scheduler/, tokenizer/; no weights\n"
              "read) or {\"unet\": {...}, \"vae\": {...}, \"text_encoder\": {...},\n"
              "\"scheduler\": {...}, \"tokenizer\": \"DIR\"} (keys replace the derived ones;\n"
              "default: the inversion's)";
    r = cli_find(t, "--frames");
    r->origin = a->origin_frames, r->origin_len = sizeof a->origin_frames;
    r->help = "input frames (sorted by name) or a video (default: the bundled clip\nrefdata/clips/shapes)";
    cli_add(t, (cli_option){.name = "--inversion-prompt", .value = "TEXT", .kind = CLI_STRING, .to.s = &a->inv.prompt,
                            .yaml = "inversion_prompt", .store = a->inv.prompt_buf, .store_len = sizeof a->inv.prompt_buf,
                            ORIGIN(a->origin_prompt), .help = "describes the input video (the inversion's --prompt)"});
    cli_video_add_shape(t, &a->v);
    cli_find(t, "--width")->origin = a->origin_width, cli_find(t, "--width")->origin_len = sizeof a->origin_width;
    cli_find(t, "--height")->origin = a->origin_height, cli_find(t, "--height")->origin_len = sizeof a->origin_height;
    cli_find(t, "--config")->help = "the original's config: prompt, negative_prompt, guidance_scale, n_timesteps,\n"
                                    "pnp_attn_t, pnp_f_t, batch_size, seed, latents_path (--inversion),\n"
                                    "output_path (--out), and the inversion's keys; flags given as well win";
    cli_add(t, (cli_option){.name = "--steps", .value = "S", .kind = CLI_INT, .to.i = &a->inv.inv.steps, .lo = 1,
                            .hi = 1000, .yaml = "n_timesteps", ORIGIN(a->origin_steps),
                            .help = "DDIM steps of inversion and edit (default 50; an edit samples on its\n"
                                    "inversion's timesteps)"});
    cli_add(t, (cli_option){.name = "--attention", .value = "MODE", .kind = CLI_CHOICE, .to.any = &a->inv.inv.sa.mode,
                            .choice = choice_attention, ORIGIN(a->origin_attention),
                            .help = "the inversion's: stem (default) | frame | inflated"});
    cli_add(t, (cli_option){.name = "--em-scope", .value = "SCOPE", .kind = CLI_CHOICE, .to.any = &a->inv.inv.sa.scope,
                            .choice = choice_em_scope, ORIGIN(a->origin_scope),
                            .help = "the inversion's: video (default) | chunk (per --batch-size frames)"});
    cli_section(t, "editing:");
    cli_add(t, (cli_option){.name = "--prompt", .value = "TEXT", .kind = CLI_STRING, .to.s = &a->prompt, .yaml = "prompt",
                            .store = a->prompt_buf, .store_len = sizeof a->prompt_buf,
                            .help = "the edit: what the video should show"});
    cli_add(t, (cli_option){.name = "--negative-prompt", .value = "TEXT", .kind = CLI_STRING, .to.s = &a->negative_prompt,
                            .yaml = "negative_prompt", .store = a->negative_buf, .store_len = sizeof a->negative_buf,
                            .help = "(default \"" DEFAULT_NEGATIVE_PROMPT "\")"});
    cli_add(t, (cli_option){.name = "--guidance-scale", .value = "G", .kind = CLI_DOUBLE, .to.d = &o->guidance_scale,
                            .flo = 0, .fhi = 100, .yaml = "guidance_scale",
                            .help = "classifier-free guidance (default 7.5)"});
    cli_add(t, (cli_option){.name = "--pnp-attn-t", .value = "F", .kind = CLI_DOUBLE, .to.d = &o->pnp_attn_t, .flo = 0,
                            .fhi = 1, .yaml = "pnp_attn_t",
                            .help = "fraction of the steps with attention Q/K injection (default 0.5)"});
    cli_add(t, (cli_option){.name = "--pnp-f-t", .value = "F", .kind = CLI_DOUBLE, .to.d = &o->pnp_f_t, .flo = 0,
                            .fhi = 1, .yaml = "pnp_f_t",
                            .help = "fraction of the steps with feature (conv) injection (default 0.8)"});
    cli_add(t, (cli_option){.name = "--batch-size", .value = "N", .kind = CLI_INT64, .to.i64 = &o->batch_size, .lo = 1,
                            .hi = 4096, .yaml = "batch_size",
                            .help = "frames per chunk, one keyframe each (default 8; also the inversion's\n"
                                    "--em-scope chunk)"});
    cli_add(t, (cli_option){.name = "--drop-tail", .kind = CLI_BOOL, .to.b = &a->drop_tail,
                            .help = "edit only a multiple of --batch-size frames, as the original does\n"
                                    "(default: every frame; the last chunk is shorter)"});
    cli_add(t, (cli_option){.name = "--edit-attention", .value = "extended|stem", .kind = CLI_CHOICE,
                            .to.any = &o->attention, .choice = choice_edit_attention,
                            .help = "the keyframes' joint attention: extended (the original's, O(n^2))\n"
                                    "or STEM bases over them (O(n M))"});
    cli_add(t, (cli_option){.name = "--bases", .value = "M", .kind = CLI_INT64, .to.i64 = &o->em.bases, .lo = 1,
                            .hi = 65536, .help = "EM bases (default 256; --edit-attention stem and the inversion)"});
    cli_add(t, (cli_option){.name = "--em-iters", .value = "R", .kind = CLI_INT64, .to.i64 = &o->em.iters, .lo = 0,
                            .hi = 1000, .help = "EM iterations (default 5)"});
    cli_add(t, (cli_option){.name = "--seed", .value = "N", .kind = CLI_U64, .to.u64 = &o->seed, .yaml = "seed",
                            .help = "Philox seed of keyframes and EM draws (default 1)"});
    cli_add(t, (cli_option){.name = "--no-freeu", .kind = CLI_BOOL, .to.b = &a->no_freeu, .help = "FreeU off"});
    static const char *const fu[4] = {"--freeu-b1", "--freeu-b2", "--freeu-s1", "--freeu-s2"};
    static const char *const fu_help[4] = {"FreeU backbone factor at the first gate (default 1.2)",
                                           "... at the second gate (default 1.4)",
                                           "FreeU skip factor at the first gate (default 0.9)",
                                           "... at the second gate (default 0.2)"};
    float *fv[4] = {&o->freeu.b1, &o->freeu.b2, &o->freeu.s1, &o->freeu.s2};
    for (int i = 0; i < 4; i++)
        cli_add(t, (cli_option){.name = fu[i], .value = "X", .kind = CLI_FLOAT, .to.f = fv[i], .flo = 0, .fhi = 10,
                                .help = fu_help[i]});
    cli_add(t, (cli_option){.name = "--freeu-gate", .value = "C1,C2", .kind = CLI_CHOICE, .to.any = &o->freeu,
                            .choice = choice_gate,
                            .help = "hidden-state channels where FreeU acts (default 1280,640: SD 1.5's\n"
                                    "up blocks, the original's gate; other UNets never match it)"});
    cli_section(t, "run:");
    cli_video_add_run(t, &a->v);
    cli_find(t, "--mem-limit")->help = "device memory for activations and keyframe caches, e.g. 8G (default:\n"
                                       "70% of the free RAM, or GPU memory with --backend cuda); whatever the\n"
                                       "frame count, caches that do not fit stay on the host";
    cli_add(t, (cli_option){.name = "--quantize", .value = "round|truncate", .kind = CLI_CHOICE, .to.any = &a->inv.quantize,
                            .choice = choice_quantize, .help = "8-bit output rounding (default round)"});
    cli_add(t, (cli_option){.name = "--fps", .value = "N", .kind = CLI_INT, .to.i = &a->inv.fps, .lo = 1, .hi = 240,
                            .help = "frame rate of edit.mp4 (default 10)"});
    cli_add(t, (cli_option){.name = "--dry-run", .kind = CLI_BOOL, .to.b = &a->dry_run,
                            .help = "print the memory plan (device and host bytes per part, frames per UNet\n"
                                    "evaluation) and stop; reads config.json files only (no weights) and\n"
                                    "one frame at most; --frames N (a count) with --width, --height plans\n"
                                    "N frames without any input"});
}

static void usage(FILE *out, const cli_table *t) {
    fprintf(out,
            "usage: stem edit --prompt TEXT [--inversion DIR] [--out DIR] [options]\n"
            "       stem edit --config CONFIG.yaml [options]\n"
            "\n"
            "Edits a video with TokenFlow (doc/algorithm.md §7) on a STEM inversion: every frame is sampled\n"
            "again from the inversion's noisiest latents under the new --prompt, with the inverted latents\n"
            "of every step as the source branch (plug-and-play injection of the source's attention\n"
            "queries/keys and of one up-block's features), keyframes edited together (extended attention,\n"
            "or STEM bases with --edit-attention stem) and every other frame taking its keyframes' attention\n"
            "outputs through token flow, so the edit stays consistent over time. FreeU is on, as in the\n"
            "original.\n"
            "\n"
            "  stem edit --prompt \"" DEFAULT_EDIT_PROMPT "\"\n"
            "      inverts the bundled clip with the bundled tiny model into OUT/inversion, then edits it\n"
            "      (the tiny model was trained on synthetic shapes and hardly follows text: expect a\n"
            "      faithful reconstruction more than an edit; that prompt is the default)\n"
            "  stem edit --inversion tennis-inv --prompt \"Spider-Man is playing tennis\" --out tennis-edit\n"
            "      edits a finished `stem invert` folder (model, frames, size, steps come from it)\n"
            "  stem invert --config refdata/configs/config_pnp_tennis.yaml   # writes its latents_path\n"
            "  stem edit --config refdata/configs/config_pnp_tennis.yaml     # reads it, writes output_path\n"
            "      the original's two steps, its YAML unchanged (stem edit alone inverts into latents_path\n"
            "      first when that does not exist)\n"
            "  stem edit --dry-run --model bench/sd15-config --frames 500 --width 512 --height 512 --mem-limit 16G\n"
            "      the memory plan of 500 frames with full-size SD 1.5, from its config.json files alone\n"
            "\n");
    cli_print_options(out, t);
    fprintf(out,
            "\n"
            "output (written to OUT.partial, renamed to OUT when complete):\n"
            "  manifest.json          every option, model fingerprint, versions, timings, frames edited,\n"
            "                         memory, temporal consistency of the edit next to the input's\n"
            "  latents/edit_SSS_tTTTT.safetensors   edited latents after each step (\"latents\" [Fe,4,h,w])\n"
            "  frames/edit/*.png      the edited frames\n"
            "  edit.mp4               the edit as a video (when built with FFmpeg; even sizes)\n"
            "  sheet.png              input | reconstruction | edit for a few frames, labelled\n"
            "  inversion/             the inversion, when stem edit made it (reuse: --inversion OUT/inversion)\n"
            "Ctrl-C keeps the finished steps; --resume continues byte for byte with the same options.\n");
}

void edit_inversion_what(const edit_args *a, char *buf, size_t len) {
    if (a->inversion_from_config) snprintf(buf, len, "%s", a->origin_inversion);
    else snprintf(buf, len, "%s", a->inversion ? "--inversion" : "the inversion");
}

void edit_inversion_args(const edit_args *a, const char *dir, bool resume, invert_args *out) {
    *out = a->inv;
    out->v = a->v;
    out->v.out = dir;
    out->v.force = false;
    out->v.resume = resume;
    out->dry_run = false;
    out->inv.sa.batch_size = a->edit.batch_size;
    out->inv.sa.em.bases = a->edit.em.bases;
    out->inv.sa.em.iters = a->edit.em.iters;
    out->inv.sa.em.seed = a->edit.seed;
}

static bool on_command_line(const char *origin) { return origin[0] == '-'; }

int edit_parse_args(int argc, char **argv, edit_args *a) {
    memset(a, 0, sizeof *a);
    invert_args_defaults(&a->inv);
    cli_video_defaults(&a->v, "stem-edit-out");
    stem_edit_options_default(&a->edit);
    a->negative_prompt = DEFAULT_NEGATIVE_PROMPT;
    cli_table t = {0};
    edit_table(&t, a);
    int rc = cli_parse(CMD, argc, argv, &t);
    if (rc < 0) {
        usage(stdout, &t);
        return -1;
    }
    if (rc) return rc;
    /* an inversion that exists has its model: the config's sd_version need not name one then
     * (an explicit --model is checked against it) */
    struct stat st;
    const char *inv_dir = a->inversion;
    stem_yaml_config c = {0};
    if (!inv_dir && a->v.config && stem_yaml_config_load(a->v.config, NULL, NULL, &c) == STEM_OK) {
        if (c.latents_path && stat(c.latents_path, &st) == 0) cli_find(&t, "--model")->given = true;
        stem_yaml_config_free(&c);
    }
    if (inv_dir && stat(inv_dir, &st) == 0) cli_find(&t, "--model")->given = true;
    static const char *const out_keys[] = {"output_path", NULL};
    if ((rc = cli_video_resolve(CMD, &t, &a->v, out_keys))) return rc;
    a->inversion_from_config = a->inversion && !on_command_line(a->origin_inversion);
    a->inversion_exists = a->inversion && stat(a->inversion, &st) == 0;
    if (a->inversion && !a->inversion_from_config) {
        const char *made = on_command_line(a->origin_frames) ? "--frames"
                           : on_command_line(a->origin_prompt) ? "--inversion-prompt"
                           : on_command_line(a->origin_attention) ? "--attention"
                           : on_command_line(a->origin_scope) ? "--em-scope" : NULL;
        if (made) {
            fprintf(stderr, CMD ": --inversion %s is a finished inversion: %s would make another; drop it, or drop "
                    "--inversion to invert first\n", a->inversion, made);
            return 2;
        }
    }
    /* the config's two step counts must agree: an edit samples on its inversion's timesteps */
    if (a->v.config && !on_command_line(a->origin_steps)) {
        stem_yaml_config c;
        stem_status s = stem_yaml_config_load(a->v.config, NULL, NULL, &c);
        if (s != STEM_OK) return cli_report(s);
        bool differ = stem_yaml_config_has(&c, STEM_CFG_N_INVERSION_STEPS) &&
                      stem_yaml_config_has(&c, STEM_CFG_N_TIMESTEPS) && c.n_inversion_steps != c.n_timesteps;
        if (differ)
            fprintf(stderr, CMD ": %s: n_timesteps %d and n_inversion_steps %d differ; stem edits on the inversion's "
                    "timesteps (pass --steps to choose)\n", a->v.config, c.n_timesteps, c.n_inversion_steps);
        stem_yaml_config_free(&c);
        if (differ) return 2;
    }
    if (!a->prompt) { /* a dry run encodes no prompt */
        if (!a->dry_run && (a->inversion || !a->v.frames_is_default || a->v.config)) {
            fprintf(stderr, CMD ": --prompt is required: a sentence describing the edited video "
                            "(e.g. --prompt \"Spider-Man is playing tennis\")\n");
            return 2;
        }
        a->prompt = DEFAULT_EDIT_PROMPT; /* the bundled clip */
    }
    if (!a->inversion && !a->inv.prompt) {
        if (!a->v.frames_is_default && !a->dry_run) {
            fprintf(stderr, CMD ": --inversion-prompt is required with --frames: a sentence describing the input "
                            "video (e.g. --inversion-prompt \"A man is playing tennis.\")\n");
            return 2;
        }
        /* the caption of the bundled clip (refdata/clips/shapes.txt) */
        a->inv.prompt = "a green circle moving right and a red square moving right on a yellow background";
        snprintf(a->origin_prompt, sizeof a->origin_prompt, "the bundled clip's caption");
    }
    a->edit.tail = a->drop_tail ? STEM_EDIT_TAIL_DROP : STEM_EDIT_TAIL_EVERY;
    a->edit.freeu.enabled = !a->no_freeu;
    stem_em_options em = a->edit.em;
    em.seed = a->edit.seed;
    if (stem_em_options_check(&em) != STEM_OK) {
        fprintf(stderr, CMD ": %s\n", stem_last_error());
        return 2;
    }
    return 0;
}
