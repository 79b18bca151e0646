/* Loading the CLIP tokenizer (tokenizer.h): vocab.json, merges.txt, and the special
 * tokens of tokenizer_config.json and special_tokens_map.json as transformers 4.33.3
 * reads them (tokenization_clip.py, tokenization_utils_base.py). */
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/tokenizer_internal.h"

static void init_byte_encoder(stem_tokenizer *t) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        uint32_t c = printable ? (uint32_t)b : (uint32_t)(256 + n++);
        t->byte_enc_len[b] = (unsigned char)stem_tok_utf8_put(c, t->byte_enc[b]);
    }
}

static stem_status read_file(const char *path, char **buf, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return stem_fail(STEM_E_IO, "%s: cannot open: %s", path, strerror(errno));
    sbuf s = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (sb_append(&s, chunk, n)) {
            fclose(f);
            free(s.v);
            return stem_fail(STEM_E_NOMEM, "%s: out of memory reading the file", path);
        }
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(s.v);
        return stem_fail(STEM_E_IO, "%s: read error", path);
    }
    if (!s.v && sb_append(&s, "", 0)) return stem_fail(STEM_E_NOMEM, "%s: out of memory", path);
    *buf = s.v;
    *len = s.n;
    return STEM_OK;
}

static stem_status parse_json_file(const char *path, json_object **out) {
    char *buf;
    size_t len;
    STEM_TRY(read_file(path, &buf, &len));
    json_tokener *tk = json_tokener_new();
    if (!tk) {
        free(buf);
        return stem_fail(STEM_E_NOMEM, "%s: out of memory", path);
    }
    json_object *obj = json_tokener_parse_ex(tk, buf, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tk);
    size_t end = json_tokener_get_parse_end(tk);
    json_tokener_free(tk);
    stem_status s = STEM_OK;
    if (!obj || jerr != json_tokener_success) {
        s = stem_fail(STEM_E_FORMAT, "%s: invalid JSON near byte %zu: %s", path, end,
                      jerr == json_tokener_continue ? "unexpected end of file" : json_tokener_error_desc(jerr));
    } else {
        while (end < len && strchr(" \t\r\n", buf[end])) end++;
        if (end < len) s = stem_fail(STEM_E_FORMAT, "%s: invalid JSON: extra data at byte %zu", path, end);
    }
    free(buf);
    if (s != STEM_OK) {
        json_object_put(obj);
        return s;
    }
    *out = obj;
    return STEM_OK;
}

static stem_status load_vocab(stem_tokenizer *t, const char *path) {
    json_object *root;
    STEM_TRY(parse_json_file(path, &root));
    stem_status s = STEM_OK;
    if (!json_object_is_type(root, json_type_object)) {
        s = stem_fail(STEM_E_FORMAT, "%s: expected a JSON object {\"token\": id, ...}", path);
        goto done;
    }
    if (stem_tok_map_init(&t->vocab, (size_t)json_object_object_length(root))) {
        s = stem_fail(STEM_E_NOMEM, "%s: out of memory", path);
        goto done;
    }
    json_object_object_foreach(root, key, val) {
        int64_t id = json_object_get_int64(val);
        if (!json_object_is_type(val, json_type_int) || id < 0 || id > INT32_MAX) {
            s = stem_fail(STEM_E_FORMAT, "%s: token \"%s\": id must be an integer in [0, 2^31)", path, key);
            goto done;
        }
        if (stem_tok_map_put(&t->vocab, key, strlen(key), (int32_t)id)) {
            s = stem_fail(STEM_E_NOMEM, "%s: out of memory", path);
            goto done;
        }
    }
    if (t->vocab.n == 0) s = stem_fail(STEM_E_FORMAT, "%s: the vocabulary is empty", path);
done:
    json_object_put(root);
    return s;
}

/* transformers: open(merges).read().strip().split("\n")[1 : 49152-256-2+1], each line
 * split on whitespace into a pair; rank = position (a repeated pair keeps its last). */
