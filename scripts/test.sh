#!/usr/bin/env bash
# The whole test suite: build with warnings as errors and run `make check`, then the
# same suite built with AddressSanitizer + UBSan (CPU backend; CUDA needs no ASan here).
set -euo pipefail
cd "$(dirname "$0")/.."
autoreconf -fi
jobs=$(nproc)

echo "== build and test (build/) =="
mkdir -p build
(cd build && ../configure --enable-werror >/dev/null && make -j"$jobs" && make -j"$jobs" check) ||
    { cat build/test-suite.log 2>/dev/null; exit 1; }

echo "== AddressSanitizer + UBSan (build-asan/) =="
mkdir -p build-asan
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ../configure --enable-werror --enable-sanitizers --without-cuda >/dev/null &&
    make -j"$jobs" && make -j"$jobs" check) ||
    { cat build-asan/test-suite.log 2>/dev/null; exit 1; }

count() { grep -h "^# $1:" build/test-suite.log build-asan/test-suite.log | awk '{s += $3} END {print s + 0}'; }
echo "tests: $(count PASS) passed, $(( $(count FAIL) + $(count ERROR) )) failed, $(count SKIP) skipped"
