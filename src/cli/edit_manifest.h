/* `stem edit`'s options.json (what --resume compares) and manifest.json (written last:
 * every option, the model, the inversion, versions, frames edited, timings, memory,
 * temporal consistency). */
#ifndef STEM_CLI_EDIT_MANIFEST_H
#define STEM_CLI_EDIT_MANIFEST_H

#include <json-c/json.h>

#include "cli/edit_args.h"
#include "cli/edit_inversion.h"
#include "cli/edit_outputs.h"

/* Keys of options.json known only once the inversion exists (written then): an
 * interrupted run that stopped before them is compared without them. */
#define EDIT_LATE_KEYS {"steps", "inversion_x_T_checksum_fnv1a64", "frames_per_unet_evaluation", "keyframe_caches_on_host"}

/* The options of this run; `inv` NULL while the inversion is still to be made. */
json_object *edit_options_json(const edit_args *a, const edit_inversion *inv, const stem_edit_options *o);

/* --resume: DIR/options.json must hold the same options (a late key it lacks is not
 * compared); STEM_E_ARG naming each difference otherwise. */
stem_status edit_options_check_resume(const char *dir, json_object *now);

typedef struct edit_report {
    const stem_pipeline *p;
    const edit_inversion *inv;
    const char *inversion_path;     /* where it is once the run is complete */
    bool inversion_made;            /* this run made it (OUT/inversion) */
    const stem_edit_memory_plan *plan;
    size_t mem_limit, device_peak;
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
