#!/usr/bin/env bash
# Runs the libFuzzer harnesses (tests/fuzz) for a fixed time each, niced, from seed corpora
# built out of refdata, and prints executions and coverage per harness.
#
#   scripts/fuzz.sh [-t SECONDS_EACH] [-j JOBS_EACH] [HARNESS ...]     (default: 300 s, 1 job, all)
#
# Builds build-fuzz/ (CC=clang ./configure --enable-fuzzing: ASan + UBSan + libFuzzer coverage)
# when needed. The corpus of each harness grows in build-fuzz/fuzz/corpus/<harness>/ and is
# kept between runs; a crash, leak or timeout leaves a file in build-fuzz/fuzz/artifacts/<harness>/
# and makes the script exit 1 (files from earlier runs are kept and not counted again). Reproduce one with: build-fuzz/tests/fuzz/fuzz_<harness> FILE
set -uo pipefail
cd "$(dirname "$0")/.."
secs=300 jobs=1
while getopts "t:j:" o; do
    case $o in t) secs=$OPTARG ;; j) jobs=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
all=(safetensors unet_config vae_config text_encoder_config scheduler_config model_index yaml
     tokenizer_files tokenizer_text png jpeg video resume)
harnesses=("${@:-${all[@]}}")

if [ ! -f build-fuzz/Makefile ]; then
    [ -x configure ] || autoreconf -fi >/dev/null
    mkdir -p build-fuzz
    (cd build-fuzz && CC=clang ../configure --enable-fuzzing --without-cuda >/dev/null) || {
        echo "fuzz.sh: configure --enable-fuzzing failed (needs clang and libclang-rt-14-dev: scripts/install-deps.sh)" >&2
        exit 1
    }
fi
targets=()
for h in "${harnesses[@]}"; do targets+=("tests/fuzz/fuzz_$h"); done
nice -n 10 make -C build-fuzz -j2 stem "${targets[@]}" >build-fuzz/fuzz-build.log 2>&1 || {
    tail -n 30 build-fuzz/fuzz-build.log; exit 1; }

work=build-fuzz/fuzz
mkdir -p "$work"
seeds=$work/seeds
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export STEM_REFDATA=$PWD/refdata OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# the harnesses write every input to a file: on tmpfs that is ~10x faster than on disk
[ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] && export TMPDIR=/dev/shm
rm -rf "$seeds"
ASAN_OPTIONS=detect_leaks=0 sh tests/fuzz/make_seeds.sh build-fuzz/stem refdata "$seeds"

status=0
printf '%-20s %12s %10s %8s %8s %8s  %s\n' harness execs exec/s cov ft corpus result
for h in "${harnesses[@]}"; do
    corpus=$work/corpus/$h art=$work/artifacts/$h log=$work/$h.log
    mkdir -p "$corpus" "$art"
    touch "$work/$h.start" # findings are the artifacts newer than this (older ones stay for reproducing)
    # -rss_limit_mb: a parser that allocates what a header claims would show up here
    max_len=65536
    [ "$h" = tokenizer_files ] && max_len=8192 # each input is a whole tokenizer folder: keep it quick to load
    par=()
    [ "$jobs" -gt 1 ] && par=(-jobs="$jobs" -workers="$jobs") # each job logs to fuzz-N.log in the current folder
    (cd "$work" && nice -n 10 "../tests/fuzz/fuzz_$h" "corpus/$h" "seeds/$h" -max_total_time="$secs" \
        -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 -max_len="$max_len" \
        -artifact_prefix="artifacts/$h/" "${par[@]}" >"$h.log" 2>&1)
    rc=$?
    if [ "$jobs" -gt 1 ]; then cat "$work"/fuzz-*.log >>"$log" 2>/dev/null; rm -f "$work"/fuzz-*.log; fi
    # one job: its last report (a crash prints the stats twice); several: their sum
    pick='{v[NR] = $2; s += $2} END {print (jobs > 1 ? s : v[NR]) + 0}'
    execs=$(grep -h 'stat::number_of_executed_units' "$log" | awk -v jobs="$jobs" "$pick")
    rate=$(grep -h 'stat::average_exec_per_sec' "$log" | awk -v jobs="$jobs" "$pick")
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 | awk '{print $2}')
    ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -n 1 | awk '{print $2}')
    files=$(ls "$corpus" | wc -l)
    found=$(find "$art" -type f -newer "$work/$h.start" | wc -l)
    result=ok
    if [ $rc -ne 0 ] || [ "$found" -gt 0 ]; then result="FINDING (rc $rc, $found artifacts in $art; log $log)"; status=1; fi
    printf '%-20s %12s %10s %8s %8s %8s  %s\n' "$h" "$execs" "$rate" "${cov:-?}" "${ft:-?}" "$files" "$result"
done
exit $status
