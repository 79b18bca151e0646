/* Frames and model of a video command (see video_input.h). */
#include "cli/video_input.h"

#include <stdio.h>

stem_status cli_frames_probe_open(const cli_video_args *v, cli_frames_probe *probe) {
    void *quiet = (void *)&v->quiet;
    *probe = (cli_frames_probe){
        .req = {.path = v->frames, .n_frames = v->n_frames, .n_frames_name = v->n_frames_name, .width = v->width,
                .height = v->height, .note = cli_note_to_stderr, .note_user = quiet}};
    stem_frame_source *src;
    STEM_TRY(stem_frame_source_open(v->frames, cli_note_to_stderr, quiet, &src));
    stem_status s = STEM_OK;
    int count = stem_frame_source_count(src); /* -1: a video */
    probe->available = count;
    probe->expected = v->n_frames;
    if (!probe->expected || (count > 0 && count < probe->expected)) probe->expected = count > 0 ? count : 1;
    if (!probe->req.width || !probe->req.height) {
        stem_image first = {0};
        bool done = false;
        s = stem_frame_source_next(src, &first, &done);
        if (s == STEM_OK && done) s = stem_fail(STEM_E_FORMAT, "%s: no frames", v->frames);
        if (s == STEM_OK) {
            if (!probe->req.width) probe->req.width = first.width;
            if (!probe->req.height) probe->req.height = first.height;
            probe->probed_first = true;
        }
        stem_image_free(&first);
    }
    stem_frame_source_close(src);
    return s;
}

stem_status cli_frames_load(const cli_video_args *v, const cli_frames_probe *probe, stem_frames *fr) {
    STEM_TRY(stem_frames_load(&probe->req, fr));
    if (fr->mixed_sizes && !v->quiet)
        fprintf(stderr, "stem: warning: %s: frames differ in size; each was resized to %dx%d\n", v->frames, fr->width,
                fr->height);
    return STEM_OK;
}

stem_status cli_model_open(const char *cmd, const cli_video_args *v, stem_backend *be, stem_pipeline *p) {
    if (!v->quiet)
        fprintf(stderr, "%s: model %s%s on %s\n", cmd, v->model,
                v->model_is_default ? " (bundled tiny shapes model; real SD 1.5 / 2.1: --model DIR or STEM_MODEL)" : "",
                be->ops->describe(be));
    STEM_TRY(stem_pipeline_load_config(v->model, v->model_config, be, v->dtype, p));
    if (p->single_file && !v->quiet)
        fprintf(stderr, "%s: single-file checkpoint: tokenizer: %s; scheduler: %s\n", cmd, p->tokenizer_from,
                p->scheduler_from);
    return STEM_OK;
}
