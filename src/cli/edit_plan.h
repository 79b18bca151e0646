/* `stem edit`'s memory plan (stem_edit_plan_memory, doc/architecture.md "Memory"): the
 * message when it does not fit, the table `--dry-run` prints, and the dry run itself. */
#ifndef STEM_CLI_EDIT_PLAN_H
#define STEM_CLI_EDIT_PLAN_H

#include <stdio.h>

#include "cli/edit_args.h"
#include "pipeline/edit.h"

/* "512 KiB", "143 MiB", "12.5 GiB". */
typedef struct edit_size_text {
    char s[32];
} edit_size_text;
edit_size_text edit_size_str(double bytes);

/* The plan of F frames of W x H under `limit`; STEM_E_ARG with the numbers when it does not fit. */
stem_status edit_plan(const stem_pipeline *p, const stem_edit_options *o, int64_t frames, int width, int height,
                      size_t limit, stem_edit_memory_plan *plan);

/* The plan as a table: one line per part with its bytes and where it lives; the decoded
 * frames the host keeps for edit.mp4 (out_w x out_h) too. */
void edit_plan_print(FILE *f, const stem_edit_memory_plan *plan, const stem_edit_options *o, int64_t frames, int width,
                     int height, int64_t latent_h, int64_t latent_w, int out_w, int out_h, size_t limit);

/* `stem edit --dry-run`: the plan of the run these arguments describe, without writing
 * anything; the exit status. */
int edit_dry_run(edit_args *a);

#endif
