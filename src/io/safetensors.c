/* safetensors reader and writer.
 *
 * Reading happens in three steps, and nothing is handed out until all of them pass:
 *   1. map the file and check the 8-byte header length against the file size;
 *   2. parse the JSON header (strict) into a table of entries, checking each entry's
 *      dtype, shape, offsets and byte count, then that no two entries overlap;
 *   3. wrap each tensor in place (pointing into the read-only mapping), or copy it
 *      when it must be converted or its bytes are not aligned for its dtype.
 *
 * Writing builds the header with json-c, pads it with spaces to a multiple of 8,
 * streams the data into "<path>.tmp.<pid>", fsyncs, and renames over <path>. */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "core/backend.h"
#include "core/host.h"
#include "io/atomic_file.h"

#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000) /* same limit as the reference implementation */
#define ST_META_KEY "__metadata__"

/* ---- reading ---------------------------------------------------------------------- */

typedef struct st_entry {
    const char *name; /* points into the parsed JSON; valid while it lives */
    stem_dtype dtype;
    int ndim;
    int64_t shape[STEM_MAX_DIMS];
    uint64_t begin, end; /* relative to the start of the data block */
} st_entry;

typedef struct st_file {
    const char *path;
    int fd;
    uint8_t *base; /* the mapping, PROT_READ */
    size_t size;
    uint64_t header_len;
    const uint8_t *data; /* start of the data block */
    uint64_t data_size;
    json_object *root;
    st_entry *entries;
    int count;
} st_file;

static void st_close(st_file *f) {
    if (f->root) json_object_put(f->root);
    free(f->entries);
    if (f->base) munmap(f->base, f->size);
    if (f->fd >= 0) close(f->fd);
    f->root = NULL;
    f->entries = NULL;
    f->base = NULL;
    f->fd = -1;
}

static const char *json_type_str(json_object *o) { return json_type_to_name(json_object_get_type(o)); }

/* Short rendering of a JSON value for messages ("found ..."). */
static const char *json_brief(json_object *o, char *buf, size_t len) {
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t n = strlen(s);
    if (n < len) {
        memcpy(buf, s, n + 1);
    } else {
        snprintf(buf, len, "%.*s...", (int)(len - 4), s);
    }
    return buf;
}

static const char *supported_dtypes(void) { return "F32, F16, BF16, I32, I64, U8"; }

/* Exact safetensors spelling only (the file format is upper case). */
static int parse_file_dtype(const char *s) {
    for (int i = 0; i < STEM_DTYPE_COUNT; i++)
        if (strcmp(s, stem_dtype_name((stem_dtype)i)) == 0) return i;
    return -1;
}

/* A non-negative JSON integer; `what` names the field for messages. */
static stem_status get_uint(const st_file *f, const char *name, const char *what, json_object *v, int64_t *out) {
    char buf[64];
    if (!json_object_is_type(v, json_type_int))
        return stem_fail(STEM_E_FORMAT, "%s: tensor '%s': %s must be an integer (found %s %s)", f->path, name, what,
                         json_type_str(v), json_brief(v, buf, sizeof buf));
    int64_t x = json_object_get_int64(v);
    if (x < 0)
        return stem_fail(STEM_E_FORMAT, "%s: tensor '%s': %s is negative (expected >= 0, found %" PRId64 ")", f->path,
                         name, what, x);
    if (x == INT64_MAX) /* json-c saturates larger numbers here */
        return stem_fail(STEM_E_FORMAT, "%s: tensor '%s': %s is too large (expected < 2^63, found %s)", f->path, name,
                         what, json_brief(v, buf, sizeof buf));
    *out = x;
    return STEM_OK;
}

