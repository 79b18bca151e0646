/* libFuzzer: prompt text through the real CLIP tokenizer (refdata/tokenizer/clip, or
 * $STEM_FUZZ_TOKENIZER). */
#include "fuzz_util.h"
#include "models/tokenizer.h"

static stem_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *dir = getenv("STEM_FUZZ_TOKENIZER");
    char buf[1024];
    if (!dir || !*dir) {
        snprintf(buf, sizeof buf, "%s/refdata/tokenizer/clip", STEM_SOURCE_DIR);
        dir = buf;
    }
    if (stem_tokenizer_load(dir, &tok) != STEM_OK) {
        fprintf(stderr, "fuzz_tokenizer_text: %s\n", stem_last_error());
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char *text = malloc(n + 1);
    memcpy(text, data, n);
    text[n] = '\0'; /* a NUL inside ends the prompt, as it does for a C string from argv */
    int32_t ids[STEM_TOKENIZER_MAX_LEN];
    int n_real;
    bool truncated;
    if (stem_tokenize(tok, text, ids, &n_real, &truncated) == STEM_OK) {
        if (n_real < 2 || n_real > STEM_TOKENIZER_MAX_LEN) abort();
        for (int i = 0; i < STEM_TOKENIZER_MAX_LEN; i++)
            if (ids[i] < 0 || ids[i] >= stem_tokenizer_vocab_size(tok)) abort();
    }
    free(text);
    return 0;
}
