#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#   1. build/ (gcc, warnings as errors, CUDA when found): `make check`;
#   2. the numerics matrix: the numerics-sensitive programs of build/ again under each
#      kernel path the CPU can run (STEM_ISA=portable / avx2, one thread, and each
#      OpenBLAS core among Haswell, SkylakeX and the generic Prescott that this CPU
#      supports), so that no tolerance rests on one CPU's rounding;
#   3. build-clang/ (clang, warnings as errors, CPU backend): `make check`;
#   4. build-asan/ (gcc, AddressSanitizer + UBSan, CPU backend): `make check`;
#   5. the libFuzzer harnesses of tests/fuzz, a few seconds each (scripts/fuzz-ci.sh);
#   6. valgrind memcheck over the CLI and the parser tests (scripts/valgrind-ci.sh).
# STEM_TEST_QUICK=1 runs step 1 only (for iterating; CI never sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
autoreconf -fi
jobs=$(nproc)
logs=()

# check DIR CONFIGURE_ARGS...: configure (quietly) and build DIR, run `make check`.
check() {
    local dir=$1; shift
    mkdir -p "$dir"
    (cd "$dir" && ../configure "$@" >/dev/null && make -j"$jobs" && make -j"$jobs" check) ||
        { cat "$dir/test-suite.log" 2>/dev/null; exit 1; }
    logs+=("$dir/test-suite.log")
}

echo "== build and test (build/) =="
check build --enable-werror
echo "== install as a library (make install, pkg-config) =="
bash scripts/check-install.sh

if [ "${STEM_TEST_QUICK:-0}" != 1 ]; then
    # The programs whose results are floating-point numbers of stem's own making.
    numeric="tests/test_ops_golden tests/test_clip_text tests/test_vae tests/test_sd_model tests/test_em
             tests/test_ddim tests/test_unet tests/test_unet_hooks tests/test_unet_attention_hooks tests/test_invert
             tests/test_metrics tests/test_philox
             tests/test_resize tests/test_dtype"
    numeric=$(echo $numeric)
    has_flags() { for f in "$@"; do grep -qw "$f" /proc/cpuinfo || return 1; done; }
    cells=("portable STEM_ISA=portable" "avx2 STEM_ISA=avx2" "threads1 OMP_NUM_THREADS=1")
    # OpenBLAS runs a core's kernels whether or not the CPU has their instructions.
    if has_flags avx2 fma; then cells+=("openblas-Haswell OPENBLAS_CORETYPE=Haswell")
    else echo "matrix: skipping OpenBLAS Haswell (this CPU has no AVX2/FMA)"; fi
    if has_flags avx512f avx512bw avx512vl avx512dq avx512cd; then cells+=("openblas-SkylakeX OPENBLAS_CORETYPE=SkylakeX")
    else echo "matrix: skipping OpenBLAS SkylakeX (this CPU has no AVX-512)"; fi
    cells+=("openblas-Prescott OPENBLAS_CORETYPE=Prescott")
    has_flags avx2 || echo "matrix: skipping STEM_ISA=avx2 on this CPU (no AVX2: same as portable)"
    for cell in "${cells[@]}"; do
        read -r name setting <<<"$cell"
        [ "$name" = avx2 ] && ! has_flags avx2 && continue
        echo "== numerics matrix: $setting =="
        log="matrix-$name.log"
        (cd build && env "$setting" make -j"$jobs" check TESTS="$numeric" TEST_SUITE_LOG="$log") ||
            { cat "build/$log" 2>/dev/null; exit 1; }
        logs+=("build/$log")
    done

    echo "== clang (build-clang/) =="
    check build-clang CC=clang --enable-werror --without-cuda

    echo "== AddressSanitizer + UBSan (build-asan/) =="
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    check build-asan --enable-werror --enable-sanitizers --without-cuda
    unset ASAN_OPTIONS UBSAN_OPTIONS

    echo "== fuzzing: every libFuzzer harness, ${STEM_FUZZ_SECONDS:=10} s each (build-fuzz/) =="
    STEM_FUZZ_SECONDS=$STEM_FUZZ_SECONDS bash scripts/fuzz-ci.sh

    echo "== valgrind memcheck over the CLI and the parsers (build-valgrind/) =="
    bash scripts/valgrind-ci.sh
fi

count() { grep -h "^# $1:" "${logs[@]}" | awk '{s += $3} END {print s + 0}'; }
echo "tests: $(count PASS) passed, $(( $(count FAIL) + $(count ERROR) )) failed, $(count SKIP) skipped"
