/* Philox4x32-10 and the normal transform of doc/algorithm.md §6 (src/core/philox.h):
 * Random123's known-answer vectors, the uniform map's endpoints, normal numbers
 * against the independent numpy reference (refdata/gen/philox_ref.py), from the
 * scalar stem_philox_normal_at and from the blocked CPU kernel behind the
 * philox_normal op (kernels/cpu/philox.c), the uniform's +0.5 where it shows, and a
 * statistical sanity check. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "core/philox.h"
#include "stem.h"

/* Random123 tests/kat_vectors, lines 27-29 (github.com/DEShawResearch/random123,
 * commit 9545ff6413f258be2f04c1d319d99aaef7521150), the "philox4x32 10" entries:
 * counter[4], key[2] -> output[4]. */
static const struct {
    uint32_t ctr[4], key[2], want[4];
} kat[] = {
    {{0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u}, {0x00000000u, 0x00000000u},
     {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
    {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu},
     {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
    {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u},
     {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
};

static void test_random123_kat(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        stem_philox4 ctr = {{kat[i].ctr[0], kat[i].ctr[1], kat[i].ctr[2], kat[i].ctr[3]}};
        stem_philox4 r = stem_philox4x32_10(ctr, kat[i].key[0], kat[i].key[1]);
        for (int w = 0; w < 4; w++) {
            if (r.v[w] != kat[i].want[w])
                print_error("KAT %zu word %d: got %08x want %08x\n", i, w, r.v[w], kat[i].want[w]);
            assert_int_equal(r.v[w], kat[i].want[w]);
        }
    }
}

/* A counter-based generator has no state: the same (counter, key) gives the same
 * block, and neighbouring counters differ. */
static void test_counter_is_pure(void **state) {
    (void)state;
    stem_philox4 c0 = {{5, 7, 3, 0x1005002u}}, c1 = {{6, 7, 3, 0x1005002u}};
    stem_philox4 a = stem_philox4x32_10(c0, 1, 0), b = stem_philox4x32_10(c0, 1, 0);
    stem_philox4 c = stem_philox4x32_10(c1, 1, 0);
    for (int w = 0; w < 4; w++) assert_int_equal(a.v[w], b.v[w]);
    assert_true(a.v[0] != c.v[0] || a.v[1] != c.v[1] || a.v[2] != c.v[2] || a.v[3] != c.v[3]);
    /* refdata/gen/philox_ref.py: counter (5, 7, 3, 0x1005002), key (1, 0) */
    const uint32_t want[4] = {0x19eaaa01u, 0xb770b88cu, 0x1fd981e4u, 0x53b22f3bu};
    for (int w = 0; w < 4; w++) assert_int_equal(a.v[w], want[w]);
}

static void test_uniform_endpoints(void **state) {
    (void)state;
    const double two_m32 = ldexp(1.0, -32);
    /* u = (word + 0.5) * 2^-32, exact in double for every 32-bit word */
    assert_true(stem_philox_uniform(0) == 0.5 * two_m32);
    assert_true(stem_philox_uniform(0) > 0.0);
    assert_true(stem_philox_uniform(0xffffffffu) == 1.0 - ldexp(1.0, -33));
    assert_true(stem_philox_uniform(0xffffffffu) < 1.0);
    assert_true(stem_philox_uniform(0x80000000u) == 0.5 + 0.5 * two_m32);
    /* the Box-Muller radius is finite at both ends: at most sqrt(66 ln 2) */
    double rmax = sqrt(-2.0 * log(stem_philox_uniform(0)));
    assert_true(isfinite(rmax));
    assert_true(fabs(rmax - sqrt(66.0 * log(2.0))) < 1e-12);
    assert_true(sqrt(-2.0 * log(stem_philox_uniform(0xffffffffu))) > 0.0);
}

/* Values printed by refdata/gen/philox_ref.py --print SEED W1 W2 W3 E... (numpy
 * implementation checked against the same Random123 KATs), as %.9g (round-trips float). */
static const struct {
    uint64_t seed;
    uint32_t w1, w2, w3;
    uint64_t e;
    float want;
} normal_ref[] = {
    {1, 0, 0, 0, 0, 0.380400747f},
    {1, 0, 0, 0, 1, -0.296277881f},
    {1, 0, 0, 0, 2, -0.249233425f},
    {1, 0, 0, 0, 3, -1.00383723f},
    {1, 0, 0, 0, 4, 0.62694788f},
    {1, 0, 0, 0, 5, -0.633983791f},
    {1, 0, 0, 0, 6, -0.678271592f},
    {1, 0, 0, 0, 7, -1.0130806f},
    {1, 0, 0, 0, 1023, 0.962498426f},
    /* seed > 2^32: key = (seed & 0xffffffff, seed >> 32); EM-style counter words */
    {8589946937ull, 7, 3, 0x1005002u, 0, 1.18663788f},
    {8589946937ull, 7, 3, 0x1005002u, 1, 1.51152253f},
    {8589946937ull, 7, 3, 0x1005002u, 2, 0.672104061f},
    {8589946937ull, 7, 3, 0x1005002u, 3, -0.0212817993f},
    {8589946937ull, 7, 3, 0x1005002u, 39, -0.36033386f},
    {8589946937ull, 7, 3, 0x1005002u, 40, 0.579192877f},
    {8589946937ull, 7, 3, 0x1005002u, 1001, 0.59187603f},
    {8589946937ull, 7, 3, 0x1005002u, 10239, 1.0423224f},
    /* key (0, 1): the halves of the seed are not swapped */
    {4294967296ull, 0, 0, 0, 0, 0.12814565f},
    {4294967296ull, 0, 0, 0, 1, -0.017424956f},
    {4294967296ull, 0, 0, 0, 2, 1.02517724f},
    {4294967296ull, 0, 0, 0, 3, -1.46835387f},
    {9223372036854775807ull, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0, -1.70158029f},
    {9223372036854775807ull, 0xffffffffu, 0xffffffffu, 0xffffffffu, 1, -0.54143101f},
    {9223372036854775807ull, 0xffffffffu, 0xffffffffu, 0xffffffffu, 2, 0.660130501f},
    {9223372036854775807ull, 0xffffffffu, 0xffffffffu, 0xffffffffu, 3, -0.392674118f},
    {9223372036854775807ull, 0xffffffffu, 0xffffffffu, 0xffffffffu, 34, 0.0347845778f},
    {18446744073709551615ull, 0, 0, 0, 0, 1.09859574f},
    {18446744073709551615ull, 0, 0, 0, 1, 0.632302225f},
    {18446744073709551615ull, 0, 0, 0, 2, 0.645859957f},
    {18446744073709551615ull, 0, 0, 0, 3, 0.729511082f},
};

static void test_normal_matches_numpy_reference(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof normal_ref / sizeof normal_ref[0]; i++) {
        float got = stem_philox_normal_at(normal_ref[i].seed, normal_ref[i].w1, normal_ref[i].w2,
                                          normal_ref[i].w3, normal_ref[i].e);
        float want = normal_ref[i].want;
        /* double transcendental functions of different libms may differ by an ulp,
         * which flips at most one float ulp after rounding (same tolerance as the
         * philox_normal golden files) */
        double tol = 1e-6 * (1.0 + fabs(want));
        if (fabs((double)got - want) > tol)
            print_error("seed %llu w (%u,%u,%u) e %llu: got %.9g want %.9g\n",
                        (unsigned long long)normal_ref[i].seed, normal_ref[i].w1, normal_ref[i].w2,
                        normal_ref[i].w3, (unsigned long long)normal_ref[i].e, got, want);
        assert_true(fabs((double)got - want) <= tol);
    }
}

/* The blocked CPU kernel (stem_philox_normal -> kernels/cpu/philox.c), which builds
 * the counter blocks itself, against the same numpy values: a kernel that puts the
 * counter words in another order, or numbers the blocks differently, fails here. The
 * streams are 16384 elements longer than the last value checked, so that the kernel's
 * multi-threaded path runs (>= 4096 blocks) and a partial last block is left over;
 * every element must also equal stem_philox_normal_at bit for bit (kernels/cpu/philox.c
 * promises it: the same double-precision Box-Muller). */
static void test_blocked_kernel_matches_numpy_reference(void **state) {
    (void)state;
    const size_t rows = sizeof normal_ref / sizeof normal_ref[0];
    for (size_t first = 0; first < rows;) {
        size_t last = first; /* rows of one stream are consecutive in the table */
        uint64_t max_e = 0;
        while (last < rows && normal_ref[last].seed == normal_ref[first].seed && normal_ref[last].w1 == normal_ref[first].w1 &&
               normal_ref[last].w2 == normal_ref[first].w2 && normal_ref[last].w3 == normal_ref[first].w3) {
            if (normal_ref[last].e > max_e) max_e = normal_ref[last].e;
            last++;
        }
        const uint64_t seed = normal_ref[first].seed;
        const uint32_t w1 = normal_ref[first].w1, w2 = normal_ref[first].w2, w3 = normal_ref[first].w3;
        const int64_t n = (int64_t)max_e + 1 + 16384 + 3;
        stem_tensor y;
        assert_int_equal(stem_tensor_new(stem_cpu_backend(), STEM_F32, 1, (int64_t[]){n}, &y), STEM_OK);
        assert_int_equal(stem_philox_normal(seed, w1, w2, w3, &y), STEM_OK);
        const float *v = y.data;
        for (size_t i = first; i < last; i++) {
            float want = normal_ref[i].want, got = v[normal_ref[i].e];
            if (!(fabs((double)got - want) <= 1e-6 * (1.0 + fabs(want))))
                fail_msg("kernel: seed %llu w (%u,%u,%u) e %llu: got %.9g want %.9g", (unsigned long long)seed, w1, w2,
                         w3, (unsigned long long)normal_ref[i].e, got, want);
        }
        int64_t differ = 0;
        for (int64_t e = 0; e < n; e++) differ += v[e] != stem_philox_normal_at(seed, w1, w2, w3, (uint64_t)e);
        if (differ) print_error("seed %llu: %lld of %lld kernel values differ from stem_philox_normal_at\n",
                                (unsigned long long)seed, (long long)differ, (long long)n);
        assert_int_equal(differ, 0);
        stem_tensor_free(&y);
        first = last;
    }
}

/* u = (word + 0.5) * 2^-32: the +0.5 moves u by 2^-33, which only shows in a normal
 * when the radius word is small. These two streams (found by searching w1 with
 * philox_ref.py) have radius words 47 (block 0, pair 2) and 158 (pair 0): there the
 * +0.5 changes the radius by 2.9e-4 and 9.2e-5 relative, far beyond the 1e-6 that
 * libms may differ by. Values from philox_ref.py --print 7 W1 0 0x1005002 0 1 2 3;
 * through the scalar normal and the blocked kernel. */
static void test_uniform_half_offset_shows_in_small_words(void **state) {
    (void)state;
    static const struct {
        uint32_t w1, word;
        int pair;
        float want[4];
    } cases[] = {
        {2036873u, 47u, 2, {-2.60800529f, -0.542104304f, -1.25018311f, -5.92258406f}},
        {3665610u, 158u, 0, {-3.8932848f, -4.36717796f, -1.14057851f, -0.384182632f}},
    };
    const uint32_t w3 = 0x1005002u;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        stem_philox4 r = stem_philox4x32_10((stem_philox4){{0, cases[c].w1, 0, w3}}, 7, 0);
        assert_int_equal(r.v[cases[c].pair], cases[c].word);
        stem_tensor y;
        assert_int_equal(stem_tensor_new(stem_cpu_backend(), STEM_F32, 1, (int64_t[]){4}, &y), STEM_OK);
        assert_int_equal(stem_philox_normal(7, cases[c].w1, 0, w3, &y), STEM_OK);
        for (int e = 0; e < 4; e++) {
            double want = cases[c].want[e], tol = 1e-6 * (1.0 + fabs(want));
            float scalar = stem_philox_normal_at(7, cases[c].w1, 0, w3, (uint64_t)e);
            float blocked = ((const float *)y.data)[e];
            print_message("w1 %u e %d: scalar %.9g blocked %.9g numpy %.9g\n", cases[c].w1, e, scalar, blocked, want);
            assert_true(fabs(scalar - want) <= tol);
            assert_true(fabs(blocked - want) <= tol);
        }
        /* the radius of the small-word pair is sqrt(-2 ln((word + 0.5) 2^-32)), not of word 2^-32 */
        int p = cases[c].pair;
        double r2 = (double)cases[c].want[p] * cases[c].want[p] + (double)cases[c].want[p + 1] * cases[c].want[p + 1];
        double with_half = -2.0 * log((cases[c].word + 0.5) * ldexp(1.0, -32));
        double without = -2.0 * log(cases[c].word * ldexp(1.0, -32));
        assert_true(fabs(r2 - with_half) <= 4e-6 * with_half);
        assert_true(fabs(r2 - without) > 5e-5 * without);
        stem_tensor_free(&y);
    }
}

/* Element e uses word e % 4 of block e / 4: cos for even e, sin for odd e of the
 * pair, so n_a^2 + n_b^2 = -2 ln(u_a) for each pair. */
static void test_pair_structure(void **state) {
    (void)state;
    for (uint64_t blk = 0; blk < 64; blk++) {
        stem_philox4 ctr = {{(uint32_t)blk, 3, 1, 2}};
        stem_philox4 r = stem_philox4x32_10(ctr, 99, 0);
        for (int pair = 0; pair < 4; pair += 2) {
            double na = stem_philox_normal_at(99, 3, 1, 2, 4 * blk + (uint64_t)pair);
            double nb = stem_philox_normal_at(99, 3, 1, 2, 4 * blk + (uint64_t)pair + 1);
            double r2 = -2.0 * log(stem_philox_uniform(r.v[pair]));
            assert_true(fabs(na * na + nb * nb - r2) <= 1e-5 * (1.0 + r2));
            double ang = atan2(nb, na);
            if (ang < 0) ang += 6.283185307179586;
            double want = 6.283185307179586 * stem_philox_uniform(r.v[pair + 1]);
            double d = fabs(ang - want);
            if (d > 3.141592653589793) d = 6.283185307179586 - d;
            assert_true(d < 1e-5 || r2 < 1e-8);
        }
    }
}

static void test_statistics(void **state) {
    (void)state;
    const int n = 100000;
    double sum = 0, sum2 = 0, sum4 = 0, maxabs = 0, cross = 0;
    int beyond = 0;
    for (int e = 0; e < n; e++) {
        double x = stem_philox_normal_at(12345, 1, 2, (1u << 24) | (7u << 12), (uint64_t)e);
        double y = stem_philox_normal_at(12345, 2, 2, (1u << 24) | (7u << 12), (uint64_t)e);
        sum += x;
        sum2 += x * x;
        sum4 += x * x * x * x;
        cross += x * y;
        if (fabs(x) > maxabs) maxabs = fabs(x);
        if (fabs(x) > 1.959963984540054) beyond++;
    }
    double mean = sum / n, var = sum2 / n - mean * mean, kurt = sum4 / n;
    double frac = (double)beyond / n, corr = cross / n;
    /* 5-sigma bounds: sd(mean) = 1/sqrt(n), sd(var) ~ sqrt(2/n), sd(E x^4) = sqrt(96/n),
     * sd(fraction beyond 1.96) = sqrt(0.05*0.95/n), sd(E xy) = 1/sqrt(n) */
    print_message("mean %.5f var %.5f E[x^4] %.4f P(|x|>1.96) %.5f E[xy] %.5f max|x| %.3f\n", mean, var, kurt,
                  frac, corr, maxabs);
    assert_true(fabs(mean) < 5.0 / sqrt(n));
    assert_true(fabs(var - 1.0) < 5.0 * sqrt(2.0 / n));
    assert_true(fabs(kurt - 3.0) < 5.0 * sqrt(96.0 / n));
    assert_true(fabs(frac - 0.05) < 5.0 * sqrt(0.05 * 0.95 / n));
    assert_true(fabs(corr) < 5.0 / sqrt(n)); /* streams with different w1 are uncorrelated */
    assert_true(maxabs < 6.8);               /* sqrt(66 ln 2) = 6.76 bounds every draw */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random123_kat),
        cmocka_unit_test(test_counter_is_pure),
        cmocka_unit_test(test_uniform_endpoints),
        cmocka_unit_test(test_normal_matches_numpy_reference),
        cmocka_unit_test(test_blocked_kernel_matches_numpy_reference),
        cmocka_unit_test(test_uniform_half_offset_shows_in_small_words),
        cmocka_unit_test(test_pair_structure),
        cmocka_unit_test(test_statistics),
    };
    return cmocka_run_group_tests_name("philox", tests, NULL, NULL);
}
