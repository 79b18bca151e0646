#!/usr/bin/env python3
"""UNet golden tensors for stem (tests/test_unet.c).

    gen_unet.py [--repo DIR] [--out DIR]

For each tiny model of refdata/models/ (made by gen_models.py) and each case below,
writes <out>/<model>__<case>.safetensors (default out: refdata/golden/unet/) with

  in.sample     [B, 4, h, w]   float32 latents
  in.timesteps  [B] or [1]     float32 (one shared timestep, or one per sample)
  in.context    [B, 77, X]     float32 text context (a different row per sample)
  out.eps       [B, 4, h, w]   float32: diffusers' UNet2DConditionModel output

metadata: model, case, rtol, atol, source, and max_rel_f32 (how far PyTorch's own
float32 forward is from the reference, for scale).

Reference: the UNet loaded from the model folder's float16 safetensors and upcast to
float64 (diffusers 0.20.2, CPU); inputs are float32 values, the expected output is
the float64 forward rounded once to float32. The timestep embedding is float32 in
diffusers whatever the model dtype (get_timestep_embedding casts t to float32), so
the reference sees exactly the f32 embedding stem computes. The script also runs the
model in float32 and fails unless that passes at a quarter of the stored tolerance.

Cases: latents that are multiples of 2^(levels-1) and ones that are not (13x9 makes
tiny-sd1 go 13x9 -> 7x5 -> 4x3 and back, with the upsamplers resizing to the skip
sizes), t = 981 and t = 1 (the ends of SD's 50-step DDIM schedule), and a batch with
a different timestep per sample.

Output is byte-reproducible (seeded numpy inputs, single-threaded PyTorch, the sorted
safetensors writer of gen_ops.py).
"""

import argparse
import os
import sys

import numpy as np
import torch
import diffusers
from diffusers import UNet2DConditionModel

from gen_ops import write_safetensors  # byte-reproducible writer (sorted header)

MODELS = ("tiny-sd1", "tiny-sd2")
# name, (h, w), timesteps (one entry = shared by the batch), batch
CASES = (
    ("t981_13x9", (13, 9), [981.0], 2),
    ("t1_13x9", (13, 9), [1.0], 2),
    ("mixed_8x8", (8, 8), [981.0, 1.0], 2),
    ("t501_6x11", (6, 11), [501.0, 21.0], 2),
)
# PyTorch's own f32 forward is within ~1e-6 absolute of the f64 reference (outputs
# have std ~0.3); stem's f32 CPU path is within the same. 2e-5 leaves a 10x margin for
# other kernels (AVX2 vs AVX-512 vs portable, other BLAS builds).
RTOL = 2e-5
ATOL = 2e-5


def seed_of(model, case):
    return sum((i + 1) * ord(ch) for i, ch in enumerate(model + "/" + case)) % (2**31)


def allclose_report(got, want, rtol, atol):
    err = (got - want).abs()
    bad = (err > atol + rtol * want.abs()).sum().item()
    rel = (err / want.abs().clamp_min(atol)).max().item()
    return bad, err.max().item(), rel


def main():
    diffusers.utils.logging.set_verbosity_error()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--repo", default=os.path.normpath(os.path.join(here, "..", "..")))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out_dir = args.out or os.path.join(args.repo, "refdata", "golden", "unet")
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)

    for model in MODELS:
        path = os.path.join(args.repo, "refdata", "models", model, "unet")
        if not os.path.isdir(path):
            sys.exit(f"gen_unet.py: {path} is missing (run refdata/gen/gen_models.py first)")
        unet64 = UNet2DConditionModel.from_pretrained(path, torch_dtype=torch.float64).eval()
        unet32 = UNet2DConditionModel.from_pretrained(path, torch_dtype=torch.float32).eval()
        X = unet64.config.cross_attention_dim
        for case, (h, w), ts, batch in CASES:
            rng = np.random.default_rng(seed_of(model, case))
            sample = torch.from_numpy(rng.standard_normal((batch, 4, h, w)).astype(np.float32))
            context = torch.from_numpy(rng.standard_normal((batch, 77, X)).astype(np.float32))
            t = torch.tensor(ts, dtype=torch.float32)
            # diffusers broadcasts a [1] timestep over the batch (timesteps.expand(B))
            with torch.no_grad():
                ref = unet64(sample.double(), t.double() if len(ts) > 1 else t.double()[0], context.double()).sample
                f32 = unet32(sample, t if len(ts) > 1 else t[0], context).sample
            ref32 = ref.float()
            bad, max_abs, max_rel = allclose_report(f32, ref32, RTOL / 4, ATOL / 4)
            if bad:
                sys.exit(f"{model}/{case}: PyTorch f32 misses the f64 reference at a quarter tolerance "
                         f"({bad} elements, max abs {max_abs:.3g}, max rel {max_rel:.3g})")
            meta = {
                "model": model,
                "case": case,
                "rtol": repr(RTOL),
                "atol": repr(ATOL),
                "max_rel_f32": f"{max_rel:.3g}",
                "max_abs_f32": f"{max_abs:.3g}",
                "source": "diffusers 0.20.2 UNet2DConditionModel, f16 weights upcast to f64, rounded to f32",
            }
            tensors = {
                "in.sample": sample.numpy(),
                "in.timesteps": t.numpy(),
                "in.context": context.numpy(),
                "out.eps": ref32.numpy(),
            }
            fn = os.path.join(out_dir, f"{model}__{case}.safetensors")
            write_safetensors(fn, tensors, meta)
            print(f"{model}__{case}: eps std {ref32.std():.3f}, torch f32 vs f64: max abs {max_abs:.2g}, "
                  f"max rel {max_rel:.2g}")


if __name__ == "__main__":
    main()
