#!/usr/bin/env python3
"""Goldens for stem's frame I/O (src/io): decoding, resizing, pixel mappings, metrics.

    gen_io.py --out refdata/golden/io

Writes (all small, byte-for-byte reproducible with the pinned Pillow / scikit-image):

  images/*.png, *.jpg   test inputs: every PNG colour type and bit depth (written by
                        the raw PNG writer below, incl. palette + tRNS, 16-bit, Adam7),
                        JPEGs (4:2:0, 4:4:4, gray, progressive, CMYK) written by PIL
  decode.safetensors    decode.<file>: U8 [H, W, 3] = Image.open(file).convert("RGB")
                        metadata mode.<file>: PIL's mode of the opened file
  resize.safetensors    src.<name>: U8 [h, w, 3]; out.<name>.<W>x<H>: U8 [H, W, 3] =
                        Image.fromarray(src).resize((W, H), Image.LANCZOS)
  pixels.safetensors    to_pixels.in U8 [256] -> to_pixels.out F32 [256] = torch
                        (x.float() / 255) * 2 - 1; to_u8.in F32 [N] -> to_u8.round /
                        to_u8.truncate U8 [N]: v = (x / 2 + 0.5).clamp(0, 1), then
                        (v * 255).to(uint8) (truncate; the original) and round-half-up
                        of v * 255 in float32 (stem)
  metrics.safetensors   a.<case>, b.<case>: F32 [3, H, W] in [0, 1]; metadata
                        psnr.<case> / ssim.<case> as repr() of skimage's values
                        (peak_signal_noise_ratio(data_range=1), structural_similarity(
                        channel_axis=0, data_range=1.0, gaussian_weights=True, sigma=1.5,
                        use_sample_covariance=False)), computed in float64;
                        clip_in / clip_out F32 [4, 3, H, W] and temporal: numpy's
                        mean(|diff(out) - diff(in)|)
"""
import argparse
import json
import os
import struct
import sys
import zlib

import numpy as np
import PIL
import skimage
import torch
from PIL import Image
from safetensors.numpy import load_file
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_ops import write_safetensors  # noqa: E402  (the one byte-reproducible writer)


def save_file(tensors, path, metadata):
    """gen_ops' byte-reproducible writer, checked by reading the file back with the
    official loader."""
    write_safetensors(path, tensors, metadata)
    back = load_file(path)
    assert sorted(back) == sorted(tensors) and all(np.array_equal(back[k], tensors[k]) for k in tensors), path


# ---- a raw PNG writer (PIL cannot write most of these modes) ----------------------

