/* Outputs that are either complete or absent.
 *
 * Files: write to "<path>.tmp.<pid>" next to the target, fsync, rename over <path>,
 * fsync the directory. A crash or an error leaves either the old file or nothing,
 * never a truncated file under the final name.
 *
 * Directories: a run that writes many files (frames, latents, metrics) builds them in
 * "<dir>.partial" and renames that to <dir> when everything is in place. A leftover
 * "<dir>.partial" (from an interrupted run) is reused, so a long run can resume from
 * what it already saved; `stem_outdir.reused` says so. */
#ifndef STEM_IO_ATOMIC_FILE_H
#define STEM_IO_ATOMIC_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/error.h"

/* ---- one file -------------------------------------------------------------------- */

typedef struct stem_atomic_file {
    FILE *fp;   /* write here (buffered stdio) */
    char *path; /* final name */
    char *tmp;  /* "<path>.tmp.<pid>" */
} stem_atomic_file;

/* Creates the temporary file. STEM_E_IO naming <path> (and why) when the directory is
 * missing or not writable. */
stem_status stem_atomic_open(const char *path, stem_atomic_file *af);
/* Flushes, fsyncs, closes and renames into place; on any failure the temporary file
 * is removed and an existing <path> is left as it was. Always releases `af`. */
stem_status stem_atomic_commit(stem_atomic_file *af);
/* Closes and removes the temporary file (safe after commit or on a zeroed struct). */
void stem_atomic_abort(stem_atomic_file *af);

/* The whole dance for a buffer already in memory. */
stem_status stem_atomic_write(const char *path, const void *data, size_t len);

/* fsync the directory holding `path`, so that a rename into it is durable (best effort). */
void stem_sync_parent_dir(const char *path);

/* ---- one directory --------------------------------------------------------------- */

typedef struct stem_outdir {
    char *final;   /* <dir> as given */
    char *partial; /* "<dir>.partial": write everything here */
    bool reused;   /* "<dir>.partial" existed already (an interrupted run) */
} stem_outdir;

/* Creates "<dir>.partial" (and missing parent directories) or reuses an existing one,
 * and checks that it is writable. STEM_E_IO naming the directory otherwise. */
stem_status stem_outdir_begin(const char *dir, stem_outdir *od);
/* "<dir>.partial/<name>" into a fresh malloc'd string (NULL when out of memory). */
char *stem_outdir_file(const stem_outdir *od, const char *name);
/* Renames "<dir>.partial" to <dir>. An existing <dir> is an error (STEM_E_IO, "exists")
 * unless `replace`, in which case it is moved aside, the new one renamed in, and the
 * old one removed. Releases `od` on success; on failure `od` stays valid. */
stem_status stem_outdir_commit(stem_outdir *od, bool replace);
/* Removes "<dir>.partial" and everything in it, and releases `od`. */
stem_status stem_outdir_discard(stem_outdir *od);
/* Releases `od` and leaves "<dir>.partial" on disk (to resume later). */
void stem_outdir_free(stem_outdir *od);

/* mkdir -p. STEM_E_IO naming the component that could not be made. */
stem_status stem_mkdirs(const char *dir);
/* rm -rf of one path (files, links and directories; links are not followed). */
stem_status stem_remove_tree(const char *path);

#endif
