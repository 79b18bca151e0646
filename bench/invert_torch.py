#!/usr/bin/env python3
"""STEM inversion + reconstruction: `stem invert` vs the PyTorch reference pipeline.

Side by side in one invocation:

    bench/invert_torch.py --stem BUILD/stem [--case MODEL:FRAMES:SIZE:STEPS[:REPS]]...
                          [--reps 1] [--threads 2] [--bases 256] [--em-iters 5] [--seed 1]
                          [--device cpu|cuda] [--dtype f32|f16] [--work /tmp/stem-fullsize]
                          [--wait-quiet 60] [--only torch|stem]

Cases (default: tiny-sd1:8:64:10:3 and sd15:4:256:3). MODEL is `tiny-sd1` (the bundled
refdata/models/tiny-sd1), `sd15` (the full-size SD 1.5 UNet, VAE and CLIP text encoder
configurations with random weights, built once under WORK/sd15-pipe, see below) or a
diffusers folder. FRAMES frames of refdata/clips/synthetic (8 PNGs, 64x64; for more
frames the same synthetic motion over FRAMES frames, generated once into WORK, or
--clip DIR), resized to
SIZE x SIZE (Lanczos), STEPS DDIM steps, prompt "a red square moving right"; REPS
(default --reps) runs of each side, alternating torch / stem, each in a fresh process.

Both sides do the same work, each in its own fresh process (so that the peak resident
memory is its own), one after the other, same thread count:

  torch  refdata/gen/gen_invert.py's pipeline in float32 (or --dtype): diffusers 0.20.2
         UNet2DConditionModel / AutoencoderKL, transformers CLIPTextModel; every attn1
         through gen_invert.StemSelfAttention (doc/algorithm.md §5: dense EM from gen_stem.py with
         Philox initial bases from philox_ref.py, M bases, R iterations, tau 0.01,
         scope video: one EM over all F frames), attn2 diffusers' own (SDPA); all F frames
         in one UNet batch; TokenFlow/STEM ddim_inversion then DDIM eta = 0 (the loop of
         gen_invert.run_pipeline, re-run here with timers around each stage);
         torch.set_num_threads(T). It also decodes z0 (the VAE round trip) as stem does.
  stem   `stem invert --attention stem --em-scope video --bases M --em-iters R` on the
         same folder and frames, --threads T (and OMP_NUM_THREADS=T); its stage timings
         come from the manifest.json it writes (it also writes every step's latents, PNG
         frames, a contact sheet and PSNR/SSIM: in total_s, not in the UNet stages).

Measured per side: seconds per frame-step = (inversion_s + reconstruction_s) / (F x 2S)
(the 2S UNet evaluations on F frames, with the EM inside), the stage times, the process
wall time from start to exit (`total_s`: loading, VAE, everything), the peak resident
memory of the process (`vm_hwm_mb`: its VmHWM at exit, as GNU time's %M reports it; the
torch worker also reports its own VmHWM as vm_hwm_self_mb), and
`median_eval_s`, the median time of one UNet evaluation (torch: timed around each call;
stem: the intervals between the step files it writes, so from the second step on). On
cuda the torch side also reports torch.cuda.max_memory_allocated.

Noise: on a shared machine every run also records its CPU seconds (`cpu_s`, all threads)
and `others_cpu_share`, the share of the machine's CPUs that OTHER processes used during
the run (from /proc/stat minus the run's own CPU time: 0 = it ran alone, 0.5 on 2 CPUs =
something else held a whole core). Before each run the driver waits (up to --wait-quiet
seconds) for a 2 s sample with the CPUs >= 85 % idle. Trust ratios only from runs where
both sides show a small others_cpu_share.

Output: one {"kind":"machine"} line, one {"kind":"invert","impl":"torch"|"stem",...} line
per run, one {"kind":"invert_ratio",...} line per case (stem / torch of the medians over
the runs, `stem_over_torch_min` of the minima; and
`rec_z0_rel_diff` = max |stem - torch| / max |torch| of the reconstructed z0, a check
that both computed the same thing), a {"kind":"summary"} line; a table on stderr.

The full-size folder WORK/sd15-pipe: unet/ is tests/fullsize/compare_unet.py's SD 1.5
UNet (seed 1234, shared with bench/unet_torch.py at WORK/sd15/unet, linked), vae/ the
SD 1.5 AutoencoderKL config and text_encoder/ the CLIP ViT-L/14 text config, random
weights built the same way (PyTorch's default init, norm weights 1 + 0.2 n, biases
0.1 n; float16 safetensors), tokenizer/ and scheduler/ copied from tiny-sd1.
"""

