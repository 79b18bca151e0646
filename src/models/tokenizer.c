/* The CLIP BPE tokenizer: see tokenizer.h for what it reproduces and in which order,
 * tokenizer_internal.h for its pieces. This file: BPE on one word
 * (CLIPTokenizer.bpe, transformers 4.33.3 tokenization_clip.py), CLIP's split pattern,
 * and stem_tokenize (special-token splitting as tokenization_utils.py's trie). */
#include "models/tokenizer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "models/tokenizer_internal.h"

/* ---- BPE ----------------------------------------------------------------------- */

typedef struct bpe_scratch {
    sbuf word; /* the word's byte-unicode characters, then "</w>" */
    sbuf key;
    size_t *start; /* symbol i = word[start[i] .. start[i+1]) */
    size_t cap;
} bpe_scratch;

static bool sym_eq(const char *w, const size_t *st, size_t i, const char *x, size_t xl) {
    return st[i + 1] - st[i] == xl && !memcmp(w + st[i], x, xl);
}

/* CLIPTokenizer.bpe on one word (its byte-unicode string enc), ids appended to out. */
static int bpe_word(const stem_tokenizer *t, const char *enc, size_t enc_len, bpe_scratch *sc, ivec *out) {
    int32_t id;
    /* the cache starts with the two special tokens, which get no "</w>" */
    if ((enc_len == 15 && !memcmp(enc, "<|startoftext|>", 15)) || (enc_len == 13 && !memcmp(enc, "<|endoftext|>", 13))) {
        if (!stem_tok_map_get(&t->vocab, enc, enc_len, &id)) id = t->unk_id;
        return iv_push(out, id);
    }
    bpe_cache *cache = t->cache;
    pthread_mutex_lock(&cache->lock);
    int32_t off;
    if (stem_tok_map_get(&cache->words, enc, enc_len, &off)) {
        int rc = 0;
        for (int32_t k = 0; k < cache->ids.v[off] && !rc; k++) rc = iv_push(out, cache->ids.v[off + 1 + k]);
        pthread_mutex_unlock(&cache->lock);
        return rc;
    }
    pthread_mutex_unlock(&cache->lock);

    sc->word.n = 0;
    if (sb_append(&sc->word, enc, enc_len) || sb_append(&sc->word, "</w>", 4)) return -1;
    const char *w = sc->word.v;
    size_t wl = sc->word.n;
    if (enc_len + 2 > sc->cap) {
        size_t *st = realloc(sc->start, (enc_len + 2) * sizeof *st);
        if (!st) return -1;
        sc->start = st;
        sc->cap = enc_len + 2;
    }
    size_t *st = sc->start, n = 0;
    for (size_t i = 0; i < enc_len; i++)
        if (((unsigned char)enc[i] & 0xC0) != 0x80) st[n++] = i;
    st[n] = wl;

    while (n > 1) {
        int32_t best = INT32_MAX;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            sc->key.n = 0;
            if (sb_append(&sc->key, w + st[i], st[i + 1] - st[i]) || sb_append(&sc->key, " ", 1) ||
                sb_append(&sc->key, w + st[i + 1], st[i + 2] - st[i + 1]))
                return -1;
            int32_t r;
            if (stem_tok_map_get(&t->merges, sc->key.v, sc->key.n, &r) && r < best) {
                best = r;
                bi = i;
            }
        }
        if (best == INT32_MAX) break;
        /* merge every (first, second) occurrence, left to right */
        /* w never changes (only st[] does), so first/second can point into it */
        size_t fl = st[bi + 1] - st[bi], sl = st[bi + 2] - st[bi + 1];
        const char *fp = w + st[bi], *sp = w + st[bi + 1];
        size_t m = 0;
        for (size_t i = 0; i < n;) {
            if (i + 1 < n && sym_eq(w, st, i, fp, fl) && sym_eq(w, st, i + 1, sp, sl)) {
                st[m++] = st[i];
                i += 2;
            } else {
                st[m++] = st[i];
                i += 1;
            }
        }
        st[m] = wl;
        n = m;
    }

    size_t first_out = out->n;
    for (size_t i = 0; i < n; i++) {
        if (!stem_tok_map_get(&t->vocab, w + st[i], st[i + 1] - st[i], &id)) id = t->unk_id;
        if (iv_push(out, id)) return -1;
    }

    pthread_mutex_lock(&cache->lock);
    int rc = 0;
    if (cache->words.n >= CACHE_MAX_WORDS) {
        stem_tok_map_free(&cache->words);
        cache->ids.n = 0;
        rc = stem_tok_map_init(&cache->words, 1024);
    }
    if (!rc && cache->ids.n + n + 1 <= INT32_MAX) {
        int32_t at = (int32_t)cache->ids.n;
        rc = iv_push(&cache->ids, (int32_t)n);
        for (size_t i = 0; i < n && !rc; i++) rc = iv_push(&cache->ids, out->v[first_out + i]);
        if (!rc) rc = stem_tok_map_put(&cache->words, enc, enc_len, at);
    }
    pthread_mutex_unlock(&cache->lock);
    return rc;
}

/* ---- CLIP's pattern -------------------------------------------------------------- */

static size_t match_literal(const uint32_t *v, size_t n, const char *lit) {
    size_t l = strlen(lit);
    if (n < l) return 0;
    for (size_t i = 0; i < l; i++)
        if (!stem_tok_eq_fold(v[i], lit[i])) return 0;
    return l;
}

