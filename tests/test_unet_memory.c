/* stem_unet_activation_bytes (src/models/unet_memory.c) against the arena peak a real
 * forward reaches, on the tiny models: batches of 1, 3 and 6 samples, square and odd latent
 * sizes, unsliced and (three branches) over slices of one frame. The arena is one block
 * large enough for the whole forward, so its peak is the allocation stack's and the replay
 * must match it within 3 %. The memory plans of stem invert and stem edit rest on it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/ops.h"
#include "models/unet.h"
#include "stem.h"
#include "test_util.h"

typedef struct mem_case {
    const char *model;
    int64_t batch, branches, slice, h, w;
} mem_case;

static void check(void **state) {
    const mem_case *c = *state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/%s/unet", test_refdata_dir(), c->model);
    stem_unet *u;
    if (stem_unet_load(dir, stem_cpu_backend(), STEM_F32, &u) != STEM_OK) fail_msg("%s", stem_last_error());
    const stem_unet_config *cfg = stem_unet_get_config(u);
    stem_arena *arena;
    assert_int_equal(stem_arena_create(stem_cpu_backend(), (size_t)1 << 30, &arena), STEM_OK);
    int64_t xs[4] = {c->batch, cfg->in_channels, c->h, c->w}, cs[3] = {1, 77, cfg->cross_attention_dim[0]};
    stem_tensor x, ctx, out;
    assert_int_equal(stem_tensor_new(stem_cpu_backend(), STEM_F32, 4, xs, &x), STEM_OK);
    assert_int_equal(stem_tensor_new(stem_cpu_backend(), STEM_F32, 3, cs, &ctx), STEM_OK);
    xs[1] = cfg->out_channels;
    assert_int_equal(stem_tensor_new(stem_cpu_backend(), STEM_F32, 4, xs, &out), STEM_OK);
    assert_int_equal(stem_philox_normal(3, 1, 0, 0, &x), STEM_OK);
    assert_int_equal(stem_philox_normal(3, 2, 0, 0, &ctx), STEM_OK);
    const float t = 501.0f;
    const stem_unet_hooks hooks = {.branches = c->branches};
    if (stem_unet_forward_sliced(u, arena, &x, &t, 1, &ctx, &hooks, c->slice, &out) != STEM_OK)
        fail_msg("%s", stem_last_error());
    const size_t measured = stem_arena_peak(arena);
    const size_t replay =
        stem_unet_activation_bytes_sliced(u, c->batch, c->branches, c->slice, c->h, c->w, 77, false);
    const double ratio = (double)replay / (double)measured;
    print_message("%s batch %lld (%lld branches, slices of %lld) at %lldx%lld: arena peak %zu bytes, replay %zu "
                  "(%.4f)\n", c->model, (long long)c->batch, (long long)c->branches, (long long)c->slice,
                  (long long)c->h, (long long)c->w, measured, replay, ratio);
    if (ratio < 0.97 || ratio > 1.03) fail_msg("replay / measured = %.4f, outside [0.97, 1.03]", ratio);
    stem_tensor_free(&x);
    stem_tensor_free(&ctx);
    stem_tensor_free(&out);
    stem_arena_destroy(arena);
    stem_unet_free(u);
}

int main(void) {
    static const mem_case cases[] = {
        {"tiny-sd1", 1, 1, 1, 16, 16},  {"tiny-sd1", 3, 1, 3, 16, 16},  {"tiny-sd1", 6, 1, 6, 13, 10},
        {"tiny-sd2", 3, 1, 3, 16, 16},  {"tiny-freeu", 6, 1, 6, 8, 8},  {"shapes-sd1", 6, 1, 6, 16, 16},
        {"tiny-sd1", 6, 3, 1, 16, 16},  {"tiny-freeu", 6, 3, 1, 8, 8},  {"shapes-sd1", 24, 3, 8, 16, 16},
    };
    enum { N = sizeof cases / sizeof cases[0] };
    struct CMUnitTest tests[N];
    char names[N][96];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "%s b%lld r%lld s%lld %lldx%lld", cases[i].model,
                 (long long)cases[i].batch, (long long)cases[i].branches, (long long)cases[i].slice,
                 (long long)cases[i].h, (long long)cases[i].w);
        tests[i] = (struct CMUnitTest){.name = names[i], .test_func = check, .initial_state = (void *)&cases[i]};
    }
    return _cmocka_run_group_tests("unet_memory", tests, N, NULL, NULL);
}
