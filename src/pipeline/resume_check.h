/* What --resume checks in an interrupted run's DIR.partial before continuing it.
 *
 *   - the options: each one that differs is named with both values (resuming with other
 *     options would not give the same result as an uninterrupted run);
 *   - stale temporary files: a kill -9 during an atomic write leaves "NAME.tmp.PID";
 *     those whose writer is gone are removed, so they do not end up in the finished folder;
 *   - every saved latents file: its checksum and step metadata (pipeline/latent_file.h). */
#ifndef STEM_PIPELINE_RESUME_CHECK_H
#define STEM_PIPELINE_RESUME_CHECK_H

#include <json-c/json.h>

#include "core/error.h"

/* STEM_OK when `old` (read from `old_path`) and `now` hold the same options; otherwise
 * STEM_E_ARG: "--resume: options differ from the interrupted run's (PATH): steps: 3 there,
 * 4 now; prompt: ...". A key only one side has reads "(not set)" on the other. */
stem_status stem_resume_compare_options(const char *old_path, json_object *old, json_object *now);

/* Removes "*.tmp.<pid>" files in `dir` and two levels of subfolders whose process <pid> no
 * longer runs; *removed receives how many (may be NULL). */
stem_status stem_resume_remove_stale_temps(const char *dir, int *removed);

#endif
