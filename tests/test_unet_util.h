/* Shared by the UNet tests (test_unet.c, test_unet_hooks.c): tiny models from
 * refdata, golden files, a forward on host inputs, comparisons with a printed summary.
 * Include after <cmocka.h>. */
#ifndef STEM_TEST_UNET_UTIL_H
#define STEM_TEST_UNET_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stem.h"
#include "models/unet.h"
#include "test_util.h"

static inline void model_dir(const char *model, char *buf, size_t len) {
    snprintf(buf, len, "%s/models/%s/unet", test_refdata_dir(), model);
}

static inline stem_unet *load_unet(const char *model, stem_backend *be, stem_dtype dt) {
    char dir[2048];
    model_dir(model, dir, sizeof dir);
    stem_unet *u = NULL;
    if (stem_unet_load(dir, be, dt, &u) != STEM_OK) fail_msg("loading %s: %s", dir, stem_last_error());
    return u;
}

typedef struct golden_case {
    stem_tensor_map file;
    stem_tensor *sample, *timesteps, *context, *eps;
    double rtol, atol;
    char model[64];
} golden_case;

static inline void golden_open(const char *path, golden_case *g) {
    memset(g, 0, sizeof *g);
    if (stem_safetensors_load(path, -1, &g->file) != STEM_OK) fail_msg("%s", stem_last_error());
    if (stem_tensor_map_require(&g->file, "in.sample", path, &g->sample) != STEM_OK ||
        stem_tensor_map_require(&g->file, "in.timesteps", path, &g->timesteps) != STEM_OK ||
        stem_tensor_map_require(&g->file, "in.context", path, &g->context) != STEM_OK ||
        stem_tensor_map_require(&g->file, "out.eps", path, &g->eps) != STEM_OK)
        fail_msg("%s", stem_last_error());
    const char *m = stem_tensor_map_get_meta(&g->file, "model");
    const char *rt = stem_tensor_map_get_meta(&g->file, "rtol"), *at = stem_tensor_map_get_meta(&g->file, "atol");
    if (!m || !rt || !at) fail_msg("%s: metadata model/rtol/atol missing", path);
    snprintf(g->model, sizeof g->model, "%s", m);
    g->rtol = atof(rt);
    g->atol = atof(at);
}

/* golden_open on refdata/golden/unet/NAME.safetensors. */
static inline void golden_open_named(const char *name, golden_case *g) {
    char path[2048];
    snprintf(path, sizeof path, "%s/golden/unet/%s.safetensors", test_refdata_dir(), name);
    golden_open(path, g);
}

/* Runs the UNet on host inputs, layer-major over slices of slice_frames samples
 * (0: stem_unet_forward); returns the output as a host f32 tensor (owned). */
static inline stem_status run_unet_sliced(stem_unet *u, const stem_tensor *sample, const stem_tensor *timesteps,
                                   const stem_tensor *context, const stem_unet_hooks *hooks, int64_t slice_frames,
                                   stem_tensor *out_host) {
    stem_backend *be = stem_unet_backend(u);
    stem_dtype dt = stem_unet_dtype(u);
    stem_tensor x, c, y;
    STEM_TRY(stem_tensor_to(sample, be, dt, &x));
    STEM_TRY(stem_tensor_to(context, be, dt, &c));
    stem_status s = stem_tensor_new(be, dt, 4, sample->shape, &y);
    stem_arena *arena = NULL;
    if (s == STEM_OK) s = stem_arena_create(be, 16u << 20, &arena);
    if (s == STEM_OK)
        s = slice_frames ? stem_unet_forward_sliced(u, arena, &x, (const float *)timesteps->data,
                                                    stem_numel(timesteps), &c, hooks, slice_frames, &y)
                         : stem_unet_forward(u, arena, &x, (const float *)timesteps->data, stem_numel(timesteps), &c,
                                             hooks, &y);
    if (s == STEM_OK) s = stem_tensor_to(&y, stem_cpu_backend(), STEM_F32, out_host);
    stem_arena_destroy(arena);
    stem_tensor_free(&x);
    stem_tensor_free(&c);
    stem_tensor_free(&y);
    return s;
}

static inline stem_status run_unet(stem_unet *u, const stem_tensor *sample, const stem_tensor *timesteps,
                            const stem_tensor *context, const stem_unet_hooks *hooks, stem_tensor *out_host) {
    return run_unet_sliced(u, sample, timesteps, context, hooks, 0, out_host);
}

static inline int compare(const char *label, const stem_tensor *got, const stem_tensor *want, double rtol, double atol) {
    stem_compare cmp;
    char desc[256];
    if (stem_compare_tensors(got, want, rtol, atol, &cmp) != STEM_OK) fail_msg("%s: %s", label, stem_last_error());
    stem_compare_describe(&cmp, rtol, atol, desc, sizeof desc);
    print_message("%s: %s\n", label, desc);
    return (int)cmp.violations;
}

#endif
