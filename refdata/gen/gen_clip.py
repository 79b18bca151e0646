#!/usr/bin/env python3
"""The synthetic clip that `stem invert` runs on when no frames are given.

    gen_clip.py --out refdata/clips/synthetic

8 frames of 64x64 RGB (00000.png .. 00007.png): a slowly rotating colour gradient
with a disc drifting left to right and a square drifting down, both anti-aliased, so
that consecutive frames differ smoothly (what temporal consistency measures). Pure
numpy, no randomness: the same bytes on every run with the pinned Pillow/zlib.
"""
import argparse
import os

import numpy as np
from PIL import Image

N_FRAMES, SIZE = 8, 64


def frame(t):
    """Frame t in [0, N_FRAMES) as uint8 [SIZE, SIZE, 3]."""
    y, x = (np.mgrid[0:SIZE, 0:SIZE] + 0.5) / SIZE
    phase = 2 * np.pi * t / (4 * N_FRAMES)  # a quarter turn over the clip
    u = np.cos(phase) * x + np.sin(phase) * y
    img = np.stack([0.25 + 0.5 * u, 0.35 + 0.3 * (1 - y), 0.6 - 0.4 * x * y], axis=-1)
    # a disc moving left to right (soft edge, one pixel wide)
    cx, cy, r = 0.2 + 0.6 * t / (N_FRAMES - 1), 0.38, 0.16
    d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
    a = np.clip((r - d) * SIZE + 0.5, 0, 1)[..., None]
    img = img * (1 - a) + np.array([0.95, 0.75, 0.2]) * a
    # a square moving down
    sx, sy, s = 0.68, 0.15 + 0.45 * t / (N_FRAMES - 1), 0.12
    ax = np.clip((s - np.abs(x - sx)) * SIZE + 0.5, 0, 1)
    ay = np.clip((s - np.abs(y - sy)) * SIZE + 0.5, 0, 1)
    a = (ax * ay)[..., None]
    img = img * (1 - a) + np.array([0.15, 0.3, 0.85]) * a
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for t in range(N_FRAMES):
        Image.fromarray(frame(t), "RGB").save(os.path.join(args.out, "%05d.png" % t), optimize=True)
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print("gen_clip: %d frames of %dx%d in %s, %d bytes" % (N_FRAMES, SIZE, SIZE, args.out, total))


if __name__ == "__main__":
    main()
