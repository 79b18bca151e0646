/* What `stem edit` writes besides the latents: the edited frames, edit.mp4, the labelled
 * contact sheet (input | reconstruction | edit), and the temporal-consistency numbers of
 * the manifest, computed while streaming the inversion's frames once. */
#ifndef STEM_CLI_EDIT_OUTPUTS_H
#define STEM_CLI_EDIT_OUTPUTS_H

#include "cli/edit_inversion.h"
#include "io/resize.h"

#define EDIT_SHEET_ROWS 4

/* Temporal consistency (doc/algorithm.md §1 pixels mapped to [0, 1] as io/metrics.h does):
 *   temporal_* = mean over t = 1..Fe-1 and all values of |(x_t - x_{t-1}) - (in_t - in_{t-1})|,
 *                the io/metrics.h number: how much x's frame-to-frame change differs from
 *                the input's (0: it changes exactly as the input does);
 *   flicker_*  = mean |x_t - x_{t-1}|: how much x changes from frame to frame at all, the
 *                input's next to the edit's. */
typedef struct edit_metrics {
    int frames;
    double temporal_edit, temporal_reconstruction;
    double flicker_input, flicker_reconstruction, flicker_edit;
} edit_metrics;

/* Streams frames 0..Fe-1 of the inversion's frames/input (cropped to the output size) and
 * frames/recon next to `edit` (host f32 [Fe, 3, out_h, out_w]) into *m, and writes the
 * contact sheet to `sheet_path` with EDIT_SHEET_ROWS frames spread from the first to the last. */
stem_status edit_outputs_compare(const edit_inversion *inv, const stem_tensor *edit, const char *sheet_path,
                                 edit_metrics *m);

/* Whether edit.mp4 can be written for out_w x out_h frames (NULL) or why not. */
const char *edit_outputs_no_video(int out_w, int out_h);

#endif
