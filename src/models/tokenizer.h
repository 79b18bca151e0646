/* The CLIP BPE tokenizer (doc/algorithm.md §3): prompt text -> 77 token ids, exactly as
 * transformers' slow CLIPTokenizer (4.33.3, with ftfy 6.1.1 installed) computes them
 * for Stable Diffusion: tokenizer(text, padding="max_length", max_length=77,
 * truncation=True).input_ids.
 *
 * What happens to a prompt, in order (transformers' tokenize() then _tokenize()):
 *   1. split out the special-token strings (bos, eos, unk, pad, additional special
 *      tokens: "<|startoftext|>", "<|endoftext|>", and SD 2.x's pad "!"): each becomes
 *      its own id; the text between them is tokenized piece by piece;
 *   2. ftfy.fix_text, per line: HTML entities (unless the line, or an earlier line of
 *      the piece, contains '<'), C1 controls as Windows-1252, Latin ligatures,
 *      full/halfwidth forms, curly quotes, line breaks, ANSI escapes, control
 *      characters, NFC; repeated until nothing changes;
 *   3. whitespace runs -> one space, trimmed; Python's str.lower() (İ -> i + U+0307,
 *      final sigma);
 *   4. CLIP's pattern: <|startoftext|> | <|endoftext|> | 's 't 're 've 'm 'll 'd |
 *      runs of letters | one digit | runs of other non-space characters
 *      (case-insensitive, so 'ſ counts as 's);
 *   5. each piece's UTF-8 bytes through CLIP's byte-to-unicode map, then BPE by merge
 *      rank with "</w>" on the last symbol; symbols -> ids through vocab.json;
 *   6. [bos] + first 75 ids + [eos], padded to 77 with the pad token's id.
 *
 * Not replicated: ftfy's mojibake repair (fix_encoding: text that was UTF-8 decoded as
 * Latin-1/Windows-125x/MacRoman, e.g. "cafÃ©" -> "café"). Such prompts tokenize as
 * written (C1 control characters are still mapped as fix_c1_controls does).
 * Input must be valid UTF-8 (a C string: no NUL); anything else is an error, since the
 * Python reference only ever sees decoded text.
 *
 * A tokenizer is read-only after loading except for its BPE cache, which is locked:
 * one tokenizer may be shared by threads. */
#ifndef STEM_MODELS_TOKENIZER_H
#define STEM_MODELS_TOKENIZER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"

/* Tokens per prompt, with bos and eos: CLIP's text encoder has 77 positions. */
#define STEM_TOKENIZER_MAX_LEN 77

typedef struct stem_tokenizer stem_tokenizer;

/* Reads tokenizer_dir/vocab.json and merges.txt (required) and, when present,
 * tokenizer_config.json then special_tokens_map.json (which wins, as in
 * transformers): bos/eos/unk/pad tokens, additional_special_tokens and
 * model_max_length (must be 77 when given). Errors name the file: STEM_E_IO when a
 * required file cannot be read, STEM_E_FORMAT for invalid JSON or a malformed
 * merges line, STEM_E_NOTFOUND for a special token missing from vocab.json,
 * STEM_E_UNSUPPORTED for another model_max_length. */
stem_status stem_tokenizer_load(const char *tokenizer_dir, stem_tokenizer **out);
/* The same with vocab.json and merges.txt from `vocab_dir` and the two JSON configs from
 * `special_dir` (SD 2.x: CLIP's vocabulary with pad "!"). */
stem_status stem_tokenizer_load_split(const char *vocab_dir, const char *special_dir, stem_tokenizer **out);

/* Tokenizes one prompt into ids[STEM_TOKENIZER_MAX_LEN]. n_real (optional) receives
 * the number of ids before padding (bos and eos included: 2..77); truncated
 * (optional) whether the prompt had more than 75 tokens and was cut. STEM_E_ARG for
 * text that is not valid UTF-8 (the message gives the byte offset). */
stem_status stem_tokenize(const stem_tokenizer *tok, const char *utf8_text, int32_t *ids, int *n_real,
                          bool *truncated);

void stem_tokenizer_free(stem_tokenizer *tok);

int32_t stem_tokenizer_bos_id(const stem_tokenizer *tok);
int32_t stem_tokenizer_eos_id(const stem_tokenizer *tok);
int32_t stem_tokenizer_pad_id(const stem_tokenizer *tok);
/* Number of entries in vocab.json. */
int stem_tokenizer_vocab_size(const stem_tokenizer *tok);

#endif
