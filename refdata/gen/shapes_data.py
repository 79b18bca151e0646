#!/usr/bin/env python3
"""Synthetic shape videos with captions: the training data of refdata/models/shapes-sd1.

    shapes_data.py --split test --index 0 --out DIR [--caption FILE]   one clip: DIR/00000.png ...
    shapes_data.py --split test --sheet OUT.png         first frames of 32 clips with their captions printed

A clip is 64x64 RGB, 8-16 frames, of one or two shapes (circle, square, triangle, star) in
a named, saturated colour, moving left/right/up/down/diagonally (some spin, some grow or
shrink) over a dark, desaturated background in a named colour: a linear gradient, stripes
or a checkerboard. Its caption names the attributes, e.g. "a red circle moving right on a
blue background" or "a green star moving up and a yellow square moving left on a gray
striped background".

Deterministic: clip i of a split comes from numpy's PCG64 seeded with (SEED, split, i), so
every clip is reproducible on its own. Splits: "train" (the training set) and "test" (the
held-out clips the model README's numbers and stem's quality tests use; never trained on).

Shapes are drawn with 4x4 supersampling (anti-aliased edges). Saturation/value separate
the two layers: shapes have saturation >= 0.8 and value >= 0.8, backgrounds saturation
<= 0.5 and value <= 0.6, so the shape region of a picture can be found from its pixels
alone (shape_mask) and its hue compared with the name (COLOURS).
"""

import argparse
import colorsys
import os
import sys

import numpy as np

SIZE = 64
SEED = 20240613
SPLITS = {"train": 0, "test": 1}

# name -> hue in degrees (shape colours are saturated and bright)
COLOURS = {"red": 0.0, "yellow": 55.0, "green": 120.0, "blue": 225.0, "purple": 285.0}
# background names -> hue (None = gray); dark and desaturated
BACKGROUNDS = {"gray": None, "blue": 225.0, "green": 120.0, "red": 0.0, "purple": 285.0, "yellow": 55.0}
SHAPES = ("circle", "square", "triangle", "star")
MOTIONS = {"right": (1, 0), "left": (-1, 0), "up": (0, -1), "down": (0, 1)}
DIAGONALS = ((1, 1), (1, -1), (-1, 1), (-1, -1))
TEXTURES = ("", "striped", "checkered")  # "" = gradient

SUPER = 4  # supersampling factor per axis


def hsv(h_deg, s, v):
    return np.array(colorsys.hsv_to_rgb((h_deg % 360.0) / 360.0, s, v), dtype=np.float64)


def sample_grid():
    """(SIZE*SUPER, SIZE*SUPER, 2) sample positions in pixel units (pixel centres at k + 0.5)."""
    t = (np.arange(SIZE * SUPER) + 0.5) / SUPER
    x, y = np.meshgrid(t, t)
    return np.stack([x, y], axis=-1)


GRID = sample_grid()


def downsample(a):
    """Average SUPERxSUPER blocks: (H*S, W*S, ...) -> (H, W, ...)."""
    h = a.shape[0] // SUPER
    return a.reshape(h, SUPER, h, SUPER, *a.shape[2:]).mean(axis=(1, 3))


