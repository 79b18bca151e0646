#!/usr/bin/env python3
"""EM bases: stem's streaming EM (bench/em) next to PyTorch's dense formulation (the
original's: the whole n x M responsibility matrix per head), in one run, same inputs
shape, same thread count, each case in its own process so that peak memory (VmHWM)
belongs to it alone.

  python bench/em_torch.py --stem-bin BUILD/bench/em [--frames 8,50,120] [--threads 2]
                           [--reps 3] [--torch-max-frames 50] [--fp16-frames 8]

Case: F frames x 4096 tokens (SD 1.5 top level, 64x64 latents), C = 320, 8 heads
(d = 40), M = 256 bases, R = 5 iterations, tau = 0.01, keys/values standard normals,
initial bases mean + std * N(0,1) drawn inside the timed call (both sides).

PyTorch side (torch.set_num_threads(threads)): heads split as [H, n, d] outside the
timer, then per call: mean/std init, and R times
    mu_hat = mu / (|mu| + 1e-4); z = softmax(k mu_hat^T / tau); zbar = z / (sum_n z + 1e-4);
    mu = zbar^T k
and V_base = zbar^T v. float32 (one warm-up, then --reps timed calls); float16 as the
original runs it (only for --fp16-frames, one timed call: CPU half GEMMs are slow).
Cases whose dense z would not fit in memory (F > --torch-max-frames) are skipped.

Output: stem's machine line, then one JSON line per measurement on stdout; a table on
stderr with time (median and min of the timed calls), process CPU time per call (all
threads; the fairer measure on a shared machine), peak extra memory (VmHWM - resident
after the inputs exist) and the ratios PyTorch / stem of the three times.
"""
import argparse
import json
import os
import subprocess
import sys
import time

TOKENS, CHANNELS, HEADS, BASES, ITERS, TAU = 4096, 320, 8, 256, 5, 0.01


def proc_mib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return float(line.split()[1]) / 1024.0
    return -1.0


