/* libFuzzer: a tokenizer folder. The input is vocab.json, merges.txt, tokenizer_config.json
 * and special_tokens_map.json separated by FUZZ_SEPARATOR (missing parts: files absent);
 * a folder that loads also tokenizes a fixed prompt. */
#include "fuzz_util.h"
#include "models/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    static const char *const names[4] = {"tok/vocab.json", "tok/merges.txt", "tok/tokenizer_config.json",
                                         "tok/special_tokens_map.json"};
    const uint8_t *part[4];
    size_t len[4];
    int k = fuzz_split(data, n, part, len, 4);
    char dir[600], path[600];
    fuzz_path(dir, sizeof dir, "tok");
    stem_remove_tree(dir);
    stem_mkdirs(dir);
    for (int i = 0; i < k; i++) fuzz_write(path, sizeof path, names[i], part[i], len[i]);
    stem_tokenizer *tok = NULL;
    if (stem_tokenizer_load(dir, &tok) == STEM_OK) {
        int32_t ids[STEM_TOKENIZER_MAX_LEN];
        int n_real;
        bool truncated;
        (void)stem_tokenize(tok, "a man is playing tennis, <|endoftext|> 'll", ids, &n_real, &truncated);
        stem_tokenizer_free(tok);
    }
    return 0;
}
