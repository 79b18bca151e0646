/* Named command-line options: each command lists its options once, as rows of a table,
 * and one parser, one help printer and one YAML mapper read that table.
 *
 * A row names the flag, the kind of value it takes, where the value goes (a typed
 * pointer into the command's argument struct), its range, its help text and the key of
 * the original STEM/TokenFlow YAML config (io/yaml_config.h) that sets it when the
 * command line does not. cli_parse fills the targets and marks each row given;
 * cli_apply_yaml then gives the YAML's values to the rows left unset, through the same
 * parser (so a YAML value is range-checked like the flag, and an error names
 * "KEY (CONFIG.yaml)"); cli_print_options writes the help from the rows. Code asks for a
 * row by its flag (cli_find), never by position.
 *
 *   cli_table t = {0};
 *   cli_add(&t, (cli_option){.name = "--steps", .value = "S", .kind = CLI_INT, .to.i = &a->steps,
 *                            .lo = 1, .hi = 1000, .yaml = "n_inversion_steps", .help = "DDIM steps (default 50)"});
 *   int rc = cli_parse("stem invert", argc, argv, &t);   // 0, -1 (--help), or 2 (printed) */
#ifndef STEM_CLI_OPTIONS_H
#define STEM_CLI_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/dtype.h"
#include "core/error.h"
#include "io/yaml_config.h"

typedef enum cli_kind {
    CLI_SECTION, /* not an option: a heading of the help ("input:"), in .help */
    CLI_BOOL,    /* --quiet: *to.b = true; takes no value */
    CLI_STRING,  /* --prompt TEXT: *to.s = the value (argv's storage, or .store for YAML values) */
    CLI_INT,     /* *to.i, an integer in lo..hi */
    CLI_INT64,   /* *to.i64, an integer in lo..hi */
    CLI_U64,     /* *to.u64, a non-negative integer (a seed) */
    CLI_FLOAT,   /* *to.f, a number in flo..fhi */
    CLI_DOUBLE,  /* *to.d, a number in flo..fhi, kept in double (floor(S x 0.7) must be 7 at S = 10) */
    CLI_SIZE,    /* *to.size, bytes: "8G", "512M", "1.5G", "100000000" (> 0) */
    CLI_CHOICE,  /* choice(value, to.any): an enum's parser (STEM_E_ARG naming the value) */
} cli_kind;

typedef union cli_target {
    bool *b;
    const char **s;
    int *i;
    int64_t *i64;
    uint64_t *u64;
    float *f;
    double *d;
    size_t *size;
    void *any;
} cli_target;

typedef stem_status (*cli_choice_fn)(const char *value, void *target);

typedef struct cli_option {
    const char *name;     /* "--steps" */
    const char *value;    /* what the help calls the value: "S", "DIR|VIDEO" (NULL: CLI_BOOL) */
    cli_kind kind;
    cli_target to;
    int64_t lo, hi;       /* CLI_INT, CLI_INT64 */
    double flo, fhi;      /* CLI_FLOAT, CLI_DOUBLE */
    cli_choice_fn choice; /* CLI_CHOICE */
    const char *yaml;     /* the YAML key that sets this row ("n_inversion_steps"), or NULL */
    const char *help;     /* the help text; '\n' starts an indented continuation line */
    /* CLI_STRING from YAML: the text is copied here (the config is freed after reading) */
    char *store;
    size_t store_len;
    /* optional: where the value came from, for later messages: "--n-frames" or
     * "n_frames (CONFIG.yaml)" */
    char *origin;
    size_t origin_len;
    bool given; /* set by cli_parse (the command line) or cli_apply_yaml (the YAML) */
} cli_option;

#define CLI_MAX_OPTIONS 64

typedef struct cli_table {
    cli_option rows[CLI_MAX_OPTIONS];
    int n;
} cli_table;

/* Appends a row (aborts the program past CLI_MAX_OPTIONS: a programming error). */
void cli_add(cli_table *t, cli_option row);
/* A heading for the rows that follow ("input:"). */
void cli_section(cli_table *t, const char *heading);
/* The row of `name` ("--steps"), NULL if none. */
cli_option *cli_find(cli_table *t, const char *name);
/* Whether row `name` was set on the command line or by the YAML. */
bool cli_given(const cli_table *t, const char *name);

/* Parses argv[1..argc-1] ("--name VALUE" or "--name=VALUE"). Returns 0 when parsed, -1
 * when --help or -h was seen (nothing printed: the caller prints its usage), 2 after
 * printing "CMD: ..." for a usage error (unknown option, missing or bad value). */
int cli_parse(const char *cmd, int argc, char **argv, cli_table *t);

/* For each row with a .yaml key that is not given and that the file sets: the value,
 * parsed as the flag's would be. 0 or 2 after printing "CMD: KEY (FILE): ..." */
int cli_apply_yaml(const char *cmd, const stem_yaml_config *c, cli_table *t);

/* The rows as help text: headings, then "  --name VALUE" padded to 25 columns and the
 * help, continuation lines indented to the same column. */
void cli_print_options(FILE *out, const cli_table *t);

/* Value parsers shared with the rows above, for commands that parse by hand. Each
 * prints "CMD: FLAG must be ..." and returns 2 on a bad value, 0 otherwise. */
int cli_parse_int(const char *cmd, const char *flag, const char *v, int64_t lo, int64_t hi, int64_t *out);
int cli_parse_size(const char *cmd, const char *flag, const char *v, size_t *out);

/* CLI_CHOICE parsers of shared enums: "f32" | "f16". */
stem_status cli_choice_dtype(const char *value, void *target /* stem_dtype * */);

#endif