static stem_status parse_entry(const st_file *f, const char *name, json_object *obj, st_entry *e) {
    const char *p = f->path;
    char buf[96];
    e->name = name;
    if (!json_object_is_type(obj, json_type_object))
        return stem_fail(STEM_E_FORMAT,
                         "%s: tensor '%s': entry is not an object (expected {\"dtype\", \"shape\", \"data_offsets\"}, "
                         "found %s %s)",
                         p, name, json_type_str(obj), json_brief(obj, buf, sizeof buf));

    json_object *dt, *shape, *offs;
    if (!json_object_object_get_ex(obj, "dtype", &dt))
        return stem_fail(STEM_E_FORMAT, "%s: tensor '%s': missing \"dtype\" (expected one of %s)", p, name,
                         supported_dtypes());
    if (!json_object_is_type(dt, json_type_string))
        return stem_fail(STEM_E_FORMAT, "%s: tensor '%s': \"dtype\" must be a string (expected one of %s, found %s %s)",
                         p, name, supported_dtypes(), json_type_str(dt), json_brief(dt, buf, sizeof buf));
    int d = parse_file_dtype(json_object_get_string(dt));
    if (d < 0)
        return stem_fail(STEM_E_FORMAT, "%s: tensor '%s': unsupported dtype (expected one of %s, found \"%.40s\")", p,
                         name, supported_dtypes(), json_object_get_string(dt));
    e->dtype = (stem_dtype)d;

    if (!json_object_object_get_ex(obj, "shape", &shape))
        return stem_fail(STEM_E_FORMAT, "%s: tensor '%s': missing \"shape\" (expected an array of sizes)", p, name);
    if (!json_object_is_type(shape, json_type_array))
        return stem_fail(STEM_E_FORMAT, "%s: tensor '%s': \"shape\" must be an array (found %s %s)", p, name,
                         json_type_str(shape), json_brief(shape, buf, sizeof buf));
    size_t rank = json_object_array_length(shape);
    if (rank > STEM_MAX_DIMS)
        return stem_fail(STEM_E_FORMAT, "%s: tensor '%s': rank too high (expected at most %d dimensions, found %zu)", p,
                         name, STEM_MAX_DIMS, rank);
    e->ndim = (int)rank;
    uint64_t numel = 1;
    bool overflow = false;
    for (size_t i = 0; i < rank; i++) {
        char what[16];
        snprintf(what, sizeof what, "shape[%zu]", i);
        STEM_TRY(get_uint(f, name, what, json_object_array_get_idx(shape, i), &e->shape[i]));
        overflow |= __builtin_mul_overflow(numel, (uint64_t)e->shape[i], &numel);
    }
    uint64_t nbytes = 0;
    overflow |= numel > (uint64_t)INT64_MAX || __builtin_mul_overflow(numel, (uint64_t)stem_dtype_size(e->dtype), &nbytes);
    if (overflow)
        return stem_fail(STEM_E_FORMAT, "%s: tensor '%s': shape %s overflows (expected a byte size below 2^64)", p, name,
                         json_brief(shape, buf, sizeof buf));

    if (!json_object_object_get_ex(obj, "data_offsets", &offs))
        return stem_fail(STEM_E_FORMAT, "%s: tensor '%s': missing \"data_offsets\" (expected [begin, end])", p, name);
    if (!json_object_is_type(offs, json_type_array) || json_object_array_length(offs) != 2)
        return stem_fail(STEM_E_FORMAT, "%s: tensor '%s': bad \"data_offsets\" (expected [begin, end], found %s)", p,
                         name, json_brief(offs, buf, sizeof buf));
    int64_t b, en;
    STEM_TRY(get_uint(f, name, "data_offsets begin", json_object_array_get_idx(offs, 0), &b));
    STEM_TRY(get_uint(f, name, "data_offsets end", json_object_array_get_idx(offs, 1), &en));
    e->begin = (uint64_t)b;
    e->end = (uint64_t)en;
    if (e->begin > e->end)
        return stem_fail(STEM_E_FORMAT, "%s: tensor '%s': data_offsets begin > end (expected begin <= end, found [%" PRIu64
                         ", %" PRIu64 "])",
                         p, name, e->begin, e->end);
    if (e->end > f->data_size)
        return stem_fail(STEM_E_FORMAT,
                         "%s: tensor '%s': data_offsets out of range (expected end <= %" PRIu64
                         ", the data block size, found [%" PRIu64 ", %" PRIu64 "]; truncated file?)",
                         p, name, f->data_size, e->begin, e->end);
    if (e->end - e->begin != nbytes) {
        stem_tensor t = stem_tensor_wrap(NULL, e->dtype, e->ndim, e->shape, NULL);
        return stem_fail(STEM_E_FORMAT,
                         "%s: tensor '%s': byte size does not match shape and dtype (expected %" PRIu64
                         " bytes for %s %s, found %" PRIu64 " bytes in data_offsets [%" PRIu64 ", %" PRIu64 "])",
                         p, name, nbytes, stem_dtype_name(e->dtype), stem_shape_str(&t, buf, sizeof buf),
                         e->end - e->begin, e->begin, e->end);
    }
    return STEM_OK;
}

