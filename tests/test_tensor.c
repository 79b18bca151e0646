/* Tensors on the CPU backend (new, zeros, views, conversion), the tensor map, and the
 * activation arena. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "backends/backends.h"
#include "core/backend.h"
#include "core/tensor_map.h"

#define assert_contains(haystack, needle)                                                  \
    do {                                                                                   \
        const char *h_ = (haystack), *n_ = (needle);                                       \
        if (!strstr(h_, n_)) fail_msg("message \"%s\" does not contain \"%s\"", h_, n_); \
    } while (0)

static stem_backend *cpu(void) { return stem_cpu_backend(); }

/* ---- tensors -------------------------------------------------------------------- */

static void test_new_and_zeros(void **state) {
    (void)state;
    stem_tensor t;
    assert_int_equal(stem_tensor_new(cpu(), STEM_F32, 4, (int64_t[]){2, 4, 8, 8}, &t), STEM_OK);
    assert_true(t.owned);
    assert_ptr_equal(t.backend, cpu());
    assert_int_equal(t.ndim, 4);
    assert_int_equal(stem_numel(&t), 512);
    assert_int_equal(stem_nbytes(&t), 2048);
    memset(t.data, 0xAB, stem_nbytes(&t)); /* the whole allocation is usable (ASan checks) */
    char buf[STEM_SHAPE_STR_LEN];
    assert_string_equal(stem_shape_str(&t, buf, sizeof buf), "[2, 4, 8, 8]");
    stem_tensor_free(&t);
    assert_null(t.data);
    assert_false(t.owned);
    stem_tensor_free(&t); /* twice is harmless */

    assert_int_equal(stem_tensor_zeros(cpu(), STEM_BF16, 2, (int64_t[]){3, 5}, &t), STEM_OK);
    const uint8_t *p = t.data;
    for (size_t i = 0; i < stem_nbytes(&t); i++) assert_int_equal(p[i], 0);
    stem_tensor_free(&t);

    /* 0-d: one element; empty: a valid pointer and no bytes */
    assert_int_equal(stem_tensor_zeros(cpu(), STEM_I64, 0, NULL, &t), STEM_OK);
    assert_int_equal(stem_numel(&t), 1);
    assert_int_equal(*(int64_t *)t.data, 0);
    assert_string_equal(stem_shape_str(&t, buf, sizeof buf), "[]");
    stem_tensor_free(&t);
    assert_int_equal(stem_tensor_zeros(cpu(), STEM_F16, 2, (int64_t[]){0, 7}, &t), STEM_OK);
    assert_non_null(t.data);
    assert_int_equal(stem_nbytes(&t), 0);
    stem_tensor_free(&t);
}

static void test_new_errors(void **state) {
    (void)state;
    stem_tensor t;
    stem_clear_error();
    assert_int_equal(stem_tensor_new(cpu(), STEM_F32, 7, (int64_t[]){1, 1, 1, 1, 1, 1, 1}, &t), STEM_E_SHAPE);
    assert_contains(stem_last_error(), "rank 7");
    assert_int_equal(stem_tensor_new(cpu(), STEM_F32, -1, NULL, &t), STEM_E_SHAPE);
    assert_int_equal(stem_tensor_zeros(cpu(), STEM_F32, 2, (int64_t[]){4, -3}, &t), STEM_E_SHAPE);
    assert_contains(stem_last_error(), "negative size -3 on axis 1");
}

static void test_wrap_is_not_owned(void **state) {
    (void)state;
    float buf[6] = {0};
    stem_tensor t = stem_tensor_wrap(cpu(), STEM_F32, 2, (int64_t[]){2, 3}, buf);
    assert_false(t.owned);
    assert_ptr_equal(t.data, buf);
    stem_tensor_free(&t); /* must not free the stack buffer */
    assert_null(t.data);
}

static void test_reshape(void **state) {
    (void)state;
    stem_tensor t, v;
    assert_int_equal(stem_tensor_new(cpu(), STEM_F32, 2, (int64_t[]){2, 6}, &t), STEM_OK);
    assert_int_equal(stem_tensor_reshape(&t, 3, (int64_t[]){3, 2, 2}, &v), STEM_OK);
    assert_ptr_equal(v.data, t.data);
    assert_false(v.owned);
    assert_int_equal(v.ndim, 3);
    assert_int_equal(v.shape[0], 3);
    assert_int_equal(stem_tensor_reshape(&t, 0, NULL, &v), STEM_E_SHAPE); /* 12 elements are not a scalar */
    stem_clear_error();
    assert_int_equal(stem_tensor_reshape(&t, 2, (int64_t[]){4, 2}, &v), STEM_E_SHAPE);
    assert_contains(stem_last_error(), "cannot reshape [2, 6] to [4, 2]");
    assert_int_equal(stem_tensor_reshape(&t, 2, (int64_t[]){-2, -6}, &v), STEM_E_SHAPE); /* product matches, sign does not */
    assert_int_equal(stem_tensor_reshape(&t, 7, (int64_t[]){1, 1, 1, 1, 1, 2, 6}, &v), STEM_E_SHAPE);
    stem_tensor_free(&t);
}

