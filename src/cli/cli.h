/* The `stem` command line: one file per subcommand. Each returns the process exit
 * status: 0 success, 1 failure while working, 2 bad usage. */
#ifndef STEM_CLI_H
#define STEM_CLI_H

#include "stem.h"

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