static int cmp_by_offset(const void *a, const void *b) {
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static stem_status check_overlaps(const st_file *f) {
    if (f->count < 2) return STEM_OK;
    const st_entry **order = malloc((size_t)f->count * sizeof *order);
    if (!order) return stem_fail(STEM_E_NOMEM, "%s: out of memory checking %d tensors", f->path, f->count);
    for (int i = 0; i < f->count; i++) order[i] = &f->entries[i];
    qsort(order, (size_t)f->count, sizeof *order, cmp_by_offset);
    const st_entry *reach = NULL; /* the entry that extends furthest so far */
    stem_status s = STEM_OK;
    for (int i = 0; i < f->count && s == STEM_OK; i++) {
        const st_entry *e = order[i];
        if (e->begin == e->end) continue; /* empty tensors cover no bytes */
        if (reach && e->begin < reach->end)
            s = stem_fail(STEM_E_FORMAT,
                          "%s: tensor '%s': data overlaps tensor '%s' (expected disjoint byte ranges, found [%" PRIu64
                          ", %" PRIu64 ") and [%" PRIu64 ", %" PRIu64 "))",
                          f->path, e->name, reach->name, e->begin, e->end, reach->begin, reach->end);
        if (!reach || e->end > reach->end) reach = e;
    }
    free(order);
    return s;
}

static stem_status parse_header(st_file *f, stem_tensor_map *meta_out) {
    const char *p = f->path;
    const char *text = (const char *)f->base + 8;
    json_tokener *tok = json_tokener_new();
    if (!tok) return stem_fail(STEM_E_NOMEM, "%s: out of memory parsing the header", p);
    /* trailing bytes are checked below, to tell padding from junk */
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS | JSON_TOKENER_VALIDATE_UTF8);
    f->root = json_tokener_parse_ex(tok, text, (int)f->header_len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!f->root) {
        if (jerr == json_tokener_continue)
            return stem_fail(STEM_E_FORMAT,
                             "%s: header is not valid JSON (expected a complete object in %" PRIu64
                             " bytes, found it cut off at the end)",
                             p, f->header_len);
        return stem_fail(STEM_E_FORMAT, "%s: header is not valid JSON (%s at byte %zu of %" PRIu64 ")", p,
                         json_tokener_error_desc(jerr), end, f->header_len);
    }
    for (size_t i = end; i < f->header_len; i++) {
        char c = text[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            return stem_fail(STEM_E_FORMAT,
                             "%s: header has trailing data (expected only space padding after the JSON, found byte 0x%02x "
                             "at %zu of %" PRIu64 ")",
                             p, (unsigned char)c, i, f->header_len);
    }
    if (!json_object_is_type(f->root, json_type_object))
        return stem_fail(STEM_E_FORMAT, "%s: header is not a JSON object (expected {\"name\": {...}, ...}, found %s)", p,
                         json_type_str(f->root));

    int n = json_object_object_length(f->root);
    f->entries = calloc(n ? (size_t)n : 1, sizeof *f->entries);
    if (!f->entries) return stem_fail(STEM_E_NOMEM, "%s: out of memory for %d header entries", p, n);
    json_object_object_foreach(f->root, key, val) {
        if (strcmp(key, ST_META_KEY) == 0) {
            if (json_object_is_type(val, json_type_null)) continue; /* the reference writer's "no metadata" */
            if (!json_object_is_type(val, json_type_object))
                return stem_fail(STEM_E_FORMAT,
                                 "%s: \"__metadata__\" must be an object of strings (expected object, found %s)", p,
                                 json_type_str(val));
            json_object_object_foreach(val, mkey, mval) {
                if (!json_object_is_type(mval, json_type_string)) {
                    char buf[64];
                    return stem_fail(STEM_E_FORMAT,
                                     "%s: \"__metadata__\" key '%s': value must be a string (expected string, found %s %s)",
                                     p, mkey, json_type_str(mval), json_brief(mval, buf, sizeof buf));
                }
                if (meta_out) STEM_TRY(stem_tensor_map_set_meta(meta_out, mkey, json_object_get_string(mval)));
            }
            continue;
        }
        STEM_TRY(parse_entry(f, key, val, &f->entries[f->count]));
        f->count++;
    }
    return check_overlaps(f);
}

/* Opens, maps and validates `path` (steps 1 and 2); metadata goes into `meta_out`. */
static stem_status st_open(const char *path, st_file *f, stem_tensor_map *meta_out) {
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->path = path;
    if (!path || !*path) return stem_fail(STEM_E_ARG, "safetensors: empty file name");
    /* O_NONBLOCK: opening a FIFO must not hang; it has no effect on regular files */
    f->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (f->fd < 0) return stem_fail(STEM_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(f->fd, &st) != 0) return stem_fail(STEM_E_IO, "%s: cannot stat: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return stem_fail(STEM_E_IO, "%s: is a directory (expected a .safetensors file)", path);
    if (!S_ISREG(st.st_mode))
        return stem_fail(STEM_E_IO, "%s: not a regular file (expected a .safetensors file)", path);
    if ((uint64_t)st.st_size < 8)
        return stem_fail(STEM_E_FORMAT,
                         "%s: file too short (expected at least 8 bytes of header length, found %lld bytes)", path,
                         (long long)st.st_size);
    if ((uint64_t)st.st_size > SIZE_MAX) return stem_fail(STEM_E_IO, "%s: file too large to map", path);
    f->size = (size_t)st.st_size;
    void *base = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, f->fd, 0);
    if (base == MAP_FAILED) return stem_fail(STEM_E_IO, "%s: cannot map %zu bytes: %s", path, f->size, strerror(errno));
    f->base = base;
    close(f->fd); /* the mapping keeps the file alive */
    f->fd = -1;

    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | f->base[i];
    f->header_len = n;
    if (n == 0)
        return stem_fail(STEM_E_FORMAT, "%s: header length is 0 (expected a JSON object of at least 2 bytes)", path);
    if (n > ST_MAX_HEADER)
        return stem_fail(STEM_E_FORMAT, "%s: header length too large (expected at most %" PRIu64 " bytes, found %" PRIu64
                         "; not a safetensors file?)",
                         path, ST_MAX_HEADER, n);
    if (n > f->size - 8)
        return stem_fail(STEM_E_FORMAT,
                         "%s: header length exceeds the file (expected at most %zu bytes, found %" PRIu64
                         "; truncated file?)",
                         path, f->size - 8, n);
    f->data = f->base + 8 + n;
    f->data_size = f->size - 8 - n;
    return parse_header(f, meta_out);
}

/* Converts n elements; `src` may be unaligned for its dtype (staged through the stack). */
static void convert_unaligned(void *dst, stem_dtype dst_dt, const uint8_t *src, stem_dtype src_dt, size_t n) {
    size_t es = stem_dtype_size(src_dt), ds = stem_dtype_size(dst_dt);
    if (((uintptr_t)src % es) == 0) {
        stem_convert(dst, dst_dt, src, src_dt, n);
        return;
    }
    enum { CHUNK = 4096 };
    _Alignas(16) uint8_t stage[CHUNK * 4];
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t k = n - i < CHUNK ? n - i : CHUNK;
        memcpy(stage, src + i * es, k * es);
        stem_convert((uint8_t *)dst + i * ds, dst_dt, stage, src_dt, k);
    }
}

