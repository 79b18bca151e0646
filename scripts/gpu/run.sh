#!/usr/bin/env bash
# On a GPU machine (the device tool), with .gpu/bundle.tar.xz from scripts/gpu/bundle.sh
# (and, for the PyTorch side of the benchmark, .whl/ from scripts/gpu/wheels.sh), in one
# call that ends well inside 10 minutes:
#   1. every CUDA test (parity of each op with the CPU reference in f32 and f16, EM, UNet,
#      CLIP, VAE, and the tiny inversion against the PyTorch golden);
#   2. `stem invert` on the bundled default on cpu, cuda f32 and cuda f16, compared
#      latents by latents (scripts/gpu/compare_invert.py);
#   3. bench/invert_torch.py: a 16-frame 512x512 inversion + reconstruction with the
#      full-size SD 1.5 configuration (random weights) in f16, stem vs the Python
#      reference pipeline on the same GPU;
#   3b. bench/unet_torch.py: the SD 1.5 UNet forward alone, batch 16 at 64x64, f16;
#   4. bench/ops on cuda in f32 and f16;
#   5. compute-sanitizer memcheck on a short tiny inversion, when the tool is there.
# The device tool brings back at most 8 files: logs go to one tarball ($OUT/logs.tgz),
# the summary to $OUT/summary.txt and the benchmark lines to $OUT/*.jsonl.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-gpu-logs}
logs=/tmp/stem-gpu/logs
mkdir -p "$out" "$logs"
tar -C /tmp/stem-gpu -xJf .gpu/bundle.tar.xz
root=/tmp/stem-gpu/stage
# the CUDA libraries: the toolkit's, else the ones PyTorch's wheels carry
cudalib=$(dirname "$(ls /usr/local/cuda/lib64/libcublas.so.13 /usr/local/cuda*/lib64/libcublas.so.13 \
    /opt/torch/.venv/lib/python3*/site-packages/nvidia/cu13/lib/libcublas.so.13 \
    /opt/torch/.venv/lib/python3*/site-packages/nvidia/cublas/lib/libcublas.so.13 2>/dev/null | head -1)" 2>/dev/null)
export LD_LIBRARY_PATH="$root/lib:${cudalib:-/usr/local/cuda/lib64}:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export STEM_REFDATA="$PWD/refdata" STEM_BIN="$root/bin/stem" OMP_NUM_THREADS=${OMP_NUM_THREADS:-16}
summary="$out/summary.txt"
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }
finish() {
    tar -C /tmp/stem-gpu -czf "$out/logs.tgz" logs 2>/dev/null
    note "done in ${SECONDS}s"
}
trap finish EXIT
{ nvidia-smi -L; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; } 2>&1 | tee -a "$summary"
ldd "$root/bin/stem" | grep -E "not found|cublas|cudart" | tee -a "$summary"
"$root/bin/stem" system 2>&1 | tee -a "$summary"
status=0
deadline=${STEM_GPU_DEADLINE:-530} # seconds: every step is cut to end before it
run() { # name seconds command...: log to $logs/name.log, note pass/fail
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS left=$((deadline - SECONDS))
    if [ "$left" -lt 15 ]; then note "skip $name (no time left)"; status=1; return; fi
    [ "$limit" -gt "$left" ] && limit=$left
    if timeout "$limit" "$@" >"$logs/$name.log" 2>&1; then note "ok   $name ($((SECONDS - t0)) s)"
    else note "FAIL $name (rc $?, $((SECONDS - t0)) s): $(tail -3 "$logs/$name.log" | tr '\n' ' ' | cut -c1-400)"; status=1; fi
}

# 1. tests (each prints cmocka's PASSED/FAILED/SKIPPED lines)
for t in test_cuda_parity test_em test_unet test_clip_text test_vae test_invert; do
    [ -x "$root/tests/$t" ] && run "$t" 120 "$root/tests/$t"
done
# the atomic EM kernel (STEM_CUDA_EM=fused) and cuBLAS attention (STEM_CUDA_ATTENTION=gemm) too
STEM_CUDA_EM=fused run test_cuda_parity_em_fused 60 "$root/tests/test_cuda_parity"
STEM_CUDA_ATTENTION=gemm run test_cuda_parity_attention_gemm 60 "$root/tests/test_cuda_parity"
for f in "$logs"/test_*.log; do
    note "== $(basename "$f" .log): $(grep -E '^\[  PASSED  \] [0-9]+' "$f" | tr -s ' ') $(grep -E ' SKIPPED TEST' "$f" | tr -s ' ')"
    grep -E '^\[  FAILED  \] [^0-9]|^\[  ERROR   \]' "$f" | head -20 | tee -a "$summary"
done

