#!/usr/bin/env python3
"""Quality of refdata/models/shapes-sd1 on held-out clips (shapes_data.py split "test"), in
PyTorch + diffusers (nothing here runs stem):

    eval_tiny.py [--model DIR] [--out DIR] [--pairs 24] [--clips 16] [--guidance 5]

1. VAE round trip: PSNR (8-bit, peak 255, mean over frames) of decode(encode(x).mean) vs x
   over every frame of --clips held-out clips.
2. Text conditioning: --pairs prompt pairs built from held-out clips' attributes, "a
   <colour A> <shape A> moving <m> on a <bg> background" vs the same with another colour and
   shape; both sampled from the same initial noise (DDIM 50 steps, eta 0, classifier-free
   guidance --guidance). A sample passes when its shape pixels (saturated and bright:
   shapes_data.shape_mask) have the named colour as the nearest hue (shapes_data.nearest_colour).
3. DDIM inversion + reconstruction, 50 steps, frame attention (plain diffusers UNet), no
   guidance, on the first 8 frames of 4 held-out clips with their captions: PSNR vs input.
   The same formulas as gen_invert.py (TokenFlow/STEM ddim_inversion, then DDIM eta 0).

Writes OUT/eval.json and OUT/samples.png (each pair's two samples side by side, rows of 4 pairs).
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import torch

import diffusers
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shapes_data as sd  # noqa: E402


def psnr_u8(a, b):
    """Mean over frames of the 8-bit PSNR; a, b uint8 (F, H, W, 3)."""
    out = []
    for x, y in zip(a.astype(np.float64), b.astype(np.float64)):
        mse = np.mean((x - y) ** 2)
        out.append(99.0 if mse == 0 else 10 * math.log10(255.0 ** 2 / mse))
    return float(np.mean(out))


def to_u8(x):
    """(N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3), rounded as stem's --quantize round does."""
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def to_tensor(u8):
    return torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1