static stem_status load_merges(stem_tokenizer *t, const char *path) {
    char *buf;
    size_t len;
    STEM_TRY(read_file(path, &buf, &len));
    stem_status s = STEM_OK;
    if (stem_tok_map_init(&t->merges, MAX_MERGES)) {
        free(buf);
        return stem_fail(STEM_E_NOMEM, "%s: out of memory", path);
    }
    size_t a = 0, b = len;
    while (a < b && strchr(" \t\r\n\v\f", buf[a])) a++;
    while (b > a && strchr(" \t\r\n\v\f", buf[b - 1])) b--;
    if (a == b) {
        free(buf);
        return stem_fail(STEM_E_FORMAT, "%s: empty file (expected a \"#version\" line, then merges)", path);
    }
    size_t line_no = 0, rank = 0;
    sbuf key = {0};
    for (size_t pos = a; pos < b && rank < MAX_MERGES;) {
        size_t end = pos;
        while (end < b && buf[end] != '\n') end++;
        line_no++;
        if (line_no > 1) { /* the first line is the "#version" header */
            const char *f[3] = {0};
            size_t fl[3] = {0}, nf = 0;
            for (size_t i = pos; i < end;) {
                while (i < end && strchr(" \t\r\v\f", buf[i])) i++;
                if (i == end) break;
                size_t j = i;
                while (j < end && !strchr(" \t\r\v\f", buf[j])) j++;
                if (nf < 3) {
                    f[nf] = buf + i;
                    fl[nf] = j - i;
                }
                nf++;
                i = j;
            }
            if (nf != 2) {
                s = stem_fail(STEM_E_FORMAT, "%s: line %zu: expected two symbols separated by a space, found %zu",
                              path, line_no, nf);
                break;
            }
            key.n = 0;
            if (sb_append(&key, f[0], fl[0]) || sb_append(&key, " ", 1) || sb_append(&key, f[1], fl[1]) ||
                stem_tok_map_put(&t->merges, key.v, key.n, (int32_t)rank)) {
                s = stem_fail(STEM_E_NOMEM, "%s: out of memory", path);
                break;
            }
            rank++;
        }
        pos = end + 1;
    }
    free(key.v);
    free(buf);
    return s;
}

/* ---- special tokens -------------------------------------------------------------
 * transformers keeps each of bos/eos/unk/pad (and additional_special_tokens) either
 * as an AddedToken (with lstrip/rstrip flags) or as a plain str, and that decides how
 * tokenize() trims the text around the token once it has been split out: an
 * AddedToken eats whitespace only on the sides its flags say; a plain str on both
 * sides (Python's str.strip whitespace). CLIPTokenizer wraps bos/eos/unk strings given
 * to its constructor (tokenizer_config.json) in AddedToken(lstrip=False, rstrip=False);
 * special_tokens_map.json values replace them as given: {"content": ...} objects
 * become AddedTokens, strings stay strings. SD 2.x's pad "!" is a plain string. */

typedef struct tok_slot {
    char *text;
    bool added, lstrip, rstrip;
    char src[512]; /* the file (or default) that set it, for messages */
} tok_slot;

enum { SLOT_BOS, SLOT_EOS, SLOT_UNK, SLOT_PAD, NSLOTS };
static const char *slot_key[NSLOTS] = {"bos_token", "eos_token", "unk_token", "pad_token"};

typedef struct token_names {
    tok_slot slot[NSLOTS];
    tok_slot *extra; /* additional_special_tokens */
    size_t nextra;
} token_names;

static void free_slot(tok_slot *s) {
    free(s->text);
    memset(s, 0, sizeof *s);
}

static void free_names(token_names *n) {
    for (int k = 0; k < NSLOTS; k++) free_slot(&n->slot[k]);
    for (size_t i = 0; i < n->nextra; i++) free_slot(&n->extra[i]);
    free(n->extra);
    memset(n, 0, sizeof *n);
}

/* Parses a special-token value, "text" or {"content": "text", "lstrip": b, "rstrip": b,
 * ...}, into *slot. wrap_str: a plain string becomes an AddedToken (constructor path). */
static stem_status parse_slot(json_object *v, const char *what, const char *path, bool wrap_str, tok_slot *slot) {
    bool obj = json_object_is_type(v, json_type_object);
    json_object *c = v, *flag;
    if (obj && !json_object_object_get_ex(v, "content", &c)) c = NULL;
    if (!c || !json_object_is_type(c, json_type_string))
        return stem_fail(STEM_E_FORMAT, "%s: %s: expected a string or {\"content\": string}", path, what);
    char *text = strdup(json_object_get_string(c));
    if (!text) return stem_fail(STEM_E_NOMEM, "%s: out of memory", path);
    free_slot(slot);
    slot->text = text;
    slot->added = obj || wrap_str;
    slot->lstrip = obj && json_object_object_get_ex(v, "lstrip", &flag) && json_object_get_boolean(flag);
    slot->rstrip = obj && json_object_object_get_ex(v, "rstrip", &flag) && json_object_get_boolean(flag);
    snprintf(slot->src, sizeof slot->src, "%s", path);
    return STEM_OK;
}

/* Reads the optional tokenizer_config.json (constructor = true) or
 * special_tokens_map.json (constructor = false) into names. */
