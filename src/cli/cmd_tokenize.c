/* `stem tokenize`: prompt text -> the 77 CLIP token ids the text encoder sees. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "models/tokenizer.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: stem tokenize --model DIR [--json] TEXT...\n"
            "\n"
            "Prints the %d CLIP token ids of each TEXT, one line per prompt: space-separated, or a\n"
            "JSON array with --json. DIR is a diffusers model folder (its tokenizer/ is used) or a\n"
            "tokenizer folder itself (vocab.json, merges.txt, tokenizer_config.json,\n"
            "special_tokens_map.json). The ids are those of transformers' CLIPTokenizer with ftfy:\n"
            "bos, at most %d tokens, eos, then the pad token (SD 1.x: 49407, SD 2.x: 0). A prompt\n"
            "longer than that is truncated, with a warning on stderr.\n"
            "\n"
            "example:\n"
            "  stem tokenize --model models/sd15 \"a photo of a cat\"\n",
            STEM_TOKENIZER_MAX_LEN, STEM_TOKENIZER_MAX_LEN - 2);
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL;
    bool json = false;
    int first_text = argc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "stem tokenize: --model needs a folder\n");
                return 2;
            }
            model = argv[++i];
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--")) {
            first_text = i + 1;
            break;
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "stem tokenize: unknown flag '%s'\n\n", a);
            usage(stderr);
            return 2;
        } else {
            first_text = i;
            break;
        }
    }
    if (!model) {
        fprintf(stderr, "stem tokenize: --model DIR is required\n\n");
        usage(stderr);
        return 2;
    }
    if (first_text >= argc) {
        fprintf(stderr, "stem tokenize: no TEXT given\n\n");
        usage(stderr);
        return 2;
    }
    /* everything after the first prompt is a prompt, flags included */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tokenizer", model);
    if (!is_dir(dir)) {
        char vocab[4096];
        snprintf(vocab, sizeof vocab, "%s/vocab.json", model);
        struct stat st;
        if (stat(vocab, &st) != 0) {
            fprintf(stderr, "stem tokenize: %s has neither a tokenizer/ folder nor a vocab.json "
                            "(expected a diffusers model folder or a tokenizer folder)\n", model);
            return 1;
        }
        snprintf(dir, sizeof dir, "%s", model);
    }

    stem_tokenizer *tok;
    stem_status s = stem_tokenizer_load(dir, &tok);
    if (s != STEM_OK) return cli_report(s);
    int rc = 0;
    for (int i = first_text; i < argc; i++) {
        int32_t ids[STEM_TOKENIZER_MAX_LEN];
        int n_real;
        bool truncated;
        s = stem_tokenize(tok, argv[i], ids, &n_real, &truncated);
        if (s != STEM_OK) {
            stem_error_context(s, "prompt %d", i - first_text + 1);
            rc = cli_report(s);
            break;
        }
        if (truncated)
            fprintf(stderr, "stem tokenize: warning: prompt %d is longer than %d tokens and was truncated\n",
                    i - first_text + 1, STEM_TOKENIZER_MAX_LEN - 2);
        fputs(json ? "[" : "", stdout);
        for (int k = 0; k < STEM_TOKENIZER_MAX_LEN; k++)
            printf("%s%d", k ? (json ? ", " : " ") : "", (int)ids[k]);
        fputs(json ? "]\n" : "\n", stdout);
    }
    stem_tokenizer_free(tok);
    if (fflush(stdout) != 0 && rc == 0) {
        fprintf(stderr, "stem tokenize: cannot write the output\n");
        rc = 1;
    }
    return rc;
}