static void test_narrow0(void **state) {
    (void)state;
    stem_tensor t, v;
    assert_int_equal(stem_tensor_new(cpu(), STEM_F32, 3, (int64_t[]){5, 2, 3}, &t), STEM_OK);
    float *p = t.data;
    for (int i = 0; i < 30; i++) p[i] = (float)i;
    assert_int_equal(stem_tensor_narrow0(&t, 2, 3, &v), STEM_OK);
    assert_false(v.owned);
    assert_int_equal(v.shape[0], 3);
    assert_int_equal(v.shape[1], 2);
    assert_true(((float *)v.data)[0] == 12.0f);
    assert_int_equal(stem_numel(&v), 18);
    assert_int_equal(stem_tensor_narrow0(&t, 5, 0, &v), STEM_OK); /* empty at the end */
    assert_int_equal(stem_numel(&v), 0);
    stem_clear_error();
    assert_int_equal(stem_tensor_narrow0(&t, 3, 3, &v), STEM_E_SHAPE);
    assert_contains(stem_last_error(), "3..6");
    assert_int_equal(stem_tensor_narrow0(&t, -1, 1, &v), STEM_E_SHAPE);
    assert_int_equal(stem_tensor_narrow0(&t, 0, -1, &v), STEM_E_SHAPE);
    stem_tensor s;
    assert_int_equal(stem_tensor_new(cpu(), STEM_F32, 0, NULL, &s), STEM_OK);
    assert_int_equal(stem_tensor_narrow0(&s, 0, 1, &v), STEM_E_SHAPE);
    stem_tensor_free(&s);
    stem_tensor_free(&t);
}

static void test_tensor_to(void **state) {
    (void)state;
    stem_tensor t, h, back, same;
    const float vals[6] = {1.0f, -2.5f, 65504.0f, 0.0999755859375f, 1e-7f, 1e6f};
    assert_int_equal(stem_tensor_new(cpu(), STEM_F32, 2, (int64_t[]){2, 3}, &t), STEM_OK);
    memcpy(t.data, vals, sizeof vals);

    assert_int_equal(stem_tensor_to(&t, cpu(), STEM_F16, &h), STEM_OK);
    assert_int_equal(h.dtype, STEM_F16);
    assert_true(h.owned);
    assert_true(stem_same_shape(&t, &h));
    const uint16_t *hb = h.data;
    for (int i = 0; i < 6; i++) assert_int_equal(hb[i], stem_f32_to_f16(vals[i]));
    assert_int_equal(hb[0], 0x3C00);
    assert_int_equal(hb[5], 0x7C00); /* 1e6 overflows to inf */

    assert_int_equal(stem_tensor_to(&h, cpu(), STEM_F32, &back), STEM_OK);
    const float *bf = back.data;
    for (int i = 0; i < 4; i++) assert_true(bf[i] == vals[i]); /* exactly representable in f16 */
    assert_true(bf[4] == stem_f16_to_f32(stem_f32_to_f16(1e-7f)));

    /* same dtype: a copy, not a view */
    assert_int_equal(stem_tensor_to(&t, cpu(), STEM_F32, &same), STEM_OK);
    assert_ptr_not_equal(same.data, t.data);
    assert_memory_equal(same.data, t.data, sizeof vals);

    stem_tensor bf16;
    assert_int_equal(stem_tensor_to(&t, cpu(), STEM_BF16, &bf16), STEM_OK);
    assert_int_equal(((uint16_t *)bf16.data)[0], 0x3F80);
    stem_tensor_free(&bf16);

    /* integers are never converted */
    stem_tensor i32, out;
    assert_int_equal(stem_tensor_zeros(cpu(), STEM_I32, 1, (int64_t[]){4}, &i32), STEM_OK);
    stem_clear_error();
    assert_int_equal(stem_tensor_to(&i32, cpu(), STEM_F32, &out), STEM_E_DTYPE);
    assert_contains(stem_last_error(), "I32");
    assert_int_equal(stem_tensor_to(&t, cpu(), STEM_I64, &out), STEM_E_DTYPE);

    /* copy requires equal shapes and dtypes */
    assert_int_equal(stem_tensor_copy(&t, &h), STEM_E_SHAPE);
    assert_int_equal(stem_tensor_copy(&t, &same), STEM_OK);

    stem_tensor_free(&i32);
    stem_tensor_free(&same);
    stem_tensor_free(&back);
    stem_tensor_free(&h);
    stem_tensor_free(&t);
}

