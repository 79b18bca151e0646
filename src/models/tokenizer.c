/* The CLIP BPE tokenizer: see tokenizer.h for what it reproduces and in which order.
 * Python references are to transformers 4.33.3 (tokenization_clip.py,
 * tokenization_utils.py), ftfy 6.1.1 (__init__.py, fixes.py, chardata.py) and the
 * `regex` module; tokenizer_tables.h holds the data generated from them. */
#include "models/tokenizer.h"

#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "models/tokenizer_tables.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* CLIP's merges.txt is read as lines[1 : 49152-256-2+1]. */
#define MAX_MERGES (49152 - 256 - 2)
/* The BPE cache is dropped and restarted when it holds this many words. */
#define CACHE_MAX_WORDS 65536

/* ================================================================================
 * Small containers
 * ================================================================================ */

/* Growable array of code points. */
typedef struct cpbuf {
    uint32_t *v;
    size_t n, cap;
} cpbuf;

static int cp_reserve(cpbuf *b, size_t n) {
    if (n <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < n) cap *= 2;
    uint32_t *v = realloc(b->v, cap * sizeof *v);
    if (!v) return -1;
    b->v = v;
    b->cap = cap;
    return 0;
}

static int cp_push(cpbuf *b, uint32_t c) {
    if (b->n == b->cap && cp_reserve(b, b->n + 1)) return -1;
    b->v[b->n++] = c;
    return 0;
}

static int cp_append(cpbuf *b, const uint32_t *v, size_t n) {
    if (cp_reserve(b, b->n + n)) return -1;
    if (n) memcpy(b->v + b->n, v, n * sizeof *v);
    b->n += n;
    return 0;
}

static void cp_swap(cpbuf *a, cpbuf *b) {
    cpbuf t = *a;
    *a = *b;
    *b = t;
}

static void cp_free(cpbuf *b) {
    free(b->v);
    b->v = NULL;
    b->n = b->cap = 0;
}

/* Growable array of ids. */
typedef struct ivec {
    int32_t *v;
    size_t n, cap;
} ivec;