static stem_status load_config(const char *path, token_names *names, bool constructor) {
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        if (errno == ENOENT) return STEM_OK;
        return stem_fail(STEM_E_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    fclose(probe);
    json_object *root;
    STEM_TRY(parse_json_file(path, &root));
    stem_status s = STEM_OK;
    json_object *v;
    if (!json_object_is_type(root, json_type_object)) {
        s = stem_fail(STEM_E_FORMAT, "%s: expected a JSON object", path);
        goto done;
    }
    for (int k = 0; k < NSLOTS; k++) {
        if (!json_object_object_get_ex(root, slot_key[k], &v)) continue;
        if (json_object_is_type(v, json_type_null)) {
            s = stem_fail(STEM_E_FORMAT, "%s: %s is null; the CLIP tokenizer needs one", path, slot_key[k]);
            goto done;
        }
        if ((s = parse_slot(v, slot_key[k], path, constructor && k != SLOT_PAD, &names->slot[k])) != STEM_OK)
            goto done;
    }
    if (json_object_object_get_ex(root, "additional_special_tokens", &v) && !json_object_is_type(v, json_type_null)) {
        if (!json_object_is_type(v, json_type_array)) {
            s = stem_fail(STEM_E_FORMAT, "%s: additional_special_tokens: expected an array", path);
            goto done;
        }
        for (size_t i = 0; i < names->nextra; i++) free_slot(&names->extra[i]);
        free(names->extra);
        names->nextra = 0;
        size_t n = json_object_array_length(v);
        names->extra = n ? calloc(n, sizeof *names->extra) : NULL;
        if (n && !names->extra) {
            s = stem_fail(STEM_E_NOMEM, "%s: out of memory", path);
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            s = parse_slot(json_object_array_get_idx(v, i), "additional_special_tokens", path, false,
                           &names->extra[i]);
            if (s != STEM_OK) goto done;
            names->nextra++;
        }
    }
    if (constructor && json_object_object_get_ex(root, "model_max_length", &v) &&
        !json_object_is_type(v, json_type_null)) {
        if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) != STEM_TOKENIZER_MAX_LEN) {
            s = stem_fail(STEM_E_UNSUPPORTED, "%s: model_max_length is %s; CLIP's text encoder takes %d tokens", path,
                          json_object_to_json_string(v), STEM_TOKENIZER_MAX_LEN);
            goto done;
        }
    }
done:
    json_object_put(root);
    return s;
}

static int cmp_special_len(const void *a, const void *b) {
    const special_token *x = a, *y = b;
    return x->ncp < y->ncp ? 1 : x->ncp > y->ncp ? -1 : 0;
}

/* Registers slot's text as a no-split token (once per distinct text). */
static stem_status add_special(stem_tokenizer *t, const tok_slot *slot, const char *what) {
    for (size_t i = 0; i < t->nspecial; i++)
        if (!strcmp(t->special[i].text, slot->text)) return STEM_OK;
    int32_t id;
    if (!*slot->text) return stem_fail(STEM_E_FORMAT, "%s (from %s) is empty", what, slot->src);
    if (!stem_tok_map_get(&t->vocab, slot->text, strlen(slot->text), &id))
        return stem_fail(STEM_E_NOTFOUND, "%s \"%s\" (from %s) is not in vocab.json", what, slot->text, slot->src);
    special_token *sp = realloc(t->special, (t->nspecial + 1) * sizeof *sp);
    if (!sp) return stem_fail(STEM_E_NOMEM, "out of memory");
    t->special = sp;
    special_token *e = &t->special[t->nspecial];
    memset(e, 0, sizeof *e);
    cpbuf cp = {0};
    size_t bad;
    int rc = stem_tok_utf8_decode(slot->text, strlen(slot->text), &cp, &bad);
    if (rc == -1) return stem_fail(STEM_E_NOMEM, "out of memory");
    if (rc) {
        cp_free(&cp);
        return stem_fail(STEM_E_FORMAT, "%s (from %s) is not valid UTF-8", what, slot->src);
    }
    e->text = strdup(slot->text);
    if (!e->text) {
        cp_free(&cp);
        return stem_fail(STEM_E_NOMEM, "out of memory");
    }
    e->cp = cp.v;
    e->ncp = cp.n;
    e->id = id;
    e->strip_left = e->strip_right = true; /* a plain str: stripped on both sides */
    t->nspecial++;
    return STEM_OK;
}

/* The trimming rule of each no-split token: that of the last AddedToken with its text,
 * in transformers' order (bos, eos, unk, pad, additional), else both sides. */
