/* --resume's checks of an interrupted run's folder (see resume_check.h). */
#include "pipeline/resume_check.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *value_text(json_object *o) {
    return o ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE) : "(not set)";
}

/* Appends "KEY: OLD there, NEW now" to buf (bounded; the end is marked when cut). */
static void add_difference(char *buf, size_t cap, size_t *len, int *n, const char *key, json_object *a, json_object *b) {
    if (*len >= cap - 1) return;
    int w = snprintf(buf + *len, cap - *len, "%s%s: %s there, %s now", *n ? "; " : "", key, value_text(a), value_text(b));
    *len = w < 0 ? *len : *len + (size_t)w < cap ? *len + (size_t)w : cap - 1;
    (*n)++;
}

stem_status stem_resume_compare_options(const char *old_path, json_object *old, json_object *now) {
    if (!json_object_is_type(old, json_type_object))
        return stem_fail(STEM_E_FORMAT, "--resume: %s is not a JSON object; start over with --force", old_path);
    char diff[2048] = "";
    size_t len = 0;
    int n = 0;
    json_object_object_foreach(now, key, val) {
        json_object *was = NULL;
        if (!json_object_object_get_ex(old, key, &was) || !json_object_equal(was, val))
            add_difference(diff, sizeof diff, &len, &n, key, was, val);
    }
    json_object_object_foreach(old, okey, oval) {
        if (!json_object_object_get_ex(now, okey, NULL)) add_difference(diff, sizeof diff, &len, &n, okey, oval, NULL);
    }
    if (n == 0) return STEM_OK;
    return stem_fail(STEM_E_ARG, "--resume: %d option%s differ%s from the interrupted run's (%s): %s; use the same "
                     "options, or --force to start over", n, n == 1 ? "" : "s", n == 1 ? "s" : "", old_path, diff);
}

/* "NAME.tmp.<digits>" -> pid, else 0. */
static long temp_pid(const char *name) {
    const char *t = strstr(name, ".tmp.");
    if (!t || t == name) return 0;
    while (strstr(t + 1, ".tmp.")) t = strstr(t + 1, ".tmp."); /* the last one */
    const char *d = t + 5;
    if (!*d) return 0;
    for (const char *p = d; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    return strtol(d, NULL, 10);
}

static bool process_gone(long pid) {
    if (pid <= 0) return false;
    if (pid == (long)getpid()) return false; /* ours, being written now */
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

static stem_status sweep(const char *dir, int depth, int *removed) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? STEM_OK : stem_fail(STEM_E_IO, "%s: cannot list: %s", dir, strerror(errno));
    stem_status s = STEM_OK;
    struct dirent *e;
    while (s == STEM_OK && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            if (depth < 2) s = sweep(path, depth + 1, removed); /* latents/, frames/recon/ */
        } else if (S_ISREG(st.st_mode) && process_gone(temp_pid(e->d_name))) {
            if (unlink(path) != 0) s = stem_fail(STEM_E_IO, "%s: cannot remove a stale temporary file: %s", path, strerror(errno));
            else if (removed) (*removed)++;
        }
    }
    closedir(d);
    return s;
}

stem_status stem_resume_remove_stale_temps(const char *dir, int *removed) {
    if (removed) *removed = 0;
    return sweep(dir, 0, removed);
}
