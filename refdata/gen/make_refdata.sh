#!/bin/sh
# Regenerates refdata/golden/ from the PyTorch/diffusers reference.
#
#   refdata/gen/make_refdata.sh [PY]
#
# PY is the Python interpreter of the pinned reference environment (default
# <repo>/.venv-ref/bin/python, created by setup.sh when missing). `make refdata`
# calls this with $(REFDATA_PY).
set -eu

gen_dir=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$gen_dir/../.." && pwd)
golden="$repo/refdata/golden"

py=${1:-}
if [ -z "$py" ]; then
    py="$repo/.venv-ref/bin/python"
fi
if [ ! -x "$py" ]; then
    if [ "$py" = "$repo/.venv-ref/bin/python" ]; then
        py=$("$gen_dir/setup.sh" | tail -n 1)
    else
        echo "make_refdata.sh: $py is not an executable interpreter (run refdata/gen/setup.sh)" >&2
        exit 1
    fi
fi
REFDATA_PY="$py" "$gen_dir/setup.sh" >/dev/null

# Keep the CPU load light and the results independent of the thread count.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export PYTHONDONTWRITEBYTECODE=1 PYTHONWARNINGS=ignore

echo "== philox_ref.py --self-test (Random123 known-answer vectors)"
"$py" "$gen_dir/philox_ref.py" --self-test

# Order matters: the tokenizer files feed the tiny models, the models and the clip
# feed the model and pipeline goldens.
echo "== gen_tokenizer.py -> refdata/tokenizer, $golden/tokenizer (the real CLIP vocabulary)"
"$py" "$gen_dir/gen_tokenizer.py" --repo "$repo"
echo "== gen_models.py -> refdata/models/tiny-sd1, tiny-sd2"
"$py" "$gen_dir/gen_models.py" --repo "$repo"
echo "== gen_freeu_model.py -> refdata/models/tiny-freeu (SD 1.5's module tree, 20x narrower)"
"$py" "$gen_dir/gen_freeu_model.py" --repo "$repo"
echo "== gen_clip.py -> refdata/clips/synthetic"
"$py" "$gen_dir/gen_clip.py" --out "$repo/refdata/clips/synthetic"
echo "== gen_io.py -> $golden/io"
"$py" "$gen_dir/gen_io.py" --out "$golden/io"
echo "== gen_unet.py -> $golden/unet"
"$py" "$gen_dir/gen_unet.py" --repo "$repo"
echo "== gen_text_vae.py -> $golden/text_encoder, $golden/vae, $golden/ldm"
"$py" "$gen_dir/gen_text_vae.py" --repo "$repo"
echo "== gen_single_file.py -> refdata/models/tiny-sd1.safetensors, tiny-sd2.safetensors (checked by diffusers' single-file loader)"
"$py" "$gen_dir/gen_single_file.py" --repo "$repo"

echo "== gen_ops.py -> $golden/ops"
tmp="$golden/ops.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT INT TERM
"$py" "$gen_dir/gen_ops.py" --out "$tmp"
"$py" "$gen_dir/gen_stem.py" --out "$tmp"   # em, stem_attention, ddim
rm -rf "$golden/ops"
mv "$tmp" "$golden/ops"
trap - EXIT INT TERM

# The whole inversion pipeline (tests/test_invert.c): needs the tiny models
# (refdata/models, gen_models.py) and the synthetic clip (refdata/clips/synthetic,
# gen_clip.py), so those generators must run before this one.
echo "== gen_invert.py -> $golden/invert"
tmp="$golden/invert.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT INT TERM
"$py" "$gen_dir/gen_invert.py" --repo "$repo" --out "$tmp"
rm -rf "$golden/invert"
mv "$tmp" "$golden/invert"
trap - EXIT INT TERM

# TokenFlow editing (gen_edit.py, edit_ref.py): needs the three tiny models and the clip.
echo "== gen_edit.py -> $golden/edit"
tmp="$golden/edit.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT INT TERM
"$py" "$gen_dir/gen_edit.py" --repo "$repo" --out "$tmp"
rm -rf "$golden/edit"
mv "$tmp" "$golden/edit"
trap - EXIT INT TERM

echo "== done: $(find "$golden/ops" -name "*.safetensors" | wc -l) op golden files, $(du -sh "$golden/ops" | cut -f1)"