static bool is_float_dtype(stem_dtype dt) { return dt == STEM_F32 || dt == STEM_F16 || dt == STEM_BF16; }

stem_status stem_safetensors_load(const char *path, int want_dtype, stem_tensor_map *out) {
    stem_tensor_map_init(out);
    if (want_dtype >= 0 && !is_float_dtype((stem_dtype)want_dtype))
        return stem_fail(STEM_E_ARG, "%s: cannot load as %s (expected F32, F16, BF16, or no conversion)", path,
                         stem_dtype_name((stem_dtype)want_dtype));
    st_file f;
    stem_status s = st_open(path, &f, out);
    stem_backend *cpu = stem_host();
    bool uses_mapping = false;
    for (int i = 0; s == STEM_OK && i < f.count; i++) {
        const st_entry *e = &f.entries[i];
        const uint8_t *src = f.data + e->begin;
        stem_dtype dt = e->dtype;
        if (want_dtype >= 0 && is_float_dtype(dt)) dt = (stem_dtype)want_dtype;
        stem_tensor t;
        if (dt == e->dtype && (uintptr_t)src % stem_dtype_size(dt) == 0) {
            t = stem_tensor_wrap(cpu, dt, e->ndim, e->shape, (void *)src);
            uses_mapping = true;
        } else {
            s = stem_tensor_new(cpu, dt, e->ndim, e->shape, &t);
            if (s != STEM_OK) {
                s = stem_error_context(s, "%s: tensor '%s'", path, e->name);
                break;
            }
            if (dt == e->dtype)
                memcpy(t.data, src, e->end - e->begin); /* unaligned in the file: an aligned copy */
            else
                convert_unaligned(t.data, dt, src, e->dtype, (size_t)stem_numel(&t));
        }
        s = stem_tensor_map_put(out, e->name, t);
    }
    if (s == STEM_OK && uses_mapping) {
        out->mapping = f.base; /* the map now owns the mapping */
        out->mapping_size = f.size;
        f.base = NULL;
    }
    st_close(&f);
    if (s != STEM_OK) stem_tensor_map_free(out);
    return s;
}

