#!/usr/bin/env python3
"""UNet forward, stem vs PyTorch + diffusers, side by side in one invocation.

    bench/unet_torch.py --stem-bin BUILD/bench/unet [--sizes 32,64] [--batch 2]
                        [--threads 2] [--reps 3] [--work /tmp/stem-fullsize]
                        [--device cpu|cuda] [--dtype f32|f16]

The model is the full-size SD 1.5 UNet configuration with random weights (built once
by tests/fullsize/compare_unet.py's builder and stored as float16 safetensors under
WORK/sd15/unet; both sides upcast to float32). For each latent size, in this order,
each in a fresh process so that peak memory is per size:

  torch   diffusers 0.20.2 UNet2DConditionModel, float32, torch.set_num_threads(T)
          (with --device cuda: on the GPU, in --dtype, SDPA attention)
  stem    BUILD/bench/unet, CPU f32, --threads T (OMP_NUM_THREADS=T too)
          (with --device cuda: --backend cuda --dtype DTYPE)

Each side: one untimed warm-up forward, then REPS timed forwards; seconds = median.
Inputs: batch B, timesteps 981, random latents and [B, 77, 768] context.
Prints stem's machine line, one JSON line per measurement ({"kind":"unet",
"impl":"torch"|"stem",...}) and one {"kind":"unet_ratio",...} line per size with
stem/torch time and both peak RSS values (VmHWM, weights included).
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, ".."))


def vm_hwm_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    return -1.0


def worker(args):
    import numpy as np
    import torch
    import diffusers
    from diffusers import UNet2DConditionModel

    diffusers.utils.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    dev = torch.device(args.device)
    dt = torch.float16 if args.dtype == "f16" else torch.float32
    unet = UNet2DConditionModel.from_pretrained(args.unet_dir, torch_dtype=dt).eval().to(dev)
    load_s = time.time() - t0
    rng = np.random.default_rng(0)
    B, S = args.batch, args.size
    x = torch.from_numpy(rng.standard_normal((B, 4, S, S)).astype(np.float32)).to(dev, dt)
    c = torch.from_numpy(rng.standard_normal((B, 77, unet.config.cross_attention_dim)).astype(np.float32)).to(dev, dt)
    t = torch.full((B,), 981.0, device=dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    times = []
    with torch.inference_mode():
        unet(x, t, c)
        sync()
        for _ in range(args.reps):
            t0 = time.perf_counter()
            unet(x, t, c)
            sync()
            times.append(time.perf_counter() - t0)
    times.sort()
    n = len(times)
    med = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    print(json.dumps({
        "kind": "unet", "impl": "torch", "model": args.unet_dir, "backend": args.device, "dtype": args.dtype, "batch": B,
        "h": S, "w": S, "threads": torch.get_num_threads(), "reps": n, "seconds": med, "seconds_min": times[0],
        "load_seconds": load_s, "vm_hwm_mb": vm_hwm_mb(), "torch": torch.__version__,
        "diffusers": diffusers.__version__, "attention": "AttnProcessor2_0 (SDPA)",
    }), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stem-bin")
    ap.add_argument("--sizes", default="32,64")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--work", default="/tmp/stem-fullsize")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--dtype", default="f32", choices=("f32", "f16"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--unet-dir", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if not args.stem_bin or not os.access(args.stem_bin, os.X_OK):
        sys.exit("unet_torch.py: --stem-bin BUILD/bench/unet is required (make bench/unet)")

    sys.path.insert(0, os.path.join(REPO, "tests", "fullsize"))
    import compare_unet  # the random-weight SD 1.5 builder shared with the full-size check
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    unet_dir = compare_unet.ensure_model(args.work, "sd15", compare_unet.SD15, seed=1234)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONWARNINGS="ignore")
    machine_printed = False
    for size in [int(s) for s in args.sizes.split(",")]:
        r = subprocess.run([sys.executable, __file__, "--worker", "--unet-dir", unet_dir, "--size", str(size),
                            "--batch", str(args.batch), "--threads", str(args.threads), "--reps", str(args.reps),
                            "--device", args.device, "--dtype", args.dtype],
                           capture_output=True, text=True, env=env)
        if r.returncode:
            sys.exit(f"torch worker failed:\n{r.stderr}")
        torch_line = json.loads(r.stdout.strip().splitlines()[-1])
        print(json.dumps(torch_line), flush=True)
        r = subprocess.run([args.stem_bin, unet_dir, "--size", str(size), "--batch", str(args.batch), "--reps",
                            str(args.reps), "--threads", str(args.threads)]
                           + (["--backend", args.device, "--dtype", args.dtype] if args.device != "cpu" else []),
                           capture_output=True, text=True, env=env)
        if r.returncode:
            sys.exit(f"stem bench failed:\n{r.stderr}")
        stem_line = None
        for line in r.stdout.splitlines():
            j = json.loads(line)
            if j.get("kind") == "machine" and not machine_printed:
                print(line, flush=True)
                machine_printed = True
            elif j.get("kind") == "unet":
                stem_line = j
                print(line, flush=True)
        print(json.dumps({
            "kind": "unet_ratio", "batch": args.batch, "h": size, "w": size, "threads": args.threads,
            "device": args.device, "dtype": args.dtype,
            "stem_seconds": stem_line["seconds"], "torch_seconds": torch_line["seconds"],
            "stem_over_torch": stem_line["seconds"] / torch_line["seconds"],
            "stem_vm_hwm_mb": stem_line["vm_hwm_mb"], "torch_vm_hwm_mb": torch_line["vm_hwm_mb"],
        }), flush=True)


if __name__ == "__main__":
    main()
