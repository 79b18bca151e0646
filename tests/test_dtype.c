/* Scalar dtype conversions against known bit patterns (IEEE 754 binary16, bfloat16),
 * round-to-nearest-even ties, and exhaustive round trips over all 16-bit patterns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/cpu_info.h"
#include "core/dtype.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

#define assert_f16(f, expect)                                                                        \
    do {                                                                                             \
        uint16_t got_ = stem_f32_to_f16(f);                                                          \
        if (got_ != (uint16_t)(expect))                                                              \
            fail_msg("f32_to_f16(%a) = 0x%04x, expected 0x%04x", (double)(f), got_, (unsigned)(expect)); \
    } while (0)

#define assert_bf16(f, expect)                                                                        \
    do {                                                                                              \
        uint16_t got_ = stem_f32_to_bf16(f);                                                          \
        if (got_ != (uint16_t)(expect))                                                               \
            fail_msg("f32_to_bf16(%a) = 0x%04x, expected 0x%04x", (double)(f), got_, (unsigned)(expect)); \
    } while (0)

static void test_dtype_table(void **state) {
    (void)state;
    assert_int_equal(stem_dtype_size(STEM_F32), 4);
    assert_int_equal(stem_dtype_size(STEM_F16), 2);
    assert_int_equal(stem_dtype_size(STEM_BF16), 2);
    assert_int_equal(stem_dtype_size(STEM_I32), 4);
    assert_int_equal(stem_dtype_size(STEM_I64), 8);
    assert_int_equal(stem_dtype_size(STEM_U8), 1);
    assert_int_equal(stem_dtype_size(STEM_DTYPE_COUNT), 0);
    for (int i = 0; i < STEM_DTYPE_COUNT; i++) assert_int_equal(stem_dtype_parse(stem_dtype_name((stem_dtype)i)), i);
    assert_string_equal(stem_dtype_name(STEM_BF16), "BF16");
    assert_int_equal(stem_dtype_parse("f32"), STEM_F32);
    assert_int_equal(stem_dtype_parse("f16"), STEM_F16);
    assert_int_equal(stem_dtype_parse("bf16"), STEM_BF16);
    assert_int_equal(stem_dtype_parse("F64"), -1);
    assert_int_equal(stem_dtype_parse(""), -1);
}

static void test_f16_known_patterns(void **state) {
    (void)state;
    assert_f16(0.0f, 0x0000);
    assert_f16(-0.0f, 0x8000);
    assert_f16(1.0f, 0x3C00);
    assert_f16(-2.0f, 0xC000);
    assert_f16(0.5f, 0x3800);
    assert_f16(65504.0f, 0x7BFF);          /* largest finite half */
    assert_f16(ldexpf(1.0f, -14), 0x0400); /* smallest normal */
    assert_f16(ldexpf(1.0f, -24), 0x0001); /* smallest subnormal */
    assert_f16(ldexpf(1023.0f, -24), 0x03FF); /* largest subnormal */
    assert_f16(0.1f, 0x2E66);
    assert_f16(3.14159265f, 0x4248);

    assert_true(stem_f16_to_f32(0x3C00) == 1.0f);
    assert_true(stem_f16_to_f32(0x7BFF) == 65504.0f);
    assert_true(stem_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    assert_true(stem_f16_to_f32(0x03FF) == ldexpf(1023.0f, -24));
    assert_true(stem_f16_to_f32(0x0400) == ldexpf(1.0f, -14));
    assert_true(stem_f16_to_f32(0xC000) == -2.0f);
    float nz = stem_f16_to_f32(0x8000);
    assert_true(nz == 0.0f && signbit(nz));
}

static void test_f16_round_nearest_even(void **state) {
    (void)state;
    /* halfway between 1.0 (0x3C00, even) and 1 + 2^-10 (0x3C01): to even */
    assert_f16(1.0f + ldexpf(1.0f, -11), 0x3C00);
    /* halfway between 0x3C01 (odd) and 0x3C02 (even): up */
    assert_f16(1.0f + 3.0f * ldexpf(1.0f, -11), 0x3C02);
    /* just above / below the tie */
    assert_f16(1.0f + ldexpf(1.0f, -11) + ldexpf(1.0f, -20), 0x3C01);
    assert_f16(1.0f + ldexpf(1.0f, -11) - ldexpf(1.0f, -20), 0x3C00);
    /* subnormal ties: 2^-25 is halfway between 0 and 2^-24: to even (0) */
    assert_f16(ldexpf(1.0f, -25), 0x0000);
    assert_f16(-ldexpf(1.0f, -25), 0x8000);
    assert_f16(ldexpf(3.0f, -25), 0x0002); /* 1.5 units: to 2 */
    assert_f16(ldexpf(5.0f, -25), 0x0002); /* 2.5 units: to 2 */
    assert_f16(ldexpf(1.0f, -25) * 1.0001f, 0x0001);
    assert_f16(ldexpf(1.0f, -26), 0x0000);
    /* rounding from the subnormal range up into the smallest normal */
    assert_f16(ldexpf(2047.0f, -25), 0x0400);
    /* 65519 rounds down to 65504, the tie 65520 rounds to even = inf */
    assert_f16(65519.0f, 0x7BFF);
    assert_f16(65520.0f, 0x7C00);
}

