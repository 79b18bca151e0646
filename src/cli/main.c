/* stem: entry point and the table of commands. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "backends/backends.h"

static int cmd_version(int argc, char **argv) {
    (void)argc, (void)argv;
    printf("stem %s\n", STEM_VERSION);
    return 0;
}

/* Every command, once: `stem --help` lists them in this order. */
static const cli_command COMMANDS[] = {
    {"edit", cmd_edit, "TokenFlow editing of a video on a STEM inversion, inverting it first when needed\n"
                       "            (`stem edit --prompt TEXT`, `stem edit --inversion DIR --prompt TEXT`)"},
    {"invert", cmd_invert, "STEM inversion + DDIM reconstruction of a video, with PSNR/SSIM and a contact sheet"},
    {"op", cmd_op, "run one tensor op on named inputs from a .safetensors file (`--list`, `--check GOLDEN`)"},
    {"info", cmd_info, "what a model folder or single-file checkpoint holds (`stem info --model PATH`)"},
    {"system", cmd_system, "what this machine and build run: CPU kernels, threads, OpenBLAS core, GPU"},
    {"tokenize", cmd_tokenize, "the 77 CLIP token ids of prompts (`stem tokenize --model DIR TEXT...`)"},
    {"version", cmd_version, "print the version"},
};
#define N_COMMANDS (sizeof COMMANDS / sizeof *COMMANDS)

static void usage(FILE *out) {
    fprintf(out,
            "stem %s — STEM inversion (\"A Video is Worth 256 Bases\", CVPR 2024) for zero-shot\n"
            "video editing with Stable Diffusion, in C, on CPU (reference) and CUDA.\n"
            "\n"
            "usage: stem COMMAND [options]\n"
            "\n"
            "commands:\n",
            STEM_VERSION);
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(out, "  %-9s %s\n", COMMANDS[i].name, COMMANDS[i].help);
    fprintf(out, "\n`stem COMMAND --help` explains each command.\n");
}

int cli_report(stem_status s) {
    fprintf(stderr, "stem: %s\n", stem_last_error());
    return s == STEM_E_ARG ? 2 : 1;
}

int cli_open_backend(const char *name, stem_backend **be) {
    stem_status s = stem_backend_open(name, be);
    return s == STEM_OK ? 0 : cli_report(s);
}

int main(int argc, char **argv) {
    /* before anything touches OpenBLAS: make it run its fast kernels (see core/cpu_info.h) */
    stem_blas_ensure_fast_core(argc, argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(cmd, COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
    if (!strcmp(cmd, "--version")) return cmd_version(argc - 1, argv + 1);
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "stem: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
