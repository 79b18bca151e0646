/* Host memory as a facility of core (core/host.h): host tensors work (allocation,
 * copies, dtype conversion, safetensors files) before any compute backend exists, an op
 * on them fails cleanly until the CPU backend is opened, and then the same tensors
 * compute on it with no copies: the CPU backend is the host backend with the kernels
 * attached. This program must not open the CPU backend before the marked point. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backends.h"
#include "core/host.h"
#include "core/ops.h"
#include "core/tensor_map.h"
#include "io/safetensors.h"

static void host_before_and_after_cpu(void **state) {
    (void)state;
    stem_backend *h = stem_host();
    assert_non_null(h);
    assert_true(h->host_memory);
    /* memory: aligned, copies and conversions are core's */
    int64_t shape[1] = {5};
    stem_tensor a, b, half, back;
    assert_int_equal(stem_tensor_new(h, STEM_F32, 1, shape, &a), STEM_OK);
    assert_int_equal((uintptr_t)a.data % 64, 0);
    for (int i = 0; i < 5; i++) ((float *)a.data)[i] = (float)i + 0.5f;
    assert_int_equal(stem_tensor_to(&a, h, STEM_F16, &half), STEM_OK);
    assert_int_equal(stem_tensor_to(&half, h, STEM_F32, &back), STEM_OK);
    assert_memory_equal(a.data, back.data, 5 * sizeof(float));
    assert_int_equal(stem_tensor_zeros(h, STEM_F32, 1, shape, &b), STEM_OK);
    assert_int_equal(stem_tensor_copy(&a, &b), STEM_OK);
    assert_memory_equal(a.data, b.data, 5 * sizeof(float));
    size_t avail = 0, total = 0;
    assert_int_equal(stem_host_memory_info(&avail, &total), STEM_OK);
    assert_true(total > 0 && avail > 0 && avail <= total);
    void *p = NULL;
    assert_int_equal(stem_host_alloc((size_t)1 << 60, &p, "a test buffer"), STEM_E_NOMEM);
    assert_null(p);
    assert_non_null(strstr(stem_last_error(), "a test buffer"));
    /* io on host memory */
    char path[] = "/tmp/stem_host_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    stem_tensor_map m, r;
    stem_tensor_map_init(&m);
    stem_tensor view = a;
    view.owned = false;
    assert_int_equal(stem_tensor_map_put(&m, "a", view), STEM_OK);
    assert_int_equal(stem_safetensors_save(path, &m), STEM_OK);
    assert_int_equal(stem_safetensors_load(path, STEM_F32, &r), STEM_OK);
    assert_ptr_equal(r.items[0].tensor.backend, h);
    assert_memory_equal(r.items[0].tensor.data, a.data, 5 * sizeof(float));

    /* no compute backend yet: an op fails with a message, it does not crash */
    stem_tensor y;
    assert_int_equal(stem_tensor_new(h, STEM_F32, 1, shape, &y), STEM_OK);
    stem_status s = stem_binary(STEM_BINARY_ADD, &a, &b, &y);
    assert_int_equal(s, STEM_E_UNSUPPORTED);
    print_message("    before the CPU backend: %s\n", stem_last_error());
    assert_non_null(strstr(stem_last_error(), "not supported by backend 'host'"));

    /* ---- the CPU backend: the same backend, the kernels attached ---- */
    stem_backend *cpu = stem_cpu_backend();
    assert_ptr_equal(cpu, h);
    assert_string_equal(h->name, "cpu");
    assert_int_equal(stem_binary(STEM_BINARY_ADD, &a, &r.items[0].tensor, &y), STEM_OK);
    for (int i = 0; i < 5; i++) assert_true(((float *)y.data)[i] == 2.0f * ((float *)a.data)[i]);
    stem_backend *opened = NULL;
    assert_int_equal(stem_backend_open("cpu", &opened), STEM_OK);
    assert_ptr_equal(opened, h);
    stem_backend_close(opened);

    stem_tensor_map_free(&r);
    stem_tensor_map_free(&m);
    unlink(path);
    stem_tensor_free(&a);
    stem_tensor_free(&b);
    stem_tensor_free(&y);
    stem_tensor_free(&half);
    stem_tensor_free(&back);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(host_before_and_after_cpu)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