class Model:
    def __init__(self, path):
        self.vae = AutoencoderKL.from_pretrained(os.path.join(path, "vae")).float().eval()
        self.unet = UNet2DConditionModel.from_pretrained(os.path.join(path, "unet")).float().eval()
        self.text = CLIPTextModel.from_pretrained(os.path.join(path, "text_encoder")).float().eval()
        self.tok = CLIPTokenizer.from_pretrained(os.path.join(path, "tokenizer"))
        self.sched = DDIMScheduler.from_pretrained(os.path.join(path, "scheduler"))
        self.sf = self.vae.config.scaling_factor

    def encode_text(self, prompts):
        ids = self.tok(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        return self.text(ids)[0]


def schedule(m, steps):
    m.sched.set_timesteps(steps)
    ts = [int(t) for t in m.sched.timesteps]  # descending
    a = m.sched.alphas_cumprod.double()
    final = float(m.sched.final_alpha_cumprod)
    ratio = m.sched.config.num_train_timesteps // steps
    return ts, (lambda t: float(a[t]) if t >= 0 else final), ratio


@torch.no_grad()
def vae_psnr(m, n_clips):
    vals = []
    for i in range(n_clips):
        f = sd.make_clip("test", i)["frames"]
        z = m.vae.encode(to_tensor(f)).latent_dist.mean
        vals.append(psnr_u8(to_u8(m.vae.decode(z).sample), f))
    return float(np.mean(vals)), vals


def pair_prompts(n_pairs):
    """[(prompt, colour)] * 2 per pair, from held-out clips' attributes."""
    out = []
    for i in range(n_pairs):
        c = sd.make_clip("test", i)
        s = c["shapes"][0]
        rng = np.random.default_rng([sd.SEED, 7, i])
        others = [k for k in sd.COLOURS if k not in (s["colour"], c["bg"])]
        colour_b = others[rng.integers(len(others))]
        kinds = [k for k in sd.SHAPES if k != s["kind"]]
        kind_b = kinds[rng.integers(len(kinds))]
        motion = s["phrase"].split(" moving ")[1]
        tail = f"moving {motion} on a {c['bg']} {c['texture'] + ' ' if c['texture'] else ''}background"
        out.append((f"a {s['colour']} {s['kind']} {tail}", s["colour"]))
        out.append((f"a {colour_b} {kind_b} {tail}", colour_b))
    return out


@torch.no_grad()
def sample(m, prompts, guidance, steps, seed):
    """DDIM eta 0 with classifier-free guidance; prompts[2k], prompts[2k+1] share their noise."""
    n = len(prompts)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n // 2, 4, 16, 16, generator=g).repeat_interleave(2, dim=0)
    ctx = m.encode_text(prompts)
    unc = m.encode_text([""]).expand(n, -1, -1)
    ts, a, ratio = schedule(m, steps)
    x = noise
    for t in ts:
        e = m.unet(torch.cat([x, x]), t, torch.cat([unc, ctx])).sample
        e_u, e_c = e.chunk(2)
        e = e_u + guidance * (e_c - e_u)
        at, ap = a(t), a(t - ratio)
        x0 = (x - math.sqrt(1 - at) * e) / math.sqrt(at)
        x = math.sqrt(ap) * x0 + math.sqrt(1 - ap) * e
    return to_u8(m.vae.decode(x / m.sf).sample)


@torch.no_grad()
def invert_reconstruct(m, frames, prompt, steps):
    ctx = m.encode_text([prompt]).expand(len(frames), -1, -1)
    x = m.vae.encode(to_tensor(frames)).latent_dist.mean * m.sf
    ts, a, ratio = schedule(m, steps)
    for t in ts[::-1]:  # inversion: ascending t
        at, ap = a(t), a(t - ratio)
        e = m.unet(x, t, ctx).sample
        x0 = (x - math.sqrt(1 - ap) * e) / math.sqrt(ap)
        x = math.sqrt(at) * x0 + math.sqrt(1 - at) * e
    for t in ts:
        at, ap = a(t), a(t - ratio)
        e = m.unet(x, t, ctx).sample
        x0 = (x - math.sqrt(1 - at) * e) / math.sqrt(at)
        x = math.sqrt(ap) * x0 + math.sqrt(1 - ap) * e
    return to_u8(m.vae.decode(x / m.sf).sample)


def main():
    diffusers.utils.logging.set_verbosity_error()
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.normpath(os.path.join(here, "..", ".."))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(repo, "refdata", "models", "shapes-sd1"))
    ap.add_argument("--out", default="shapes-eval")
    ap.add_argument("--pairs", type=int, default=24)
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--inversions", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    m = Model(args.model)
    res = {"model": args.model}

    if args.clips:
        res["vae_psnr_db"], per_clip = vae_psnr(m, args.clips)
        res["vae_psnr_min_clip_db"] = min(per_clip)
        print(f"VAE round trip: {res['vae_psnr_db']:.2f} dB (worst clip {min(per_clip):.2f}) over {args.clips} clips")

    prompts = pair_prompts(args.pairs)
    imgs = sample(m, [p for p, _ in prompts], args.guidance, args.steps, seed=5)
    got = [sd.nearest_colour(im) for im in imgs]
    ok = [g == c for g, (_, c) in zip(got, prompts)]
    res["hue_pass"] = f"{sum(ok)}/{len(ok)}"
    res["hue_pass_rate"] = sum(ok) / len(ok)
    res["hue_samples"] = [dict(prompt=p, want=c, got=g) for (p, c), g in zip(prompts, got)]
    print(f"text conditioning (hue check, guidance {args.guidance}): {sum(ok)}/{len(ok)} "
          f"= {100 * sum(ok) / len(ok):.0f}%")
    for (p, c), g, o in zip(prompts, got, ok):
        if not o:
            print(f"  miss: '{p}' -> {g}")
    pairs = [np.concatenate([imgs[k], imgs[k + 1]], axis=1) for k in range(0, len(imgs), 2)]
    while len(pairs) % 4:
        pairs.append(np.zeros_like(pairs[0]))
    rows = [np.concatenate(pairs[k:k + 4], axis=1) for k in range(0, len(pairs), 4)]
    from PIL import Image
    Image.fromarray(np.concatenate(rows, axis=0)).save(os.path.join(args.out, "samples.png"))

    inv = []
    for i in range(args.inversions):  # 0: skipped
        c = sd.make_clip("test", i)
        f = c["frames"][:8]
        inv.append(psnr_u8(invert_reconstruct(m, f, c["caption"], args.steps), f))
    res["inversion_frame_psnr_db"] = inv
    if inv:
        print(f"DDIM inversion + reconstruction ({args.steps} steps, frame attention, diffusers): "
              + ", ".join(f"{v:.2f}" for v in inv) + f" dB (mean {np.mean(inv):.2f})")
    with open(os.path.join(args.out, "eval.json"), "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
