/* `stem invert` as a job another command can run in-process (stem edit without
 * --inversion inverts into DIR/inversion first), and the pieces of it that
 * cli/cmd_invert.c (the steps), cli/invert_outputs.c (what it writes) and
 * cli/invert_dry_run.c (--dry-run) share. */
#ifndef STEM_CLI_INVERT_JOB_H
#define STEM_CLI_INVERT_JOB_H

#include <json-c/json.h>

#include "cli/invert_args.h"
#include "cli/manifest.h"
#include "cli/progress.h"
#include "cli/video_input.h"
#include "io/atomic_file.h"
#include "io/metrics.h"
#include "pipeline/latent_store.h"

/* Runs the whole inversion job on parsed arguments (invert_parse_args, or
 * invert_args_defaults and the fields set by hand) and writes a->v.out as `stem invert
 * --help` describes. `p`: a pipeline already loaded from a->v.model (its backend and dtype
 * are used, and should be what a->v.backend and a->v.dtype say, which options.json
 * records; it is not freed; its arena is reset to where it was), or NULL to open
 * a->v.backend and load the model here. Returns the exit status (0: done; on failure the
 * message is printed and a->v.out is not written; DIR.partial is kept for --resume). */
int cli_invert_run(const invert_args *a, stem_pipeline *p);

/* --dry-run: prints the memory plan of the run `a` describes on stdout and returns 0 (2
 * when the run would stop for memory, with the message), without running or writing. */
int cli_invert_dry_run(const invert_args *a);

/* ---- internal to cli/invert_*.c ------------------------------------------------------- */

/* Sizes and outputs, all decided (and checked) before the first UNet evaluation, so
 * that a run does not fail at its end for a reason it could have seen at its start. */
typedef struct invert_output_plan {
    stem_frame_geometry geo; /* input -> latents -> UNet levels -> decoded frames */
    bool cropped;            /* decoded frames smaller than the input: metrics on its top-left */
    bool video;              /* recon.mp4 */
    const char *no_video;    /* why not, when !video */
    bool metrics;            /* PSNR/SSIM/temporal (SSIM needs 11x11) */
    char input_size[48], output_size[48], metrics_region[128];
} invert_output_plan;

typedef struct invert_job {
    const invert_args *a;
    stem_invert_options inv; /* a->inv with unet_frames from the memory plan */
    stem_backend *be;
    stem_pipeline *p, own_pipeline;
    bool own_backend, loaded;
    size_t mem_limit;
    cli_frames_probe probe;
    stem_frames fr;
    invert_output_plan out;
    stem_outdir od;
    json_object *options;
    stem_ddim ddim;
    stem_latent_store stores[2]; /* inversion, reconstruction */
    /* on the backend: z0, x [F, 4, h, w]; context [1, 77, X]; dec [F, 3, out_h, out_w] (the
     * decoder's output, for z0 and then for x). On the host: the VAE round trip and the
     * reconstruction at the output size, the input's region they cover (when cropped) */
    stem_tensor z0, x, context, dec, host_vae, host_rec, host_in_crop;
    stem_video_metrics m_rec, m_vae, m_rec_vae;
    stem_progress progress;
    cli_device_peak device;
    double t_start, t_encode, t_decode, seconds[2];
    bool resumed;
} invert_job;

/* The output plan for the loaded frames (invert_outputs.c). */
stem_status invert_plan_outputs(invert_job *j);
/* options.json: every option that changes the result (a new object). */
json_object *invert_options_json(const invert_job *j);
/* frames/recon, recon.mp4, sheet.png, the metrics and manifest.json, into DIR.partial. */
stem_status invert_write_outputs(invert_job *j);
/* The summary on stdout after the folder is committed. */
void invert_print_summary(const invert_job *j);

#endif
