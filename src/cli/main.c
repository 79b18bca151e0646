/* stem: entry point and subcommand dispatch. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "backends/backends.h"

static void usage(FILE *out) {
    fprintf(out,
            "stem %s — STEM inversion (\"A Video is Worth 256 Bases\", CVPR 2024) for zero-shot\n"
            "video editing with Stable Diffusion, in C, on CPU (reference) and CUDA.\n"
            "\n"
            "usage: stem COMMAND [options]\n"
            "\n"
            "commands:\n"
            "  edit      TokenFlow editing of a video on a STEM inversion (inverting it first when needed):\n"
            "            `stem edit --prompt TEXT` on the bundled clip, `stem edit --inversion DIR --prompt TEXT`\n"
            "  invert    STEM inversion + DDIM reconstruction of a video, with PSNR/SSIM and a contact sheet\n"
            "  op        run one tensor op on named inputs from a .safetensors file, write its outputs;\n"
            "            `stem op --list` lists every op, `stem op --check GOLDEN` checks one golden file\n"
            "  info      what a model folder or single-file checkpoint holds: components, parameters,\n"
            "            dtypes, SD version, scheduler (`stem info --model PATH`)\n"
            "  system    print what this machine and build run: CPU kernels, threads, OpenBLAS core, GPU\n"
            "  tokenize  print the 77 CLIP token ids of prompts (`stem tokenize --model DIR TEXT...`)\n"
            "  version   print the version\n"
            "\n"
            "`stem COMMAND --help` explains each command.\n",
            STEM_VERSION);
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
    if (!strcmp(cmd, "op")) return cmd_op(argc - 1, argv + 1);
    if (!strcmp(cmd, "invert")) return cmd_invert(argc - 1, argv + 1);
    if (!strcmp(cmd, "edit")) return cmd_edit(argc - 1, argv + 1);
    if (!strcmp(cmd, "system")) return cmd_system(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("stem %s\n", STEM_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "stem: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
