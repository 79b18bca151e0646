/* CUDA against the CPU reference, op by op, on the inputs of every golden file:
 * f32 (TF32 off) at the golden's own tolerance, f16 at the stated looser one, the CPU
 * then running in f32 on the same f16-rounded inputs (the kernels' error, not the
 * inputs' rounding, is what is compared).
 * Without a usable GPU, or in a build without CUDA, every test is skipped with a
 * message saying why; so is an op the CUDA backend does not have (none at present). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "stem.h"
#include "backends/backends.h"
#include "test_util.h"

/* f16 storage rounds every input and intermediate to 11 significant bits
 * (relative 4.9e-4); sums over k terms grow that by about sqrt(k). 3e-2 relative and
 * absolute covers k up to ~3000 at SD activation magnitudes. */
#define F16_RTOL 3e-2
#define F16_ATOL 3e-2

static stem_backend *cuda;
static char cuda_unavailable[512];
static char **golden_paths;
static int golden_count;

/* The dispatcher's report of a NULL backend entry (core/ops.c DISPATCH): STEM_E_UNSUPPORTED
 * with "not supported by backend 'cuda'". Other STEM_E_UNSUPPORTED failures (sizes a CUDA
 * kernel cannot take) stay failures. */
static bool backend_lacks_op(stem_status st) {
    return st == STEM_E_UNSUPPORTED && strstr(stem_last_error(), "not supported by backend 'cuda'") != NULL;
}

static void compare_backends(const char *path, stem_dtype dt) {
    if (!cuda) {
        print_message("skipped: %s\n", cuda_unavailable);
        skip();
    }
    stem_golden g;
    stem_tensor_map ref, got;
    stem_tensor_map_init(&ref);
    stem_tensor_map_init(&got);
    if (stem_golden_load(path, &g) != STEM_OK) fail_msg("%s", stem_last_error());
    /* f16: both sides start from the same f16-rounded inputs (see golden.h) */
    if (dt == STEM_F16 && stem_golden_round_inputs(&g, STEM_F16) != STEM_OK) fail_msg("%s", stem_last_error());
    if (stem_golden_run(&g, stem_cpu_backend(), STEM_F32, &ref) != STEM_OK) fail_msg("cpu: %s", stem_last_error());
    stem_status st = stem_golden_run(&g, cuda, dt, &got);
    if (st != STEM_OK && backend_lacks_op(st)) {
        /* an op may land on the CPU first (core/backend.h): its NULL CUDA entry is a skip, not a failure */
        print_message("skipped: %s: %s\n", test_golden_label(path), stem_last_error());
        stem_tensor_map_free(&ref);
        stem_tensor_map_free(&got);
        stem_golden_free(&g);
        skip();
    }
    if (st != STEM_OK) fail_msg("cuda %s: %s", stem_dtype_name(dt), stem_last_error());
    double rtol = dt == STEM_F16 ? F16_RTOL : g.rtol, atol = dt == STEM_F16 ? F16_ATOL : g.atol;
    int bad = 0;
    for (int j = 0; j < ref.count; j++) {
        stem_tensor *r = &ref.items[j].tensor, *c = stem_tensor_map_get(&got, ref.items[j].name);
        if (!c) fail_msg("%s: cuda produced no '%s'", path, ref.items[j].name);
        stem_compare cmp;
        char desc[256];
        if (stem_compare_tensors(c, r, rtol, atol, &cmp) != STEM_OK) fail_msg("%s: %s", path, stem_last_error());
        stem_compare_describe(&cmp, rtol, atol, desc, sizeof desc);
        print_message("%s [%s] cuda %s vs cpu: %s\n", test_golden_label(path), ref.items[j].name,
                      stem_dtype_name(dt), desc);
        bad += cmp.violations != 0;
    }
    stem_tensor_map_free(&ref);
    stem_tensor_map_free(&got);
    stem_golden_free(&g);
    assert_int_equal(bad, 0);
}

static void parity_f32(void **state) { compare_backends(*state, STEM_F32); }
static void parity_f16(void **state) { compare_backends(*state, STEM_F16); }

int main(int argc, char **argv) {
    stem_blas_ensure_fast_core(argc, argv);
    if (stem_backend_open("cuda", &cuda) != STEM_OK) {
        snprintf(cuda_unavailable, sizeof cuda_unavailable, "%s", stem_last_error());
        fprintf(stderr, "test_cuda_parity: CUDA tests skipped: %s\n", cuda_unavailable);
        cuda = NULL;
    }
    golden_paths = test_list_goldens(&golden_count);
    struct CMUnitTest *tests = calloc(2 * (size_t)golden_count + 1, sizeof *tests);
    char **names = calloc(2 * (size_t)golden_count + 1, sizeof *names);
    for (int i = 0; i < golden_count; i++)
        for (int f = 0; f < 2; f++) {
            const char *label = test_golden_label(golden_paths[i]);
            size_t len = strlen(label) + 8;
            names[2 * i + f] = malloc(len);
            snprintf(names[2 * i + f], len, "%s %s", label, f ? "f16" : "f32");
            tests[2 * i + f] = (struct CMUnitTest){.name = names[2 * i + f], .test_func = f ? parity_f16 : parity_f32,
                                                   .initial_state = golden_paths[i]};
        }
    int failed = _cmocka_run_group_tests("cuda_parity", tests, 2 * (size_t)golden_count, NULL, NULL);
    for (int i = 0; i < 2 * golden_count; i++) free(names[i]);
    for (int i = 0; i < golden_count; i++) free(golden_paths[i]);
    free(names);
    free(golden_paths);
    free(tests);
    stem_backend_close(cuda);
    return failed;
}
