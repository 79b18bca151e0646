/* Text as CLIP's Python tokenizer sees it before BPE (tokenizer_internal.h): strict
 * UTF-8, the Unicode properties of the `regex` module, ftfy 6.1.1's fix_text
 * (__init__.py, fixes.py, chardata.py; fix_encoding left out), whitespace_clean and
 * Python's str.lower. tokenizer_tables.h holds the data generated from them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "models/tokenizer_internal.h"
#include "models/tokenizer_tables.h"

/* ================================================================================
 * UTF-8
 * ================================================================================ */

/* Strict decoder (no overlongs, surrogates or values past U+10FFFF). On failure
 * *bad_at receives the offset of the first byte that is not part of valid UTF-8. */
int stem_tok_utf8_decode(const char *s, size_t n, cpbuf *out, size_t *bad_at) {
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
size_t stem_tok_utf8_put(uint32_t c, char *buf) {
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
        if (sb_append(out, b, stem_tok_utf8_put(v[i], b))) return -1;
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
bool stem_tok_is_ws(uint32_t c) {
    switch (c) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0:
    case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
        return true;
    default:
        return c >= 0x2000 && c <= 0x200A;
    }
}

/* Python's str.isspace(): White_Space plus the information separators U+1C..U+1F. */
bool stem_tok_is_pyspace(uint32_t c) { return stem_tok_is_ws(c) || (c >= 0x1C && c <= 0x1F); }

/* \p{L} of the `regex` module: utf8proc's category, corrected by the generated tables
 * where the two Unicode versions disagree. */
bool stem_tok_is_letter(uint32_t c) {
    if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    bool l = k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
    if (l) return !IN_TABLE(tok_letter_del, c);
    return IN_TABLE(tok_letter_add, c);
}

bool stem_tok_is_number(uint32_t c) {
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
bool stem_tok_eq_fold(uint32_t c, char lit) {
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
            if (stem_tok_utf8_decode(e->text, strlen(e->text), &tmp, &bad)) {
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
    int rc = stem_tok_utf8_decode((const char *)dst, (size_t)n, out, &bad);
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
int stem_tok_fix_text(const uint32_t *v, size_t n, cpbuf *out) {
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
 * stem_tok_whitespace_clean and str.lower
 * ================================================================================ */

/* re.sub(r"\s+", " ", text).strip() */
int stem_tok_whitespace_clean(const cpbuf *in, cpbuf *out) {
    out->n = 0;
    bool prev_ws = false;
    for (size_t i = 0; i < in->n; i++) {
        if (stem_tok_is_ws(in->v[i])) {
            if (!prev_ws && cp_push(out, ' ')) return -1;
            prev_ws = true;
        } else {
            if (cp_push(out, in->v[i])) return -1;
            prev_ws = false;
        }
    }
    size_t a = 0, b = out->n;
    while (a < b && stem_tok_is_pyspace(out->v[a])) a++;
    while (b > a && stem_tok_is_pyspace(out->v[b - 1])) b--;
    if (a) memmove(out->v, out->v + a, (b - a) * sizeof *out->v);
    out->n = b - a;
    return 0;
}

/* Python's str.lower(): the full lowercase mapping (only U+0130 maps to two code
 * points) and the Final_Sigma rule for U+03A3 (unicodeobject.c handle_capital_sigma). */
int stem_tok_lower(const cpbuf *in, cpbuf *out) {
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
