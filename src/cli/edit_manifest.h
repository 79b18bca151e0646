/* `stem edit`'s options.json (what --resume compares) and manifest.json (written last:
 * every option, the model, the inversion, versions, frames edited, timings, memory,
 * temporal consistency). */
#ifndef STEM_CLI_EDIT_MANIFEST_H
#define STEM_CLI_EDIT_MANIFEST_H

#include <json-c/json.h>

#include "cli/edit_args.h"
#include "cli/edit_inversion.h"
#include "cli/edit_outputs.h"
#include "cli/manifest.h"

/* options.json: every option that changes the result, known before the first step
 * (cli_output_begin writes it, or compares it with an interrupted run's): the request,
 * the inversion (its folder, or the options of the one this run makes), the steps and the
 * memory plan's choices that change the arithmetic (o->unet_frames, o->cache_on_host). */
json_object *edit_options_json(const edit_args *a, const stem_edit_options *o);

typedef struct edit_report {
    const stem_pipeline *p;
    const edit_inversion *inv;
    const char *inversion_path;     /* where it is once the run is complete */
    bool inversion_made;            /* this run made it (OUT/inversion) */
    const stem_edit_memory_plan *plan;
    size_t mem_limit;
    const cli_device_peak *device;
    int64_t frames_edited;
    int out_w, out_h;
    bool video;
    const char *no_video;
    const edit_metrics *metrics;
    bool prompt_truncated[3];       /* inversion, negative, target */
    bool freeu_acts;                /* some UNet width matches the gate */
    double t_start, t_inversion, t_encode, t_edit, t_source, t_decode, t_outputs;
    int first_step;                 /* > 0: resumed after step first_step */
} edit_report;

json_object *edit_manifest_json(const edit_args *a, json_object *options, const edit_report *r);

#endif
