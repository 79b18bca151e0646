#!/usr/bin/env bash
# On a GPU machine (the device tool), with .gpu/bundle.tar.xz from scripts/gpu/bundle.sh:
# every CUDA test (parity with the CPU reference, f32 and f16) and the CUDA benchmarks,
# in one call that stays well inside 10 minutes. Logs go to $OUT (or ./gpu-logs).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-gpu-logs}
mkdir -p "$out" /tmp/stem-gpu
tar -C /tmp/stem-gpu -xJf .gpu/bundle.tar.xz
root=/tmp/stem-gpu/stage
export LD_LIBRARY_PATH="$root/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export STEM_REFDATA="$PWD/refdata" STEM_BIN="$root/bin/stem" OMP_NUM_THREADS=${OMP_NUM_THREADS:-16}
nvidia-smi -L | tee "$out/gpu.txt"
"$root/bin/stem" system | tee -a "$out/gpu.txt"
status=0
run() { # name, command...: log to $out/name.log, note pass/fail
    local name=$1; shift
    local t0=$SECONDS
    if timeout 240 "$@" >"$out/$name.log" 2>&1; then echo "ok   $name ($((SECONDS - t0)) s)"; else echo "FAIL $name ($((SECONDS - t0)) s)"; status=1; fi
}
for t in test_cuda_parity test_em test_unet test_clip_text test_vae test_invert; do
    [ -x "$root/tests/$t" ] && run "$t" "$root/tests/$t"
done
run bench_ops_f32 "$root/bench/ops" --backend cuda --dtype f32 --quick
run bench_ops_f16 "$root/bench/ops" --backend cuda --dtype f16 --quick
run invert_tiny_cuda "$root/bin/stem" invert --backend cuda --steps 10 --out /tmp/stem-gpu/inv --force --quiet
grep -E "^\[  (PASSED|FAILED)  \] [0-9]+ test|SKIPPED TEST" "$out"/test_*.log | tee "$out/summary.txt"
exit $status