stem_status stem_safetensors_inspect(const char *path, stem_tensor_map *out) {
    stem_tensor_map_init(out);
    st_file f;
    stem_status s = st_open(path, &f, out);
    for (int i = 0; s == STEM_OK && i < f.count; i++) {
        const st_entry *e = &f.entries[i];
        s = stem_tensor_map_put(out, e->name, stem_tensor_wrap(NULL, e->dtype, e->ndim, e->shape, NULL));
    }
    st_close(&f);
    if (s != STEM_OK) stem_tensor_map_free(out);
    return s;
}

/* ---- writing ---------------------------------------------------------------------- */

static stem_status write_all(int fd, const void *buf, size_t len, const char *path, const char *tmp) {
    const uint8_t *p = buf;
    while (len > 0) {
        size_t chunk = len < ((size_t)1 << 30) ? len : ((size_t)1 << 30);
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return stem_fail(STEM_E_IO, "%s: write to '%s' failed: %s", path, tmp, strerror(errno));
        }
        if (w == 0) return stem_fail(STEM_E_IO, "%s: write to '%s' made no progress", path, tmp);
        p += w;
        len -= (size_t)w;
    }
    return STEM_OK;
}

static stem_status check_tensor_for_save(const char *path, const char *name, const stem_tensor *t) {
    if ((unsigned)t->dtype >= STEM_DTYPE_COUNT)
        return stem_fail(STEM_E_ARG, "%s: tensor '%s': invalid dtype %d", path, name, (int)t->dtype);
    if (t->ndim < 0 || t->ndim > STEM_MAX_DIMS)
        return stem_fail(STEM_E_ARG, "%s: tensor '%s': rank %d is outside 0..%d", path, name, t->ndim, STEM_MAX_DIMS);
    uint64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0)
            return stem_fail(STEM_E_ARG, "%s: tensor '%s': negative size %" PRId64 " on axis %d", path, name,
                             t->shape[i], i);
        if (__builtin_mul_overflow(numel, (uint64_t)t->shape[i], &numel))
            return stem_fail(STEM_E_ARG, "%s: tensor '%s': shape overflows", path, name);
    }
    if (numel > 0 && (!t->data || !t->backend))
        return stem_fail(STEM_E_ARG, "%s: tensor '%s': has no data (a map from stem_safetensors_inspect?)", path, name);
    if (strcmp(name, ST_META_KEY) == 0)
        return stem_fail(STEM_E_ARG, "%s: tensor name '%s' is reserved for metadata", path, name);
    return STEM_OK;
}

