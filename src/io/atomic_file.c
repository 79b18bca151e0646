/* Atomic files (temp + fsync + rename) and atomic output directories (build in
 * "<dir>.partial", rename when complete). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* nftw, strndup */
#endif
#include "io/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *str_printf2(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s", a, b);
    return s;
}

void stem_sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(dir);
}

/* ---- one file -------------------------------------------------------------------- */

stem_status stem_atomic_open(const char *path, stem_atomic_file *af) {
    memset(af, 0, sizeof *af);
    if (!path || !*path) return stem_fail(STEM_E_ARG, "output file: empty file name");
    char suffix[48];
    snprintf(suffix, sizeof suffix, ".tmp.%ld", (long)getpid());
    af->path = strdup(path);
    af->tmp = str_printf2(path, suffix);
    if (!af->path || !af->tmp) {
        stem_atomic_abort(af);
        return stem_fail(STEM_E_NOMEM, "%s: out of memory", path);
    }
    int fd = open(af->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        int e = errno;
        stem_status s = stem_fail(STEM_E_IO, "%s: cannot create '%s': %s", path, af->tmp, strerror(e));
        stem_atomic_abort(af);
        return s;
    }
    af->fp = fdopen(fd, "wb");
    if (!af->fp) {
        int e = errno;
        close(fd);
        unlink(af->tmp);
        stem_status s = stem_fail(STEM_E_IO, "%s: cannot open '%s': %s", path, af->tmp, strerror(e));
        stem_atomic_abort(af);
        return s;
    }
    return STEM_OK;
}

static void atomic_release(stem_atomic_file *af) {
    free(af->path);
    free(af->tmp);
    memset(af, 0, sizeof *af);
}

void stem_atomic_abort(stem_atomic_file *af) {
    if (!af) return;
    if (af->fp) {
        fclose(af->fp);
        af->fp = NULL;
        if (af->tmp) unlink(af->tmp);
    }
    atomic_release(af);
}

stem_status stem_atomic_commit(stem_atomic_file *af) {
    if (!af->fp) {
        atomic_release(af);
        return stem_fail(STEM_E_ARG, "output file: commit without an open file");
    }
    stem_status s = STEM_OK;
    if (fflush(af->fp) != 0 || ferror(af->fp))
        s = stem_fail(STEM_E_IO, "%s: writing '%s' failed: %s", af->path, af->tmp, strerror(errno));
    if (s == STEM_OK && fsync(fileno(af->fp)) != 0)
        s = stem_fail(STEM_E_IO, "%s: fsync of '%s' failed: %s", af->path, af->tmp, strerror(errno));
    if (fclose(af->fp) != 0 && s == STEM_OK)
        s = stem_fail(STEM_E_IO, "%s: closing '%s' failed: %s", af->path, af->tmp, strerror(errno));
    af->fp = NULL;
    if (s == STEM_OK && rename(af->tmp, af->path) != 0)
        s = stem_fail(STEM_E_IO, "%s: cannot rename '%s' into place: %s", af->path, af->tmp, strerror(errno));
    if (s != STEM_OK)
        unlink(af->tmp);
    else
        stem_sync_parent_dir(af->path);
    atomic_release(af);
    return s;
}

stem_status stem_atomic_write(const char *path, const void *data, size_t len) {
    stem_atomic_file af;
    STEM_TRY(stem_atomic_open(path, &af));
    if (len && fwrite(data, 1, len, af.fp) != len) {
        stem_status s = stem_fail(STEM_E_IO, "%s: writing '%s' failed: %s", path, af.tmp, strerror(errno));
        stem_atomic_abort(&af);
        return s;
    }
    return stem_atomic_commit(&af);
}

/* ---- directories ----------------------------------------------------------------- */

stem_status stem_mkdirs(const char *dir) {
    if (!dir || !*dir) return stem_fail(STEM_E_ARG, "output directory: empty name");
    char *buf = strdup(dir);
    if (!buf) return stem_fail(STEM_E_NOMEM, "%s: out of memory", dir);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = '\0';
    for (char *p = buf + 1;; p++) {
        bool end = *p == '\0';
        if (*p == '/' || end) {
            char saved = *p;
            *p = '\0';
            struct stat st;
            if (mkdir(buf, 0755) != 0) {
                int e = errno;
                if (e != EEXIST || stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
                    stem_status s = e == EEXIST
                        ? stem_fail(STEM_E_IO, "cannot create directory '%s': '%s' exists and is not a directory", dir, buf)
                        : stem_fail(STEM_E_IO, "cannot create directory '%s': %s: %s", dir, buf, strerror(e));
                    free(buf);
                    return s;
                }
            }
            *p = saved;
        }
        if (end) break;
    }
    free(buf);
    return STEM_OK;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)ftw;
    if (flag == FTW_DP || flag == FTW_D) chmod(path, 0700);
    return remove(path) == 0 ? 0 : -1;
}