static int iv_push(ivec *b, int32_t x) {
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

static int sb_append(sbuf *b, const void *p, size_t n) {
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

static uint32_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    return (uint32_t)(h ^ (h >> 32));
}

static void strmap_free(strmap *m) {
    free(m->entries);
    free(m->slots);
    free(m->pool);
    memset(m, 0, sizeof *m);
}

static int strmap_rehash(strmap *m, size_t nslots) {
    int32_t *slots = malloc(nslots * sizeof *slots);
    if (!slots) return -1;
    memset(slots, 0xff, nslots * sizeof *slots);
    for (size_t e = 0; e < m->n; e++) {
        size_t i = m->entries[e].hash & (nslots - 1);
        while (slots[i] >= 0) i = (i + 1) & (nslots - 1);
        slots[i] = (int32_t)e;
    }
    free(m->slots);
    m->slots = slots;
    m->nslots = nslots;
    return 0;
}

static int strmap_init(strmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    size_t nslots = 64;
    while (nslots < 2 * expected) nslots *= 2;
    return strmap_rehash(m, nslots);
}

/* Slot holding key, or the empty slot where it would go. */
static size_t strmap_find(const strmap *m, const char *key, size_t len, uint32_t h) {
    size_t i = h & (m->nslots - 1);
    for (;;) {
        int32_t e = m->slots[i];
        if (e < 0) return i;
        const struct entry *en = &m->entries[e];
        if (en->hash == h && en->len == len && !memcmp(m->pool + en->off, key, len)) return i;
        i = (i + 1) & (m->nslots - 1);
    }
}

static bool strmap_get(const strmap *m, const char *key, size_t len, int32_t *val) {
    if (!m->nslots) return false;
    int32_t e = m->slots[strmap_find(m, key, len, hash_bytes(key, len))];
    if (e < 0) return false;
    *val = m->entries[e].val;
    return true;
}

/* Inserts or overwrites (later values win, like a Python dict). -1: out of memory. */
static int strmap_put(strmap *m, const char *key, size_t len, int32_t val) {
    if (len > UINT32_MAX) return -1;
    uint32_t h = hash_bytes(key, len);
    size_t i = strmap_find(m, key, len, h);
    if (m->slots[i] >= 0) {
        m->entries[m->slots[i]].val = val;
        return 0;
    }
    if (m->n == m->entries_cap) {
        size_t cap = m->entries_cap ? 2 * m->entries_cap : 256;
        struct entry *en = realloc(m->entries, cap * sizeof *en);
        if (!en) return -1;
        m->entries = en;
        m->entries_cap = cap;
    }
    if (m->pool_n + len > m->pool_cap) {
        size_t cap = m->pool_cap ? m->pool_cap : 4096;
        while (cap < m->pool_n + len) cap *= 2;
        char *p = realloc(m->pool, cap);
        if (!p) return -1;
        m->pool = p;
        m->pool_cap = cap;
    }
    if (len) memcpy(m->pool + m->pool_n, key, len);
    m->entries[m->n] = (struct entry){.off = m->pool_n, .len = (uint32_t)len, .hash = h, .val = val};
    m->pool_n += len;
    m->slots[i] = (int32_t)m->n;
    m->n++;
    if (2 * m->n > m->nslots) return strmap_rehash(m, 2 * m->nslots);
    return 0;
}

/* ================================================================================
 * UTF-8
 * ================================================================================ */

/* Strict decoder (no overlongs, surrogates or values past U+10FFFF). On failure
 * *bad_at receives the offset of the first byte that is not part of valid UTF-8. */
static int utf8_decode(const char *s, size_t n, cpbuf *out, size_t *bad_at) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    out->n = 0;
    if (cp_reserve(out, n + 1)) return -1;
    while (i < n) {
        unsigned c = p[i];
        uint32_t cp;
        size_t len;
        if (c < 0x80) {
            cp = c;
            len = 1;
        } else if (c >= 0xC2 && c <= 0xDF) {
            cp = c & 0x1F;
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            cp = c & 0x0F;
            len = 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            cp = c & 0x07;
            len = 4;
        } else {
            *bad_at = i;
            return -2;
        }
        if (i + len > n) {
            *bad_at = i;
            return -2;
        }
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) {
                *bad_at = i;
                return -2;
            }
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF)) {
            *bad_at = i;
            return -2;
        }
        out->v[out->n++] = cp;
        i += len;
    }
    return 0;
}