import argparse
import datetime
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, ".."))
CLIP = os.path.join(REPO, "refdata", "clips", "synthetic")
PROMPT = "a red square moving right"

# runwayml/stable-diffusion-v1-5 vae/config.json
SD15_VAE = dict(
    act_fn="silu",
    block_out_channels=[128, 256, 512, 512],
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=2,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)
# runwayml/stable-diffusion-v1-5 text_encoder/config.json (CLIP ViT-L/14 text tower)
SD15_TEXT = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    projection_dim=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    attention_dropout=0.0,
    dropout=0.0,
    initializer_range=0.02,
    initializer_factor=1.0,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
)


# ---- the full-size random-weight folder ----------------------------------------------------

def ensure_sd15_pipeline(work, seed=1234):
    """WORK/sd15-pipe: a diffusers SD 1.5 folder with random weights (reused when present)."""
    import torch
    sys.path.insert(0, os.path.join(REPO, "tests", "fullsize"))
    import compare_unet  # the SD 1.5 UNet builder shared with the full-size check

    root = os.path.join(work, "sd15-pipe")
    stamp = os.path.join(root, "stem-seed.txt")
    if os.path.exists(stamp) and open(stamp).read().strip() == str(seed):
        return root
    unet_dir = compare_unet.ensure_model(work, "sd15", compare_unet.SD15, seed=seed)
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    print(f"[sd15] building random-weight VAE and text encoder (seed {seed}) in {root}", file=sys.stderr, flush=True)
    tmp = root + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    tiny = os.path.join(REPO, "refdata", "models", "tiny-sd1")
    for sub in ("tokenizer", "scheduler"):
        shutil.copytree(os.path.join(tiny, sub), os.path.join(tmp, sub))
    shutil.copyfile(os.path.join(tiny, "model_index.json"), os.path.join(tmp, "model_index.json"))
    os.symlink(os.path.abspath(unet_dir), os.path.join(tmp, "unet"))
    torch.manual_seed(seed + 1)
    gen = torch.Generator().manual_seed(seed + 1)
    vae = AutoencoderKL(**SD15_VAE)
    compare_unet.perturb(vae, gen)
    vae.half().save_pretrained(os.path.join(tmp, "vae"), safe_serialization=True)
    del vae
    text = CLIPTextModel(CLIPTextConfig(**SD15_TEXT))
    compare_unet.perturb(text, gen)
    text.half().save_pretrained(os.path.join(tmp, "text_encoder"), safe_serialization=True)
    del text
    with open(os.path.join(tmp, "stem-seed.txt"), "w") as f:
        f.write(str(seed))
    shutil.rmtree(root, ignore_errors=True)
    os.rename(tmp, root)
    return root


def clip_for(frames, args):
    """--clip, else the bundled 8-frame clip, else (more frames) the same synthetic motion
    (refdata/gen/gen_clip.py's frame formula) over FRAMES frames, written once to WORK."""
    if args.clip:
        return os.path.abspath(args.clip)
    if frames <= len(glob.glob(os.path.join(CLIP, "*.png"))):
        return CLIP
    out = os.path.join(args.work, "clip-synthetic-%d" % frames)
    if len(glob.glob(os.path.join(out, "*.png"))) != frames:
        sys.path.insert(0, os.path.join(REPO, "refdata", "gen"))
        import gen_clip
        from PIL import Image
        gen_clip.N_FRAMES = frames
        os.makedirs(out, exist_ok=True)
        for t in range(frames):
            Image.fromarray(gen_clip.frame(t)).save(os.path.join(out, "%05d.png" % t))
    return out


def model_dir_of(name, work):
    if name == "tiny-sd1":
        return os.path.join(REPO, "refdata", "models", "tiny-sd1")
    if name == "sd15":
        return ensure_sd15_pipeline(work)
    if os.path.isdir(name):
        return os.path.abspath(name)
    sys.exit(f"invert_torch.py: unknown model '{name}' (tiny-sd1, sd15 or a diffusers folder)")


