/* `stem invert`'s command line: its options table, the original's YAML config and the
 * defaults (see invert_args.h). */
#include "cli/invert_args.h"

#include <stdio.h>
#include <string.h>

#include "cli/options.h"

#define CMD "stem invert"

static stem_status choice_attention(const char *v, void *to) { return stem_sa_mode_parse(v, to); }
static stem_status choice_em_scope(const char *v, void *to) { return stem_em_scope_parse(v, to); }
static stem_status choice_quantize(const char *v, void *to) { return stem_quantize_parse(v, to); }

void invert_args_defaults(invert_args *a) {
    memset(a, 0, sizeof *a);
    cli_video_defaults(&a->v, "stem-invert-out");
    stem_invert_options_default(&a->inv);
    a->inv.sa.em.seed = 1;
    a->fps = 10;
}

static void invert_table(cli_table *t, invert_args *a) {
    stem_sa_options *sa = &a->inv.sa;
    cli_section(t, "input:");
    cli_video_add_input(t, &a->v);
    cli_add(t, (cli_option){.name = "--prompt", .value = "TEXT", .kind = CLI_STRING, .to.s = &a->prompt,
                            .yaml = "inversion_prompt", .store = a->prompt_buf, .store_len = sizeof a->prompt_buf,
                            .help = "inversion prompt (describes the input video)"});
    cli_video_add_shape(t, &a->v);
    cli_section(t, "algorithm:");
    cli_add(t, (cli_option){.name = "--steps", .value = "S", .kind = CLI_INT, .to.i = &a->inv.steps, .lo = 1,
                            .hi = 1000, .yaml = "n_inversion_steps", .help = "DDIM steps (default 50)"});
    cli_add(t, (cli_option){.name = "--attention", .value = "MODE", .kind = CLI_CHOICE, .to.any = &sa->mode,
                            .choice = choice_attention,
                            .help = "stem (default) | frame (classic DDIM) | inflated (all-frame attention)"});
    cli_add(t, (cli_option){.name = "--em-scope", .value = "SCOPE", .kind = CLI_CHOICE, .to.any = &sa->scope,
                            .choice = choice_em_scope,
                            .help = "video (default: one EM over all frames) | chunk (per --batch-size frames,\n"
                                    "as the original code does)"});
    cli_add(t, (cli_option){.name = "--batch-size", .value = "N", .kind = CLI_INT64, .to.i64 = &sa->batch_size,
                            .lo = 1, .hi = 4096, .yaml = "batch_size",
                            .help = "frames per chunk with --em-scope chunk (default 8)"});
    cli_add(t, (cli_option){.name = "--bases", .value = "M", .kind = CLI_INT64, .to.i64 = &sa->em.bases, .lo = 1,
                            .hi = 65536, .help = "EM bases (default 256)"});
    cli_add(t, (cli_option){.name = "--em-iters", .value = "R", .kind = CLI_INT64, .to.i64 = &sa->em.iters, .lo = 0,
                            .hi = 1000, .help = "EM iterations (default 5)"});
    cli_add(t, (cli_option){.name = "--seed", .value = "N", .kind = CLI_U64, .to.u64 = &sa->em.seed, .yaml = "seed",
                            .help = "seed of the Philox stream for the EM initial bases (default 1)"});
    cli_section(t, "run:");
    cli_video_add_run(t, &a->v);
    cli_find(t, "--mem-limit")->help =
        "memory for UNet activations, e.g. 8G (default: 70% of the free RAM,\n"
        "or of the free GPU memory with --backend cuda);\n"
        "--attention frame and --em-scope chunk evaluate fewer frames at a time\n"
        "to fit it; --em-scope video runs the UNet layer-major (each module on a\n"
        "few frames at a time; all frames' skips and attention keys/values kept)\n"
        "and stops early with a clear message when even that does not fit";
    cli_add(t, (cli_option){.name = "--quantize", .value = "round|truncate", .kind = CLI_CHOICE,
                            .to.any = &a->quantize, .choice = choice_quantize,
                            .help = "8-bit output rounding (default round; the original truncates)"});
    cli_add(t, (cli_option){.name = "--fps", .value = "N", .kind = CLI_INT, .to.i = &a->fps, .lo = 1, .hi = 240,
                            .help = "frame rate of recon.mp4 (default 10)"});
    cli_add(t, (cli_option){.name = "--dry-run", .kind = CLI_BOOL, .to.b = &a->dry_run,
                            .help = "print the memory plan (device and host bytes per part, frames per UNet\n"
                                    "evaluation, layer-major or not) and exit: loads the model, reads one\n"
                                    "frame at most (a video: counted), writes nothing. --frames N (a count,\n"
                                    "with --width and --height) plans N frames without any input"});
}

static void usage(FILE *out, const cli_table *t) {
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
            "\n");
    cli_print_options(out, t);
    fprintf(out,
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

int invert_parse_args(int argc, char **argv, invert_args *a) {
    invert_args_defaults(a);
    cli_table t = {0};
    invert_table(&t, a);
    int rc = cli_parse(CMD, argc, argv, &t);
    if (rc < 0) {
        usage(stdout, &t);
        return -1;
    }
    /* the original's configs name the latents folder (or the output folder) */
    static const char *const out_keys[] = {"latents_path", "output_path", NULL};
    if (!rc) rc = cli_video_resolve(CMD, &t, &a->v, out_keys);
    if (rc) return rc;
    if (!a->prompt && !a->v.frames_is_default && !a->dry_run) { /* a dry run encodes no prompt */
        fprintf(stderr, CMD ": --prompt is required: a sentence describing the input video "
                        "(e.g. --prompt \"A man is playing tennis.\")\n");
        return 2;
    }
    /* the caption of the bundled clip (refdata/clips/shapes.txt) */
    if (!a->prompt && a->v.frames_is_default)
        a->prompt = "a green circle moving right and a red square moving right on a yellow background";
    if (stem_em_options_check(&a->inv.sa.em) != STEM_OK) {
        fprintf(stderr, CMD ": %s\n", stem_last_error());
        return 2;
    }
    return 0;
}
