/* Every op against PyTorch: each golden file in refdata/golden/ops is one test, run
 * on the CPU backend (the reference) at the tolerance the file states. Plus: every op
 * in the registry has at least one golden file, and the comparison can fail. */
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

int main(int argc, char **argv) {
    stem_blas_ensure_fast_core(argc, argv);
    golden_paths = test_list_goldens(&golden_count);
    struct CMUnitTest *tests = calloc((size_t)golden_count + 2, sizeof *tests);
    tests[0] = (struct CMUnitTest)cmocka_unit_test(every_op_has_a_golden);
    tests[1] = (struct CMUnitTest)cmocka_unit_test(comparison_catches_a_perturbed_result);
    for (int i = 0; i < golden_count; i++)
        tests[i + 2] = (struct CMUnitTest){.name = test_golden_label(golden_paths[i]), .test_func = check_golden,
                                           .initial_state = golden_paths[i]};
    int failed = _cmocka_run_group_tests("ops_golden_cpu", tests, (size_t)golden_count + 2, NULL, NULL);
    for (int i = 0; i < golden_count; i++) free(golden_paths[i]);
    free(golden_paths);
    free(tests);
    return failed;
}
