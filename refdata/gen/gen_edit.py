#!/usr/bin/env python3
"""Golden data for `stem edit`: TokenFlow plug-and-play editing on STEM-inverted latents
(doc/algorithm.md §7, SPEC §6, §7, §9), with the hooks of edit_ref.py on diffusers 0.20.2.

    gen_edit.py [--repo DIR] [--out DIR] [--only SUBSTRING]

Models: refdata/models/tiny-sd1, tiny-sd2 (FreeU's gate never fires on them, as in the
original) and tiny-freeu (gen_freeu_model.py: SD 1.5's module tree 20x narrower, where FreeU,
all eight PnP Q/K sites and the conv site act). Text encoder, VAE and UNet run in float64
(float16 weights upcast); every stored tensor is a float64 result rounded once to float32, and
each stage starts from the stored (rounded) tensors of the previous one, as a C test would.

Pipeline per case (choices in CAPITALS are ours, everything else is the original's):
  1. frames: the first F frames of refdata/clips/synthetic (64x64), PIL convert("RGB"),
     resize to SIZE x SIZE with LANCZOS, x / 255 * 2 - 1; z0 = VAE posterior mean x 0.18215.
  2. text: CLIPTokenizer (77, padded) + CLIPTextModel last_hidden_state for the inversion
     prompt, the negative prompt and the target prompt.
  3. inversion: THE STEM INVERSION OF gen_invert.py (StemSelfAttention, em-scope video,
     M 256, R 5, tau 0.01, Philox seed 1, phase 0), S steps, inversion prompt, no guidance;
     the latent after every step is stored (in.inv_latents, ascending t).
  4. editing (edit_ref.py), S = 5 steps, timesteps 801 .. 1:
     - x_T: eps = (x_inv(T) - sqrt(abar_T) z0) / sqrt(1 - abar_T), x_T = add_noise(z0, eps, T);
     - per step s: keyframe of chunk k = first frame of the chunk + word 0 of Philox counter
       (k, 0, 0, 3 << 24 | s << 12) mod the chunk's length (seed 1; SPEC §6's known answers are
       checked); a pivotal pass on the keyframes, batch [source | uncond | cond] with latents
       [x_inv(t) | x | x] and text [inversion | negative | target]; its output is discarded;
       then a normal pass per chunk, the same batch layout; eps = eps_u + 7.5 (eps_c - eps_u);
       DDIM eta 0 (abar_0 at the last step);
     - pivotal pass, every attn1: extended attention (source per frame; uncond and cond
       queries over the keys/values of all keyframes of their branch), or with
       edit_attention "stem": STEM BASES PER BRANCH over that branch's keyframes' tokens,
       source included, as the original's (unused) register_extended_stem_attention_pnp
       does; M 256, R 5, tau 0.01, Philox counter (e // 4, head, attn1 index in execution
       order, 2 << 24 | s << 12 | BRANCH) with branch 0 source, 1 uncond, 2 cond (THE CHUNK
       FIELD NUMBERS THE THREE EM SCOPES OF ONE CALL);
     - normal pass, every BasicTransformerBlock: attn1 is not run; f = the source branch's
       norm1 output of the chunk's frames, idx1 = argmax over keyframe i's tokens of the cosine
       (x / |x|, no epsilon; first index on exact ties), idx2 likewise against keyframe i-1
       (from chunk 1 on); out = w A_i[idx1] + (1 - w) A_{i-1}[idx2] for every branch, A = the
       cached keyframe attn1 outputs after to_out, w = sigmoid(|s - p2| / (|s - p1| + |s - p2|)),
       s = THE GLOBAL FRAME INDEX, p1 = B i + B // 2, p2 = B (i - 1) + B // 2 (B = batch_size:
       NOMINAL CENTRES, the same as the original's for full chunks; for a shorter last chunk
       the original's formula, written with the chunk's own length, is never reached there);
     - PnP Q/K: uncond and cond Q, K <- source Q, K (before the keyframe concatenation, V not
       injected) in transformer_blocks[0].attn1 of SD 1.5's eight sites THAT EXIST IN THE
       MODEL (metadata pnp_qk_sites) for steps s < int(S pnp_attn_t) (pnp_attn_t 0.5: 2);
       conv: in up_blocks[1].resnets[1] (present in all three models) after conv2, before the
       shortcut add, uncond and cond <- source, for s < int(S pnp_f_t) (0.8: 4); both passes;
     - FreeU (b1 1.2, b2 1.4, s1 0.9, s2 0.2) before every up-block resnet's skip concat: if
       the hidden state has G1 channels, h[:, :G1/2] *= b1 and the skip is Fourier-filtered
       with s1 (the original's Fourier_filter, threshold 1, torch.fft IN FLOAT64, where the
       original casts to float32); G2 likewise with b2, s2. G1, G2 = 1280, 640 as the original
       on tiny-sd1/sd2 (never fires); 64, 32 ON tiny-freeu (its SD-1.5-like states;
       gen_freeu_model.py says why the real widths cannot be small). Metadata freeu_fired
       lists (up block, resnet, channels) where it acted in one UNet evaluation.
     - frame counts: tail "every" (stem's default: every frame, the last chunk shorter) or
       "drop" (the original: the first F - F mod B frames); both are generated for F = 8,
       B = 3, flagged in metadata tail / frames_edited.
  5. decode: VAE decode of the stored last edited latent / 0.18215.

Per case, <out>/<model>__<case>.safetensors holds
  in.pixels [F, 3, H, W] uint8 (frames = pixels / 255 * 2 - 1 in float32); in.ids_{inversion,negative,prompt} [1, 77] int32;
  in.context_{inversion,negative,prompt} [1, 77, X]; in.z0 [F, 4, h, w];
  in.inv_latents [S, F, 4, h, w] (ascending t, metadata inv_timesteps)
  out.x_T, out.edit_step0, out.edit_step1, out.edit_step<S-1> [Fe, 4, h, w] (after the
    first, second and last editing steps; Fe = frames_edited)
  out.frames [Fe, 3, H, W] (decoded, before clamping)
  out.keyframes [S, chunks] int32 (global frame indices)
  out.tf_b<NN>.idx1 / .margin1 [S, Fe, N_b]: token flow of transformer block NN (execution
    order, metadata tf_blocks): the argmax token index into keyframe i (uint8: every block
    here has N_b <= 256 tokens, asserted) and the best minus second-best cosine (float64,
    stored as float16: ~3 digits, enough to compare with tie_margin); .idx2 / .margin2
    [S, Fe - B, N_b] against keyframe i - 1, row r = frame B + r.
Metadata: every option, pnp sites, freeu_fired, the spread of a float32 trial (below).

Tolerances (tie-aware): the float32 pipeline (models, FFT, EM, cosine in float32, same stored
inputs and keyframes) is run as a trial (for edit_attention stem also float32 and float64
trials with about one ulp of seeded noise on every attn1 q, k, v): metadata spread.idx gives how many token-flow
indices differ from the float64 reference and the largest float64 margin among them;
spread.<latent> the max |f32 - f64| / max |f64|. tie_margin: indices whose stored margin is
at least this must agree exactly (the trial must honour it, else the generator fails);
rtol.<k> / atol.<k> (atol = rtol x max |ref|; rtol 2e-4 extended, 3e-3 stem) hold for the
latents and frames when every index agrees, with at least 4x headroom over the trials.
near_ties counts the stored indices whose margin is below tie_margin: a float32
implementation may pick the other token there (the trials' margins move by up to ~1e-5), and
a flip moves the latents after it by more than these tolerances; a test compares indices
where margin >= tie_margin, and latents only when all indices agree (or with the golden's
indices forced at the near-ties).
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edit_ref  # noqa: E402
import philox_ref  # noqa: E402
from gen_invert import Models, State  # noqa: E402
from gen_ops import write_safetensors  # noqa: E402
from gen_stem import ddim_schedule  # noqa: E402

from diffusers import DDIMScheduler  # noqa: E402

CLIP = os.path.join("refdata", "clips", "synthetic")
PROMPT_INV = "a red square moving right"  # gen_invert.py's
PROMPT_EDIT = "a blue disc drifting right, oil painting"
NEGATIVE = "ugly, blurry, low res, unrealistic, unaesthetic"  # the shipped configs'
STEPS = 5
SEED = 1
INV = dict(bases=256, iters=5, seed=1)
EDIT_BASES, EDIT_ITERS = 256, 5
FREEU = (1.2, 1.4, 0.9, 0.2)
GATE_SD = (1280, 640)
HEADROOM = 4.0
TIE_MARGIN = 1e-4
# latents and frames: rtol, atol = rtol x max|ref|. Extended attention: the float32 trial lands
# at ~1e-5 of max|x| (0.06 of 2e-4). STEM bases (tau 0.01) amplify roundings near a tie
# between two bases (gen_invert.py): its trials (float32, and float32 / float64 with an ulp of
# noise on every attn1 q, k, v) land at up to ~3e-4.
LAT_RTOL = {"extended": 2e-4, "stem": 3e-3}
# (dtype, jitter seed) of the trials; the extended-attention cases run the first only
TRIALS = (("f32", None), ("f32", 0), ("f32", 1), ("f64", 0))
# name, model, frames, batch_size, tail, freeu, edit_attention, size
CASES = (
    ("f6_b3", "tiny-sd1", 6, 3, "every", True, "extended", 32),
    ("f8_b3_every", "tiny-sd1", 8, 3, "every", True, "extended", 32),
    ("f8_b3_drop", "tiny-sd1", 8, 3, "drop", True, "extended", 32),
    ("f6_b3_stem", "tiny-sd1", 6, 3, "every", True, "stem", 32),
    ("f6_b3", "tiny-sd2", 6, 3, "every", True, "extended", 32),
    ("f8_b3_every", "tiny-sd2", 8, 3, "every", True, "extended", 32),
    ("f4_b2_freeu", "tiny-freeu", 4, 2, "every", True, "extended", 64),
    ("f4_b2_nofreeu", "tiny-freeu", 4, 2, "every", False, "extended", 64),
    ("f5_b2_freeu_every", "tiny-freeu", 5, 2, "every", True, "extended", 64),
)
GATES = {"tiny-sd1": GATE_SD, "tiny-sd2": GATE_SD, "tiny-freeu": (64, 32)}


def load_frames(repo, n, size):
    from PIL import Image
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    for f in range(n):
        path = os.path.join(repo, CLIP, "%05d.png" % f)
        if not os.path.isfile(path):
            sys.exit("gen_edit.py: %s is missing (run refdata/gen/gen_clip.py first)" % path)
        img = Image.open(path).convert("RGB").resize((size, size), resample=Image.LANCZOS)
        out[f] = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
    return out, torch.from_numpy((out.astype(np.float32) / np.float32(255.0)) * np.float32(2.0) - np.float32(1.0))


def edit_schedule(model_dir):
    s = DDIMScheduler.from_pretrained(os.path.join(model_dir, "scheduler"))
    cfg = s.config
    assert cfg.beta_schedule == "scaled_linear" and not cfg.set_alpha_to_one and cfg.steps_offset == 1
    s.set_timesteps(STEPS)
    a, final = ddim_schedule(cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end, cfg.beta_schedule,
                             cfg.set_alpha_to_one)
    ts = [int(t) for t in s.timesteps]
    ratio = cfg.num_train_timesteps // STEPS
    assert ts == [ratio * i + 1 for i in range(STEPS - 1, -1, -1)], ts
    return a, final, ts, ratio


def invert(m, z0, ctx, sched):
    """gen_invert.py's STEM inversion (video scope), float64; latents after every step."""
    a, final, ts, ratio = sched
    st = State("stem", "video", 8, INV["bases"], INV["iters"], INV["seed"])
    m.set_attention(st)
    x, lat = z0.to(m.dtype), []
    cond = ctx.to(m.dtype).expand(z0.shape[0], -1, -1)
    with torch.no_grad():
        for i, t in enumerate(ts[::-1]):
            ap = a[t - ratio] if t - ratio >= 0 else final
            st.phase, st.step, st.layer = 0, i, 0
            e = m.unet(x, torch.tensor(t, dtype=torch.int64), encoder_hidden_states=cond).sample
            st.recording = False
            x = math.sqrt(a[t]) * (x - math.sqrt(1 - ap) * e) / math.sqrt(ap) + math.sqrt(1 - a[t]) * e
            lat.append(x.float())
    m.set_attention(None)
    return torch.stack(lat)