def median(v):
    v = sorted(v)
    n = len(v)
    if not n:
        return None
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


# ---- the torch side (one process per case) -------------------------------------------------

def vm_hwm_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    return -1.0


def em_init_philox_on_device(k, bases, seed, layer=0, w3=0):
    """gen_stem.em_init_philox, with its (numpy Philox) normals moved to k's device."""
    import numpy as np
    import torch
    import philox_ref

    H, n, d = k.shape
    mean = k.mean(dim=1, keepdim=True)
    std = k.std(dim=1, keepdim=True) if n > 1 else torch.zeros_like(mean)  # n = 1: std := 0
    noise = np.stack([philox_ref.philox_normal(bases * d, seed, h, layer, w3).reshape(bases, d) for h in range(H)])
    return mean + std * torch.from_numpy(noise).to(k.device, k.dtype)


def worker(args):
    """The reference pipeline of gen_invert.run_pipeline with timers (no jitter, no feed)."""
    import math

    import numpy as np
    import torch

    sys.path.insert(0, os.path.join(REPO, "refdata", "gen"))
    import diffusers
    import transformers
    import gen_invert as gi

    diffusers.utils.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    dt = {"f32": torch.float32, "f16": torch.float16, "f64": torch.float64}[args.dtype]
    F, S = args.frames, args.steps

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    device_used_peak = [0]

    def sample_device_memory():  # as stem: cudaMemGetInfo's total - free (context and caches included)
        if dev.type == "cuda":
            free, total = torch.cuda.mem_get_info()
            device_used_peak[0] = max(device_used_peak[0], total - free)

    t_start = time.perf_counter()
    # gen_invert's frame loader and schedule read its module constants
    gi.FRAMES, gi.HEIGHT, gi.WIDTH, gi.STEPS = F, args.size, args.size, S
    gi.CLIP = args.clip  # absolute: os.path.join(REPO, CLIP) is then CLIP
    frames_u8 = gi.make_frames(REPO)
    frames = torch.from_numpy((frames_u8.astype(np.float32) / np.float32(255.0)) * np.float32(2.0) - np.float32(1.0))
    a, final, ts_desc, ratio = gi.schedule(args.model_dir)

    t0 = time.perf_counter()
    models = gi.Models(args.model_dir, dt)
    for m in (models.text, models.vae, models.unet):
        m.to(dev)
    sync()
    load_s = time.perf_counter() - t0

    if dev.type != "cpu":
        gi.em_init_philox = em_init_philox_on_device

    st = gi.State("stem", "video", F, args.bases, args.em_iters, args.seed)
    with torch.no_grad():
        t0 = time.perf_counter()
        ids = models.tok(gi.PROMPT, padding="max_length", max_length=77, truncation=True,
                         return_tensors="pt").input_ids.to(dev)
        old = torch.get_default_dtype()
        torch.set_default_dtype(dt)  # as Models.encode_prompt: transformers builds its mask in it
        try:
            ctx = models.text(input_ids=ids).last_hidden_state.to(dt)
        finally:
            torch.set_default_dtype(old)
        sync()
        text_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        z0 = models.vae.encode(frames.to(dev, dt)).latent_dist.mean * models.sf
        sync()
        encode_s = time.perf_counter() - t0

        models.set_attention(st)
        cond = ctx.expand(F, -1, -1)

        evals = []

        def eps_at(x, t, phase, step):
            st.phase, st.step, st.layer = phase, step, 0
            te = time.perf_counter()
            e = models.unet(x, torch.tensor(t, dtype=torch.int64), encoder_hidden_states=cond).sample
            sync()
            evals.append(time.perf_counter() - te)
            sample_device_memory()
            assert st.layer == len(models.attn1), (st.layer, len(models.attn1))
            st.recording = False
            return e

        # inversion: ascending t, target t, a' = abar_{t - delta} (abar_0 at the first step)
        t0 = time.perf_counter()
        x = z0.clone()
        for i, t in enumerate(ts_desc[::-1]):
            at = a[t]
            ap = a[t - ratio] if t - ratio >= 0 else final
            e = eps_at(x, int(t), 0, i)
            x0 = (x - math.sqrt(1 - ap) * e) / math.sqrt(ap)
            x = math.sqrt(at) * x0 + math.sqrt(1 - at) * e
        sync()
        inv_s = time.perf_counter() - t0

        # reconstruction: DDIM eta = 0
        t0 = time.perf_counter()
        for i, t in enumerate(ts_desc):
            at = a[t]
            ap = a[t - ratio] if t - ratio >= 0 else final
            e = eps_at(x, int(t), 1, i)
            x0 = (x - math.sqrt(1 - at) * e) / math.sqrt(at)
            x = math.sqrt(ap) * x0 + math.sqrt(1 - ap) * e
        sync()
        rec_s = time.perf_counter() - t0
        models.set_attention(None)

        t0 = time.perf_counter()
        vae_px = models.vae.decode(z0 / models.sf).sample
        rec_px = models.vae.decode(x / models.sf).sample
        sync()
        sample_device_memory()
        decode_s = time.perf_counter() - t0

    rec = x.float().cpu().numpy()
    if args.save_latents:
        np.save(args.save_latents, rec)
    err = (rec_px.float().cpu() - frames).clamp(-2, 2)
    mse = float((err / 2).pow(2).mean())
    line = {
        "kind": "invert", "impl": "torch", "case": args.case, "model": args.model_dir, "device": args.device,
        "dtype": args.dtype, "frames": F, "width": args.size, "height": args.size,
        "latent": list(z0.shape[2:]), "steps": S, "bases": args.bases, "em_iters": args.em_iters,
        "threads": torch.get_num_threads(), "unet_evals": 2 * S,
        "s_per_frame_step": (inv_s + rec_s) / (F * 2 * S),
        "first_eval_s": evals[0], "median_eval_s": median(evals),
        "inversion_s": inv_s, "reconstruction_s": rec_s, "load_s": load_s, "text_s": text_s,
        "vae_encode_s": encode_s, "vae_decode_s": decode_s, "in_process_s": time.perf_counter() - t_start,
        "recon_psnr_db": 10 * math.log10(1.0 / mse) if mse > 0 else float("inf"),
        "finite": bool(np.isfinite(rec).all()), "vm_hwm_self_mb": vm_hwm_mb(),
        "attention": "attn1 gen_invert.StemSelfAttention (dense EM), attn2 AttnProcessor2_0 (SDPA)",
        "torch": torch.__version__, "diffusers": diffusers.__version__,
    }
    if dev.type == "cuda":
        line["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
        line["device_memory_peak_mb"] = device_used_peak[0] / 2 ** 20
        line["gpu"] = torch.cuda.get_device_name()
    print(json.dumps(line), flush=True)


# ---- the driver ------------------------------------------------------------------------------

def cpu_busy_s():
    """Busy CPU seconds of the whole machine so far (all CPUs; /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_s, idle_frac=0.85):
    """Waits (up to max_s) until a 2 s sample shows the machine idle_frac idle."""
    t0 = time.perf_counter()
    n = os.cpu_count() or 1
    while True:
        b0, w0 = cpu_busy_s(), time.perf_counter()
        time.sleep(2.0)
        busy = (cpu_busy_s() - b0) / ((time.perf_counter() - w0) * n)
        if busy <= 1 - idle_frac or time.perf_counter() - t0 >= max_s:
            return time.perf_counter() - t0, busy


GNU_TIME = "/usr/bin/time"


def run_measured(cmd, env):
    """Runs cmd; returns (returncode, stdout, stderr, facts) with facts: wall seconds, peak RSS MB of
    the command, its CPU seconds, and the share of the machine's CPUs that other processes
    used meanwhile (0 = it ran alone; 0.5 on 2 CPUs = another process had a core).

    Peak RSS: Linux carries a process's ru_maxrss across exec and starts a forked child's
    at its parent's peak, so wait4's ru_maxrss of a child of this (large, torch-importing)
    driver would be at least the driver's own peak. GNU time, a small fresh process, forks
    the command and reports ITS ru_maxrss (%M), which is then the command's own VmHWM at
    exit. Without /usr/bin/time the wait4 value is kept as an upper bound."""
    hwm_file = tempfile.NamedTemporaryFile(prefix="stem-bench-hwm.", delete=False)
    hwm_file.close()
    wrapped = [GNU_TIME, "-q", "-f", "%M", "-o", hwm_file.name] + cmd if os.access(GNU_TIME, os.X_OK) else cmd
    b0 = cpu_busy_s()
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.Popen(wrapped, stdout=out, stderr=err, env=env)
            _, status, ru = os.wait4(p.pid, 0)
            wall = time.perf_counter() - t0
            busy = cpu_busy_s() - b0
            p.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            cpu = ru.ru_utime + ru.ru_stime
            facts = {"total_s": wall, "vm_hwm_mb": ru.ru_maxrss / 1024.0, "rss_method": "wait4 (upper bound)",
                     "cpu_s": cpu, "others_cpu_share": max(0.0, busy - cpu) / (wall * (os.cpu_count() or 1))}
            if wrapped is not cmd:
                try:
                    with open(hwm_file.name) as f:
                        facts["vm_hwm_mb"] = int(f.read().split()[-1]) / 1024.0
                    facts["rss_method"] = "GNU time %M"
                except (OSError, ValueError, IndexError):
                    pass
            return p.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"), facts
    finally:
        os.unlink(hwm_file.name)


def machine_line(args):
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    r = subprocess.run([args.stem, "--version"], capture_output=True, text=True)
    return {
        "kind": "machine", "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": platform.node(), "cpu": cpu, "logical_cpus": os.cpu_count(), "load1": os.getloadavg()[0],
        "threads": args.threads, "device": args.device, "dtype": args.dtype,
        "stem": (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr).strip() else "?",
        "command": " ".join([os.path.relpath(sys.argv[0], os.getcwd())] + sys.argv[1:]),
    }


def stem_side(args, case, model_dir, F, size, S, env, tmp):
    out = os.path.join(tmp, "stem-out")
    cmd = [args.stem, "invert", "--model", model_dir, "--frames", args.clip_dir, "--n-frames", str(F),
           "--width", str(size), "--height", str(size), "--prompt", PROMPT, "--steps", str(S),
           "--attention", "stem", "--em-scope", "video",
           "--bases", str(args.bases), "--em-iters", str(args.em_iters), "--seed", str(args.seed),
           "--threads", str(args.threads), "--out", out, "--force", "--quiet"]
    if args.device != "cpu":
        cmd += ["--backend", args.device]
    if args.dtype != "f32":
        cmd += ["--dtype", args.dtype]
    rc, so, se, facts = run_measured(cmd, env)
    if rc:
        sys.exit(f"stem invert failed ({rc}):\n{se}")
    with open(os.path.join(out, "manifest.json")) as f:
        man = json.load(f)
    tm = man["timing"]
    lat = [int(v) for v in man["model"]["latent_size"].split("x")][::-1]
    line = {
        "kind": "invert", "impl": "stem", "case": case, "model": model_dir, "device": args.device, "dtype": args.dtype,
        "frames": F, "width": size, "height": size, "latent": lat, "steps": S, "bases": args.bases,
        "em_iters": args.em_iters, "threads": man["environment"]["threads"], "unet_evals": 2 * S,
        "s_per_frame_step": (tm["inversion_s"] + tm["reconstruction_s"]) / (F * 2 * S),
        "inversion_s": tm["inversion_s"], "reconstruction_s": tm["reconstruction_s"],
        "vae_encode_s": tm["vae_encode_s"], "vae_decode_s": tm["vae_decode_s"], "in_process_s": tm["total_s"],
        **facts,
        "recon_psnr_db": man.get("metrics", {}).get("reconstruction_vs_input", {}).get("mean_psnr_db"),
        "backend": man["environment"]["backend"], "tool": man["tool"],
        "device_memory_peak_mb": man["environment"].get("device_memory_peak_bytes", 0) / 2 ** 20 or None,
    }
    # every step's latents are written when the step ends: their mtimes give the step times
    # (from the second step on; the first also holds the warm-up)
    invs = sorted(glob.glob(os.path.join(out, "latents", "inv_*.safetensors")))
    recs = sorted(glob.glob(os.path.join(out, "latents", "rec_*.safetensors")))
    mt = [os.stat(p).st_mtime_ns / 1e9 for p in invs] + [os.stat(p).st_mtime_ns / 1e9 for p in recs]
    line["median_eval_s"] = median([b - a for a, b in zip(mt, mt[1:])])
    rec = None
    if recs:
        from safetensors.numpy import load_file
        rec = load_file(recs[-1])["latents"]
    return line, rec


def torch_side(args, case, model_dir, F, size, S, env, tmp):
    import numpy as np
    lat = os.path.join(tmp, "torch-rec.npy")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--model-dir", model_dir, "--case", case,
           "--frames", str(F), "--size", str(size), "--steps", str(S), "--threads", str(args.threads),
           "--bases", str(args.bases), "--em-iters", str(args.em_iters), "--seed", str(args.seed),
           "--device", args.device, "--dtype", args.dtype, "--save-latents", lat, "--clip", args.clip_dir]
    rc, so, se, facts = run_measured(cmd, env)
    if rc:
        sys.exit(f"torch worker failed ({rc}):\n{se}")
    line = json.loads(so.strip().splitlines()[-1])
    line.update(facts)
    return line, np.load(lat)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stem", help="the stem program (BUILD/stem)")
    ap.add_argument("--case", action="append", help="MODEL:FRAMES:SIZE:STEPS[:REPS] (repeatable)")
    ap.add_argument("--reps", type=int, default=1, help="runs of each side per case (alternating); default 1")
    ap.add_argument("--wait-quiet", type=float, default=60.0,
                    help="before each run, wait up to this many seconds for the CPUs to be >= 85%% idle (0: don't)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bases", type=int, default=256)
    ap.add_argument("--em-iters", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="f32", choices=("f32", "f16"))
    ap.add_argument("--work", default="/tmp/stem-fullsize")
    ap.add_argument("--clip", help="frames folder (default: refdata/clips/synthetic; more frames: generated)")
    ap.add_argument("--only", choices=("torch", "stem"), help="run one side only (no ratio line)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--save-latents", help=argparse.SUPPRESS)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    if args.worker:
        args.case = args.case[0] if args.case else "?"
        return worker(args)
    if args.only != "torch" and (not args.stem or not os.access(args.stem, os.X_OK)):
        sys.exit("invert_torch.py: --stem BUILD/stem is required (make in your build directory)")
    if not args.stem:
        args.stem = "stem"
    cases = args.case or ["tiny-sd1:8:64:10:3", "sd15:4:256:3"]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONWARNINGS="ignore")
    t_begin = time.perf_counter()
    print(json.dumps(machine_line(args)), flush=True)
    rows = []
    for spec in cases:
        try:
            parts = spec.split(":")
            name, F, size, S = parts[0], int(parts[1]), int(parts[2]), int(parts[3])
            reps = int(parts[4]) if len(parts) > 4 else args.reps
            assert len(parts) <= 5 and reps >= 1
        except (ValueError, IndexError, AssertionError):
            sys.exit(f"invert_torch.py: --case {spec}: want MODEL:FRAMES:SIZE:STEPS[:REPS]")
        model_dir = model_dir_of(name, args.work)
        args.clip_dir = clip_for(F, args)
        case = f"{name} {F}x{size}x{size} S={S}"
        runs = {"torch": [], "stem": []}
        t_rec = s_rec = None
        for rep in range(reps):  # the two sides alternate, each run in a fresh process
            for side, fn in (("torch", torch_side), ("stem", stem_side)):
                if args.only and args.only != side:
                    continue
                waited, busy = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else (0.0, None)
                tmp = tempfile.mkdtemp(prefix="stem-bench-invert.")
                try:
                    load0 = os.getloadavg()[0]
                    line, rec = fn(args, case, model_dir, F, size, S, env, tmp)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                line["rep"] = rep
                line["waited_for_quiet_s"] = waited
                line["load1_before"] = load0
                line["load1_after"] = os.getloadavg()[0]
                print(json.dumps(line), flush=True)
                runs[side].append(line)
                if side == "torch":
                    t_rec = rec
                else:
                    s_rec = rec
        agg = {}
        for side, lines in runs.items():
            if lines:
                agg[side] = {
                    "s_per_frame_step": median([ln["s_per_frame_step"] for ln in lines]),
                    "s_per_frame_step_min": min(ln["s_per_frame_step"] for ln in lines),
                    "inversion_s": median([ln["inversion_s"] for ln in lines]),
                    "reconstruction_s": median([ln["reconstruction_s"] for ln in lines]),
                    "median_eval_s": median([ln["median_eval_s"] for ln in lines if ln.get("median_eval_s")]),
                    "total_s": median([ln["total_s"] for ln in lines]),
                    "vm_hwm_mb": max(ln["vm_hwm_mb"] for ln in lines),
                    "device_memory_peak_mb": max((ln.get("device_memory_peak_mb") or 0) for ln in lines) or None,
                    "cpu_s": median([ln["cpu_s"] for ln in lines]),
                    "others_cpu_share": max(ln["others_cpu_share"] for ln in lines),
                    "reps": len(lines),
                }
        ratio = None
        if "torch" in agg and "stem" in agg:
            import numpy as np
            diff = None
            if t_rec is not None and s_rec is not None and t_rec.shape == s_rec.shape:
                diff = float(np.abs(s_rec.astype(np.float64) - t_rec).max() / max(np.abs(t_rec).max(), 1e-30))
            t, st = agg["torch"], agg["stem"]
            ratio = {
                "kind": "invert_ratio", "case": case, "frames": F, "width": size, "height": size, "steps": S,
                "threads": args.threads, "device": args.device, "dtype": args.dtype, "reps": reps,
                "stem_s_per_frame_step": st["s_per_frame_step"], "torch_s_per_frame_step": t["s_per_frame_step"],
                "stem_over_torch": st["s_per_frame_step"] / t["s_per_frame_step"],
                "stem_over_torch_min": st["s_per_frame_step_min"] / t["s_per_frame_step_min"],
                "stem_median_eval_s": st["median_eval_s"], "torch_median_eval_s": t["median_eval_s"],
                "stem_total_s": st["total_s"], "torch_total_s": t["total_s"],
                "stem_over_torch_total": st["total_s"] / t["total_s"],
                "stem_vm_hwm_mb": st["vm_hwm_mb"], "torch_vm_hwm_mb": t["vm_hwm_mb"],
                "stem_device_memory_peak_mb": st["device_memory_peak_mb"],
                "torch_device_memory_peak_mb": t["device_memory_peak_mb"],
                "stem_cpu_s": st["cpu_s"], "torch_cpu_s": t["cpu_s"],
                "others_cpu_share_max": max(st["others_cpu_share"], t["others_cpu_share"]),
                "rec_z0_rel_diff": diff, "load1_end": os.getloadavg()[0],
            }
            print(json.dumps(ratio), flush=True)
        rows.append((case, agg, ratio))
    print(json.dumps({"kind": "summary", "cases": len(rows), "wall_s": time.perf_counter() - t_begin,
                      "load1_end": os.getloadavg()[0]}), flush=True)

    # the human table (medians over the repetitions; min in parentheses)
    def f(x, fmt):
        return fmt % x if x is not None else "-"

    hdr = ("case", "side", "reps", "s/frame-step (min)", "UNet eval s", "inv s", "rec s", "total s", "peak RSS MB",
           "others' CPU", "stem/torch")
    table = [hdr]
    for case, agg, r in rows:
        for side in ("torch", "stem"):
            a = agg.get(side)
            if a:
                table.append((case, side, str(a["reps"]),
                              "%.4f (%.4f)" % (a["s_per_frame_step"], a["s_per_frame_step_min"]),
                              f(a["median_eval_s"], "%.2f"), "%.2f" % a["inversion_s"],
                              "%.2f" % a["reconstruction_s"], "%.1f" % a["total_s"], "%.0f" % a["vm_hwm_mb"],
                              "%.0f%%" % (100 * a["others_cpu_share"]),
                              f(r["stem_over_torch"], "%.3f") if (r and side == "stem") else ""))
    w = [max(len(row[i]) for row in table) for i in range(len(hdr))]
    for row in table:
        print("  ".join(c.ljust(w[i]) if i < 2 else c.rjust(w[i]) for i, c in enumerate(row)), file=sys.stderr)


if __name__ == "__main__":
    main()
