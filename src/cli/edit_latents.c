/* `stem edit`'s latents (see edit_latents.h). */
#include "cli/edit_latents.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/progress.h"
#include "core/backend.h"
#include "core/host.h"
#include "io/frames.h"
#include "pipeline/latent_file.h"

stem_status edit_latents_store(const char *dir, const stem_ddim *ddim, stem_latent_store *store) {
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/latents", dir);
    return stem_latent_store_for_phase(store, path, STEM_PHASE_EDITING, ddim);
}

/* The next n frames of `fs` (PNG files at w x h) into host pixels [n, 3, h, w]. */
static stem_status read_frames(stem_frame_source *fs, const char *dir, int64_t n, int w, int h, stem_tensor *host) {
    stem_image img = {0};
    stem_status s = STEM_OK;
    for (int64_t i = 0; i < n && s == STEM_OK; i++) {
        bool done = false;
        s = stem_frame_source_next(fs, &img, &done);
        if (s == STEM_OK && done) s = stem_fail(STEM_E_FORMAT, "%s: fewer frames than the inversion's manifest says", dir);
        if (s == STEM_OK && (img.width != w || img.height != h))
            s = stem_fail(STEM_E_FORMAT, "%s/%s is %dx%d, the inversion's frames are %dx%d", dir,
                          stem_frame_source_name(fs), img.width, img.height, w, h);
        if (s == STEM_OK) stem_image_to_pixels(&img, (float *)host->data + (size_t)i * 3 * (size_t)w * (size_t)h);
    }
    stem_image_free(&img);
    return s;
}

stem_status edit_latents_initial(stem_pipeline *p, const edit_inversion *inv, edit_source *src, int64_t chunk,
                                 stem_tensor *x, double *encode_seconds) {
    const int64_t Fe = x->shape[0], C = x->shape[1], h = x->shape[2], w = x->shape[3];
    const int W = inv->width, H = inv->height;
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/frames/input", inv->dir);
    stem_frame_source *fs;
    STEM_TRY(stem_frame_source_open(dir, NULL, NULL, &fs));
    stem_tensor host = {0}, pixels = {0}, z0 = {0}, xinv = {0}, xv;
    const int64_t n_max = chunk < Fe ? chunk : Fe;
    int64_t pshape[4] = {n_max, 3, H, W}, lshape[4] = {n_max, C, h, w};
    stem_status s = stem_tensor_new(stem_host(), STEM_F32, 4, pshape, &host);
    if (s == STEM_OK) s = stem_tensor_new(p->be, p->dtype, 4, lshape, &z0);
    if (s == STEM_OK) s = stem_tensor_new(p->be, p->dtype, 4, lshape, &xinv);
    double seconds = 0;
    for (int64_t f0 = 0; f0 < Fe && s == STEM_OK; f0 += n_max) {
        const int64_t n = f0 + n_max <= Fe ? n_max : Fe - f0;
        stem_tensor hv, zv, iv;
        s = stem_tensor_narrow0(&host, 0, n, &hv);
        if (s == STEM_OK) s = read_frames(fs, dir, n, W, H, &hv);
        if (s == STEM_OK) s = stem_tensor_to(&hv, p->be, p->dtype, &pixels);
        if (s == STEM_OK) s = stem_tensor_narrow0(&z0, 0, n, &zv);
        double t0 = stem_now_seconds();
        if (s == STEM_OK) s = stem_vae_encode(&p->vae, &pixels, &zv);
        seconds += stem_now_seconds() - t0;
        stem_tensor_free(&pixels);
        /* x_inv(T): the inversion's last step */
        if (s == STEM_OK) s = stem_tensor_narrow0(&xinv, 0, n, &iv);
        if (s == STEM_OK) s = edit_source_read(src, src->ddim->steps - 1, f0, n, &iv);
        if (s == STEM_OK) s = stem_tensor_narrow0(x, f0, n, &xv);
        if (s == STEM_OK) s = stem_edit_initial_latents(p, src->ddim->steps, &zv, &iv, &xv);
    }
    if (s != STEM_OK) stem_error_context(s, "x_T from %s", inv->dir);
    stem_frame_source_close(fs);
    stem_tensor_free(&host);
    stem_tensor_free(&z0);
    stem_tensor_free(&xinv);
    if (encode_seconds) *encode_seconds = seconds;
    return s;
}

stem_status edit_latents_resume_point(const stem_latent_store *store, stem_tensor *x, int *last) {
    stem_status s = stem_latent_store_resume_point(store, x, last);
    if (s != STEM_OK) return stem_error_context(s, "--resume (start over with --force, or delete that file and resume)");
    /* steps are saved in order: a gap means files were removed by hand */
    for (int i = 0; i < *last; i++) {
        char path[PATH_MAX + 64];
        STEM_TRY(stem_latent_store_path(store, i, path, sizeof path));
        if (access(path, F_OK) != 0)
            return stem_fail(STEM_E_FORMAT, "--resume: %s is missing but later steps are saved; start over with "
                             "--force", path);
    }
    return STEM_OK;
}

stem_status edit_latents_decode(stem_pipeline *p, const stem_tensor *x, int64_t chunk, int64_t out_h, int64_t out_w,
                                stem_tensor *host) {
    const int64_t Fe = x->shape[0], n_max = chunk < Fe ? chunk : Fe;
    int64_t hshape[4] = {Fe, 3, out_h, out_w}, dshape[4] = {n_max, 3, out_h, out_w};
    stem_tensor dec = {0}, part = {0};
    STEM_TRY(stem_tensor_new(stem_host(), STEM_F32, 4, hshape, host));
    stem_status s = stem_tensor_new(p->be, p->dtype, 4, dshape, &dec);
    for (int64_t f0 = 0; f0 < Fe && s == STEM_OK; f0 += n_max) {
        const int64_t n = f0 + n_max <= Fe ? n_max : Fe - f0;
        stem_tensor xv, dv, hv;
        s = stem_tensor_narrow0(x, f0, n, &xv);
        if (s == STEM_OK) s = stem_tensor_narrow0(&dec, 0, n, &dv);
        if (s == STEM_OK) s = stem_vae_decode(&p->vae, &xv, &dv);
        if (s == STEM_OK) s = stem_tensor_to(&dv, stem_host(), STEM_F32, &part);
        if (s == STEM_OK) s = stem_tensor_narrow0(host, f0, n, &hv);
        if (s == STEM_OK) s = stem_tensor_copy(&part, &hv);
        stem_tensor_free(&part);
    }
    stem_tensor_free(&dec);
    if (s != STEM_OK) stem_tensor_free(host);
    return s;
}