def prepare(m, repo, frames_n, size, sched):
    """Stored inputs of a (model, F, size): frames, ids, contexts, z0, inversion latents."""
    pixels, frames = load_frames(repo, frames_n, size)
    inp = {"frames": frames}
    with torch.no_grad():
        for key, prompt in (("inversion", PROMPT_INV), ("negative", NEGATIVE), ("prompt", PROMPT_EDIT)):
            ids, ctx = m.encode_prompt(prompt)
            inp["ids_" + key], inp["context_" + key] = ids.to(torch.int32), ctx.float()
        inp["z0"] = (m.vae.encode(frames.to(m.dtype)).latent_dist.mean * m.sf).float()
    inp["inv_latents"] = invert(m, inp["z0"], inp["context_inversion"], sched)
    return inp, pixels


def run_edit(m, inp, opts, sched, feed_final=None):
    inputs = {"z0": inp["z0"], "inv": inp["inv_latents"], "ctx_src": inp["context_inversion"],
              "ctx_neg": inp["context_negative"], "ctx_tgt": inp["context_prompt"]}
    if feed_final is not None:
        inputs["feed_final"] = feed_final
    return edit_ref.edit(m.unet, m.sf, inputs, opts, sched, lambda z: m.vae.decode(z).sample)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--repo", default=os.path.normpath(os.path.join(here, "..", "..")))
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", default=None, help="substring of the file names to make (debugging)")
    args = ap.parse_args()
    out_dir = args.out or os.path.join(args.repo, "refdata", "golden", "edit")
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    philox_ref.self_test(verbose=False)
    edit_ref.check_keyframe_kats()
    loaded, prepared, total, failures = {}, {}, 0, []
    for case, model, F, B, tail, freeu, attn, size in CASES:
        name = "%s__%s" % (model, case)
        if args.only and args.only not in name:
            continue
        t0 = time.time()
        model_dir = os.path.join(args.repo, "refdata", "models", model)
        if not os.path.isdir(model_dir):
            sys.exit("gen_edit.py: %s is missing (run gen_models.py / gen_freeu_model.py first)" % model_dir)
        if model not in loaded:
            loaded[model] = (Models(model_dir, torch.float64), Models(model_dir, torch.float32),
                             edit_schedule(model_dir))
        m64, m32, sched = loaded[model]
        if (model, F, size) not in prepared:
            prepared[(model, F, size)] = prepare(m64, args.repo, F, size, sched)
        inp, pixels = prepared[(model, F, size)]
        opts = {"batch_size": B, "tail": tail, "edit_attention": attn, "bases": EDIT_BASES, "iters": EDIT_ITERS,
                "seed": SEED, "guidance": 7.5, "pnp_attn_t": 0.5, "pnp_f_t": 0.8, "freeu": freeu,
                "freeu_factors": FREEU, "freeu_gate": GATES[model]}
        ref, st = run_edit(m64, inp, opts, sched)
        last = "edit_step%d" % (STEPS - 1)
        alt, st32 = run_edit(m32, inp, opts, sched, feed_final=ref[last])
        assert np.array_equal(alt["keyframes"], ref["keyframes"])
        jittered = []
        for dtype, seed in (TRIALS[1:] if attn == "stem" else ()):
            o = dict(opts, jitter=torch.Generator().manual_seed(seed))
            jittered.append(run_edit(m32 if dtype == "f32" else m64, inp, o, sched, feed_final=ref[last])[0])
        Fe = ref["frames_edited"]

        tensors = {"in." + k: v.numpy() for k, v in inp.items() if k != "frames"}
        tensors["in.pixels"] = pixels
        for k in ("x_T", "edit_step0", "edit_step1", last, "frames"):
            tensors["out." + k] = ref[k].numpy()
        tensors["out.keyframes"] = ref["keyframes"]
        flips, flip_margin, n_idx, margin_spread, near_ties = 0, 0.0, 0, 0.0, 0
        for b, blk in enumerate(st.block_order):
            r, r32 = st.record[blk], st32.record[blk]
            for which in ("1", "2"):
                idx, mar = r["idx" + which], r["margin" + which]
                if idx.size == 0:
                    continue
                assert (idx >= 0).all() and idx.max() < 256, (name, blk, which, "indices must fit uint8")
                tensors["out.tf_b%02d.idx%s" % (b, which)] = idx.astype(np.uint8)
                tensors["out.tf_b%02d.margin%s" % (b, which)] = mar.astype(np.float16)
                margin_spread = max(margin_spread, float(np.abs(mar - r32["margin" + which]).max()))
                near_ties += int((mar < TIE_MARGIN).sum())
                diff = idx != r32["idx" + which]
                flips += int(diff.sum())
                n_idx += idx.size
                if diff.any():
                    flip_margin = max(flip_margin, float(mar[diff].max()))
        if flip_margin >= TIE_MARGIN or margin_spread * 10 > TIE_MARGIN:
            failures.append("%s: float32 trial: an index flip at float64 margin %.3g or margins moved by %.3g "
                            "(tie_margin %g needs 10x headroom)" % (name, flip_margin, margin_spread, TIE_MARGIN))
        meta = {
            "model": model, "case": case, "frames": str(F), "frames_edited": str(Fe), "batch_size": str(B),
            "tail": tail, "size": "%dx%d" % (size, size), "steps": str(STEPS),
            "timesteps": ",".join(str(t) for t in sched[2]),
            "inv_timesteps": ",".join(str(t) for t in sched[2][::-1]),
            "inversion": "STEM (gen_invert.py StemSelfAttention), em-scope video, bases %d, iters %d, tau 0.01, "
                         "seed %d, phase 0" % (INV["bases"], INV["iters"], INV["seed"]),
            "prompt_inversion": PROMPT_INV, "prompt": PROMPT_EDIT, "negative_prompt": NEGATIVE,
            "guidance_scale": "7.5", "pnp_attn_t": "0.5", "pnp_f_t": "0.8",
            "qk_steps": str(int(STEPS * 0.5)), "conv_steps": str(int(STEPS * 0.8)),
            "pnp_qk_sites": ",".join(ref["qk_sites"]), "pnp_qk_sites_injected": ",".join(
                sorted(s.rsplit(".transformer_blocks", 1)[0] for s in st.injected["qk"])),
            "pnp_conv_site": ref["conv_site"], "seed": str(SEED),
            "keyframe_counter": "(chunk, 0, 0, 3 << 24 | step << 12), word 0 mod chunk length",
            "edit_attention": attn, "freeu": "on" if freeu else "off",
            "freeu_b1_b2_s1_s2": ",".join(repr(v) for v in FREEU),
            "freeu_gate_channels": "%d,%d" % GATES[model],
            "freeu_fired": ";".join("up_blocks.%d.resnets.%d:%d" % f for f in ref["freeu_fired"]),
            "tf_blocks": ",".join(st.block_order),
            "source": "diffusers 0.20.2 UNet2DConditionModel/AutoencoderKL + transformers 4.33.3 CLIPTextModel, "
                      "float64; TokenFlow PnP editing hooks of refdata/gen/edit_ref.py (doc/algorithm.md 7)",
            "tie_margin": "%g" % TIE_MARGIN,
            "near_ties": str(near_ties),
            "spread.idx": "float32 trial: %d of %d token-flow indices differ; largest float64 margin among them %.3g" % (
                flips, n_idx, flip_margin),
            "spread.margin": "float32 trial: max |margin_f32 - margin_f64| %.3g" % margin_spread,
        }
        if attn == "stem":
            meta.update({"edit_bases": str(EDIT_BASES), "edit_iters": str(EDIT_ITERS), "edit_tau": "0.01",
                         "edit_em_counter": "(e // 4, head, attn1 index, 2 << 24 | step << 12 | branch), "
                                            "branch 0 source, 1 uncond, 2 cond"})
        worst = 0.0
        for k in ("x_T", "edit_step0", "edit_step1", last, "frames"):
            r64 = ref[k].double()
            den = float(r64.abs().max())
            rtol = LAT_RTOL[attn]
            rels, ratios = [], []
            for trial in [alt] + jittered:
                d = (trial[k].double() - r64).abs()
                rels.append(float(d.max()) / den)
                ratios.append(float((d / (rtol * den + rtol * r64.abs())).max()))
            ratio = max(ratios)
            meta["rtol." + k], meta["atol." + k] = "%.3g" % rtol, "%.3g" % (rtol * den)
            meta["spread." + k] = "max|trial - f64|/max|f64|: torch f32 %.2g%s; worst trial at %.3g of tol" % (
                rels[0], ", jittered trials up to %.2g" % max(rels[1:]) if jittered else "", ratio)
            worst = max(worst, ratio)
            if flips == 0 and ratio * HEADROOM > 1:
                failures.append("%s: %s: float32 trial at %.3f of the tolerance" % (name, k, ratio))
        for k, v in tensors.items():
            assert np.all(np.isfinite(v)), (name, k)
        path = os.path.join(out_dir, name + ".safetensors")
        write_safetensors(path, tensors, meta)
        size_b = os.path.getsize(path)
        total += size_b
        print("%-32s %7d bytes %5.1f s; freeu fired %d; f32 trial: %d/%d index flips (max margin %.2g), "
              "margins moved <= %.2g, latents at <= %.3f of tol" % (
                  name, size_b, time.time() - t0, len(ref["freeu_fired"]), flips, n_idx, flip_margin, margin_spread,
                  worst), flush=True)
    print("gen_edit: %.1f KiB" % (total / 1024.0))
    if failures:
        sys.exit("gen_edit.py: the float32 cross-check failed:\n  " + "\n  ".join(failures))


if __name__ == "__main__":
    main()
