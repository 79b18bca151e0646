/* A one-line progress bar with ETA on stderr for long work ("inversion  12/50
 * [#####.....] 24%  3.1 s/step  ETA 1m58s"). Redrawn in place on a terminal; on a
 * pipe or file, one line per update at most every few seconds, so logs stay short. */
#ifndef STEM_CLI_PROGRESS_H
#define STEM_CLI_PROGRESS_H

#include <stdbool.h>

typedef struct stem_progress {
    const char *label;
    const char *unit; /* what one of `total` is, in "s/step" (NULL: "step") */
    int total;
    double start, last_print;
    bool quiet, tty;
} stem_progress;

void stem_progress_begin(stem_progress *p, const char *label, int total, bool quiet);
/* The same counting other units ("pass", "passes": "12/60 ... 3.1 s/pass"). */
void stem_progress_begin_units(stem_progress *p, const char *label, int total, const char *unit, const char *units,
                               bool quiet);
/* `done` units finished so far (1..total). */
void stem_progress_update(stem_progress *p, int done);
/* Same, printed now even on a pipe (the last line before stopping early), ending the line. */
void stem_progress_show(stem_progress *p, int done);
/* Ends the line with the elapsed time. */
void stem_progress_end(stem_progress *p);
double stem_now_seconds(void);

/* Ctrl-C / SIGTERM during a long run: cli_interrupt_catch() installs handlers that only
 * set a flag; the run checks cli_interrupted() after each step, saves, and stops with a
 * message saying how to continue (--resume). */
void cli_interrupt_catch(void);
bool cli_interrupted(void);

#endif
