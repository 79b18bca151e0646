/* Per-step latents files with a checksum (see latent_file.h). */
#include "pipeline/latent_file.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/host.h"
#include "core/tensor_map.h"
#include "io/safetensors.h"

void stem_fnv1a64_hex(const void *data, size_t n, char hex[17]) {
    uint64_t h = 1469598103934665603ULL;
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    snprintf(hex, 17, "%016" PRIx64, h);
}

stem_status stem_latent_file_save(const char *path, const stem_tensor *x, stem_phase phase, int step, int t) {
    stem_tensor host = {0};
    STEM_TRY(stem_tensor_to(x, stem_host(), x->dtype, &host));
    char sum[17], buf[32];
    stem_fnv1a64_hex(host.data, stem_nbytes(&host), sum);
    stem_tensor_map m;
    stem_tensor_map_init(&m);
    stem_status s = stem_tensor_map_put(&m, "latents", host); /* the map owns host now, also on failure */
    snprintf(buf, sizeof buf, "%d", t);
    if (s == STEM_OK) s = stem_tensor_map_set_meta(&m, "timestep", buf);
    snprintf(buf, sizeof buf, "%d", step);
    if (s == STEM_OK) s = stem_tensor_map_set_meta(&m, "step", buf);
    if (s == STEM_OK) s = stem_tensor_map_set_meta(&m, "phase", stem_phase_name(phase));
    if (s == STEM_OK) s = stem_tensor_map_set_meta(&m, "checksum_fnv1a64", sum);
    if (s == STEM_OK) s = stem_safetensors_save(path, &m);
    stem_tensor_map_free(&m);
    return s;
}

static stem_status check_meta(const char *path, const stem_tensor_map *m, const char *key, const char *want) {
    const char *got = stem_tensor_map_get_meta(m, key);
    if (!got) return stem_fail(STEM_E_FORMAT, "%s: no '%s' in its metadata (not a latents file of this stem)", path, key);
    if (strcmp(got, want))
        return stem_fail(STEM_E_FORMAT, "%s: metadata '%s' is '%s', its name says '%s'", path, key, got, want);
    return STEM_OK;
}

/* saved [F, ...] holds x's frames from f0 (whole: x is all of it). */
static stem_status check_frames(const char *path, const stem_tensor *saved, int64_t f0, bool whole,
                                const stem_tensor *x) {
    char a[STEM_SHAPE_STR_LEN], b[STEM_SHAPE_STR_LEN];
    bool ok = saved->ndim == x->ndim && saved->ndim >= 1;
    for (int d = 1; ok && d < x->ndim; d++) ok = saved->shape[d] == x->shape[d];
    if (ok && whole) ok = saved->shape[0] == x->shape[0];
    if (!ok)
        return stem_fail(STEM_E_SHAPE, "%s: latents of shape %s, this run needs %s", path,
                         stem_shape_str(saved, a, sizeof a), stem_shape_str(x, b, sizeof b));
    if (f0 < 0 || f0 + x->shape[0] > saved->shape[0])
        return stem_fail(STEM_E_SHAPE, "%s: latents of shape %s hold no frames %lld..%lld", path,
                         stem_shape_str(saved, a, sizeof a), (long long)f0, (long long)(f0 + x->shape[0] - 1));
    return STEM_OK;
}

static stem_status load(const char *path, stem_phase phase, int step, int t, int64_t f0, bool whole, stem_tensor *x) {
    stem_tensor_map m;
    STEM_TRY(stem_safetensors_load(path, -1, &m)); /* as stored: the checksum covers those bytes */
    char buf[32], sum[17];
    stem_status s = check_meta(path, &m, "phase", stem_phase_name(phase));
    snprintf(buf, sizeof buf, "%d", step);
    if (s == STEM_OK) s = check_meta(path, &m, "step", buf);
    snprintf(buf, sizeof buf, "%d", t);
    if (s == STEM_OK) s = check_meta(path, &m, "timestep", buf);
    stem_tensor *saved = stem_tensor_map_get(&m, "latents");
    if (s == STEM_OK && !saved) s = stem_fail(STEM_E_FORMAT, "%s: no tensor 'latents'", path);
    if (s == STEM_OK) {
        const char *want = stem_tensor_map_get_meta(&m, "checksum_fnv1a64");
        stem_fnv1a64_hex(saved->data, stem_nbytes(saved), sum);
        if (!want) s = stem_fail(STEM_E_FORMAT, "%s: no checksum in its metadata (written by an older stem?)", path);
        else if (strcmp(want, sum))
            s = stem_fail(STEM_E_FORMAT, "%s: the latents do not match their checksum (%s, the data give %s): the file "
                          "is damaged", path, want, sum);
    }
    stem_tensor part;
    if (s == STEM_OK && x) s = check_frames(path, saved, f0, whole, x);
    if (s == STEM_OK && x) s = stem_tensor_narrow0(saved, f0, x->shape[0], &part);
    if (s == STEM_OK && x) {
        if (part.dtype == x->dtype) {
            s = stem_tensor_copy(&part, x);
        } else {
            stem_tensor conv = {0};
            s = stem_tensor_to(&part, stem_host(), x->dtype, &conv);
            if (s == STEM_OK) s = stem_tensor_copy(&conv, x);
            stem_tensor_free(&conv);
        }
    }
    stem_tensor_map_free(&m);
    return s;
}

stem_status stem_latent_file_load(const char *path, stem_phase phase, int step, int t, stem_tensor *x) {
    return load(path, phase, step, t, 0, true, x);
}

stem_status stem_latent_file_load_frames(const char *path, stem_phase phase, int step, int t, int64_t f0,
                                         stem_tensor *x) {
    return load(path, phase, step, t, f0, false, x);
}