static void set_strip_rules(stem_tokenizer *t, const token_names *n) {
    for (size_t i = 0; i < t->nspecial; i++) {
        special_token *e = &t->special[i];
        const tok_slot *last = NULL;
        for (int k = 0; k < NSLOTS; k++)
            if (n->slot[k].added && !strcmp(n->slot[k].text, e->text)) last = &n->slot[k];
        for (size_t k = 0; k < n->nextra; k++)
            if (n->extra[k].added && !strcmp(n->extra[k].text, e->text)) last = &n->extra[k];
        if (last) {
            e->strip_left = last->lstrip;
            e->strip_right = last->rstrip;
        }
    }
}

stem_status stem_tokenizer_load(const char *dir, stem_tokenizer **out) { return stem_tokenizer_load_split(dir, dir, out); }

stem_status stem_tokenizer_load_split(const char *dir, const char *special_dir, stem_tokenizer **out) {
    if (!dir || !special_dir || !out) return stem_fail(STEM_E_ARG, "stem_tokenizer_load: NULL argument");
    *out = NULL;
    stem_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return stem_fail(STEM_E_NOMEM, "out of memory");
    init_byte_encoder(t);
    token_names names = {0};
    stem_status s;
    char path[4096];
    /* CLIPTokenizer's defaults (bos/eos/unk wrapped as AddedToken, pad a str), then
     * tokenizer_config.json (constructor arguments), then special_tokens_map.json */
    static const char *defaults[NSLOTS] = {"<|startoftext|>", "<|endoftext|>", "<|endoftext|>", "<|endoftext|>"};
    for (int k = 0; k < NSLOTS; k++) {
        json_object *d = json_object_new_string(defaults[k]);
        s = d ? parse_slot(d, slot_key[k], "CLIPTokenizer's defaults", k != SLOT_PAD, &names.slot[k])
              : stem_fail(STEM_E_NOMEM, "out of memory");
        json_object_put(d);
        if (s != STEM_OK) goto fail;
    }

    snprintf(path, sizeof path, "%s/vocab.json", dir);
    if ((s = load_vocab(t, path)) != STEM_OK) goto fail;
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    if ((s = load_merges(t, path)) != STEM_OK) goto fail;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", special_dir);
    if ((s = load_config(path, &names, true)) != STEM_OK) goto fail;
    snprintf(path, sizeof path, "%s/special_tokens_map.json", special_dir);
    if ((s = load_config(path, &names, false)) != STEM_OK) goto fail;

    int32_t *ids[NSLOTS] = {&t->bos_id, &t->eos_id, &t->unk_id, &t->pad_id};
    for (int k = 0; k < NSLOTS; k++) {
        if ((s = add_special(t, &names.slot[k], slot_key[k])) != STEM_OK) goto fail;
        stem_tok_map_get(&t->vocab, names.slot[k].text, strlen(names.slot[k].text), ids[k]);
    }
    for (size_t i = 0; i < names.nextra; i++)
        if ((s = add_special(t, &names.extra[i], "additional special token")) != STEM_OK) goto fail;
    set_strip_rules(t, &names);
    qsort(t->special, t->nspecial, sizeof *t->special, cmp_special_len);

    t->cache = calloc(1, sizeof *t->cache);
    if (!t->cache || pthread_mutex_init(&t->cache->lock, NULL) != 0) {
        free(t->cache);
        t->cache = NULL;
        s = stem_fail(STEM_E_NOMEM, "out of memory");
        goto fail;
    }
    if (stem_tok_map_init(&t->cache->words, 1024)) {
        s = stem_fail(STEM_E_NOMEM, "out of memory");
        goto fail;
    }
    free_names(&names);
    *out = t;
    return STEM_OK;
fail:
    free_names(&names);
    stem_tokenizer_free(t);
    return stem_error_context(s, "loading tokenizer %s", dir);
}

void stem_tokenizer_free(stem_tokenizer *t) {
    if (!t) return;
    stem_tok_map_free(&t->vocab);
    stem_tok_map_free(&t->merges);
    for (size_t i = 0; i < t->nspecial; i++) {
        free(t->special[i].text);
        free(t->special[i].cp);
    }
    free(t->special);
    if (t->cache) {
        pthread_mutex_destroy(&t->cache->lock);
        stem_tok_map_free(&t->cache->words);
        free(t->cache->ids.v);
        free(t->cache);
    }
    free(t);
}

int32_t stem_tokenizer_bos_id(const stem_tokenizer *t) { return t->bos_id; }
int32_t stem_tokenizer_eos_id(const stem_tokenizer *t) { return t->eos_id; }
int32_t stem_tokenizer_pad_id(const stem_tokenizer *t) { return t->pad_id; }
int stem_tokenizer_vocab_size(const stem_tokenizer *t) { return (int)t->vocab.n; }