/* ---- tensor map ----------------------------------------------------------------- */

static stem_tensor owned_f32(int64_t n, float fill) {
    stem_tensor t;
    assert_int_equal(stem_tensor_new(cpu(), STEM_F32, 1, &n, &t), STEM_OK);
    for (int64_t i = 0; i < n; i++) ((float *)t.data)[i] = fill;
    return t;
}

static void test_map_put_get(void **state) {
    (void)state;
    stem_tensor_map m;
    stem_tensor_map_init(&m);
    assert_null(stem_tensor_map_get(&m, "a"));
    assert_int_equal(stem_tensor_map_put(&m, "a", owned_f32(3, 1.0f)), STEM_OK);
    assert_int_equal(stem_tensor_map_put(&m, "b", owned_f32(5, 2.0f)), STEM_OK);
    float stack[2] = {7, 8};
    assert_int_equal(stem_tensor_map_put(&m, "wrapped", stem_tensor_wrap(cpu(), STEM_F32, 1, (int64_t[]){2}, stack)),
                     STEM_OK);
    assert_int_equal(m.count, 3);
    assert_string_equal(m.items[0].name, "a");
    assert_string_equal(m.items[2].name, "wrapped");
    stem_tensor *b = stem_tensor_map_get(&m, "b");
    assert_non_null(b);
    assert_int_equal(b->shape[0], 5);
    assert_true(((float *)b->data)[4] == 2.0f);

    /* replacing keeps the position, frees the old owned tensor (ASan would see a leak) */
    assert_int_equal(stem_tensor_map_put(&m, "a", owned_f32(4, 9.0f)), STEM_OK);
    assert_int_equal(m.count, 3);
    assert_string_equal(m.items[0].name, "a");
    assert_int_equal(stem_tensor_map_get(&m, "a")->shape[0], 4);
    /* putting the same tensor again is harmless */
    assert_int_equal(stem_tensor_map_put(&m, "a", *stem_tensor_map_get(&m, "a")), STEM_OK);
    assert_true(((float *)stem_tensor_map_get(&m, "a")->data)[3] == 9.0f);
    /* replacing a wrapped tensor does not free the caller's memory */
    assert_int_equal(stem_tensor_map_put(&m, "wrapped", owned_f32(1, 0.0f)), STEM_OK);
    assert_true(stack[1] == 8.0f);

    stem_tensor *got = NULL;
    assert_int_equal(stem_tensor_map_require(&m, "b", "unet", &got), STEM_OK);
    assert_ptr_equal(got, b);
    stem_clear_error();
    assert_int_equal(stem_tensor_map_require(&m, "conv_in.weight", "loading unet", &got), STEM_E_NOTFOUND);
    assert_null(got);
    assert_contains(stem_last_error(), "loading unet: no tensor 'conv_in.weight'");

    stem_tensor_map_free(&m);
    assert_int_equal(m.count, 0);
    assert_null(m.items);
    stem_tensor_map_free(&m); /* freeing an empty map is fine */
}

static void test_map_many(void **state) {
    (void)state;
    stem_tensor_map m;
    stem_tensor_map_init(&m);
    char name[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "layer.%d.weight", i);
        assert_int_equal(stem_tensor_map_put(&m, name, owned_f32(2, (float)i)), STEM_OK);
    }
    assert_int_equal(m.count, 1000);
    for (int i = 0; i < 1000; i += 37) {
        snprintf(name, sizeof name, "layer.%d.weight", i);
        stem_tensor *t = stem_tensor_map_get(&m, name);
        assert_non_null(t);
        assert_true(((float *)t->data)[1] == (float)i);
        assert_string_equal(m.items[i].name, name);
    }
    stem_tensor_map_free(&m);
}

static void test_map_meta(void **state) {
    (void)state;
    stem_tensor_map m;
    stem_tensor_map_init(&m);
    assert_null(stem_tensor_map_get_meta(&m, "format"));
    assert_int_equal(stem_tensor_map_set_meta(&m, "format", "pt"), STEM_OK);
    assert_int_equal(stem_tensor_map_set_meta(&m, "step", "10"), STEM_OK);
    assert_string_equal(stem_tensor_map_get_meta(&m, "format"), "pt");
    assert_int_equal(stem_tensor_map_set_meta(&m, "format", "stem"), STEM_OK); /* replace */
    assert_string_equal(stem_tensor_map_get_meta(&m, "format"), "stem");
    assert_int_equal(m.meta_count, 2);
    for (int i = 0; i < 40; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(stem_tensor_map_set_meta(&m, k, k), STEM_OK);
    }
    assert_string_equal(stem_tensor_map_get_meta(&m, "k39"), "k39");
    assert_string_equal(stem_tensor_map_get_meta(&m, "step"), "10");
    stem_tensor_map_free(&m);
    assert_int_equal(m.meta_count, 0);
    assert_null(m.meta);
}

