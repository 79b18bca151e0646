/* Recognising stem's own output folders before replacing them (see output_dir.h). */
#include "cli/output_dir.h"

#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "pipeline/resume_check.h"

static const char *kind_of(const struct stat *st) {
    if (S_ISREG(st->st_mode)) return "a regular file";
    if (S_ISLNK(st->st_mode)) return "a symbolic link";
    if (S_ISDIR(st->st_mode)) return "a folder";
    return "not a regular file or folder";
}

static bool is_empty_dir(const char *path) {
    DIR *d = opendir(path);
    if (!d) return false;
    struct dirent *e;
    bool empty = true;
    while (empty && (e = readdir(d))) empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    closedir(d);
    return empty;
}

/* `dir`/`file` parses as a JSON object; its "tool" begins with `tool_prefix` (NULL: any object). */
static bool json_marker(const char *dir, const char *file, const char *tool_prefix) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (1 << 24)) return false;
    json_object *o = json_object_from_file(path), *tool = NULL;
    bool ok = o && json_object_is_type(o, json_type_object);
    if (ok && tool_prefix)
        ok = json_object_object_get_ex(o, "tool", &tool) && json_object_is_type(tool, json_type_string) &&
             !strncmp(json_object_get_string(tool), tool_prefix, strlen(tool_prefix));
    if (o) json_object_put(o);
    return ok;
}

static stem_status replaceable(const char *path, const char *flag, const char *marker, const char *tool_prefix,
                               const char *what) {
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? STEM_OK : stem_fail(STEM_E_IO, "%s: cannot inspect: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return stem_fail(STEM_E_ARG, "%s is %s, not a folder stem wrote: %s replaces only stem's own output; "
                         "remove it yourself or choose another --out", path, kind_of(&st), flag);
    if (is_empty_dir(path) || json_marker(path, marker, tool_prefix)) return STEM_OK;
    return stem_fail(STEM_E_ARG, "%s is a folder stem did not write (no %s): %s replaces only stem's own output "
                     "and will not delete its contents; remove it yourself or choose another --out", path, what, flag);
}

stem_status cli_output_replaceable(const char *path, const char *flag) {
    return replaceable(path, flag, "manifest.json", "stem ", "manifest.json written by stem");
}

stem_status cli_partial_replaceable(const char *partial) {
    return replaceable(partial, "starting over", "options.json", NULL, "options.json of an interrupted stem run");
}

stem_status cli_output_check(const char *out, bool force, bool resume) {
    struct stat st;
    if (lstat(out, &st) == 0) {
        if (!force && !resume) return stem_fail(STEM_E_ARG, "%s already exists: pass --force to replace it", out);
        STEM_TRY(cli_output_replaceable(out, force ? "--force" : "--resume"));
    }
    char partial[4200];
    snprintf(partial, sizeof partial, "%s.partial", out);
    return cli_partial_replaceable(partial);
}

/* Options must match an interrupted run's to resume it (bit-identical results). */
static stem_status check_resume_options(const char *dir, json_object *options) {
    char path[4200];
    snprintf(path, sizeof path, "%s/options.json", dir);
    json_object *old = json_object_from_file(path);
    if (!old) return stem_fail(STEM_E_ARG, "--resume: %s has no readable options.json; start over with --force", dir);
    stem_status s = stem_resume_compare_options(path, old, options);
    json_object_put(old);
    return s;
}

stem_status cli_output_begin(const char *cmd, const char *out, bool force, bool resume, bool quiet,
                             json_object *options, stem_outdir *od) {
    struct stat st;
    memset(od, 0, sizeof *od);
    STEM_TRY(cli_output_check(out, force, resume));
    if (force && !resume && stat(out, &st) == 0) STEM_TRY(stem_remove_tree(out));
    STEM_TRY(stem_outdir_begin(out, od));
    if (od->reused && !resume) {
        stem_status s = stem_remove_tree(od->partial);
        stem_outdir_free(od);
        STEM_TRY(s);
        STEM_TRY(stem_outdir_begin(out, od));
    }
    if (resume && od->reused) {
        int stale = 0;
        STEM_TRY(stem_resume_remove_stale_temps(od->partial, &stale));
        if (stale && !quiet)
            fprintf(stderr, "%s: removed %d stale temporary file%s (an interrupted write) from %s\n", cmd, stale,
                    stale == 1 ? "" : "s", od->partial);
        return check_resume_options(od->partial, options);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/options.json", od->partial);
    const char *text =
        json_object_to_json_string_ext(options, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
    return stem_atomic_write(path, text, strlen(text));
}
