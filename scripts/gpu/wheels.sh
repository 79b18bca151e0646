#!/usr/bin/env bash
# Here: the Python packages the GPU machine's image lacks for bench/invert_torch.py's
# reference side, as wheels in .whl/ (carried with `carry: [".whl"]`; scripts/gpu/run.sh
# installs them). That image has torch 2.11, transformers 5.17, huggingface_hub 1.33 and
# safetensors 0.8 but no diffusers; diffusers 0.20.2 (the goldens' pin) needs
# huggingface_hub < 0.26, so the benchmark there uses the newest diffusers, whose
# UNet2DConditionModel / AutoencoderKL compute the same functions (checked on the tiny
# model against the pinned reference: bench/invert_torch.py's rec_z0_rel_diff).
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: -d .whl diffusers==0.42.1 importlib_metadata==8.7.0
ls -la .whl
