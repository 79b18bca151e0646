/* STEM-SA's UNet hooks (src/stem/stem_sa.c) inside a forward: on a "device" that counts
 * its allocations and device-to-host copies (the CPU backend's functions behind a table
 * that counts, with host_memory off so that every transfer goes through it), a warm
 * forward allocates nothing and reads back from the device once (the deferred
 * non-finite check), all frames at once and layer-major; a NaN in the latents fails the
 * forward at its end with the site, step, tensor, head and channel; a batch of several
 * branches is refused. The numbers themselves are tested against PyTorch in
 * test_invert. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "stem/stem_sa.h"
#include "test_unet_util.h"

static const stem_backend_ops *cpu_ops;
static stem_backend_ops counting_ops;
static stem_backend counting;
static int allocs, downloads;

static stem_status counting_alloc(stem_backend *be, size_t bytes, void **out) {
    allocs++;
    return cpu_ops->alloc(be, bytes, out);
}

static stem_status counting_download(stem_backend *be, void *host_dst, const void *src, size_t bytes) {
    downloads++;
    return cpu_ops->download(be, host_dst, src, bytes);
}

static void make_counting_backend(void) {
    counting = *stem_cpu_backend();
    cpu_ops = counting.ops;
    counting_ops = *cpu_ops;
    counting_ops.alloc = counting_alloc;
    counting_ops.download = counting_download;
    counting_ops.destroy = NULL;
    counting.ops = &counting_ops;
    counting.host_memory = false;
}

typedef struct sa_case {
    stem_unet *u;
    stem_arena *arena;
    stem_tensor x, c, y; /* on the counting backend: [4, 4, 8, 8], [1, 77, 16], eps */
} sa_case;

static void case_open(sa_case *k) {
    make_counting_backend();
    k->u = load_unet("tiny-sd1", &counting, STEM_F32);
    stem_backend *cpu = stem_cpu_backend();
    int64_t sx[4] = {4, 4, 8, 8}, sc[3] = {1, 77, 16};
    stem_tensor hx, hc;
    assert_int_equal(stem_tensor_new(cpu, STEM_F32, 4, sx, &hx), STEM_OK);
    assert_int_equal(stem_philox_normal(3, 0, 0, 0, &hx), STEM_OK);
    assert_int_equal(stem_tensor_new(cpu, STEM_F32, 3, sc, &hc), STEM_OK);
    assert_int_equal(stem_philox_normal(4, 0, 0, 0, &hc), STEM_OK);
    assert_int_equal(stem_tensor_to(&hx, &counting, STEM_F32, &k->x), STEM_OK);
    assert_int_equal(stem_tensor_to(&hc, &counting, STEM_F32, &k->c), STEM_OK);
    assert_int_equal(stem_tensor_new(&counting, STEM_F32, 4, sx, &k->y), STEM_OK);
    assert_int_equal(stem_arena_create(&counting, 16u << 20, &k->arena), STEM_OK);
    stem_tensor_free(&hx);
    stem_tensor_free(&hc);
}

static void case_close(sa_case *k) {
    stem_arena_destroy(k->arena);
    stem_tensor_free(&k->x);
    stem_tensor_free(&k->c);
    stem_tensor_free(&k->y);
    stem_unet_free(k->u);
}

/* One forward with the STEM-SA hooks of `mode`; slice 0: all frames at once. */
static stem_status sa_forward(sa_case *k, stem_sa_hooks *sa, int step, int64_t slice) {
    stem_unet_hook_set set = stem_sa_hook_set(sa);
    stem_unet_hooks hooks = {.sets = &set, .n_sets = 1};
    stem_sa_hooks_set_step(sa, step, 0);
    float t = 501;
    return stem_unet_forward_sliced(k->u, k->arena, &k->x, &t, 1, &k->c, &hooks, slice ? slice : 4, &k->y);
}