def polygon_inside(px, py, verts):
    """Even-odd point-in-polygon for arrays of points; verts (n, 2)."""
    inside = np.zeros(px.shape, dtype=bool)
    n = len(verts)
    for k in range(n):
        x0, y0 = verts[k]
        x1, y1 = verts[(k + 1) % n]
        crosses = (y0 > py) != (y1 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (px < xc)
    return inside


def shape_coverage(kind, cx, cy, r, angle):
    """(SIZE, SIZE) coverage in [0, 1] of a shape of circumradius r centred at (cx, cy)."""
    px, py = GRID[..., 0] - cx, GRID[..., 1] - cy
    if kind == "circle":
        inside = px * px + py * py < (0.85 * r) ** 2
    else:
        if kind == "square":
            k = np.arange(4)
            ang = angle + np.pi / 4 + k * np.pi / 2
            rad = np.full(4, r)
        elif kind == "triangle":
            k = np.arange(3)
            ang = angle - np.pi / 2 + k * 2 * np.pi / 3
            rad = np.full(3, 1.15 * r)
        else:  # star: five points, inner radius 0.45
            k = np.arange(10)
            ang = angle - np.pi / 2 + k * np.pi / 5
            rad = np.where(k % 2 == 0, 1.2 * r, 0.5 * r)
        verts = np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
        inside = polygon_inside(px, py, verts)
    return downsample(inside.astype(np.float64))


def background(rng, hue, texture):
    """(SIZE, SIZE, 3) float in [0, 1]."""
    sat = 0.0 if hue is None else rng.uniform(0.35, 0.5)
    h = 0.0 if hue is None else hue + rng.uniform(-8, 8)
    v0 = rng.uniform(0.15, 0.3)
    # gradients span more brightness than textures (whose edges are hard for a 4x VAE)
    v1 = rng.uniform(0.4, 0.6) if texture == "" else v0 + rng.uniform(0.08, 0.18)
    c0, c1 = hsv(h, sat, v0), hsv(h, sat, v1)
    theta = rng.uniform(0, 2 * np.pi)
    u = (GRID[..., 0] - SIZE / 2) * np.cos(theta) + (GRID[..., 1] - SIZE / 2) * np.sin(theta)
    if texture == "":
        w = np.clip(u / SIZE + 0.5, 0, 1)
    elif texture == "striped":
        period = rng.uniform(10, 16)
        w = (np.floor(u / (period / 2)) % 2).astype(np.float64)
    else:
        cell = rng.uniform(8, 14)
        gx = np.floor((GRID[..., 0] + rng.uniform(0, cell)) / cell)
        gy = np.floor((GRID[..., 1] + rng.uniform(0, cell)) / cell)
        w = ((gx + gy) % 2).astype(np.float64)
    img = c0 * (1 - w[..., None]) + c1 * w[..., None]
    return downsample(img)


def make_shape(rng, n_frames, colour_names):
    kind = SHAPES[rng.integers(len(SHAPES))]
    colour = colour_names[rng.integers(len(colour_names))]
    r0 = rng.uniform(7, 11)
    motion = list(MOTIONS)[rng.integers(4)] if rng.random() < 0.8 else "diagonally"
    d = np.array(MOTIONS[motion] if motion in MOTIONS else DIAGONALS[rng.integers(4)], dtype=np.float64)
    if motion == "diagonally":
        d /= np.sqrt(2)
    speed = rng.uniform(1.0, 2.2)
    scale_rate = 0.0
    extra = ""
    u = rng.random()
    if u < 0.15:
        scale_rate, extra = rng.uniform(0.02, 0.04), " and growing"
    elif u < 0.3:
        scale_rate, extra = -rng.uniform(0.02, 0.035), " and shrinking"
    spin = 0.0 if kind == "circle" else rng.uniform(-0.12, 0.12)
    r_max = r0 * max(1.0, (1 + scale_rate * (n_frames - 1)))
    margin = 1.2 * r_max + 1
    travel = d * speed * (n_frames - 1)
    lo = np.maximum(margin, margin - travel)
    hi = np.minimum(SIZE - margin, SIZE - margin - travel)
    # a path longer than the frame: slow down until it fits
    while np.any(hi < lo):
        speed *= 0.8
        travel = d * speed * (n_frames - 1)
        lo = np.maximum(margin, margin - travel)
        hi = np.minimum(SIZE - margin, SIZE - margin - travel)
    start = lo + rng.random(2) * (hi - lo)
    angle0 = rng.uniform(0, 2 * np.pi)
    return dict(kind=kind, colour=colour, hue=COLOURS[colour] + rng.uniform(-6, 6), sat=rng.uniform(0.8, 1.0),
                val=rng.uniform(0.85, 1.0), r0=r0, scale_rate=scale_rate, start=start, vel=d * speed,
                angle0=angle0, spin=spin, phrase=f"a {colour} {kind} moving {motion}{extra}")


def make_clip(split, index, seed=SEED):
    """One clip: dict(frames uint8 (F, 64, 64, 3), caption str, shapes list, bg str)."""
    rng = np.random.default_rng([seed, SPLITS[split], index])
    n_frames = int(rng.integers(8, 17))
    bg_name = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    texture = TEXTURES[rng.integers(len(TEXTURES))]
    bg = background(rng, BACKGROUNDS[bg_name], texture)
    colours = [c for c in COLOURS if c != bg_name]
    n_shapes = 1 if rng.random() < 0.6 else 2
    shapes = [make_shape(rng, n_frames, colours) for _ in range(n_shapes)]
    frames = np.empty((n_frames, SIZE, SIZE, 3), dtype=np.uint8)
    for t in range(n_frames):
        img = bg.copy()
        for s in shapes:
            cx, cy = s["start"] + s["vel"] * t
            r = s["r0"] * (1 + s["scale_rate"] * t)
            cov = shape_coverage(s["kind"], cx, cy, r, s["angle0"] + s["spin"] * t)[..., None]
            img = img * (1 - cov) + hsv(s["hue"], s["sat"], s["val"]) * cov
        frames[t] = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    tex = f"{texture} " if texture else ""
    caption = " and ".join(s["phrase"] for s in shapes) + f" on a {bg_name} {tex}background"
    return dict(frames=frames, caption=caption, shapes=shapes, bg=bg_name, texture=texture)


def rgb_to_hsv(img):
    """uint8 or float (..., 3) RGB -> (h degrees, s, v) float arrays."""
    x = img.astype(np.float64)
    if img.dtype == np.uint8:
        x = x / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    mx, mn = x.max(-1), x.min(-1)
    c = mx - mn
    safe = np.where(c > 0, c, 1)
    h = np.where(mx == r, ((g - b) / safe) % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60
    h = np.where(c > 0, h, 0)
    s = np.where(mx > 0, c / np.where(mx > 0, mx, 1), 0)
    return h, s, mx


def shape_mask(img):
    """Pixels that belong to a shape: saturated and bright (backgrounds are neither)."""
    _, s, v = rgb_to_hsv(img)
    return (s > 0.6) & (v > 0.65)


def hue_distance(h, ref):
    d = np.abs(h - ref) % 360
    return np.minimum(d, 360 - d)


def nearest_colour(img, min_pixels=20):
    """Name of the shape colour of a picture (the COLOURS hue nearest to the shape pixels' circular
    mean hue), or None when fewer than min_pixels pixels look like a shape."""
    mask = shape_mask(img)
    if mask.sum() < min_pixels:
        return None
    h, _, _ = rgb_to_hsv(img)
    a = np.deg2rad(h[mask])
    mean = np.rad2deg(np.arctan2(np.sin(a).mean(), np.cos(a).mean())) % 360
    return min(COLOURS, key=lambda c: hue_distance(mean, COLOURS[c]))


def write_clip(clip, out, caption_file=None):
    """PNG frames into the folder out (nothing else: stem reads every file there as a frame)."""
    from PIL import Image
    os.makedirs(out, exist_ok=True)
    for t, f in enumerate(clip["frames"]):
        Image.fromarray(f).save(os.path.join(out, f"{t:05d}.png"), optimize=True)
    if caption_file:
        with open(caption_file, "w") as fh:
            fh.write(clip["caption"] + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", default="test", choices=sorted(SPLITS))
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--frames", type=int, default=0, help="keep only the first N frames (0: all)")
    ap.add_argument("--out", help="folder for one clip's PNG frames")
    ap.add_argument("--caption", help="file for its caption (one line)")
    ap.add_argument("--sheet", help="PNG with the first frame of 32 clips (captions are printed)")
    args = ap.parse_args()
    if args.sheet:
        from PIL import Image
        tiles = []
        for i in range(32):
            c = make_clip(args.split, args.index + i)
            print(f"{args.index + i}: {c['caption']} ({len(c['frames'])} frames)")
            tiles.append(np.concatenate([c["frames"][0], c["frames"][-1]], axis=1))
        rows = [np.concatenate(tiles[k:k + 4], axis=1) for k in range(0, 32, 4)]
        Image.fromarray(np.concatenate(rows, axis=0)).save(args.sheet)
    elif args.out:
        c = make_clip(args.split, args.index)
        if args.frames:
            c["frames"] = c["frames"][:args.frames]
        write_clip(c, args.out, args.caption)
        print(f"{args.out}: {len(c['frames'])} frames: {c['caption']}")
    else:
        sys.exit("shapes_data.py: give --out DIR or --sheet FILE")


if __name__ == "__main__":
    main()
