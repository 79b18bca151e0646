/* Named command-line options: one parser, help printer and YAML mapper over a command's
 * table of rows (see options.h). */
#include "cli/options.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void cli_add(cli_table *t, cli_option row) {
    if (t->n >= CLI_MAX_OPTIONS) {
        fprintf(stderr, "stem: internal error: more than %d options in one table\n", CLI_MAX_OPTIONS);
        abort();
    }
    t->rows[t->n++] = row;
}

void cli_section(cli_table *t, const char *heading) {
    cli_add(t, (cli_option){.kind = CLI_SECTION, .help = heading});
}

cli_option *cli_find(cli_table *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (t->rows[i].kind != CLI_SECTION && !strcmp(t->rows[i].name, name)) return &t->rows[i];
    return NULL;
}

bool cli_given(const cli_table *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (t->rows[i].kind != CLI_SECTION && !strcmp(t->rows[i].name, name)) return t->rows[i].given;
    return false;
}

/* ---- values ------------------------------------------------------------------------ */

int cli_parse_int(const char *cmd, const char *flag, const char *v, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "%s: %s must be an integer in %lld..%lld, not '%s'\n", cmd, flag, (long long)lo, (long long)hi,
                v);
        return 2;
    }
    *out = (int64_t)x;
    return 0;
}

int cli_parse_size(const char *cmd, const char *flag, const char *v, size_t *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    double unit = 1;
    if (*end == 'K' || *end == 'k') unit = 1024.0, end++;
    else if (*end == 'M' || *end == 'm') unit = 1024.0 * 1024, end++;
    else if (*end == 'G' || *end == 'g') unit = 1024.0 * 1024 * 1024, end++;
    if (*end == 'B' || *end == 'b') end++;
    if (errno || end == v || *end || x <= 0) {
        fprintf(stderr, "%s: %s must be a size such as 8G or 512M, not '%s'\n", cmd, flag, v);
        return 2;
    }
    *out = (size_t)(x * unit);
    return 0;
}

static int parse_u64(const char *cmd, const char *flag, const char *v, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-') {
        fprintf(stderr, "%s: %s must be a non-negative integer, not '%s'\n", cmd, flag, v);
        return 2;
    }
    *out = x;
    return 0;
}

static int parse_double(const char *cmd, const char *flag, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "%s: %s must be a number in [%g, %g], not '%s'\n", cmd, flag, lo, hi, v);
        return 2;
    }
    *out = x;
    return 0;
}

static int parse_float(const char *cmd, const char *flag, const char *v, double lo, double hi, float *out) {
    double x = 0; /* then to float: a YAML number's double rounds once, as a cast would */
    int rc = parse_double(cmd, flag, v, lo, hi, &x);
    if (!rc) *out = (float)x;
    return rc;
}

stem_status cli_choice_dtype(const char *value, void *target) {
    stem_dtype *d = target;
    if (!strcmp(value, "f32")) *d = STEM_F32;
    else if (!strcmp(value, "f16")) *d = STEM_F16;
    else return stem_fail(STEM_E_ARG, "must be f32 or f16, not '%s'", value);
    return STEM_OK;
}