/* Appends the UTF-8 of c (< 0x110000) to buf; returns the byte count. */
static size_t utf8_put(uint32_t c, char *buf) {
    if (c < 0x80) {
        buf[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        buf[0] = (char)(0xC0 | (c >> 6));
        buf[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        buf[0] = (char)(0xE0 | (c >> 12));
        buf[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        buf[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    buf[0] = (char)(0xF0 | (c >> 18));
    buf[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    buf[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    buf[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

static int utf8_encode(const uint32_t *v, size_t n, sbuf *out) {
    out->n = 0;
    if (sb_append(out, "", 0)) return -1;
    for (size_t i = 0; i < n; i++) {
        char b[4];
        if (sb_append(out, b, utf8_put(v[i], b))) return -1;
    }
    return 0;
}

/* ================================================================================
 * Unicode properties, as the Python reference sees them
 * ================================================================================ */

static bool in_ranges(const uint32_t (*r)[2], size_t n, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[mid][0])
            hi = mid;
        else if (c > r[mid][1])
            lo = mid + 1;
        else
            return true;
    }
    return false;
}
#define IN_TABLE(t, c) in_ranges((t), COUNT(t), (c))

/* The `regex` module's \s: the Unicode White_Space property. */
static bool is_ws(uint32_t c) {
    switch (c) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0:
    case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
        return true;
    default:
        return c >= 0x2000 && c <= 0x200A;
    }
}

/* Python's str.isspace(): White_Space plus the information separators U+1C..U+1F. */
static bool is_pyspace(uint32_t c) { return is_ws(c) || (c >= 0x1C && c <= 0x1F); }

/* \p{L} of the `regex` module: utf8proc's category, corrected by the generated tables
 * where the two Unicode versions disagree. */
static bool is_letter(uint32_t c) {
    if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    bool l = k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
    if (l) return !IN_TABLE(tok_letter_del, c);
    return IN_TABLE(tok_letter_add, c);
}

static bool is_number(uint32_t c) {
    if (c < 0x80) return c >= '0' && c <= '9';
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    bool nn = k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO;
    if (nn) return !IN_TABLE(tok_number_del, c);
    return IN_TABLE(tok_number_add, c);
}

/* Python re's \d in a str pattern: decimal digits (Nd). */
static bool is_decimal(uint32_t c) {
    if (c < 0x80) return c >= '0' && c <= '9';
    return utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_ND;
}

/* Case-insensitive equality with an ASCII lowercase literal, as the `regex` module's
 * IGNORECASE (simple case folding) sees it: s ~ S ~ ſ (U+017F), k ~ K ~ K (U+212A). */
static bool eq_fold(uint32_t c, char lit) {
    if (c == (uint32_t)lit) return true;
    if (lit >= 'a' && lit <= 'z' && c == (uint32_t)(lit - 32)) return true;
    return (lit == 's' && c == 0x17F) || (lit == 'k' && c == 0x212A);
}

/* ================================================================================
 * ftfy.fix_text
 * ================================================================================ */

static bool is_ascii_alnum(uint32_t c) {
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

/* html.unescape's mapping of numeric character references (html/__init__.py
 * _replace_charref): returns how many code points were written to out[0..1]. */
static const uint16_t invalid_charrefs_80[32] = {
    0x20AC, 0x81,   0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x8D,   0x017D, 0x8F,   0x90,   0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D,   0x017E, 0x0178};

static size_t charref(uint64_t num, uint32_t *out) {
    if (num == 0x00) return out[0] = 0xFFFD, 1;
    if (num == 0x0D) return out[0] = '\r', 1;
    if (num >= 0x80 && num <= 0x9F) return out[0] = invalid_charrefs_80[num - 0x80], 1;
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return out[0] = 0xFFFD, 1;
    if ((num >= 0x1 && num <= 0x8) || (num >= 0xE && num <= 0x1F) || (num >= 0x7F && num <= 0x9F) ||
        (num >= 0xFDD0 && num <= 0xFDEF) || num == 0xB || (num & 0xFFFE) == 0xFFFE)
        return 0;
    out[0] = (uint32_t)num;
    return 1;
}

static int entity_cmp(const void *key, const void *elem) {
    return strcmp((const char *)key, ((const tok_html_entity *)elem)->name);
}

/* ftfy.fixes.unescape_html: every match of &#?[0-9A-Za-z]{1,24}; that is a known
 * entity (html5 names ending in ';', plus ftfy's all-caps forms) or a complete
 * numeric reference whose value is not ';' is replaced; anything else stays. */
static int fix_unescape_html(const cpbuf *in, cpbuf *out) {
    out->n = 0;
    size_t i = 0;
    while (i < in->n) {
        uint32_t c = in->v[i];
        if (c != '&') {
            if (cp_push(out, c)) return -1;
            i++;
            continue;
        }
        size_t p = i + 1;
        bool hash = p < in->n && in->v[p] == '#';
        if (hash) p++;
        size_t run = 0;
        while (p + run < in->n && run <= 24 && is_ascii_alnum(in->v[p + run])) run++;
        if (run < 1 || run > 24 || p + run >= in->n || in->v[p + run] != ';') {
            if (cp_push(out, c)) return -1;
            i++;
            continue;
        }
        size_t end = p + run + 1; /* one past ';' */
        char name[32];
        size_t k = 0;
        if (hash) name[k++] = '#';
        for (size_t q = p; q < p + run; q++) name[k++] = (char)in->v[q];
        name[k] = 0;
        uint32_t rep[2];
        size_t nrep = 0;
        bool replaced = false;
        const tok_html_entity *e =
            bsearch(name, tok_html_entities, COUNT(tok_html_entities), sizeof tok_html_entities[0], entity_cmp);
        if (e) {
            cpbuf tmp = {0};
            size_t bad;
            if (utf8_decode(e->text, strlen(e->text), &tmp, &bad)) {
                cp_free(&tmp);
                return -1;
            }
            int rc = cp_append(out, tmp.v, tmp.n);
            cp_free(&tmp);
            if (rc) return -1;
            i = end;
            continue;
        }
        if (hash) {
            /* html.unescape decodes only a whole &#DIGITS; or &#xHEX; here: anything
             * else leaves a ';' behind, and ftfy then keeps the original text. */
            const char *d = name + 1;
            bool hex = (*d == 'x' || *d == 'X');
            if (hex) d++;
            bool ok = *d != 0;
            uint64_t num = 0;
            for (const char *q = d; *q && ok; q++) {
                int v;
                if (*q >= '0' && *q <= '9')
                    v = *q - '0';
                else if (hex && (*q | 0x20) >= 'a' && (*q | 0x20) <= 'f')
                    v = (*q | 0x20) - 'a' + 10;
                else {
                    ok = false;
                    break;
                }
                num = num * (hex ? 16 : 10) + (uint64_t)v;
                if (num > 0x10FFFF) num = 0x110000; /* saturate: all such values give U+FFFD */
            }
            if (ok) {
                nrep = charref(num, rep);
                replaced = !(nrep == 1 && rep[0] == ';');
            }
        }
        if (replaced) {
            if (cp_append(out, rep, nrep)) return -1;
        } else if (cp_append(out, in->v + i, end - i)) {
            return -1;
        }
        i = end;
    }
    return 0;
}

/* ftfy.fixes.fix_c1_controls: U+0080..U+009F read as sloppy Windows-1252. */
static void fix_c1_controls(cpbuf *b) {
    for (size_t i = 0; i < b->n; i++)
        if (b->v[i] >= 0x80 && b->v[i] <= 0x9F) b->v[i] = invalid_charrefs_80[b->v[i] - 0x80];
}

/* ftfy.chardata.LIGATURES. */
static const struct {
    uint32_t from;
    uint32_t to[3];
} ligatures[] = {
    {0x0132, {'I', 'J'}}, {0x0133, {'i', 'j'}}, {0x0149, {0x02BC, 'n'}}, {0x01F1, {'D', 'Z'}},
    {0x01F2, {'D', 'z'}}, {0x01F3, {'d', 'z'}}, {0x01C4, {'D', 0x017D}}, {0x01C5, {'D', 0x017E}},
    {0x01C6, {'d', 0x017E}}, {0x01C7, {'L', 'J'}}, {0x01C8, {'L', 'j'}}, {0x01C9, {'l', 'j'}},
    {0x01CA, {'N', 'J'}}, {0x01CB, {'N', 'j'}}, {0x01CC, {'n', 'j'}}, {0xFB00, {'f', 'f'}},
    {0xFB01, {'f', 'i'}}, {0xFB02, {'f', 'l'}}, {0xFB03, {'f', 'f', 'i'}}, {0xFB04, {'f', 'f', 'l'}},
    {0xFB05, {0x017F, 't'}}, {0xFB06, {'s', 't'}},
};

/* ftfy's translate() steps: ligatures, then character width (two passes, as ftfy). */
static int fix_translate(const cpbuf *in, cpbuf *out) {
    cpbuf mid = {0};
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        uint32_t c = in->v[i];
        size_t k;
        if (c >= 0x0132 && c <= 0xFB06) {
            for (k = 0; k < COUNT(ligatures); k++) {
                if (ligatures[k].from == c) break;
            }
            if (k < COUNT(ligatures)) {
                for (size_t j = 0; j < 3 && ligatures[k].to[j]; j++)
                    if (cp_push(&mid, ligatures[k].to[j])) goto oom;
                continue;
            }
        }
        if (cp_push(&mid, c)) goto oom;
    }
    for (size_t i = 0; i < mid.n; i++) {
        uint32_t c = mid.v[i];
        if (c == 0x3000) c = ' ';
        if (c >= 0xFF01 && c < 0xFFF0) {
            size_t lo = 0, hi = COUNT(tok_width_map);
            while (lo < hi) {
                size_t m = (lo + hi) / 2;
                if (tok_width_map[m][0] < c)
                    lo = m + 1;
                else
                    hi = m;
            }
            if (lo < COUNT(tok_width_map) && tok_width_map[lo][0] == c) {
                if (cp_push(out, tok_width_map[lo][1])) goto oom;
                if (tok_width_map[lo][2] && cp_push(out, tok_width_map[lo][2])) goto oom;
                continue;
            }
        }
        if (cp_push(out, c)) goto oom;
    }
    cp_free(&mid);
    return 0;
oom:
    cp_free(&mid);
    return -1;
}

/* uncurl_quotes, fix_line_breaks, remove_terminal_escapes, remove_control_chars. */
static int fix_quotes_breaks_controls(const cpbuf *in, cpbuf *out) {
    cpbuf a = {0};
    out->n = 0;
    /* uncurl_quotes + fix_line_breaks */
    for (size_t i = 0; i < in->n; i++) {
        uint32_t c = in->v[i];
        if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B))
            c = '\'';
        else if (c >= 0x201C && c <= 0x201F)
            c = '"';
        else if (c == '\r') {
            if (i + 1 < in->n && in->v[i + 1] == '\n') i++;
            c = '\n';
        } else if (c == 0x2028 || c == 0x2029 || c == 0x85)
            c = '\n';
        if (cp_push(&a, c)) goto oom;
    }
    /* remove_terminal_escapes (\033\[((?:\d|;)*)([a-zA-Z])) and remove_control_chars */
    for (size_t i = 0; i < a.n; i++) {
        uint32_t c = a.v[i];
        if (c == 0x1B && i + 1 < a.n && a.v[i + 1] == '[') {
            size_t j = i + 2;
            while (j < a.n && (a.v[j] == ';' || is_decimal(a.v[j]))) j++;
            if (j < a.n && a.v[j] < 0x80 && (a.v[j] | 0x20) >= 'a' && (a.v[j] | 0x20) <= 'z') {
                i = j;
                continue;
            }
        }
        if (c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
            c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC))
            continue;
        if (cp_push(out, c)) goto oom;
    }
    cp_free(&a);
    return 0;
oom:
    cp_free(&a);
    return -1;
}

static int nfc(const cpbuf *in, cpbuf *out) {
    bool plain = true;
    for (size_t i = 0; i < in->n && plain; i++) plain = in->v[i] < 0x300;
    out->n = 0;
    if (plain) return cp_append(out, in->v, in->n); /* nothing below U+0300 changes under NFC */
    sbuf s = {0};
    if (utf8_encode(in->v, in->n, &s)) return -1;
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)s.v, (utf8proc_ssize_t)s.n, &dst,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    free(s.v);
    if (n < 0) return -1;
    size_t bad;
    int rc = utf8_decode((const char *)dst, (size_t)n, out, &bad);
    free(dst);
    return rc ? -1 : 0;
}

/* ftfy.fix_and_explain on one line, with fix_encoding left out: the fixers in ftfy's
 * order, repeated until the text stops changing. */
static int fix_segment(cpbuf *seg, bool unescape) {
    cpbuf a = {0}, b = {0};
    int rc = -1;
    for (int iter = 0; iter < 64; iter++) {
        if (cp_append(&a, seg->v, seg->n)) goto done;
        if (unescape) {
            if (fix_unescape_html(&a, &b)) goto done;
            cp_swap(&a, &b);
        }
        fix_c1_controls(&a);
        if (fix_translate(&a, &b)) goto done;
        if (fix_quotes_breaks_controls(&b, &a)) goto done;
        if (nfc(&a, &b)) goto done;
        bool same = b.n == seg->n && (!b.n || !memcmp(b.v, seg->v, b.n * sizeof *b.v));
        cp_swap(seg, &b);
        a.n = b.n = 0;
        if (same) break;
    }
    rc = 0;
done:
    cp_free(&a);
    cp_free(&b);
    return rc;
}

/* ftfy.fix_text: line by line; HTML unescaping stops for good at the first line that
 * contains '<' (fix_text's "auto" mode replaces the config it carries to later lines). */
static int ftfy_fix_text(const uint32_t *v, size_t n, cpbuf *out) {
    cpbuf seg = {0};
    bool unescape = true;
    out->n = 0;
    size_t pos = 0;
    while (pos < n) {
        size_t end = pos;
        while (end < n && v[end] != '\n') end++;
        if (end < n) end++; /* the line keeps its '\n' */
        seg.n = 0;
        if (cp_append(&seg, v + pos, end - pos)) goto oom;
        for (size_t i = 0; i < seg.n && unescape; i++)
            if (seg.v[i] == '<') unescape = false;
        if (fix_segment(&seg, unescape)) goto oom;
        if (cp_append(out, seg.v, seg.n)) goto oom;
        pos = end;
    }
    cp_free(&seg);
    return 0;
oom:
    cp_free(&seg);
    return -1;
}

/* ================================================================================
 * whitespace_clean and str.lower
 * ================================================================================ */

/* re.sub(r"\s+", " ", text).strip() */
static int whitespace_clean(const cpbuf *in, cpbuf *out) {
    out->n = 0;
    bool prev_ws = false;
    for (size_t i = 0; i < in->n; i++) {
        if (is_ws(in->v[i])) {
            if (!prev_ws && cp_push(out, ' ')) return -1;
            prev_ws = true;
        } else {
            if (cp_push(out, in->v[i])) return -1;
            prev_ws = false;
        }
    }
    size_t a = 0, b = out->n;
    while (a < b && is_pyspace(out->v[a])) a++;
    while (b > a && is_pyspace(out->v[b - 1])) b--;
    if (a) memmove(out->v, out->v + a, (b - a) * sizeof *out->v);
    out->n = b - a;
    return 0;
}

/* Python's str.lower(): the full lowercase mapping (only U+0130 maps to two code
 * points) and the Final_Sigma rule for U+03A3 (unicodeobject.c handle_capital_sigma). */
static int py_lower(const cpbuf *in, cpbuf *out) {
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        uint32_t c = in->v[i];
        if (c < 0x80) {
            if (cp_push(out, (c >= 'A' && c <= 'Z') ? c + 32 : c)) return -1;
        } else if (c == 0x130) {
            if (cp_push(out, 'i') || cp_push(out, 0x307)) return -1;
        } else if (c == 0x3A3) {
            size_t j = i;
            uint32_t d = 0;
            bool found = false;
            while (j > 0) {
                d = in->v[--j];
                if (!IN_TABLE(tok_case_ignorable, d)) {
                    found = true;
                    break;
                }
            }
            bool final = found && IN_TABLE(tok_cased, d);
            if (final) {
                for (j = i + 1; j < in->n; j++) {
                    d = in->v[j];
                    if (!IN_TABLE(tok_case_ignorable, d)) break;
                }
                final = j == in->n || !IN_TABLE(tok_cased, d);
            }
            if (cp_push(out, final ? 0x3C2 : 0x3C3)) return -1;
        } else {
            if (cp_push(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c))) return -1;
        }
    }
    return 0;
}

