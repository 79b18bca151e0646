#!/usr/bin/env python3
"""TokenFlow editing: `stem edit` vs the PyTorch reference pipeline, side by side.

    bench/edit_torch.py --stem BUILD/stem [--case MODEL:FRAMES:SIZE:STEPS[:REPS]]...
                        [--batch-size B] [--threads 2] [--device cpu|cuda] [--dtype f32|f16]
                        [--work /tmp/stem-fullsize] [--wait-quiet 60] [--only torch|stem]

Cases (default tiny-sd1:8:64:5:3 and sd15:4:256:2). MODEL as bench/invert_torch.py takes it
(`tiny-sd1`, `sd15` = the full-size SD 1.5 configurations with random weights built once
under WORK/sd15-pipe, or a diffusers folder); FRAMES frames of refdata/clips/synthetic
resized to SIZE x SIZE; STEPS DDIM steps.

Per case, once: `stem invert` (STEM, video scope, 256 bases, 5 iterations, seed 1) of the
frames into a scratch folder. Then, alternating, each side in its own fresh process, the
same thread count, the same edit of that inversion (prompt "a blue disc drifting right, oil
painting", the shipped configs' negative prompt, guidance 7.5, pnp_attn_t 0.5, pnp_f_t 0.8,
batch size B (default 4: two chunks of the 8-frame case), FreeU on with the original's
1280/640 gate (it fires on SD 1.5, not on the tiny model), extended attention, seed 1):

  torch  refdata/gen/edit_ref.py's TokenFlow hooks on diffusers 0.20.2 (UNet2DConditionModel,
         AutoencoderKL, transformers CLIPTextModel) in --dtype, imported and not modified:
         the inversion's latents are read from stem's files (latents/inv_*.safetensors), z0
         is the VAE encoding of its frames/input, and edit_ref.edit runs the loop (pivotal
         pass with extended attention, token flow, PnP, FreeU) and decodes the result;
  stem   `stem edit --inversion DIR` with the same options, --threads T (OMP_NUM_THREADS=T).

Measured per side: `s_per_frame_step` = editing seconds / (frames x STEPS) (torch: the
loop of edit_ref.edit, without its VAE decode; stem: the manifest's timing.editing_s),
`total_s` (the process, start to exit), peak resident memory `vm_hwm_mb` (GNU time's %M,
as bench/invert_torch.py measures it), CPU seconds and `others_cpu_share` (the share of
the CPUs other processes used meanwhile). `final_rel_diff` = max |stem - torch| / max
|torch| of the last edited latents: a check that both sides did the same edit.

Output: one {"kind":"edit","impl":...} JSON line per run, one {"kind":"edit_ratio"} line per
case (stem / torch of the medians, and of the minima), a table on stderr.
"""
import argparse
import glob
import json
import math
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "fullsize"))
import invert_torch as it  # noqa: E402  (machine facts, measured runs, models, clips)

PROMPT_INV = "a red square moving right"
PROMPT = "a blue disc drifting right, oil painting"
NEGATIVE = "ugly, blurry, low res, unrealistic, unaesthetic"


