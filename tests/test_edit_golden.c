/* The editing goldens (refdata/golden/edit, made by refdata/gen/gen_edit.py) load and are
 * what `stem edit`'s tests will read: for every file,
 *   - the shapes of the inputs (pixels, ids, contexts, z0, inversion latents) and outputs
 *     (x_T, the latents after steps 0, 1, S-1, the frames) agree with the metadata (frames,
 *     frames_edited for tail every / drop, steps, size);
 *   - the keyframe of chunk k at step s is the chunk's first frame + word 0 of stem's Philox
 *     (src/core/philox.h) at counter (k, 0, 0, 3 << 24 | s << 12) mod the chunk's length
 *     (doc/algorithm.md §6): the Python reference and the C stream draw the same keyframes;
 *   - x_T = add_noise(z0, eps, T) with eps from the last inverted latent is that latent
 *     (doc/algorithm.md §7) up to float32 rounding;
 *   - every transformer block of metadata tf_blocks has idx1 / margin1 [S, Fe, N] and, from
 *     chunk 1 on, idx2 / margin2 [S, Fe - B, N] with N the tokens of its UNet level, indices
 *     below N and margins >= 0;
 *   - FreeU acted (metadata freeu_fired) exactly where the case says it must: on tiny-freeu
 *     with freeu on, never on tiny-sd1 / tiny-sd2 (the original's gate).
 * The numerical comparison with `stem edit` comes with that command. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/philox.h"
#include "io/safetensors.h"
#include "stem.h"
#include "test_util.h"

static char **paths;
static int path_count;

static const char *meta(const stem_tensor_map *m, const char *key) {
    const char *v = stem_tensor_map_get_meta(m, key);
    if (!v) fail_msg("golden lacks metadata '%s'", key);
    return v;
}

static const stem_tensor *tensor(const stem_tensor_map *m, const char *name, stem_dtype dt, int ndim,
                                 const int64_t *shape) {
    const stem_tensor *t = stem_tensor_map_get(m, name);
    if (!t) fail_msg("golden lacks tensor '%s'", name);
    if (t->dtype != dt) fail_msg("%s is %s, expected %s", name, stem_dtype_name(t->dtype), stem_dtype_name(dt));
    stem_tensor want = {.ndim = ndim};
    memcpy(want.shape, shape, (size_t)ndim * sizeof *shape);
    char a[STEM_SHAPE_STR_LEN], b[STEM_SHAPE_STR_LEN];
    if (!stem_same_shape(t, &want))
        fail_msg("%s has shape %s, expected %s", name, stem_shape_str(t, a, sizeof a), stem_shape_str(&want, b, sizeof b));
    return t;
}

/* doc/algorithm.md §6: the keyframe of chunk k at editing step s, as an offset in the chunk. */
static int keyframe_offset(uint64_t seed, int step, int chunk, int length) {
    stem_philox4 ctr = {{(uint32_t)chunk, 0, 0, (3u << 24) | ((uint32_t)step << 12)}};
    stem_philox4 r = stem_philox4x32_10(ctr, (uint32_t)seed, (uint32_t)(seed >> 32));
    return (int)(r.v[0] % (uint32_t)length);
}

/* Tokens of a transformer block's level: h x w halved per level (down_blocks.K: K; the mid
 * block: the deepest, levels - 1; up_blocks.K: levels - 1 - K). */
static int64_t block_tokens(const char *name, int levels, int64_t h, int64_t w) {
    int level = 0;
    if (sscanf(name, "down_blocks.%d.", &level) == 1) {
    } else if (sscanf(name, "up_blocks.%d.", &level) == 1) {
        level = levels - 1 - level;
    } else if (strncmp(name, "mid_block.", 10) == 0) {
        level = levels - 1;
    } else {
        fail_msg("unexpected transformer block name '%s'", name);
    }
    return (h >> level) * (w >> level);
}