static void no_allocation_one_readback(void **state) {
    (void)state;
    sa_case k;
    case_open(&k);
    static const stem_sa_mode modes[2] = {STEM_SA_STEM, STEM_SA_INFLATED};
    for (int m = 0; m < 2; m++)
        for (int64_t slice = 0; slice <= 2; slice += 2) {
            stem_sa_options o;
            stem_sa_options_default(&o);
            o.mode = modes[m];
            o.em.bases = 16;
            size_t mark = stem_arena_mark(k.arena);
            stem_sa_hooks *sa;
            assert_int_equal(stem_sa_hooks_create(&o, STEM_PHASE_INVERSION, k.u, k.arena, 4, 8, 8, slice > 0, &sa),
                             STEM_OK);
            /* the first forward grows the arena; the next allocate nothing */
            if (sa_forward(&k, sa, 0, slice) != STEM_OK) fail_msg("%s", stem_last_error());
            allocs = downloads = 0;
            if (sa_forward(&k, sa, 1, slice) != STEM_OK) fail_msg("%s", stem_last_error());
            print_message("%s, %s: %d device allocations, %d device-to-host copies in a forward\n",
                          stem_sa_mode_name(o.mode), slice ? "layer-major (slices of 2)" : "all frames", allocs,
                          downloads);
            assert_int_equal(allocs, 0);
            /* stem: the deferred check, once; inflated runs no EM, so there is nothing to check */
            assert_int_equal(downloads, o.mode == STEM_SA_STEM ? 1 : 0);
            stem_sa_hooks_free(sa);
            stem_arena_reset(k.arena, mark);
        }
    case_close(&k);
}

static void non_finite_at_the_end(void **state) {
    (void)state;
    sa_case k;
    case_open(&k);
    /* one NaN in frame 2's latent: every attn1 sees it in k and v */
    stem_tensor host;
    assert_int_equal(stem_tensor_to(&k.x, stem_cpu_backend(), STEM_F32, &host), STEM_OK);
    ((float *)host.data)[2 * 4 * 8 * 8 + 5] = NAN;
    assert_int_equal(stem_tensor_copy(&host, &k.x), STEM_OK);
    stem_tensor_free(&host);
    for (int64_t slice = 0; slice <= 2; slice += 2) {
        stem_sa_options o;
        stem_sa_options_default(&o);
        o.em.bases = 16;
        size_t mark = stem_arena_mark(k.arena);
        stem_sa_hooks *sa;
        assert_int_equal(stem_sa_hooks_create(&o, STEM_PHASE_INVERSION, k.u, k.arena, 4, 8, 8, slice > 0, &sa),
                         STEM_OK);
        downloads = 0;
        assert_int_equal(sa_forward(&k, sa, 7, slice), STEM_E_ARG);
        print_message("error: %s\n", stem_last_error());
        assert_int_equal(downloads, 1); /* found at the end, not at the site */
        const char *needles[] = {"end of the forward", "down_blocks.0.attentions.0.transformer_blocks.0.attn1",
                                 "(step 7)", "k has a non-finite value", "head 0, channel 0"};
        for (size_t i = 0; i < sizeof needles / sizeof *needles; i++)
            if (!strstr(stem_last_error(), needles[i])) fail_msg("message lacks '%s'", needles[i]);
        stem_sa_hooks_free(sa);
        stem_arena_reset(k.arena, mark);
    }
    case_close(&k);
}

static void one_branch_only(void **state) {
    (void)state;
    sa_case k;
    case_open(&k);
    stem_sa_options o;
    stem_sa_options_default(&o);
    o.em.bases = 16;
    stem_sa_hooks *sa;
    assert_int_equal(stem_sa_hooks_create(&o, STEM_PHASE_INVERSION, k.u, k.arena, 2, 8, 8, false, &sa), STEM_OK);
    stem_unet_hook_set set = stem_sa_hook_set(sa);
    stem_unet_hooks hooks = {.branches = 2, .sets = &set, .n_sets = 1};
    float t = 501;
    assert_int_equal(stem_unet_forward(k.u, k.arena, &k.x, &t, 1, &k.c, &hooks, &k.y), STEM_E_ARG);
    print_message("error: %s\n", stem_last_error());
    assert_non_null(strstr(stem_last_error(), "one branch"));
    stem_sa_hooks_free(sa);
    case_close(&k);
}

int main(int argc, char **argv) {
    stem_blas_ensure_fast_core(argc, argv);
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_allocation_one_readback),
        cmocka_unit_test(non_finite_at_the_end),
        cmocka_unit_test(one_branch_only),
    };
    return cmocka_run_group_tests_name("stem self-attention hooks", tests, NULL, NULL);
}
