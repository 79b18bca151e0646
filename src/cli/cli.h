/* The `stem` command line: one file per subcommand, listed once in main.c's table of
 * commands (doc/architecture.md "Adding a command"). Each returns the process exit
 * status: 0 success, 1 failure while working, 2 bad usage. */
#ifndef STEM_CLI_H
#define STEM_CLI_H

#include "stem.h"

typedef struct cli_command {
    const char *name;                  /* "invert" */
    int (*run)(int argc, char **argv); /* argv[0] is the command's name */
    const char *help;                  /* one line for `stem --help` */
} cli_command;

int cmd_op(int argc, char **argv);
int cmd_invert(int argc, char **argv);
int cmd_edit(int argc, char **argv);
int cmd_system(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);

/* Prints "stem: <message>" for the last error and returns 1 (2 for usage errors). */
int cli_report(stem_status s);
/* Opens --backend NAME; prints the error and returns non-zero on failure. */
int cli_open_backend(const char *name, stem_backend **be);

#endif