static void check_golden(void **state) {
    const char *path = *state;
    stem_tensor_map g;
    stem_tensor_map_init(&g);
    if (stem_safetensors_load(path, -1, &g) != STEM_OK) fail_msg("%s", stem_last_error());
    const int64_t F = atoll(meta(&g, "frames")), Fe = atoll(meta(&g, "frames_edited")), B = atoll(meta(&g, "batch_size"));
    const int64_t S = atoll(meta(&g, "steps"));
    const uint64_t seed = strtoull(meta(&g, "seed"), NULL, 10);
    const char *tail = meta(&g, "tail");
    assert_int_equal(Fe, strcmp(tail, "drop") == 0 ? F - F % B : F);
    int size = 0;
    assert_int_equal(sscanf(meta(&g, "size"), "%d", &size), 1);

    const stem_tensor *z0 = stem_tensor_map_get(&g, "in.z0");
    if (!z0 || z0->ndim != 4) fail_msg("in.z0 is missing or not [F, 4, h, w]");
    const int64_t h = z0->shape[2], w = z0->shape[3];
    tensor(&g, "in.pixels", STEM_U8, 4, (int64_t[]){F, 3, size, size});
    tensor(&g, "in.z0", STEM_F32, 4, (int64_t[]){F, 4, h, w});
    const stem_tensor *inv = tensor(&g, "in.inv_latents", STEM_F32, 5, (int64_t[]){S, F, 4, h, w});
    for (int i = 0; i < 3; i++) {
        static const char *keys[] = {"inversion", "negative", "prompt"};
        char name[64];
        snprintf(name, sizeof name, "in.ids_%s", keys[i]);
        tensor(&g, name, STEM_I32, 2, (int64_t[]){1, 77});
        snprintf(name, sizeof name, "in.context_%s", keys[i]);
        const stem_tensor *c = stem_tensor_map_get(&g, name);
        if (!c || c->ndim != 3 || c->shape[1] != 77) fail_msg("%s is missing or not [1, 77, X]", name);
    }
    char last[48];
    snprintf(last, sizeof last, "out.edit_step%lld", (long long)(S - 1));
    const char *lat[] = {"out.x_T", "out.edit_step0", "out.edit_step1", last};
    for (int i = 0; i < 4; i++) tensor(&g, lat[i], STEM_F32, 4, (int64_t[]){Fe, 4, h, w});
    tensor(&g, "out.frames", STEM_F32, 4, (int64_t[]){Fe, 3, size, size});

    /* keyframes from stem's own Philox */
    const int64_t chunks = (Fe + B - 1) / B;
    const int32_t *kf = tensor(&g, "out.keyframes", STEM_I32, 2, (int64_t[]){S, chunks})->data;
    for (int s = 0; s < S; s++)
        for (int k = 0; k < chunks; k++) {
            int64_t first = k * B, len = Fe - first < B ? Fe - first : B;
            if (kf[s * chunks + k] != first + keyframe_offset(seed, s, k, (int)len))
                fail_msg("step %d chunk %d: golden keyframe %d, stem's Philox gives %lld", s, k, kf[s * chunks + k],
                         (long long)(first + keyframe_offset(seed, s, k, (int)len)));
        }

    /* x_T is the last inverted latent (add_noise of the eps it defines), to float32 rounding */
    const float *xt = stem_tensor_map_get(&g, "out.x_T")->data, *inv_last = (const float *)inv->data + (S - 1) * F * 4 * h * w;
    double worst = 0;
    for (int64_t i = 0; i < Fe * 4 * h * w; i++) worst = fmax(worst, fabs(xt[i] - inv_last[i]) / (1 + fabs(inv_last[i])));
    if (worst > 1e-6) fail_msg("x_T differs from the last inverted latent by %g", worst);

    /* token flow of every transformer block */
    char *blocks = strdup(meta(&g, "tf_blocks"));
    int levels = 0, nb = 0;
    for (char *p = strstr(blocks, "up_blocks."); p; p = strstr(p + 1, "up_blocks.")) {
        int k = atoi(p + 10);
        if (k + 1 > levels) levels = k + 1;
    }
    for (char *save = NULL, *name = strtok_r(blocks, ",", &save); name; name = strtok_r(NULL, ",", &save), nb++) {
        const int64_t N = block_tokens(name, levels, h, w);
        for (int which = 1; which <= 2; which++) {
            const int64_t rows = which == 1 ? Fe : Fe - B;
            char key[64];
            if (rows <= 0) continue;
            snprintf(key, sizeof key, "out.tf_b%02d.idx%d", nb, which);
            const uint8_t *idx = tensor(&g, key, STEM_U8, 3, (int64_t[]){S, rows, N})->data;
            snprintf(key, sizeof key, "out.tf_b%02d.margin%d", nb, which);
            const uint16_t *mar = tensor(&g, key, STEM_F16, 3, (int64_t[]){S, rows, N})->data;
            for (int64_t i = 0; i < S * rows * N; i++) {
                if (idx[i] >= N) fail_msg("%s: index %d at %lld is not below %lld tokens", key, idx[i], (long long)i, (long long)N);
                if (!(stem_f16_to_f32(mar[i]) >= 0)) fail_msg("%s: margin %g at %lld", key, stem_f16_to_f32(mar[i]), (long long)i);
            }
        }
    }
    free(blocks);
    char key[64];
    snprintf(key, sizeof key, "out.tf_b%02d.idx1", nb);
    if (stem_tensor_map_get(&g, key)) fail_msg("%s exists but tf_blocks names only %d blocks", key, nb);

    const bool fires = strcmp(meta(&g, "model"), "tiny-freeu") == 0 && strcmp(meta(&g, "freeu"), "on") == 0;
    assert_int_equal(*meta(&g, "freeu_fired") != '\0', fires);
    print_message("%s: %lld of %lld frames (tail %s), %lld chunks, %d transformer blocks, freeu %s\n",
                  test_golden_label(path), (long long)Fe, (long long)F, tail, (long long)chunks, nb,
                  fires ? "fired" : "silent");
    stem_tensor_map_free(&g);
}

int main(void) {
    paths = test_list_golden_dir("edit", &path_count);
    if (path_count == 0) {
        fprintf(stderr, "test_edit_golden: no golden files in %s/golden/edit\n", test_refdata_dir());
        return 1;
    }
    struct CMUnitTest *tests = calloc((size_t)path_count, sizeof *tests);
    for (int i = 0; i < path_count; i++)
        tests[i] = (struct CMUnitTest){.name = test_golden_label(paths[i]), .test_func = check_golden,
                                       .initial_state = paths[i]};
    int failed = _cmocka_run_group_tests("edit_golden", tests, (size_t)path_count, NULL, NULL);
    for (int i = 0; i < path_count; i++) free(paths[i]);
    free(paths);
    free(tests);
    return failed;
}
