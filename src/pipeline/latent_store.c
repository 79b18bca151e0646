/* Per-step latents files of a loop, and its resume point (see latent_store.h). */
#include "pipeline/latent_store.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/latent_file.h"

stem_status stem_latent_store_init(stem_latent_store *st, const char *dir, const char *kind, stem_phase phase,
                                   stem_sampler_dir order, const stem_ddim *ddim) {
    memset(st, 0, sizeof *st);
    size_t n = strlen(kind);
    if (n == 0 || n >= sizeof st->kind) return stem_fail(STEM_E_ARG, "latents kind '%s': 1..15 characters", kind);
    for (const char *p = kind; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
            return stem_fail(STEM_E_ARG, "latents kind '%s': only a-z and 0-9 (it names files)", kind);
    if (strlen(dir) >= sizeof st->dir) return stem_fail(STEM_E_ARG, "latents folder too long: %s", dir);
    memcpy(st->kind, kind, n + 1);
    snprintf(st->dir, sizeof st->dir, "%s", dir);
    st->phase = phase;
    st->order = order;
    st->ddim = ddim;
    return STEM_OK;
}

stem_status stem_latent_store_for_phase(stem_latent_store *st, const char *dir, stem_phase phase,
                                        const stem_ddim *ddim) {
    switch (phase) {
    case STEM_PHASE_INVERSION: return stem_latent_store_init(st, dir, "inv", phase, STEM_SAMPLER_INVERT, ddim);
    case STEM_PHASE_RECONSTRUCTION: return stem_latent_store_init(st, dir, "rec", phase, STEM_SAMPLER_SAMPLE, ddim);
    case STEM_PHASE_EDITING: return stem_latent_store_init(st, dir, "edit", phase, STEM_SAMPLER_SAMPLE, ddim);
    }
    return stem_fail(STEM_E_ARG, "latents of phase %d: no such phase", (int)phase);
}

int stem_latent_store_timestep(const stem_latent_store *st, int step) {
    return stem_sampler_timestep(st->ddim, st->order, step);
}

stem_status stem_latent_store_path(const stem_latent_store *st, int step, char *buf, size_t len) {
    if (step < 0 || step >= st->ddim->steps)
        return stem_fail(STEM_E_ARG, "%s latents: step %d of %d", st->kind, step, st->ddim->steps);
    int n = snprintf(buf, len, "%s/%s_%03d_t%04d.safetensors", st->dir, st->kind, step,
                     stem_latent_store_timestep(st, step));
    if (n < 0 || (size_t)n >= len) return stem_fail(STEM_E_ARG, "latents path too long in %s", st->dir);
    return STEM_OK;
}

stem_status stem_latent_store_save(const stem_latent_store *st, int step, const stem_tensor *x) {
    char path[PATH_MAX + 64];
    STEM_TRY(stem_latent_store_path(st, step, path, sizeof path));
    return stem_latent_file_save(path, x, st->phase, step, stem_latent_store_timestep(st, step));
}

stem_status stem_latent_store_load(const stem_latent_store *st, int step, int64_t f0, stem_tensor *x) {
    char path[PATH_MAX + 64];
    STEM_TRY(stem_latent_store_path(st, step, path, sizeof path));
    if (access(path, F_OK) != 0)
        return stem_fail(STEM_E_IO, "%s: missing (%s step %d of %d)", path, stem_phase_name(st->phase), step + 1,
                         st->ddim->steps);
    return stem_latent_file_load_frames(path, st->phase, step, stem_latent_store_timestep(st, step), f0, x);
}

stem_status stem_latent_store_resume_point(const stem_latent_store *st, stem_tensor *x, int *last) {
    *last = -1;
    for (int i = st->ddim->steps - 1; i >= 0; i--) {
        char path[PATH_MAX + 64];
        STEM_TRY(stem_latent_store_path(st, i, path, sizeof path));
        if (access(path, F_OK) != 0) continue;
        /* the last one is loaded, every earlier one only checked */
        STEM_TRY(stem_latent_file_load(path, st->phase, i, stem_latent_store_timestep(st, i), *last < 0 ? x : NULL));
        if (*last < 0) *last = i;
    }
    return STEM_OK;
}
