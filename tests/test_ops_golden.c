/* Every op against PyTorch: each golden file in refdata/golden/ops is one test, run
 * on the CPU backend (the reference) at the tolerance the file states. Plus: every op
 * in the registry has at least one golden file, and the comparison can fail (on a
 * result just outside the tolerance, and on NaN or Inf on either side). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "stem.h"
#include "test_util.h"

static char **golden_paths;
static int golden_count;

static void check_golden(void **state) {
    const char *path = *state;
    stem_golden g;
    stem_tensor_map outs;
    stem_tensor_map_init(&outs);
    stem_status s = stem_golden_load(path, &g);
    if (s == STEM_OK) s = stem_golden_run(&g, stem_cpu_backend(), STEM_F32, &outs);
    if (s != STEM_OK) fail_msg("%s", stem_last_error());
    int bad = 0;
    for (int j = 0; j < g.expected.count; j++) {
        const char *name = g.expected.items[j].name;
        stem_tensor *got = stem_tensor_map_get(&outs, name);
        if (!got) fail_msg("%s: no output '%s'", path, name);
        stem_compare c;
        char desc[256];
        if (stem_compare_tensors(got, &g.expected.items[j].tensor, g.rtol, g.atol, &c) != STEM_OK)
            fail_msg("%s [%s]: %s", path, name, stem_last_error());
        stem_compare_describe(&c, g.rtol, g.atol, desc, sizeof desc);
        print_message("%s [%s]: %s\n", test_golden_label(path), name, desc);
        bad += c.violations != 0;
    }
    stem_tensor_map_free(&outs);
    stem_golden_free(&g);
    assert_int_equal(bad, 0);
}

/* Every op that `stem op --list` shows has a golden test. */
static void every_op_has_a_golden(void **state) {
    int missing = 0;
    for (const stem_op_def *const *op = stem_op_all(); *op; op++) {
        size_t n = strlen((*op)->name);
        int found = 0;
        for (int i = 0; i < golden_count; i++) {
            const char *label = test_golden_label(golden_paths[i]);
            found |= strncmp(label, (*op)->name, n) == 0 && strncmp(label + n, "__", 2) == 0;
        }
        if (!found) {
            print_error("op %s has no golden file refdata/golden/ops/%s__*.safetensors\n", (*op)->name, (*op)->name);
            missing++;
        }
    }
    assert_int_equal(missing, 0);
}

/* The harness itself can fail: a result off by a little more than the tolerance is caught. */
static void comparison_catches_a_perturbed_result(void **state) {
    assert_true(golden_count > 0);
    stem_golden g;
    stem_tensor_map outs;
    stem_tensor_map_init(&outs);
    int tried = 0;
    for (int i = 0; i < golden_count && !tried; i++) {
        if (stem_golden_load(golden_paths[i], &g) != STEM_OK) fail_msg("%s", stem_last_error());
        stem_tensor *want = &g.expected.items[0].tensor;
        if (want->dtype == STEM_F32 && stem_numel(want) > 0) {
            if (stem_golden_run(&g, stem_cpu_backend(), STEM_F32, &outs) != STEM_OK) fail_msg("%s", stem_last_error());
            stem_tensor *got = stem_tensor_map_get(&outs, g.expected.items[0].name);
            float *v = got->data;
            int64_t mid = stem_numel(got) / 2;
            float w = ((const float *)want->data)[mid];
            v[mid] = w + 2.0f * (float)(g.atol + g.rtol * fabs(w)) + 1e-6f * fabsf(w);
            stem_compare c;
            assert_int_equal(stem_compare_tensors(got, want, g.rtol, g.atol, &c), STEM_OK);
            assert_true(c.violations >= 1);
            tried = 1;
        }
        stem_tensor_map_free(&outs);
        stem_tensor_map_init(&outs);
        stem_golden_free(&g);
    }
    assert_true(tried);
}

/* The comparator fails on non-finite values: a NaN or Inf in the result where the
 * reference is finite, and a NaN or Inf in the reference whatever the result (even the
 * same NaN or Inf). Each is one violation, max abs is infinite and the worst index
 * points at the (first) non-finite element. In f32 and f16. */