static void test_f16_specials(void **state) {
    (void)state;
    assert_f16(INFINITY, 0x7C00);
    assert_f16(-INFINITY, 0xFC00);
    assert_f16(1e6f, 0x7C00); /* overflow */
    assert_f16(-1e6f, 0xFC00);
    assert_f16(3.4e38f, 0x7C00);
    uint16_t n = stem_f32_to_f16(NAN);
    assert_int_equal(n & 0x7C00, 0x7C00);
    assert_int_not_equal(n & 0x03FF, 0);
    /* a NaN whose payload lives only in the low f32 mantissa bits stays a NaN */
    n = stem_f32_to_f16(bits_f32(0x7F800001u));
    assert_int_equal(n & 0x7C00, 0x7C00);
    assert_int_not_equal(n & 0x03FF, 0);
    assert_true(isinf(stem_f16_to_f32(0x7C00)) && stem_f16_to_f32(0x7C00) > 0);
    assert_true(isinf(stem_f16_to_f32(0xFC00)) && stem_f16_to_f32(0xFC00) < 0);
    assert_true(isnan(stem_f16_to_f32(0x7E00)));
    assert_true(isnan(stem_f16_to_f32(0x7C01)));
    assert_true(isnan(stem_f16_to_f32(0xFFFF)));
}

static bool f16_is_nan(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x03FF) != 0; }

static void test_f16_exhaustive_round_trip(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = stem_f16_to_f32((uint16_t)h);
        uint16_t back = stem_f32_to_f16(f);
        if (f16_is_nan((uint16_t)h)) {
            if (!isnan(f)) fail_msg("0x%04x: expected NaN, got %a", h, (double)f);
            if (!f16_is_nan(back)) fail_msg("0x%04x: NaN came back as 0x%04x", h, back);
            if ((back & 0x8000) != (h & 0x8000)) fail_msg("0x%04x: NaN lost its sign", h);
            continue;
        }
        if (back != h) fail_msg("0x%04x -> %a -> 0x%04x", h, (double)f, back);
    }
}

#ifdef HAVE_X86
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f) {
    return (uint16_t)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT), 0);
}
__attribute__((target("f16c"))) static float hw_f16_to_f32(uint16_t h) {
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}
#endif

/* The F16C instructions are an independent IEEE reference: compare over a sweep of
 * f32 bit patterns (every 251st, plus a dense window around each half-ulp boundary). */
static void test_f16_matches_hardware(void **state) {
    (void)state;
#ifdef HAVE_X86
    if (!stem_cpu_features_get()->f16c) { /* cpu_info: clang 14 knows no "f16c" builtin */
        skip();
        return;
    }
    for (uint32_t h = 0; h < 65536; h++) {
        float a = stem_f16_to_f32((uint16_t)h), b = hw_f16_to_f32((uint16_t)h);
        if (f32_bits(a) != f32_bits(b) && !(isnan(a) && isnan(b)))
            fail_msg("f16_to_f32(0x%04x): %a vs hardware %a", h, (double)a, (double)b);
    }
    uint64_t checked = 0;
    for (uint64_t u = 0; u <= 0xFFFFFFFFull; u += 251) {
        float f = bits_f32((uint32_t)u);
        if (isnan(f)) continue;
        uint16_t a = stem_f32_to_f16(f), b = hw_f32_to_f16(f);
        if (a != b) fail_msg("f32_to_f16(%a = 0x%08x): 0x%04x vs hardware 0x%04x", (double)f, (uint32_t)u, a, b);
        checked++;
    }
    /* ties: the f32 exactly between two halves (and its neighbours) for every half */
    for (uint32_t h = 0; h < 0x7BFF; h++) { /* 0x7BFF..inf: see the known patterns */
        float lo = hw_f16_to_f32((uint16_t)h), hi = hw_f16_to_f32((uint16_t)(h + 1));
        float mid = lo + (hi - lo) * 0.5f;
        for (int d = -1; d <= 1; d++) {
            float f = bits_f32(f32_bits(mid) + (uint32_t)d);
            for (int s = 0; s < 2; s++, f = -f) {
                uint16_t a = stem_f32_to_f16(f), b = hw_f32_to_f16(f);
                if (a != b) fail_msg("f32_to_f16(%a): 0x%04x vs hardware 0x%04x", (double)f, a, b);
                checked++;
            }
        }
    }
    assert_true(checked > 17000000);
#else
    skip();
#endif
}

