#include "cli/progress.h"

#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

double stem_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void format_duration(double s, char *buf, size_t len) {
    if (s < 60) snprintf(buf, len, "%.0fs", s);
    else if (s < 3600) snprintf(buf, len, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(buf, len, "%dh%02dm", (int)(s / 3600), ((int)s % 3600) / 60);
}

void stem_progress_begin(stem_progress *p, const char *label, int total, bool quiet) {
    stem_progress_begin_units(p, label, total, NULL, NULL, quiet);
}

void stem_progress_begin_units(stem_progress *p, const char *label, int total, const char *unit, const char *units,
                               bool quiet) {
    p->label = label;
    p->unit = unit;
    p->total = total > 0 ? total : 1;
    p->start = p->last_print = stem_now_seconds();
    p->quiet = quiet;
    p->tty = isatty(STDERR_FILENO);
    if (!quiet && !p->tty) fprintf(stderr, "%s: %d %s\n", label, total, units ? units : "steps");
}

void stem_progress_update(stem_progress *p, int done) {
    if (p->quiet) return;
    double now = stem_now_seconds(), elapsed = now - p->start;
    if (!p->tty && done < p->total && now - p->last_print < 5.0) return;
    p->last_print = now;
    double per = done > 0 ? elapsed / done : 0;
    char eta[32];
    format_duration(per * (p->total - done), eta, sizeof eta);
    enum { WIDTH = 24 };
    char bar[WIDTH + 1];
    int filled = done * WIDTH / p->total;
    for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '#' : '.';
    bar[WIDTH] = '\0';
    fprintf(stderr, "%s%-14s %4d/%-4d [%s] %3d%%  %.2f s/%s  ETA %s%s", p->tty ? "\r" : "", p->label, done,
            p->total, bar, done * 100 / p->total, per, p->unit ? p->unit : "step", eta, p->tty ? "\033[K" : "\n");
    fflush(stderr);
}

void stem_progress_show(stem_progress *p, int done) {
    if (p->quiet) return;
    p->last_print = -1e30; /* past any rate limit */
    stem_progress_update(p, done);
    if (p->tty) fprintf(stderr, "\n");
}

void stem_progress_end(stem_progress *p) {
    if (p->quiet) return;
    char took[32];
    format_duration(stem_now_seconds() - p->start, took, sizeof took);
    if (p->tty) fprintf(stderr, "\n");
    fprintf(stderr, "%s: done in %s\n", p->label, took);
}

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

void cli_interrupt_catch(void) {
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
}

bool cli_interrupted(void) { return interrupted != 0; }
