#!/usr/bin/env python3
"""Full-size UNet check without real weights: stem vs diffusers on the real SD 1.5 and
SD 2.1-base UNet configurations with random weights.

    compare_unet.py --unet-run BUILD/tests/unet_run [--work /tmp/stem-fullsize]
                    [--models sd15,sd21base] [--size 16] [--batch 2] [--threads 2] [--no-f64]

For each model: builds UNet2DConditionModel(**config) with a fixed seed (PyTorch's
default initialisation, then norm weights 1 + 0.2 n and all biases 0.1 n, so that a
swapped gamma/beta or a dropped bias shows), saves it as float16 safetensors under
WORK/<model>/unet (reused on later runs: nothing is committed), and runs

  reference   diffusers 0.20.2 in float64 on the f16 weights (skipped with --no-f64)
  torch f32   diffusers in float32
  stem        tests/unet_run (CPU, f32)

on a SIZExSIZE latent, batch B, a different timestep (981, 1, 501, ...) and a different
random [77, cross_attention_dim] context per sample. Prints max |err|, max |err| /
max |ref| and the relative L2 error ||x - ref|| / ||ref|| for stem and torch f32
against the float64 reference (or stem against torch f32 with --no-f64), and one JSON
line per model. Exit status 1 when stem's relative L2 error exceeds 1e-4 or its max
abs error exceeds 1e-3 * max |ref|.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
import diffusers
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file

COMMON = dict(
    act_fn="silu",
    center_input_sample=False,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    block_out_channels=[320, 640, 1280, 1280],
    downsample_padding=1,
    flip_sin_to_cos=True,
    freq_shift=0,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    mid_block_scale_factor=1,
    norm_eps=1e-5,
    norm_num_groups=32,
    sample_size=64,
)
# runwayml/stable-diffusion-v1-5 unet/config.json
SD15 = dict(COMMON, attention_head_dim=8, cross_attention_dim=768)
# stabilityai/stable-diffusion-2-1-base unet/config.json
SD21BASE = dict(COMMON, attention_head_dim=[5, 10, 20, 20], cross_attention_dim=1024, use_linear_projection=True,
                upcast_attention=False, dual_cross_attention=False)
MODELS = {"sd15": SD15, "sd21base": SD21BASE}


@torch.no_grad()
def perturb(module, gen):
    for name, p in module.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        parent = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
        if isinstance(parent, (torch.nn.GroupNorm, torch.nn.LayerNorm)) and leaf == "weight":
            p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
        elif leaf == "bias":
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))


def ensure_model(work, name, cfg, seed):
    d = os.path.join(work, name, "unet")
    stamp = os.path.join(d, "stem-seed.txt")
    if os.path.exists(stamp) and open(stamp).read().strip() == str(seed):
        return d
    print(f"[{name}] building random-weight UNet (seed {seed}) in {d}", flush=True)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**cfg)
    perturb(unet, torch.Generator().manual_seed(seed))
    unet.half().save_pretrained(d, safe_serialization=True)
    del unet
    with open(stamp, "w") as f:
        f.write(str(seed))
    return d


def errors(x, ref):
    x = x.double()
    ref = ref.double()
    d = (x - ref).abs()
    return {
        "max_abs": d.max().item(),
        "max_abs_over_max_ref": (d.max() / ref.abs().max()).item(),
        "rel_l2": (torch.linalg.norm(x - ref) / torch.linalg.norm(ref)).item(),
    }


def run_torch(unet_dir, dtype, sample, t, ctx):
    unet = UNet2DConditionModel.from_pretrained(unet_dir, torch_dtype=dtype).eval()
    t0 = time.time()
    with torch.no_grad():
        out = unet(sample.to(dtype), t.to(dtype), ctx.to(dtype)).sample
    sec = time.time() - t0
    del unet
    return out, sec


def main():
    diffusers.utils.logging.set_verbosity_error()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--unet-run", required=True)
    ap.add_argument("--work", default="/tmp/stem-fullsize")
    ap.add_argument("--models", default="sd15,sd21base")
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-f64", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    failed = False
    for mi, name in enumerate(args.models.split(",")):
        cfg = MODELS[name]
        unet_dir = ensure_model(args.work, name, cfg, seed=1234 + mi)
        rng = np.random.default_rng(42 + mi)
        B, S = args.batch, args.size
        sample = torch.from_numpy(rng.standard_normal((B, 4, S, S)).astype(np.float32))
        ctx = torch.from_numpy(rng.standard_normal((B, 77, cfg["cross_attention_dim"])).astype(np.float32))
        t = torch.tensor([981.0, 1.0, 501.0, 21.0][:B] + [981.0] * max(0, B - 4), dtype=torch.float32)
        in_path = os.path.join(args.work, name, "inputs.safetensors")
        out_path = os.path.join(args.work, name, "stem_out.safetensors")
        save_file({"in.sample": sample, "in.timesteps": t, "in.context": ctx}, in_path)

        t0 = time.time()
        r = subprocess.run([args.unet_run, unet_dir, in_path, out_path, "--threads", str(args.threads)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            sys.exit(f"[{name}] unet_run failed")
        print(r.stderr.strip(), flush=True)
        stem = load_file(out_path)["out.eps"]
        f32, f32_sec = run_torch(unet_dir, torch.float32, sample, t, ctx)
        line = {"kind": "unet_fullsize", "model": name, "latent": [S, S], "batch": B, "timesteps": t.tolist(),
                "torch_f32_seconds": round(f32_sec, 3)}
        if not args.no_f64:
            ref, _ = run_torch(unet_dir, torch.float64, sample, t, ctx)
            line["reference"] = "diffusers f64"
            line["stem_vs_ref"] = errors(stem, ref)
            line["torch_f32_vs_ref"] = errors(f32, ref)
            line["ref_max_abs"] = ref.abs().max().item()
            main_err = line["stem_vs_ref"]
        else:
            line["reference"] = "diffusers f32"
            main_err = errors(stem, f32)
        line["stem_vs_torch_f32"] = errors(stem, f32)
        ok = main_err["rel_l2"] <= 1e-4 and main_err["max_abs_over_max_ref"] <= 1e-3
        line["pass"] = ok
        failed |= not ok
        print(json.dumps(line), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