/* Length of the regex match at v[0] (0: no alternative matches, skip one character):
 * <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * with IGNORECASE. U+0345 matches nothing: it case-folds to a letter (ι), which takes
 * it out of the negated class, yet it is not itself a letter. */
static size_t clip_match(const uint32_t *v, size_t n) {
    static const char *alts[] = {"<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    uint32_t c = v[0];
    if (c == '<' || c == '\'') {
        for (size_t k = 0; k < COUNT(alts); k++) {
            size_t m = match_literal(v, n, alts[k]);
            if (m) return m;
        }
    }
    size_t m = 0;
    if (stem_tok_is_letter(c)) {
        while (m < n && stem_tok_is_letter(v[m])) m++;
        return m;
    }
    if (stem_tok_is_number(c)) return 1;
    while (m < n && !stem_tok_is_ws(v[m]) && v[m] != 0x345 && !stem_tok_is_letter(v[m]) && !stem_tok_is_number(v[m])) m++;
    return m;
}

/* Tokenizes text without special-token strings: normalise, split, BPE. Stops once
 * out holds more than `enough` ids (the rest would be truncated anyway). */
static int tokenize_piece(const stem_tokenizer *t, const uint32_t *v, size_t n, ivec *out, size_t enough) {
    cpbuf a = {0}, b = {0};
    bpe_scratch sc = {0};
    sbuf enc = {0};
    int rc = -1;
    if (stem_tok_fix_text(v, n, &a) || stem_tok_whitespace_clean(&a, &b) || stem_tok_lower(&b, &a)) goto done;
    for (size_t i = 0; i < a.n && out->n <= enough;) {
        size_t m = clip_match(a.v + i, a.n - i);
        if (!m) {
            i++;
            continue;
        }
        enc.n = 0;
        for (size_t k = i; k < i + m; k++) {
            char u[4];
            size_t ul = stem_tok_utf8_put(a.v[k], u);
            for (size_t j = 0; j < ul; j++) {
                unsigned char byte = (unsigned char)u[j];
                if (sb_append(&enc, t->byte_enc[byte], t->byte_enc_len[byte])) goto done;
            }
        }
        if (bpe_word(t, enc.v, enc.n, &sc, out)) goto done;
        i += m;
    }
    rc = 0;
done:
    cp_free(&a);
    cp_free(&b);
    free(sc.word.v);
    free(sc.key.v);
    free(sc.start);
    free(enc.v);
    return rc;
}

stem_status stem_tokenize(const stem_tokenizer *t, const char *text, int32_t *ids, int *n_real, bool *truncated) {
    if (!t || !text || !ids) return stem_fail(STEM_E_ARG, "stem_tokenize: NULL argument");
    const size_t body_max = STEM_TOKENIZER_MAX_LEN - 2;
    cpbuf cp = {0};
    ivec toks = {0};
    size_t bad = 0;
    int rc = stem_tok_utf8_decode(text, strlen(text), &cp, &bad);
    if (rc == -2) {
        cp_free(&cp);
        return stem_fail(STEM_E_ARG, "prompt is not valid UTF-8: byte 0x%02x at offset %zu",
                         (unsigned char)text[bad], bad);
    }
    if (rc) goto oom;

    /* transformers' tokens_trie.split: special-token strings (case-sensitive) become
     * their ids; the text between them, trimmed as the tokens' rules say, is
     * tokenized on its own. */
    size_t piece = 0, i = 0;
    const special_token *prev = NULL;
    while (i <= cp.n && toks.n <= body_max) {
        const special_token *hit = NULL;
        if (i < cp.n) {
            for (size_t k = 0; k < t->nspecial && !hit; k++) {
                const special_token *sp = &t->special[k];
                if (sp->ncp <= cp.n - i && !memcmp(cp.v + i, sp->cp, sp->ncp * sizeof *sp->cp)) hit = sp;
            }
            if (!hit) {
                i++;
                continue;
            }
        }
        size_t a = piece, b = i;
        if (prev && prev->strip_right)
            while (a < b && stem_tok_is_pyspace(cp.v[a])) a++;
        if (hit && hit->strip_left)
            while (b > a && stem_tok_is_pyspace(cp.v[b - 1])) b--;
        if (b > a && tokenize_piece(t, cp.v + a, b - a, &toks, body_max)) goto oom;
        if (!hit) break;
        if (toks.n <= body_max && iv_push(&toks, hit->id)) goto oom;
        i += hit->ncp;
        piece = i;
        prev = hit;
    }

    bool cut = toks.n > body_max;
    size_t body = cut ? body_max : toks.n;
    ids[0] = t->bos_id;
    if (body) memcpy(ids + 1, toks.v, body * sizeof *ids);
    ids[1 + body] = t->eos_id;
    for (size_t k = body + 2; k < STEM_TOKENIZER_MAX_LEN; k++) ids[k] = t->pad_id;
    if (n_real) *n_real = (int)body + 2;
    if (truncated) *truncated = cut;
    cp_free(&cp);
    free(toks.v);
    return STEM_OK;
oom:
    cp_free(&cp);
    free(toks.v);
    return stem_fail(STEM_E_NOMEM, "tokenizing a prompt of %zu bytes: out of memory", strlen(text));
}