def worker(frames, dtype_name, reps, threads):
    import torch
    torch.set_num_threads(threads)
    dt = {"f32": torch.float32, "f16": torch.float16}[dtype_name]
    n, d = frames * TOKENS, CHANNELS // HEADS
    g = torch.Generator().manual_seed(7)
    # token-major [n, C] as a UNet layer produces them, heads split like the original
    k = torch.randn(n, CHANNELS, generator=g).to(dt).reshape(n, HEADS, d).permute(1, 0, 2).contiguous()
    v = torch.randn(n, CHANNELS, generator=g).to(dt).reshape(n, HEADS, d).permute(1, 0, 2).contiguous()
    rss_inputs = proc_mib("VmRSS")

    def em():
        with torch.no_grad():
            mean = k.mean(dim=1, keepdim=True)
            std = k.std(dim=1, keepdim=True)
            mu = mean + std * torch.randn(HEADS, BASES, d, generator=g).to(dt)
            zbar = None
            for _ in range(ITERS):
                mu_hat = mu / (mu.norm(dim=2, keepdim=True) + 1e-4)
                z = torch.softmax(torch.bmm(k, mu_hat.transpose(1, 2)) / TAU, dim=2)
                zbar = z / (z.sum(dim=1, keepdim=True) + 1e-4)
                mu = torch.bmm(zbar.transpose(1, 2), k)
            return mu, torch.bmm(zbar.transpose(1, 2), v)

    times = []
    if dtype_name == "f32":
        em()  # warm-up
    c0 = time.process_time()
    for _ in range(reps):
        t0 = time.perf_counter()
        em()
        times.append(1e3 * (time.perf_counter() - t0))
    cpu_ms = 1e3 * (time.process_time() - c0) / reps
    times.sort()
    med = times[len(times) // 2] if len(times) % 2 else 0.5 * (times[len(times) // 2 - 1] + times[len(times) // 2])
    hwm = proc_mib("VmHWM")
    print(json.dumps({"kind": "em", "impl": "torch_dense_" + dtype_name, "frames": frames, "tokens": n,
                      "channels": CHANNELS, "heads": HEADS, "bases": BASES, "iters": ITERS, "threads": threads,
                      "torch": torch.__version__, "ms_median": round(med, 2), "ms_min": round(times[0], 2),
                      "reps": reps, "cpu_ms_per_call": round(cpu_ms, 1), "rss_inputs_mib": round(rss_inputs, 1), "vmhwm_mib": round(hwm, 1),
                      "extra_peak_mib": round(hwm - rss_inputs, 1)}), flush=True)


def run(cmd, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    if p.returncode != 0 or not lines:
        return lines, {"kind": "em", "impl": cmd[0], "error": (p.stderr.strip().splitlines() or ["failed"])[-1]}
    return lines, lines[-1]


def main():
    ap = argparse.ArgumentParser(description="stem streaming EM vs PyTorch dense EM")
    ap.add_argument("--worker", nargs=4, metavar=("FRAMES", "DTYPE", "REPS", "THREADS"), help=argparse.SUPPRESS)
    ap.add_argument("--stem-bin", default="build/bench/em")
    ap.add_argument("--frames", default="8,50,120")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--torch-max-frames", type=int, default=50,
                    help="largest frame count for the dense PyTorch EM (120 frames needs ~12-16 GiB)")
    ap.add_argument("--fp16-frames", default="8", help="frame counts for the float16 PyTorch run ('' for none)")
    a = ap.parse_args()
    if a.worker:
        worker(int(a.worker[0]), a.worker[1], int(a.worker[2]), int(a.worker[3]))
        return 0
    frames = [int(x) for x in a.frames.split(",") if x]
    fp16 = [int(x) for x in a.fp16_frames.split(",") if x]
    rows = []
    machine_printed = False
    for f in frames:
        lines, stem = run([a.stem_bin, "--frames", str(f), "--reps", str(a.reps)], a.threads)
        if not machine_printed and lines and lines[0].get("kind") == "machine":
            print(json.dumps(lines[0]), flush=True)
            machine_printed = True
        print(json.dumps(stem), flush=True)
        results = [stem]
        for dt in ("f32", "f16"):
            if f > a.torch_max_frames or (dt == "f16" and f not in fp16):
                continue
            reps = a.reps if dt == "f32" else 1
            _, r = run([sys.executable, os.path.abspath(__file__), "--worker", str(f), dt, str(reps), str(a.threads)],
                       a.threads)
            r.setdefault("impl", "torch_dense_" + dt)
            if "ms_median" in r and "ms_median" in stem:
                r["ratio_vs_stem"] = round(r["ms_median"] / stem["ms_median"], 2)
                r["ratio_min_vs_stem"] = round(r["ms_min"] / stem["ms_min"], 2)
                r["cpu_ratio_vs_stem"] = round(r["cpu_ms_per_call"] / stem["cpu_ms_per_call"], 2)
            print(json.dumps(r), flush=True)
            results.append(r)
        rows.append((f, results))
    sys.stderr.write("\n%-7s %-16s %10s %10s %10s %15s %18s\n" % (
        "frames", "impl", "ms median", "ms min", "cpu ms", "peak extra MiB", "x slower (med/min/cpu)"))
    for f, results in rows:
        for r in results:
            if "error" in r:
                sys.stderr.write("%-7d %-16s error: %s\n" % (f, r.get("impl", "?"), r["error"]))
                continue
            sys.stderr.write("%-7d %-16s %10.1f %10.1f %10.1f %15.1f %18s\n" % (
                f, r["impl"], r["ms_median"], r["ms_min"], r["cpu_ms_per_call"], r["extra_peak_mib"],
                "%.1f / %.1f / %.1f" % (r["ratio_vs_stem"], r["ratio_min_vs_stem"], r["cpu_ratio_vs_stem"])
                if "ratio_vs_stem" in r else "1 (ref)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