static void test_bf16(void **state) {
    (void)state;
    assert_bf16(1.0f, 0x3F80);
    assert_bf16(-2.0f, 0xC000);
    assert_bf16(0.0f, 0x0000);
    assert_bf16(-0.0f, 0x8000);
    assert_bf16(INFINITY, 0x7F80);
    assert_bf16(-INFINITY, 0xFF80);
    assert_bf16(3.14159265f, 0x4049);
    /* ties: 1 + 2^-8 is halfway between 0x3F80 (even) and 0x3F81 */
    assert_bf16(1.0f + ldexpf(1.0f, -8), 0x3F80);
    assert_bf16(1.0f + 3.0f * ldexpf(1.0f, -8), 0x3F82);
    assert_bf16(1.0f + ldexpf(1.0f, -8) + ldexpf(1.0f, -20), 0x3F81);
    assert_bf16(FLT_MAX, 0x7F80); /* rounds past the largest finite bf16: inf */
    assert_bf16(bits_f32(0x00000001u), 0x0000); /* smallest f32 subnormal rounds to 0 */
    assert_bf16(bits_f32(0x00008000u), 0x0000); /* tie to even (0) */
    assert_bf16(bits_f32(0x00018000u), 0x0002); /* tie to even (2) */
    uint16_t n = stem_f32_to_bf16(NAN);
    assert_int_equal(n & 0x7F80, 0x7F80);
    assert_int_not_equal(n & 0x007F, 0);
    /* NaN with payload only in the low 16 bits must not turn into inf */
    n = stem_f32_to_bf16(bits_f32(0x7F800001u));
    assert_int_equal(n & 0x7F80, 0x7F80);
    assert_int_not_equal(n & 0x007F, 0);
    assert_true(stem_bf16_to_f32(0x3F80) == 1.0f);
    assert_true(isnan(stem_bf16_to_f32(0x7FC0)));
    assert_true(isinf(stem_bf16_to_f32(0xFF80)));
}

static void test_bf16_exhaustive_round_trip(void **state) {
    (void)state;
    for (uint32_t b = 0; b < 65536; b++) {
        float f = stem_bf16_to_f32((uint16_t)b);
        assert_int_equal(f32_bits(f), b << 16);
        uint16_t back = stem_f32_to_bf16(f);
        if (isnan(f)) {
            if (!isnan(stem_bf16_to_f32(back))) fail_msg("bf16 0x%04x: NaN came back as 0x%04x", b, back);
            continue;
        }
        if (back != b) fail_msg("bf16 0x%04x -> %a -> 0x%04x", b, (double)f, back);
    }
}

static void test_convert_arrays(void **state) {
    (void)state;
    enum { N = 1000 };
    static float src[N], back[N];
    static uint16_t h[N], b[N], h2[N];
    for (int i = 0; i < N; i++) src[i] = (float)(i - 500) * 0.37f + (i % 7 == 0 ? 1e-6f : 0.0f);
    stem_convert(h, STEM_F16, src, STEM_F32, N);
    stem_convert(b, STEM_BF16, src, STEM_F32, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(h[i], stem_f32_to_f16(src[i]));
        assert_int_equal(b[i], stem_f32_to_bf16(src[i]));
    }
    stem_convert(back, STEM_F32, h, STEM_F16, N);
    for (int i = 0; i < N; i++) assert_true(back[i] == stem_f16_to_f32(h[i]));
    stem_convert(h2, STEM_F16, b, STEM_BF16, N); /* bf16 -> f16 through f32 */
    for (int i = 0; i < N; i++) assert_int_equal(h2[i], stem_f32_to_f16(stem_bf16_to_f32(b[i])));
    float same[N];
    stem_convert(same, STEM_F32, src, STEM_F32, N);
    assert_memory_equal(same, src, sizeof src);
    stem_convert(NULL, STEM_F16, NULL, STEM_F32, 0); /* n = 0 touches nothing */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_table),
        cmocka_unit_test(test_f16_known_patterns),
        cmocka_unit_test(test_f16_round_nearest_even),
        cmocka_unit_test(test_f16_specials),
        cmocka_unit_test(test_f16_exhaustive_round_trip),
        cmocka_unit_test(test_f16_matches_hardware),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_bf16_exhaustive_round_trip),
        cmocka_unit_test(test_convert_arrays),
    };
    return cmocka_run_group_tests_name("dtype", tests, NULL, NULL);
}