def worker(a):
    """The torch side: edit_ref.edit on the stem inversion in a.inversion."""
    import time

    import numpy as np
    import torch
    from PIL import Image
    from safetensors.numpy import load_file

    sys.path.insert(0, os.path.join(REPO, "refdata", "gen"))
    import diffusers
    import transformers
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    import edit_ref
    from gen_stem import ddim_schedule

    diffusers.utils.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    dt = {"f32": torch.float32, "f16": torch.float16}[a.dtype]
    t_start = time.perf_counter()
    m = a.model_dir
    unet = UNet2DConditionModel.from_pretrained(os.path.join(m, "unet")).to(dev, dt).eval()
    vae = AutoencoderKL.from_pretrained(os.path.join(m, "vae")).to(dev, dt).eval()
    text = CLIPTextModel.from_pretrained(os.path.join(m, "text_encoder")).to(dev, dt).eval()
    tok = CLIPTokenizer.from_pretrained(os.path.join(m, "tokenizer"))
    sched_cfg = DDIMScheduler.from_pretrained(os.path.join(m, "scheduler"))
    sched_cfg.set_timesteps(a.steps)
    cfg = sched_cfg.config
    alphas, final = ddim_schedule(cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end, cfg.beta_schedule,
                                  cfg.set_alpha_to_one)
    ts = [int(t) for t in sched_cfg.timesteps]
    sched = (alphas, final, ts, cfg.num_train_timesteps // a.steps)
    sf = vae.config.scaling_factor

    def encode(prompt):
        ids = tok(prompt, padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids.to(dev)
        with torch.no_grad():
            return text(ids)[0].float()

    pngs = sorted(glob.glob(os.path.join(a.inversion, "frames", "input", "*.png")))
    pix = np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) for p in pngs]).transpose(0, 3, 1, 2)
    frames = torch.from_numpy(pix / 255.0 * 2.0 - 1.0).to(dev, dt)
    with torch.no_grad():
        z0 = (vae.encode(frames).latent_dist.mean * sf).float()
    inv_files = sorted(glob.glob(os.path.join(a.inversion, "latents", "inv_*.safetensors")))
    inv = torch.stack([torch.from_numpy(load_file(p)["latents"]).float() for p in inv_files]).to(dev)
    inputs = {"z0": z0, "inv": inv, "ctx_src": encode(PROMPT_INV), "ctx_neg": encode(NEGATIVE),
              "ctx_tgt": encode(PROMPT)}
    opts = {"batch_size": a.batch_size, "tail": "every", "edit_attention": "extended", "bases": 256, "iters": 5,
            "seed": 1, "guidance": 7.5, "pnp_attn_t": 0.5, "pnp_f_t": 0.8, "freeu": True,
            "freeu_factors": (1.2, 1.4, 0.9, 0.2), "freeu_gate": (1280, 640)}
    t_decode = [0.0]

    def decode(z):
        t0 = time.perf_counter()
        with torch.no_grad():
            out = vae.decode(z).sample
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t_decode[0] += time.perf_counter() - t0
        return out

    t0 = time.perf_counter()
    out, _ = edit_ref.edit(unet, sf, inputs, opts, sched, decode)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t_edit = time.perf_counter() - t0 - t_decode[0]
    np.save(a.save_latents, out["edit_step%d" % (a.steps - 1)].cpu().numpy())
    F = z0.shape[0]
    print(json.dumps({"kind": "edit", "impl": "torch", "frames": F, "steps": a.steps,
                      "s_per_frame_step": t_edit / (F * a.steps), "editing_s": t_edit,
                      "vae_decode_s": t_decode[0], "in_process_s": time.perf_counter() - t_start,
                      "vm_hwm_self_mb": it.vm_hwm_mb(), "torch": torch.__version__,
                      "diffusers": diffusers.__version__, "threads": torch.get_num_threads()}))