/* ---- arena ---------------------------------------------------------------------- */

static void test_arena(void **state) {
    (void)state;
    stem_arena *a;
    assert_int_equal(stem_arena_create(cpu(), 4096, &a), STEM_OK);
    assert_int_equal(stem_arena_peak(a), 0);

    stem_tensor t1, t2, t3;
    assert_int_equal(stem_arena_tensor(a, STEM_F32, 1, (int64_t[]){100}, &t1), STEM_OK);
    assert_false(t1.owned);
    assert_int_equal((uintptr_t)t1.data % 64, 0);
    memset(t1.data, 1, stem_nbytes(&t1));
    size_t mark = stem_arena_mark(a);
    assert_int_equal(stem_arena_tensor(a, STEM_F16, 2, (int64_t[]){10, 10}, &t2), STEM_OK);
    assert_ptr_not_equal(t2.data, t1.data);
    assert_true((char *)t2.data >= (char *)t1.data + 400 || (char *)t2.data + 200 <= (char *)t1.data);
    memset(t2.data, 2, stem_nbytes(&t2));
    size_t peak_before = stem_arena_peak(a);
    assert_true(peak_before >= 600);

    /* reset to the mark: the next tensor reuses t2's memory; t1 is untouched */
    stem_arena_reset(a, mark);
    assert_int_equal(stem_arena_tensor(a, STEM_F16, 2, (int64_t[]){10, 10}, &t3), STEM_OK);
    assert_ptr_equal(t3.data, t2.data);
    assert_int_equal(((uint8_t *)t1.data)[399], 1);
    assert_int_equal(stem_arena_peak(a), peak_before);

    /* larger than a block: gets a block of its own, fully usable */
    stem_tensor big, big2, small;
    assert_int_equal(stem_arena_tensor(a, STEM_F32, 2, (int64_t[]){100, 100}, &big), STEM_OK);
    memset(big.data, 3, stem_nbytes(&big));
    assert_true(stem_arena_peak(a) >= 40000 + 600);
    size_t peak_big = stem_arena_peak(a);

    /* after a full reset everything is reused: no new memory, same peak */
    stem_arena_reset(a, 0);
    assert_int_equal(stem_arena_tensor(a, STEM_F32, 1, (int64_t[]){100}, &small), STEM_OK);
    assert_ptr_equal(small.data, t1.data);
    stem_arena_reset(a, 0);
    assert_int_equal(stem_arena_tensor(a, STEM_F32, 2, (int64_t[]){100, 100}, &big2), STEM_OK);
    assert_ptr_equal(big2.data, big.data);
    memset(big2.data, 4, stem_nbytes(&big2));
    assert_int_equal(stem_arena_peak(a), peak_big);

    /* empty and 0-d tensors still get distinct valid pointers */
    stem_tensor e, s;
    assert_int_equal(stem_arena_tensor(a, STEM_F32, 1, (int64_t[]){0}, &e), STEM_OK);
    assert_int_equal(stem_arena_tensor(a, STEM_F32, 0, NULL, &s), STEM_OK);
    assert_non_null(e.data);
    assert_ptr_not_equal(e.data, s.data);
    *(float *)s.data = 1.0f;
    stem_arena_destroy(a);
    stem_arena_destroy(NULL);
}

/* Many small tensors spanning several blocks, then reuse after reset. */
static void test_arena_many_blocks(void **state) {
    (void)state;
    stem_arena *a;
    assert_int_equal(stem_arena_create(cpu(), 1024, &a), STEM_OK);
    void *first[50];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 50; i++) {
            stem_tensor t;
            assert_int_equal(stem_arena_tensor(a, STEM_U8, 1, (int64_t[]){200 + i}, &t), STEM_OK);
            memset(t.data, i, (size_t)(200 + i));
            if (round == 0) first[i] = t.data;
            else assert_ptr_equal(t.data, first[i]);
        }
        stem_arena_reset(a, 0);
    }
    assert_true(stem_arena_peak(a) >= 50 * 256);
    stem_arena_destroy(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_and_zeros),
        cmocka_unit_test(test_new_errors),
        cmocka_unit_test(test_wrap_is_not_owned),
        cmocka_unit_test(test_reshape),
        cmocka_unit_test(test_narrow0),
        cmocka_unit_test(test_tensor_to),
        cmocka_unit_test(test_map_put_get),
        cmocka_unit_test(test_map_many),
        cmocka_unit_test(test_map_meta),
        cmocka_unit_test(test_arena),
        cmocka_unit_test(test_arena_many_blocks),
    };
    return cmocka_run_group_tests_name("tensor", tests, NULL, NULL);
}