/* One row's value; `flag` names it in messages (the flag, or "KEY (FILE)"). */
static int set_value(const char *cmd, cli_option *o, const char *flag, const char *v, bool from_yaml) {
    int64_t x = 0;
    int rc = 0;
    switch (o->kind) {
    case CLI_SECTION: break;
    case CLI_BOOL: *o->to.b = true; break;
    case CLI_STRING:
        if (from_yaml && o->store) {
            snprintf(o->store, o->store_len, "%s", v);
            *o->to.s = o->store;
        } else {
            *o->to.s = v;
        }
        break;
    case CLI_INT:
        if (!(rc = cli_parse_int(cmd, flag, v, o->lo, o->hi, &x))) *o->to.i = (int)x;
        break;
    case CLI_INT64:
        if (!(rc = cli_parse_int(cmd, flag, v, o->lo, o->hi, &x))) *o->to.i64 = x;
        break;
    case CLI_U64: rc = parse_u64(cmd, flag, v, o->to.u64); break;
    case CLI_FLOAT: rc = parse_float(cmd, flag, v, o->flo, o->fhi, o->to.f); break;
    case CLI_DOUBLE: rc = parse_double(cmd, flag, v, o->flo, o->fhi, o->to.d); break;
    case CLI_SIZE: rc = cli_parse_size(cmd, flag, v, o->to.size); break;
    case CLI_CHOICE:
        if (o->choice(v, o->to.any) != STEM_OK) {
            fprintf(stderr, "%s: %s: %s\n", cmd, flag, stem_last_error());
            rc = 2;
        }
        break;
    }
    if (!rc) {
        o->given = true;
        if (o->origin) snprintf(o->origin, o->origin_len, "%s", flag);
    }
    return rc;
}

int cli_parse(const char *cmd, int argc, char **argv, cli_table *t) {
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) return -1;
        char name[64];
        const char *eq = strncmp(arg, "--", 2) ? NULL : strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        snprintf(name, sizeof name, "%.*s", (int)(len < sizeof name ? len : sizeof name - 1), arg);
        cli_option *o = len < sizeof name ? cli_find(t, name) : NULL;
        if (!o) {
            fprintf(stderr, "%s: unknown option '%s' (see %s --help)\n", cmd, arg, cmd);
            return 2;
        }
        const char *v = NULL;
        if (o->kind == CLI_BOOL) {
            if (eq) {
                fprintf(stderr, "%s: %s takes no value\n", cmd, o->name);
                return 2;
            }
        } else if (eq) {
            v = eq + 1;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            fprintf(stderr, "%s: %s needs a value (see %s --help)\n", cmd, o->name, cmd);
            return 2;
        }
        int rc = set_value(cmd, o, o->name, v, false);
        if (rc) return rc;
    }
    return 0;
}

int cli_apply_yaml(const char *cmd, const stem_yaml_config *c, cli_table *t) {
    for (int i = 0; i < t->n; i++) {
        cli_option *o = &t->rows[i];
        if (o->kind == CLI_SECTION || !o->yaml || o->given) continue;
        int k = stem_config_key_find(o->yaml);
        if (k < 0) {
            fprintf(stderr, "stem: internal error: %s maps to an unknown YAML key '%s'\n", o->name, o->yaml);
            return 2;
        }
        char buf[64];
        const char *text = stem_yaml_config_text(c, (stem_config_key)k, buf, sizeof buf);
        if (!stem_yaml_config_has(c, (stem_config_key)k) || !text) continue;
        char from[4200];
        snprintf(from, sizeof from, "%s (%s)", o->yaml, c->path ? c->path : "config");
        int rc = set_value(cmd, o, from, text, true);
        if (rc) return rc;
    }
    return 0;
}

void cli_print_options(FILE *out, const cli_table *t) {
    enum { COLUMN = 25 };
    for (int i = 0; i < t->n; i++) {
        const cli_option *o = &t->rows[i];
        if (o->kind == CLI_SECTION) {
            fprintf(out, "%s\n", o->help);
            continue;
        }
        char left[128];
        snprintf(left, sizeof left, "  %s%s%s", o->name, o->value ? " " : "", o->value ? o->value : "");
        int n = (int)strlen(left);
        fputs(left, out);
        if (n >= COLUMN - 1) fprintf(out, "\n%*s", COLUMN, "");
        else fprintf(out, "%*s", COLUMN - n, "");
        for (const char *h = o->help ? o->help : ""; *h; h++) {
            fputc(*h, out);
            if (*h == '\n') fprintf(out, "%*s", COLUMN, "");
        }
        fputc('\n', out);
    }
}