def stem_edit(args, inv_dir, tmp, env):
    out = os.path.join(tmp, "stem-edit")
    cmd = [args.stem, "edit", "--inversion", inv_dir, "--prompt", PROMPT, "--negative-prompt", NEGATIVE,
           "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--out", out, "--force", "--quiet"]
    if args.device != "cpu":
        cmd += ["--backend", args.device]
    if args.dtype != "f32":
        cmd += ["--dtype", args.dtype]
    rc, so, se, facts = it.run_measured(cmd, env)
    if rc:
        sys.exit(f"stem edit failed ({rc}):\n{se}")
    with open(os.path.join(out, "manifest.json")) as f:
        man = json.load(f)
    tm = man["timing"]
    lat = sorted(glob.glob(os.path.join(out, "latents", "edit_*.safetensors")))
    from safetensors.numpy import load_file
    F = man["frames"]["edited"]
    line = {"kind": "edit", "impl": "stem", "frames": F, "steps": args.steps_now,
            "s_per_frame_step": tm["editing_s"] / (F * args.steps_now), "editing_s": tm["editing_s"],
            "vae_decode_s": tm.get("vae_decode_s"), "in_process_s": tm["total_s"], **facts,
            "threads": man["environment"].get("threads"), "tool": man.get("tool")}
    return line, load_file(lat[-1])["latents"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stem", help="the stem program (BUILD/stem)")
    ap.add_argument("--case", action="append", help="MODEL:FRAMES:SIZE:STEPS[:REPS] (repeatable)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="f32", choices=("f32", "f16"))
    ap.add_argument("--work", default="/tmp/stem-fullsize")
    ap.add_argument("--wait-quiet", type=float, default=60.0)
    ap.add_argument("--only", choices=("torch", "stem"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--inversion", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--save-latents", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if not args.stem:
        sys.exit("edit_torch.py: --stem BUILD/stem is required")
    args.stem = os.path.abspath(args.stem)
    args.clip = None
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    print(json.dumps(it.machine_line(args)), flush=True)
    rows = []
    for case in args.case or ["tiny-sd1:8:64:5:3", "sd15:4:256:2"]:
        parts = case.split(":")
        name, F, size, S = parts[0], int(parts[1]), int(parts[2]), int(parts[3])
        reps = int(parts[4]) if len(parts) > 4 else 1
        model_dir = it.model_dir_of(name, args.work)
        clip = it.clip_for(F, args)
        with tempfile.TemporaryDirectory(prefix="stem-bench-edit.") as tmp:
            inv = os.path.join(tmp, "inversion")
            cmd = [args.stem, "invert", "--model", model_dir, "--frames", clip, "--n-frames", str(F), "--width",
                   str(size), "--height", str(size), "--prompt", PROMPT_INV, "--steps", str(S), "--seed", "1",
                   "--threads", str(args.threads), "--out", inv, "--force", "--quiet"]
            if args.device != "cpu":
                cmd += ["--backend", args.device]
            rc, _, se, _ = it.run_measured(cmd, env)
            if rc:
                sys.exit(f"stem invert failed ({rc}):\n{se}")
            runs = {"torch": [], "stem": []}
            finals = {}
            for r in range(reps):
                for impl in ("torch", "stem"):
                    if args.only and impl != args.only:
                        continue
                    waited, busy = it.wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else (0.0, None)
                    if impl == "torch":
                        lat = os.path.join(tmp, "torch-final.npy")
                        wcmd = [sys.executable, os.path.abspath(__file__), "--worker", "--model-dir", model_dir,
                                "--inversion", inv, "--steps", str(S), "--threads", str(args.threads),
                                "--batch-size", str(args.batch_size), "--device", args.device, "--dtype",
                                args.dtype, "--save-latents", lat]
                        rc, so, se, facts = it.run_measured(wcmd, env)
                        if rc:
                            sys.exit(f"torch worker failed ({rc}):\n{se}")
                        line = json.loads(so.strip().splitlines()[-1])
                        line.update(facts)
                        import numpy as np
                        finals["torch"] = np.load(lat)
                    else:
                        args.steps_now = S
                        line, finals["stem"] = stem_edit(args, inv, tmp, env)
                    line.update({"case": case, "model": model_dir, "size": size, "rep": r, "waited_s": waited,
                                 "busy_before": busy, "device": args.device, "dtype": args.dtype})
                    runs[impl].append(line)
                    print(json.dumps(line), flush=True)
            if runs["torch"] and runs["stem"]:
                import numpy as np
                med = {k: it.median([x["s_per_frame_step"] for x in v]) for k, v in runs.items()}
                mins = {k: min(x["s_per_frame_step"] for x in v) for k, v in runs.items()}
                rss = {k: it.median([x["vm_hwm_mb"] for x in v]) for k, v in runs.items()}
                diff = float(np.abs(finals["stem"] - finals["torch"]).max() / np.abs(finals["torch"]).max())
                ratio = {"kind": "edit_ratio", "case": case, "stem_over_torch": med["stem"] / med["torch"],
                         "stem_over_torch_min": mins["stem"] / mins["torch"], "stem_s_per_frame_step": med["stem"],
                         "torch_s_per_frame_step": med["torch"], "stem_vm_hwm_mb": rss["stem"],
                         "torch_vm_hwm_mb": rss["torch"], "rss_stem_over_torch": rss["stem"] / rss["torch"],
                         "final_rel_diff": diff,
                         "others_cpu_share_max": max(x["others_cpu_share"] for v in runs.values() for x in v)}
                rows.append(ratio)
                print(json.dumps(ratio), flush=True)
    if rows:
        print("%-22s %12s %12s %8s %10s %10s %10s %9s" % ("case", "stem s/f-s", "torch s/f-s", "ratio", "stem MB",
                                                            "torch MB", "rel diff", "others"), file=sys.stderr)
        for r in rows:
            print("%-22s %12.4f %12.4f %8.2f %10.0f %10.0f %10.2g %9.2f" % (
                r["case"], r["stem_s_per_frame_step"], r["torch_s_per_frame_step"], r["stem_over_torch"],
                r["stem_vm_hwm_mb"], r["torch_vm_hwm_mb"], r["final_rel_diff"], r["others_cpu_share_max"]),
                file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
