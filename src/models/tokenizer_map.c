/* The tokenizer's open-addressing hash map: byte string -> int32, keys in one pool
 * (tokenizer_internal.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "models/tokenizer_internal.h"

static uint32_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    return (uint32_t)(h ^ (h >> 32));
}

void stem_tok_map_free(strmap *m) {
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

int stem_tok_map_init(strmap *m, size_t expected) {
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

bool stem_tok_map_get(const strmap *m, const char *key, size_t len, int32_t *val) {
    if (!m->nslots) return false;
    int32_t e = m->slots[strmap_find(m, key, len, hash_bytes(key, len))];
    if (e < 0) return false;
    *val = m->entries[e].val;
    return true;
}

/* Inserts or overwrites (later values win, like a Python dict). -1: out of memory. */
int stem_tok_map_put(strmap *m, const char *key, size_t len, int32_t val) {
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