def _chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _pack_rows(samples, bit_depth):
    """samples: uint array [h, w*channels] -> list of packed rows (bytes)."""
    rows = []
    for row in samples:
        if bit_depth == 16:
            rows.append(row.astype(">u2").tobytes())
        elif bit_depth == 8:
            rows.append(row.astype(np.uint8).tobytes())
        else:
            per = 8 // bit_depth
            n = (len(row) + per - 1) // per
            padded = np.zeros(n * per, dtype=np.uint32)
            padded[: len(row)] = row
            packed = np.zeros(n, dtype=np.uint32)
            for i in range(per):
                packed |= padded[i::per] << (8 - bit_depth * (i + 1))
            rows.append(packed.astype(np.uint8).tobytes())
    return rows


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, samples, color_type, bit_depth, plte=None, trns=None, interlace=False):
    """samples: [h, w, channels] integer array."""
    h, w, c = samples.shape
    raw = b""
    if interlace:
        for x0, y0, dx, dy in ADAM7:
            sub = samples[y0::dy, x0::dx]
            if sub.size == 0:
                continue
            for r in _pack_rows(sub.reshape(sub.shape[0], -1), bit_depth):
                raw += b"\x00" + r
    else:
        for r in _pack_rows(samples.reshape(h, w * c), bit_depth):
            raw += b"\x00" + r
    png = b"\x89PNG\r\n\x1a\n"
    png += _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0))
    if plte is not None:
        png += _chunk(b"PLTE", bytes(np.asarray(plte, dtype=np.uint8).reshape(-1)))
    if trns is not None:
        png += _chunk(b"tRNS", trns)
    png += _chunk(b"IDAT", zlib.compress(raw, 9))
    png += _chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def test_pattern(h, w, c, maxval, seed):
    """Gradients plus noise, covering the full range."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    out = np.zeros((h, w, c), dtype=np.float64)
    for k in range(c):
        out[..., k] = (x * (k + 1) + y * (c - k)) / max(1, (w * (k + 1) + h * (c - k)))
    out = 0.8 * out + 0.2 * rng.random((h, w, c))
    out[0, 0] = 0.0
    out[-1, -1] = 1.0
    return np.round(out * maxval).astype(np.uint32)


def make_images(img_dir):
    os.makedirs(img_dir, exist_ok=True)
    files = []

    def png(name, samples, ct, bd, **kw):
        write_png(os.path.join(img_dir, name), samples, ct, bd, **kw)
        files.append(name)

    png("gray1.png", test_pattern(9, 13, 1, 1, 1), 0, 1)
    png("gray2.png", test_pattern(9, 13, 1, 3, 2), 0, 2)
    png("gray4.png", test_pattern(9, 13, 1, 15, 3), 0, 4)
    png("gray8.png", test_pattern(9, 13, 1, 255, 4), 0, 8)
    png("gray8_trns.png", test_pattern(9, 13, 1, 255, 5), 0, 8, trns=struct.pack(">H", 7))
    g16 = test_pattern(9, 13, 1, 65535, 6)
    g16[0, :5, 0] = [0, 1, 255, 256, 300]
    png("gray16.png", g16, 0, 16)
    png("gray16_low.png", test_pattern(9, 13, 1, 255, 7), 0, 16)  # all < 256: nothing clipped
    png("graya8.png", test_pattern(9, 13, 2, 255, 8), 4, 8)
    png("graya16.png", test_pattern(9, 13, 2, 65535, 9), 4, 16)
    png("rgb8.png", test_pattern(11, 7, 3, 255, 10), 2, 8)
    png("rgb8_trns.png", test_pattern(11, 7, 3, 255, 11), 2, 8, trns=struct.pack(">HHH", 1, 2, 3))
    png("rgb16.png", test_pattern(11, 7, 3, 65535, 12), 2, 16)
    png("rgba8.png", test_pattern(11, 7, 4, 255, 13), 6, 8)
    png("rgba16.png", test_pattern(11, 7, 4, 65535, 14), 6, 16)
    png("rgb8_adam7.png", test_pattern(13, 10, 3, 255, 15), 2, 8, interlace=True)
    rng = np.random.default_rng(16)
    plte = rng.integers(0, 256, size=(16, 3))
    idx = test_pattern(10, 12, 1, 15, 17)
    png("pal4.png", idx, 3, 4, plte=plte)
    plte8 = rng.integers(0, 256, size=(200, 3))
    idx8 = (test_pattern(10, 12, 1, 199, 18))
    png("pal8_trns.png", idx8, 3, 8, plte=plte8, trns=bytes(range(0, 250, 5)))

    # JPEGs through PIL (its encoder; the decode is what is tested)
    base = Image.fromarray(test_pattern(24, 35, 3, 255, 19).astype(np.uint8), "RGB")
    base.save(os.path.join(img_dir, "rgb420.jpg"), quality=85)
    base.save(os.path.join(img_dir, "rgb444.jpg"), quality=95, subsampling=0)
    base.save(os.path.join(img_dir, "progressive.jpg"), quality=80, progressive=True)
    base.convert("L").save(os.path.join(img_dir, "gray.jpg"), quality=90)
    base.convert("CMYK").save(os.path.join(img_dir, "cmyk.jpg"), quality=90)
    files += ["rgb420.jpg", "rgb444.jpg", "progressive.jpg", "gray.jpg", "cmyk.jpg"]
    return files


def make_decode(img_dir, files, out):
    tensors, meta = {}, {"source": "PIL.Image.open(f).convert('RGB'), Pillow %s" % PIL.__version__}
    for f in files:
        im = Image.open(os.path.join(img_dir, f))
        meta["mode." + f] = im.mode
        tensors["decode." + f] = np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
    save_file(tensors, out, metadata=meta)


# ---- resize --------------------------------------------------------------------------

RESIZE_CASES = {
    # name: (source h, w, seed), [(W, H), ...]
    "photo": ((23, 37, 20), [(16, 16), (64, 48), (37, 12), (9, 23), (37, 23), (1, 1), (111, 5)]),
    "wide": ((34, 61, 21), [(27, 15), (61, 34), (16, 9), (122, 68), (40, 40)]),
    "small": ((15, 27, 22), [(61, 34), (854 // 16, 480 // 16), (3, 7)]),
    "noise": ((20, 40, 23), [(57, 10), (13, 31), (7, 3)]),
    "line": ((1, 5, 24), [(3, 7), (5, 2), (12, 1)]),
    "tall": ((100, 3, 25), [(7, 3), (3, 9), (2, 50)]),
    "hd": ((54, 96, 26), [(43, 24), (64, 64), (38, 21)]),  # 1920x1080 -> 854x480 / 512x512 ratios
}


def resize_source(h, w, seed):
    rng = np.random.default_rng(seed)
    if seed == 23:  # pure noise: the most overshoot, exercises clipping at 0 and 255
        return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    img = test_pattern(h, w, 3, 255, seed).astype(np.uint8)
    # hard edges: a black/white block so Lanczos ringing hits 0 and 255
    img[h // 3 : (2 * h) // 3 + 1, w // 3 : (2 * w) // 3 + 1] = 255
    img[h // 3 : (2 * h) // 3 + 1, w // 2 :] = 0
    return img


def make_resize(out):
    tensors = {}
    for name, ((h, w, seed), sizes) in RESIZE_CASES.items():
        src = resize_source(h, w, seed)
        tensors["src." + name] = src
        im = Image.fromarray(src, "RGB")
        for W, H in sizes:
            tensors["out.%s.%dx%d" % (name, W, H)] = np.ascontiguousarray(
                np.asarray(im.resize((W, H), Image.LANCZOS), dtype=np.uint8))
    save_file(tensors, out, metadata={"source": "PIL Image.resize((W, H), Image.LANCZOS), Pillow %s" % PIL.__version__})


# ---- pixel mappings ------------------------------------------------------------------

def make_pixels(out):
    u8 = torch.arange(256, dtype=torch.uint8)
    to_pixels = (u8.float() / 255) * 2 - 1  # torchvision ToTensor, then 2x - 1
    rng = np.random.default_rng(30)
    x = rng.uniform(-1.3, 1.3, size=1000).astype(np.float32)
    # exact grid points and the edges
    grid = ((np.arange(256, dtype=np.float32) / np.float32(255)) * np.float32(2) - np.float32(1))
    x = np.concatenate([x, grid, grid + np.float32(1e-4), grid - np.float32(1e-4),
                        np.array([-1, 1, 0, -5, 5, -0.0], dtype=np.float32)]).astype(np.float32)
    t = torch.from_numpy(x)
    v = (t / 2 + 0.5).clamp(0, 1)
    s = v * 255  # float32, as torch computes it
    trunc = s.to(torch.uint8)
    s64 = s.double()
    fl = torch.floor(s64)
    rnd = torch.where(s64 - fl >= 0.5, fl + 1, fl).to(torch.uint8)  # roundf: half away from zero
    save_file({"to_pixels.in": u8.numpy(), "to_pixels.out": to_pixels.numpy(), "to_u8.in": x,
               "to_u8.round": rnd.numpy(), "to_u8.truncate": trunc.numpy()},
              out, metadata={"source": "torch %s float32: (x/255)*2-1; (x/2+0.5).clamp(0,1)*255 -> uint8" % torch.__version__})


# ---- metrics --------------------------------------------------------------------------

def smooth_image(h, w, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.5 + 0.4 * np.sin(6 * x + k + 3 * y * (k + 1)) for k in range(3)])
    img += 0.05 * rng.standard_normal((3, h, w))
    return np.clip(img, 0, 1).astype(np.float32)


def metric_cases():
    rng = np.random.default_rng(40)
    a = smooth_image(18, 26, 41)
    cases = {
        "noisy": (a, np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)),
        "identical": (a, a.copy()),
        "shifted": (a, np.roll(a, 1, axis=2)),
        "random": (rng.random((3, 13, 15)), rng.random((3, 13, 15))),
        "min11": (smooth_image(11, 11, 42), smooth_image(11, 11, 43)),
        "odd": (smooth_image(17, 12, 44), np.clip(smooth_image(17, 12, 44) * 0.8 + 0.1, 0, 1)),
        "dark": (smooth_image(12, 14, 45) * 0.05, smooth_image(12, 14, 46) * 0.05),
    }
    return {k: (np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.float32)) for k, (x, y) in cases.items()}


def make_metrics(out):
    tensors, meta = {}, {"source": "scikit-image %s (float64)" % skimage.__version__}
    for name, (a, b) in metric_cases().items():
        tensors["a." + name], tensors["b." + name] = a, b
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        meta["psnr." + name] = repr(float(peak_signal_noise_ratio(a64, b64, data_range=1.0)))
        meta["ssim." + name] = repr(float(structural_similarity(
            a64, b64, channel_axis=0, data_range=1.0, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False)))
    rng = np.random.default_rng(50)
    clip_in = rng.random((4, 3, 6, 7)).astype(np.float32)
    clip_out = np.clip(clip_in + 0.05 * rng.standard_normal(clip_in.shape), 0, 1).astype(np.float32)
    ci, co = clip_in.astype(np.float64), clip_out.astype(np.float64)
    meta["temporal"] = repr(float(np.mean(np.abs(np.diff(co, axis=0) - np.diff(ci, axis=0)))))
    tensors["clip_in"], tensors["clip_out"] = clip_in, clip_out
    save_file(tensors, out, metadata=meta)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="refdata/golden/io (rewritten)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    img_dir = os.path.join(args.out, "images")
    files = make_images(img_dir)
    make_decode(img_dir, files, os.path.join(args.out, "decode.safetensors"))
    make_resize(os.path.join(args.out, "resize.safetensors"))
    make_pixels(os.path.join(args.out, "pixels.safetensors"))
    make_metrics(os.path.join(args.out, "metrics.safetensors"))
    print("gen_io: %d images, decode/resize/pixels/metrics goldens in %s" % (len(files), args.out))


if __name__ == "__main__":
    main()