# 2. the bundled default on cpu / cuda f32 / cuda f16, compared
inv=/tmp/stem-gpu/inv
run invert_cpu 120 "$root/bin/stem" invert --backend cpu --out "$inv-cpu" --force --quiet
run invert_cuda_f32 60 "$root/bin/stem" invert --backend cuda --out "$inv-cuda-f32" --force --quiet
run invert_cuda_f16 60 "$root/bin/stem" invert --backend cuda --dtype f16 --out "$inv-cuda-f16" --force --quiet
# layer-major (video scope over frame slices): a 3 MiB budget gives slices of 2 of the 8 frames
run invert_cuda_f32_layer_major 60 "$root/bin/stem" invert --backend cuda --mem-limit 3M --out "$inv-cuda-f32-lm" --force --quiet
run compare_invert 60 python3 scripts/gpu/compare_invert.py "$inv-cpu" "$inv-cuda-f32" "$inv-cuda-f16" "$inv-cuda-f32-lm"
tee -a "$summary" <"$logs/compare_invert.log"

# 3. the 16-frame 512x512 SD 1.5 (random weights) f16 benchmark, stem vs PyTorch on this GPU
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        >"$logs/pip.log" 2>&1 && export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
run bench_invert_sd15_f16 300 python3 bench/invert_torch.py --stem "$root/bin/stem" --device cuda --dtype f16 \
    --threads 16 --wait-quiet 0 --case sd15:16:512:10:2 --work /tmp/stem-fullsize
grep -h '^{' "$logs/bench_invert_sd15_f16.log" >"$out/bench_invert.jsonl"
grep -v '^{' "$logs/bench_invert_sd15_f16.log" | tail -15 | tee -a "$summary"

# 3a. the same 16 frames layer-major on the GPU (slices of frames under a 1.5 GB budget)
clip16=/tmp/stem-fullsize/clip-synthetic-16
if [ -d "$clip16" ]; then
    for lm in all:0 layer_major:1500M; do
        name=${lm%%:*} limit=${lm#*:}
        run "invert_sd15_f16_$name" 120 "$root/bin/stem" invert --backend cuda --dtype f16 --model /tmp/stem-fullsize/sd15-pipe \
            --frames "$clip16" --n-frames 16 --width 512 --height 512 --steps 10 --prompt "a red square moving right" \
            --out "/tmp/stem-gpu/sd15-$name" --force --quiet $([ "$limit" != 0 ] && echo --mem-limit "$limit")
        python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print(sys.argv[2], 'frames/eval', m['options'].get('frames_per_unet_evaluation'), 'layer_major', m['options'].get('layer_major_unet'), 'inv_s %.2f rec_s %.2f' % (m['timing']['inversion_s'], m['timing']['reconstruction_s']), 'device MiB', m['environment'].get('device_memory_peak_bytes', 0) >> 20, 'psnr', m.get('metrics', {}).get('reconstruction_vs_input', {}).get('mean_psnr_db'))" \
            "/tmp/stem-gpu/sd15-$name/manifest.json" "$name" 2>&1 | tee -a "$summary"
    done
fi

# 3b. the UNet forward alone (SD 1.5, 16 latents of 64x64 = 16 frames of 512x512), stem vs PyTorch
run bench_unet_sd15_f16 120 python3 bench/unet_torch.py --stem-bin "$root/bench/unet" --device cuda --dtype f16 \
    --sizes 64 --batch 16 --reps 5 --threads 16 --work /tmp/stem-fullsize
grep -h '^{' "$logs/bench_unet_sd15_f16.log" >"$out/bench_unet.jsonl"
grep -h unet_ratio "$logs/bench_unet_sd15_f16.log" | tee -a "$summary"
STEM_CUDA_ATTENTION=gemm run bench_unet_sd15_f16_attention_gemm 60 "$root/bench/unet" /tmp/stem-fullsize/sd15/unet \
    --size 64 --batch 16 --reps 5 --backend cuda --dtype f16
grep -h '"kind":"unet"' "$logs/bench_unet_sd15_f16_attention_gemm.log" | tee -a "$summary"

# 4. op benchmarks on the GPU
run bench_ops_f32 60 "$root/bench/ops" --backend cuda --dtype f32 --quick
run bench_ops_f16 60 "$root/bench/ops" --backend cuda --dtype f16 --quick
grep -h '^{' "$logs"/bench_ops_f*.log >"$out/bench_ops.jsonl"

# 5. out-of-bounds / uninitialised accesses in the CUDA kernels, on the tiny inversion
if command -v compute-sanitizer >/dev/null; then
    run sanitizer_memcheck 90 compute-sanitizer --tool memcheck --error-exitcode 3 \
        "$root/bin/stem" invert --backend cuda --steps 2 --out "$inv-sanitizer" --force --quiet
    run sanitizer_memcheck_layer_major 90 compute-sanitizer --tool memcheck --error-exitcode 3 \
        "$root/bin/stem" invert --backend cuda --dtype f16 --steps 2 --mem-limit 1500K --out "$inv-sanitizer-lm" --force --quiet
    grep -h -E "ERROR SUMMARY|Invalid|out of bounds" "$logs"/sanitizer_memcheck*.log | head -8 | tee -a "$summary"
fi
exit $status
