/* What `--force` may replace: only what stem made.
 *
 * A finished output folder is stem's when its manifest.json is a JSON object whose
 * "tool" begins with "stem " (every command that writes a folder puts its name and
 * version there: "stem invert 0.1.0"). An interrupted run's DIR.partial is stem's when
 * it holds an options.json object (the first file a run writes) or nothing at all. An
 * empty folder may be replaced too (nothing is lost). Anything else (a regular file, a
 * link, a folder without stem's manifest) is refused with a message naming it and
 * saying what it is, so `--out ~/photos --force` cannot delete anyone's files. */
#ifndef STEM_CLI_OUTPUT_DIR_H
#define STEM_CLI_OUTPUT_DIR_H

#include <json-c/json.h>
#include <stdbool.h>

#include "core/error.h"
#include "io/atomic_file.h"

/* STEM_OK when `path` does not exist, is empty, or is a folder stem wrote (above);
 * otherwise STEM_E_ARG naming `path`. `flag` ("--force") goes into the message. */
stem_status cli_output_replaceable(const char *path, const char *flag);

/* The same for a leftover "<out>.partial" (recognised by its options.json). */
stem_status cli_partial_replaceable(const char *partial);

/* Before any work: may a run write `out`? An existing `out` needs --force (or --resume)
 * and must be stem's; a leftover "<out>.partial", which a run reuses (--resume) or
 * removes (otherwise), must be stem's. STEM_E_ARG naming the culprit otherwise. */
stem_status cli_output_check(const char *out, bool force, bool resume);

/* Opens `out`'s DIR.partial for a run, just before its first step (the checks above made
 * again, now that anything is removed): with --force (and not --resume) an existing `out`
 * goes; a leftover DIR.partial is reused with --resume (its stale temporary files removed,
 * saying so unless quiet; its options.json must equal `options`, pipeline/resume_check.h)
 * and removed otherwise; a fresh DIR.partial gets options.json. `cmd` prefixes messages.
 * On success od->reused says whether an interrupted run's folder is being continued. */
stem_status cli_output_begin(const char *cmd, const char *out, bool force, bool resume, bool quiet,
                             json_object *options, stem_outdir *od);

#endif