static void comparator_fails_on_nan_and_inf(void **state) {
    const int64_t n = 37;
    const double rtol = 1e-3, atol = 1e-3;
    stem_tensor want, got;
    assert_int_equal(stem_tensor_new(stem_cpu_backend(), STEM_F32, 1, (int64_t[]){n}, &want), STEM_OK);
    assert_int_equal(stem_tensor_new(stem_cpu_backend(), STEM_F32, 1, (int64_t[]){n}, &got), STEM_OK);
    float *w = want.data, *g = got.data;
    for (int64_t i = 0; i < n; i++) w[i] = (float)(i - 18) * 0.25f;
    const float bad_values[] = {NAN, -NAN, INFINITY, -INFINITY};
    stem_compare c;
    for (int side = 0; side < 2; side++) /* 0: in the result, 1: in the reference */
        for (size_t b = 0; b < sizeof bad_values / sizeof *bad_values; b++)
            for (int same = 0; same < 2; same++) { /* same: the other side holds the same value */
                memcpy(g, w, sizeof(float) * (size_t)n);
                float *target = side ? w : g, *other = side ? g : w;
                float keep = target[11];
                target[11] = bad_values[b];
                if (same) other[11] = bad_values[b];
                assert_int_equal(stem_compare_tensors(&got, &want, rtol, atol, &c), STEM_OK);
                char desc[256];
                stem_compare_describe(&c, rtol, atol, desc, sizeof desc);
                print_message("    %s %g%s: %s\n", side ? "reference" : "result", (double)bad_values[b],
                              same ? " on both sides" : "", desc);
                assert_int_equal(c.violations, 1);
                assert_int_equal(c.nonfinite, 1);
                assert_true(c.max_abs == INFINITY);
                assert_int_equal(c.worst_index, 11);
                assert_non_null(strstr(desc, "1 NaN/Inf"));
                target[11] = keep;
                other[11] = keep;
            }
    /* the same through f16 (the CUDA parity tests compare f16 results) */
    stem_tensor got16;
    g[5] = NAN;
    assert_int_equal(stem_tensor_to(&got, stem_cpu_backend(), STEM_F16, &got16), STEM_OK);
    assert_int_equal(stem_compare_tensors(&got16, &want, rtol, atol, &c), STEM_OK);
    assert_int_equal(c.violations, 1);
    assert_int_equal(c.worst_index, 5);
    /* every element NaN: all of them violations */
    for (int64_t i = 0; i < n; i++) g[i] = NAN;
    assert_int_equal(stem_compare_tensors(&got, &want, rtol, atol, &c), STEM_OK);
    assert_int_equal(c.violations, n);
    /* and finite values still pass at the tolerance, and fail just past it */
    memcpy(g, w, sizeof(float) * (size_t)n);
    g[3] = w[3] + (float)(0.9 * (atol + rtol * fabs(w[3])));
    assert_int_equal(stem_compare_tensors(&got, &want, rtol, atol, &c), STEM_OK);
    assert_int_equal(c.violations, 0);
    assert_int_equal(c.nonfinite, 0);
    g[3] = w[3] + (float)(1.1 * (atol + rtol * fabs(w[3])));
    assert_int_equal(stem_compare_tensors(&got, &want, rtol, atol, &c), STEM_OK);
    assert_int_equal(c.violations, 1);
    stem_tensor_free(&got16);
    stem_tensor_free(&got);
    stem_tensor_free(&want);
}

int main(int argc, char **argv) {
    stem_blas_ensure_fast_core(argc, argv);
    golden_paths = test_list_goldens(&golden_count);
    enum { FIXED = 3 };
    struct CMUnitTest *tests = calloc((size_t)golden_count + FIXED, sizeof *tests);
    tests[0] = (struct CMUnitTest)cmocka_unit_test(every_op_has_a_golden);
    tests[1] = (struct CMUnitTest)cmocka_unit_test(comparison_catches_a_perturbed_result);
    tests[2] = (struct CMUnitTest)cmocka_unit_test(comparator_fails_on_nan_and_inf);
    for (int i = 0; i < golden_count; i++)
        tests[i + FIXED] = (struct CMUnitTest){.name = test_golden_label(golden_paths[i]), .test_func = check_golden,
                                               .initial_state = golden_paths[i]};
    int failed = _cmocka_run_group_tests("ops_golden_cpu", tests, (size_t)golden_count + FIXED, NULL, NULL);
    for (int i = 0; i < golden_count; i++) free(golden_paths[i]);
    free(golden_paths);
    free(tests);
    return failed;
}