/* The header JSON, padded with spaces so that 8 + its length is a multiple of 8. */
static stem_status build_header(const char *path, const stem_tensor_map *m, char **out, size_t *out_len) {
    json_object *root = json_object_new_object();
    if (!root) return stem_fail(STEM_E_NOMEM, "%s: out of memory building the header", path);
    bool ok = true;
    if (m->meta_count > 0) {
        json_object *meta = json_object_new_object();
        ok = meta && json_object_object_add(root, ST_META_KEY, meta) == 0;
        for (int i = 0; ok && i < m->meta_count; i++)
            ok = json_object_object_add(meta, m->meta[i].key, json_object_new_string(m->meta[i].value)) == 0;
    }
    uint64_t offset = 0;
    for (int i = 0; ok && i < m->count; i++) {
        const stem_tensor *t = &m->items[i].tensor;
        uint64_t nbytes = (uint64_t)stem_nbytes(t);
        json_object *e = json_object_new_object(), *shape = json_object_new_array(),
                    *offs = json_object_new_array();
        ok = e && shape && offs;
        for (int d = 0; ok && d < t->ndim; d++) ok = json_object_array_add(shape, json_object_new_int64(t->shape[d])) == 0;
        ok = ok && json_object_array_add(offs, json_object_new_uint64(offset)) == 0 &&
             json_object_array_add(offs, json_object_new_uint64(offset + nbytes)) == 0;
        if (ok) {
            json_object_object_add(e, "dtype", json_object_new_string(stem_dtype_name(t->dtype)));
            json_object_object_add(e, "shape", shape);
            json_object_object_add(e, "data_offsets", offs);
            ok = json_object_object_add(root, m->items[i].name, e) == 0;
        } else {
            json_object_put(e);
            json_object_put(shape);
            json_object_put(offs);
        }
        offset += nbytes;
    }
    if (!ok) {
        json_object_put(root);
        return stem_fail(STEM_E_NOMEM, "%s: out of memory building the header", path);
    }
    size_t len = 0;
    const char *text = json_object_to_json_string_length(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
                                                         &len);
    size_t padded = (len + 7) / 8 * 8;
    if ((uint64_t)padded > ST_MAX_HEADER) {
        json_object_put(root);
        return stem_fail(STEM_E_ARG, "%s: header would be %zu bytes (at most %" PRIu64 " are readable)", path, padded,
                         ST_MAX_HEADER);
    }
    char *buf = malloc(padded ? padded : 1);
    if (!buf) {
        json_object_put(root);
        return stem_fail(STEM_E_NOMEM, "%s: out of memory building the header", path);
    }
    memcpy(buf, text, len);
    memset(buf + len, ' ', padded - len);
    json_object_put(root);
    *out = buf;
    *out_len = padded;
    return STEM_OK;
}

static stem_status write_tensor(int fd, const stem_tensor *t, const char *name, const char *path, const char *tmp) {
    size_t bytes = stem_nbytes(t);
    if (bytes == 0) return STEM_OK;
    if (t->backend->host_memory) return write_all(fd, t->data, bytes, path, tmp);
    stem_tensor host;
    stem_status s = stem_tensor_to(t, stem_host(), t->dtype, &host);
    if (s != STEM_OK) return stem_error_context(s, "%s: tensor '%s': downloading", path, name);
    s = write_all(fd, host.data, bytes, path, tmp);
    stem_tensor_free(&host);
    return s;
}


stem_status stem_safetensors_save(const char *path, const stem_tensor_map *m) {
    if (!path || !*path) return stem_fail(STEM_E_ARG, "safetensors: empty file name");
    for (int i = 0; i < m->count; i++) STEM_TRY(check_tensor_for_save(path, m->items[i].name, &m->items[i].tensor));
    char *header = NULL;
    size_t header_len = 0;
    STEM_TRY(build_header(path, m, &header, &header_len));

    size_t tmp_len = strlen(path) + 32;
    char *tmp = malloc(tmp_len);
    if (!tmp) {
        free(header);
        return stem_fail(STEM_E_NOMEM, "%s: out of memory", path);
    }
    snprintf(tmp, tmp_len, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        stem_status s = stem_fail(STEM_E_IO, "%s: cannot create temporary file '%s': %s", path, tmp, strerror(errno));
        free(tmp);
        free(header);
        return s;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)header_len >> (8 * i));
    stem_status s = write_all(fd, len8, 8, path, tmp);
    if (s == STEM_OK) s = write_all(fd, header, header_len, path, tmp);
    free(header);
    for (int i = 0; s == STEM_OK && i < m->count; i++) s = write_tensor(fd, &m->items[i].tensor, m->items[i].name, path, tmp);
    if (s == STEM_OK && fsync(fd) != 0)
        s = stem_fail(STEM_E_IO, "%s: fsync of '%s' failed: %s", path, tmp, strerror(errno));
    if (close(fd) != 0 && s == STEM_OK)
        s = stem_fail(STEM_E_IO, "%s: closing '%s' failed: %s", path, tmp, strerror(errno));
    if (s == STEM_OK && rename(tmp, path) != 0)
        s = stem_fail(STEM_E_IO, "%s: cannot rename '%s' into place: %s", path, tmp, strerror(errno));
    if (s != STEM_OK)
        unlink(tmp);
    else
        stem_sync_parent_dir(path);
    free(tmp);
    return s;
}