stem_status stem_remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? STEM_OK : stem_fail(STEM_E_IO, "cannot remove '%s': %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path) != 0) return stem_fail(STEM_E_IO, "cannot remove '%s': %s", path, strerror(errno));
        return STEM_OK;
    }
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return stem_fail(STEM_E_IO, "cannot remove directory '%s' completely: %s", path, strerror(errno));
    return STEM_OK;
}

void stem_outdir_free(stem_outdir *od) {
    if (!od) return;
    free(od->final);
    free(od->partial);
    memset(od, 0, sizeof *od);
}

stem_status stem_outdir_begin(const char *dir, stem_outdir *od) {
    memset(od, 0, sizeof *od);
    if (!dir || !*dir) return stem_fail(STEM_E_ARG, "output directory: empty name");
    od->final = strdup(dir);
    if (od->final) {
        size_t n = strlen(od->final);
        while (n > 1 && od->final[n - 1] == '/') od->final[--n] = '\0';
        od->partial = str_printf2(od->final, ".partial");
    }
    if (!od->final || !od->partial) {
        stem_outdir_free(od);
        return stem_fail(STEM_E_NOMEM, "%s: out of memory", dir);
    }
    struct stat st;
    od->reused = stat(od->partial, &st) == 0 && S_ISDIR(st.st_mode);
    stem_status s = stem_mkdirs(od->partial);
    if (s == STEM_OK && access(od->partial, W_OK | X_OK) != 0)
        s = stem_fail(STEM_E_IO, "output directory '%s': '%s' is not writable: %s", dir, od->partial, strerror(errno));
    if (s != STEM_OK) {
        stem_error_context(s, "output directory '%s'", dir);
        stem_outdir_free(od);
    }
    return s;
}

char *stem_outdir_file(const stem_outdir *od, const char *name) {
    size_t n = strlen(od->partial) + strlen(name) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", od->partial, name);
    return s;
}

stem_status stem_outdir_commit(stem_outdir *od, bool replace) {
    if (!od->partial) return stem_fail(STEM_E_ARG, "output directory: commit without begin");
    struct stat st;
    if (lstat(od->final, &st) == 0) {
        if (!replace)
            return stem_fail(STEM_E_IO, "output directory '%s' already exists (the new results are in '%s')", od->final,
                             od->partial);
        char suffix[48];
        snprintf(suffix, sizeof suffix, ".old.%ld", (long)getpid());
        char *old = str_printf2(od->final, suffix);
        if (!old) return stem_fail(STEM_E_NOMEM, "%s: out of memory", od->final);
        if (rename(od->final, old) != 0) {
            stem_status s = stem_fail(STEM_E_IO, "output directory '%s': cannot move the existing one aside: %s", od->final,
                                      strerror(errno));
            free(old);
            return s;
        }
        if (rename(od->partial, od->final) != 0) {
            stem_status s = stem_fail(STEM_E_IO, "output directory '%s': cannot rename '%s' into place: %s", od->final,
                                      od->partial, strerror(errno));
            (void)rename(old, od->final); /* put the old one back */
            free(old);
            return s;
        }
        stem_sync_parent_dir(od->final);
        stem_status s = stem_remove_tree(old);
        free(old);
        if (s != STEM_OK) stem_error_context(s, "output directory '%s' is complete, but removing the old one failed", od->final);
        stem_outdir_free(od);
        return s;
    }
    if (rename(od->partial, od->final) != 0)
        return stem_fail(STEM_E_IO, "output directory '%s': cannot rename '%s' into place: %s", od->final, od->partial,
                         strerror(errno));
    stem_sync_parent_dir(od->final);
    stem_outdir_free(od);
    return STEM_OK;
}

stem_status stem_outdir_discard(stem_outdir *od) {
    stem_status s = od->partial ? stem_remove_tree(od->partial) : STEM_OK;
    stem_outdir_free(od);
    return s;
}