/* ================================================================================
 * The tokenizer
 * ================================================================================ */

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

static void init_byte_encoder(stem_tokenizer *t) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        uint32_t c = printable ? (uint32_t)b : (uint32_t)(256 + n++);
        t->byte_enc_len[b] = (unsigned char)utf8_put(c, t->byte_enc[b]);
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
    if (strmap_init(&t->vocab, (size_t)json_object_object_length(root))) {
        s = stem_fail(STEM_E_NOMEM, "%s: out of memory", path);
        goto done;
    }
    json_object_object_foreach(root, key, val) {
        int64_t id = json_object_get_int64(val);
        if (!json_object_is_type(val, json_type_int) || id < 0 || id > INT32_MAX) {
            s = stem_fail(STEM_E_FORMAT, "%s: token \"%s\": id must be an integer in [0, 2^31)", path, key);
            goto done;
        }
        if (strmap_put(&t->vocab, key, strlen(key), (int32_t)id)) {
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
    if (strmap_init(&t->merges, MAX_MERGES)) {
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
                strmap_put(&t->merges, key.v, key.n, (int32_t)rank)) {
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
    if (!strmap_get(&t->vocab, slot->text, strlen(slot->text), &id))
        return stem_fail(STEM_E_NOTFOUND, "%s \"%s\" (from %s) is not in vocab.json", what, slot->text, slot->src);
    special_token *sp = realloc(t->special, (t->nspecial + 1) * sizeof *sp);
    if (!sp) return stem_fail(STEM_E_NOMEM, "out of memory");
    t->special = sp;
    special_token *e = &t->special[t->nspecial];
    memset(e, 0, sizeof *e);
    cpbuf cp = {0};
    size_t bad;
    int rc = utf8_decode(slot->text, strlen(slot->text), &cp, &bad);
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
        strmap_get(&t->vocab, names.slot[k].text, strlen(names.slot[k].text), ids[k]);
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
    if (strmap_init(&t->cache->words, 1024)) {
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
    strmap_free(&t->vocab);
    strmap_free(&t->merges);
    for (size_t i = 0; i < t->nspecial; i++) {
        free(t->special[i].text);
        free(t->special[i].cp);
    }
    free(t->special);
    if (t->cache) {
        pthread_mutex_destroy(&t->cache->lock);
        strmap_free(&t->cache->words);
        free(t->cache->ids.v);
        free(t->cache);
    }
    free(t);
}

int32_t stem_tokenizer_bos_id(const stem_tokenizer *t) { return t->bos_id; }
int32_t stem_tokenizer_eos_id(const stem_tokenizer *t) { return t->eos_id; }
int32_t stem_tokenizer_pad_id(const stem_tokenizer *t) { return t->pad_id; }
int stem_tokenizer_vocab_size(const stem_tokenizer *t) { return (int)t->vocab.n; }

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
        if (!strmap_get(&t->vocab, enc, enc_len, &id)) id = t->unk_id;
        return iv_push(out, id);
    }
    bpe_cache *cache = t->cache;
    pthread_mutex_lock(&cache->lock);
    int32_t off;
    if (strmap_get(&cache->words, enc, enc_len, &off)) {
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
            if (strmap_get(&t->merges, sc->key.v, sc->key.n, &r) && r < best) {
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
        if (!strmap_get(&t->vocab, w + st[i], st[i + 1] - st[i], &id)) id = t->unk_id;
        if (iv_push(out, id)) return -1;
    }

    pthread_mutex_lock(&cache->lock);
    int rc = 0;
    if (cache->words.n >= CACHE_MAX_WORDS) {
        strmap_free(&cache->words);
        cache->ids.n = 0;
        rc = strmap_init(&cache->words, 1024);
    }
    if (!rc && cache->ids.n + n + 1 <= INT32_MAX) {
        int32_t at = (int32_t)cache->ids.n;
        rc = iv_push(&cache->ids, (int32_t)n);
        for (size_t i = 0; i < n && !rc; i++) rc = iv_push(&cache->ids, out->v[first_out + i]);
        if (!rc) rc = strmap_put(&cache->words, enc, enc_len, at);
    }
    pthread_mutex_unlock(&cache->lock);
    return rc;
}

/* ---- CLIP's pattern -------------------------------------------------------------- */

static size_t match_literal(const uint32_t *v, size_t n, const char *lit) {
    size_t l = strlen(lit);
    if (n < l) return 0;
    for (size_t i = 0; i < l; i++)
        if (!eq_fold(v[i], lit[i])) return 0;
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
    if (is_letter(c)) {
        while (m < n && is_letter(v[m])) m++;
        return m;
    }
    if (is_number(c)) return 1;
    while (m < n && !is_ws(v[m]) && v[m] != 0x345 && !is_letter(v[m]) && !is_number(v[m])) m++;
    return m;
}

/* Tokenizes text without special-token strings: normalise, split, BPE. Stops once
 * out holds more than `enough` ids (the rest would be truncated anyway). */
static int tokenize_piece(const stem_tokenizer *t, const uint32_t *v, size_t n, ivec *out, size_t enough) {
    cpbuf a = {0}, b = {0};
    bpe_scratch sc = {0};
    sbuf enc = {0};
    int rc = -1;
    if (ftfy_fix_text(v, n, &a) || whitespace_clean(&a, &b) || py_lower(&b, &a)) goto done;
    for (size_t i = 0; i < a.n && out->n <= enough;) {
        size_t m = clip_match(a.v + i, a.n - i);
        if (!m) {
            i++;
            continue;
        }
        enc.n = 0;
        for (size_t k = i; k < i + m; k++) {
            char u[4];
            size_t ul = utf8_put(a.v[k], u);
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
    int rc = utf8_decode(text, strlen(text), &cp, &bad);
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
            while (a < b && is_pyspace(cp.v[a])) a++;
        if (hit && hit->strip_left)
            while (b > a && is_pyspace(cp.v[b - 1])) b--;
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
