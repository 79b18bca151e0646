/* The CLIP tokenizer's internals, shared by its pieces (one job each):
 *   tokenizer_map.c   the byte-string -> int32 hash map (vocabulary, merges, BPE cache)
 *   tokenizer_text.c  text as CLIP's Python tokenizer sees it: UTF-8, Unicode properties
 *                     of the `regex` module, ftfy.fix_text, whitespace_clean, str.lower
 *   tokenizer_load.c  vocab.json, merges.txt and the special tokens of the JSON configs
 *   tokenizer.c       BPE, CLIP's split pattern, stem_tokenize
 * tokenizer_tables.h holds the generated Unicode/HTML data (refdata/gen/gen_tokenizer.py). */
#ifndef STEM_MODELS_TOKENIZER_INTERNAL_H
#define STEM_MODELS_TOKENIZER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "models/tokenizer.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* CLIP's merges.txt is read as lines[1 : 49152-256-2+1]. */
#define MAX_MERGES (49152 - 256 - 2)
/* The BPE cache is dropped and restarted when it holds this many words. */
#define CACHE_MAX_WORDS 65536

/* ---- small containers ------------------------------------------------------------- */

/* Growable array of code points. */
typedef struct cpbuf {
    uint32_t *v;
    size_t n, cap;
} cpbuf;

static inline int cp_reserve(cpbuf *b, size_t n) {
    if (n <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < n) cap *= 2;
    uint32_t *v = realloc(b->v, cap * sizeof *v);
    if (!v) return -1;
    b->v = v;
    b->cap = cap;
    return 0;
}

static inline int cp_push(cpbuf *b, uint32_t c) {
    if (b->n == b->cap && cp_reserve(b, b->n + 1)) return -1;
    b->v[b->n++] = c;
    return 0;
}

static inline int cp_append(cpbuf *b, const uint32_t *v, size_t n) {
    if (cp_reserve(b, b->n + n)) return -1;
    if (n) memcpy(b->v + b->n, v, n * sizeof *v);
    b->n += n;
    return 0;
}

static inline void cp_swap(cpbuf *a, cpbuf *b) {
    cpbuf t = *a;
    *a = *b;
    *b = t;
}

static inline void cp_free(cpbuf *b) {
    free(b->v);
    b->v = NULL;
    b->n = b->cap = 0;
}

/* Growable array of ids. */
typedef struct ivec {
    int32_t *v;
    size_t n, cap;
} ivec;

static inline int iv_push(ivec *b, int32_t x) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 128;
        int32_t *v = realloc(b->v, cap * sizeof *v);
        if (!v) return -1;
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = x;
    return 0;
}

/* Growable byte string. */
typedef struct sbuf {
    char *v;
    size_t n, cap;
} sbuf;

static inline int sb_append(sbuf *b, const void *p, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *v = realloc(b->v, cap);
        if (!v) return -1;
        b->v = v;
        b->cap = cap;
    }
    if (n) memcpy(b->v + b->n, p, n);
    b->n += n;
    b->v[b->n] = 0;
    return 0;
}

/* ---- the hash map (tokenizer_map.c) ----------------------------------------------- */

/* Open-addressing hash map: byte string -> int32. Keys live in one pool. */
typedef struct strmap {
    struct entry {
        size_t off;
        uint32_t len;
        uint32_t hash;
        int32_t val;
    } *entries;
    size_t n, entries_cap;
    int32_t *slots; /* entry index, -1 = empty */
    size_t nslots;  /* power of two */
    char *pool;
    size_t pool_n, pool_cap;
} strmap;

/* 0, or -1 when out of memory. */
int stem_tok_map_init(strmap *m, size_t expected);
void stem_tok_map_free(strmap *m);
bool stem_tok_map_get(const strmap *m, const char *key, size_t len, int32_t *val);
/* Inserts or overwrites (later values win, like a Python dict). -1: out of memory. */
int stem_tok_map_put(strmap *m, const char *key, size_t len, int32_t val);

/* ---- text (tokenizer_text.c) ------------------------------------------------------ */

/* Strict UTF-8 decoding into out (0; -1 out of memory; -2 invalid, *bad_at = offset). */
int stem_tok_utf8_decode(const char *s, size_t n, cpbuf *out, size_t *bad_at);
/* The UTF-8 of c (< 0x110000) into buf[0..3]; returns the byte count. */
size_t stem_tok_utf8_put(uint32_t c, char *buf);
bool stem_tok_is_ws(uint32_t c);      /* the `regex` module's \s */
bool stem_tok_is_pyspace(uint32_t c); /* Python's str.isspace() */
bool stem_tok_is_letter(uint32_t c);  /* \p{L} */
bool stem_tok_is_number(uint32_t c);  /* \p{N} */
bool stem_tok_eq_fold(uint32_t c, char lit); /* IGNORECASE equality with an ASCII lowercase literal */
/* ftfy.fix_text, re.sub(r"\s+", " ", text).strip(), str.lower(): 0 or -1 (out of memory). */
int stem_tok_fix_text(const uint32_t *v, size_t n, cpbuf *out);
int stem_tok_whitespace_clean(const cpbuf *in, cpbuf *out);
int stem_tok_lower(const cpbuf *in, cpbuf *out);

/* ---- the tokenizer ------------------------------------------------------------------ */

typedef struct bpe_cache {
    pthread_mutex_t lock;
    strmap words; /* byte-unicode word -> offset into ids */
    ivec ids;     /* at each offset: count, then the ids */
} bpe_cache;

typedef struct special_token {
    char *text;   /* UTF-8 */
    uint32_t *cp; /* code points */
    size_t ncp;
    int32_t id;
    bool strip_left, strip_right; /* trim whitespace off the text before / after it */
} special_token;

struct stem_tokenizer {
    strmap vocab;  /* token -> id */
    strmap merges; /* "first second" -> rank */
    int32_t bos_id, eos_id, pad_id, unk_id;
    special_token *special; /* the no-split tokens, longest first */
    size_t nspecial;
    char byte_enc[256][3]; /* CLIP's bytes_to_unicode, as UTF-8 */
    unsigned char byte_enc_len[256];
    bpe_cache *cache;
};

#endif
