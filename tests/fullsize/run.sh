#!/bin/sh
# Full-size UNet check with random weights (no real weights needed, nothing committed):
# the real SD 1.5 and SD 2.1-base UNet configs, stem (tests/unet_run) vs diffusers.
#
#   tests/fullsize/run.sh [BUILD_DIR] [compare_unet.py options]
#
# BUILD_DIR holds tests/unet_run (default: $STEM_BUILD, else <repo>/build). The Python
# reference is $REFDATA_PY, else <repo>/.venv-ref/bin/python, else /work/venv-ref/bin/python.
# Without either, prints why and exits 77 (automake's "skipped"). Needs ~8 GB of RAM
# (the float64 reference of SD 1.5 alone is 6.9 GB; add --no-f64 to compare with
# PyTorch f32 only) and ~3.5 GB under /tmp/stem-fullsize (weights, reused).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

build=${STEM_BUILD:-$repo/build}
if [ $# -gt 0 ] && [ -d "$1" ]; then build=$1; shift; fi
bin="$build/tests/unet_run"

py=${REFDATA_PY:-}
for cand in "$repo/.venv-ref/bin/python" /work/venv-ref/bin/python; do
    if [ -z "$py" ] && [ -x "$cand" ]; then py=$cand; fi
done
if [ -z "$py" ] || [ ! -x "$py" ]; then
    echo "fullsize: skipped: no reference Python (set REFDATA_PY or run refdata/gen/setup.sh)"
    exit 77
fi
if [ ! -x "$bin" ]; then
    echo "fullsize: skipped: $bin not built (make tests/unet_run in $build, or pass the build dir)"
    exit 77
fi
if ! "$py" -c "import diffusers, torch, safetensors" 2>/dev/null; then
    echo "fullsize: skipped: $py lacks diffusers/torch/safetensors"
    exit 77
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} PYTHONWARNINGS=ignore
exec "$py" "$here/compare_unet.py" --unet-run "$bin" "$@"
