/* The memory plan of `stem invert` and its messages (see invert_memory.h). */
#include "cli/invert_memory.h"

#include <stdio.h>

cli_size_text cli_size_str(double bytes) {
    cli_size_text t;
    if (bytes < 1048576.0)
        snprintf(t.s, sizeof t.s, "%.0f KiB", bytes / 1024.0);
    else if (bytes < 10.0 * 1073741824.0)
        snprintf(t.s, sizeof t.s, "%.0f MiB", bytes / 1048576.0);
    else
        snprintf(t.s, sizeof t.s, "%.1f GiB", bytes / 1073741824.0);
    return t;
}

size_t cli_default_mem_limit(stem_backend *be) {
    size_t available = 0, total = 0;
    if (be->ops->memory_info && be->ops->memory_info(be, &available, &total) == STEM_OK && available)
        return available / 10 * 7;
    return (size_t)8 << 30;
}

/* Without --mem-limit all frames unless they would not fit 70 % of the available RAM;
 * then frame attention and chunk scope split them into evaluations, video scope runs each
 * evaluation layer-major over slices. The count is part of options.json, so --resume runs
 * it the same way. */
stem_status cli_invert_plan(const stem_pipeline *p, stem_invert_options *inv, int frames, int width, int height,
                            size_t limit, bool announce) {
    int64_t h, w;
    stem_vae_latent_size(&p->vae, height, width, &h, &w);
    stem_invert_memory_plan plan;
    stem_invert_plan_memory(p, inv, frames, h, w, limit, &plan);
    inv->unet_frames = plan.needed_all <= limit ? frames : plan.unet_frames;
    if (!plan.fits && plan.layer_major)
        return stem_fail(STEM_E_ARG, "--attention %s --em-scope video keeps every frame's skip connections, hidden "
                         "state and attention keys/values: about %s for %d frames of %dx%d, plus %s for one frame at "
                         "a time, over the %s memory limit; raise --mem-limit, use fewer or smaller frames, or "
                         "--em-scope chunk (the original's per-chunk bases)", stem_sa_mode_name(inv->sa.mode),
                         cli_size_str((double)plan.all_frame_state).s, frames, width, height,
                         cli_size_str((double)(plan.needed - plan.all_frame_state)).s, cli_size_str((double)limit).s);
    if (!plan.fits)
        return stem_fail(STEM_E_ARG, "--attention %s --em-scope %s evaluates all %d frames of %dx%d at once: about %s "
                         "of UNet activations, over the %s memory limit; raise --mem-limit or use fewer or smaller "
                         "frames", stem_sa_mode_name(inv->sa.mode), stem_em_scope_name(inv->sa.scope), frames, width,
                         height, cli_size_str((double)plan.needed_all).s, cli_size_str((double)limit).s);
    if (announce && stem_invert_layer_major(inv, frames))
        fprintf(stderr, "stem invert: layer-major UNet: each module over %lld of the %d frames at a time (memory "
                "limit %s; all frames at once need about %s)\n", (long long)inv->unet_frames, frames,
                cli_size_str((double)limit).s, cli_size_str((double)plan.needed_all).s);
    else if (announce && inv->unet_frames < frames)
        fprintf(stderr, "stem invert: %lld frames per UNet evaluation (memory limit %s)\n", (long long)inv->unet_frames,
                cli_size_str((double)limit).s);
    return STEM_OK;
}
