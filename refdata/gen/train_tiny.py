#!/usr/bin/env python3
"""Train refdata/models/shapes-sd1: a tiny SD-1-style model on shapes_data.py's videos.

    W=/tmp/shapes-train                      # scratch: data cache, checkpoints, loss curves
    nice -n 10 train_tiny.py --work $W --vae-minutes 10 --unet-minutes 30     # data, vae, unet, write
    nice -n 10 train_tiny.py --work $W --stage decoder --decoder-minutes 25   # in parallel, once WORK/vae exists
    nice -n 10 train_tiny.py --work $W --stage write [--out DIR]              # the folder, with the tuned decoder
    nice -n 10 train_tiny.py --work $W --stage unet-more --unet-minutes N     # optional: more UNet steps
    nice -n 10 train_tiny.py --work $W --stage unet --vae-from refdata/models/shapes-sd1/vae --unet-minutes 45
                                             # only the UNet + text encoder, on the committed VAE

Run by hand (never in CI), with the pinned reference environment (refdata/gen/requirements.txt;
diffusers 0.20.2, transformers 4.33.3, torch 2.4.1). Stages (--stage; "all" = data, vae, unet,
write, and decoder between vae and unet when --decoder-minutes > 0):

1. data: --clips training clips of shapes_data.py (split "train"), every frame one sample,
   cached as uint8 in WORK/frames.npz with one caption per frame.
2. vae: AutoencoderKL (3 levels: 64x64 pixels -> 16x16x4 latents), MSE + 1e-6 KL, then
   scaling_factor = 1 / std of the latent means over the training frames (the role 0.18215
   plays for SD 1.x). Saved to WORK/vae.
3a. decoder: WORK/vae's decoder trained on with the encoder frozen (WORK/vae-decoder); the
   latents do not change, so it can run beside 3b.
3b. unet: latents of every frame encoded once (the posterior mean) and cached; a small
   CLIPTextModel first pre-trained for --text-pretrain-steps (~1 minute) so that its padding
   outputs name the caption's attributes (pretrain_text: without it the prompt did not reach
   the UNet in the budget), then the UNet and the text encoder trained jointly with the standard
   epsilon objective: noise added by DDPMScheduler with the SD 1.x config (scaled_linear,
   0.00085 .. 0.012), MSE on epsilon; --t-mode mix: half the batch t uniform in [0, 1000), half
   with a density rising linearly in t; single-shape frames drawn --single-weight times as often;
   10% of the captions replaced by "" (classifier-free guidance); cross-attention at --attn2-lr.
   An EMA of the UNet and text-encoder weights (decay 0.999) is what gets saved. unet-more
   continues from the saved EMA weights at a lower learning rate. --vae-from DIR skips the VAE
   stages and uses a saved VAE (the committed one) for the latents and the output folder.
4. write: the diffusers folder (StableDiffusionPipeline.save_pretrained layout, f16
   safetensors, tokenizer files copied from refdata/tokenizer/clip/), VAE from WORK/vae-decoder
   when it exists; WORK/loss.json + WORK/loss.png.

Budgets are wall-clock minutes per stage (the machine this was made on had 2 shared cores);
the run is deterministic up to the number of steps a budget allows.
"""

import argparse
import json
import math
import os
import re
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import diffusers
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_models  # noqa: E402
import shapes_data  # noqa: E402

SEED = 1234
TEXT_HIDDEN = 32

VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 32, 64),
    layers_per_block=1,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=8,
    sample_size=64,
    scaling_factor=1.0,  # set from the data after training
)

# 16x16 latents: cross-attention (and attn1, where STEM acts) at 16x16 and 8x8 and in the mid
# block at 4x4
UNET = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    only_cross_attention=False,
    block_out_channels=(32, 64, 64),
    layers_per_block=1,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=8,
    norm_eps=1e-5,
    cross_attention_dim=TEXT_HIDDEN,
    attention_head_dim=4,  # = 4 heads per attention (diffusers' naming quirk): d = 8 and 16
    dual_cross_attention=False,
    use_linear_projection=False,
    upcast_attention=False,
)

TEXT = dict(
    vocab_size=49408,
    hidden_size=TEXT_HIDDEN,
    intermediate_size=2 * TEXT_HIDDEN,
    projection_dim=TEXT_HIDDEN,
    num_hidden_layers=2,
    num_attention_heads=2,
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

# the SD 1.x/2.x scheduler config, the same as the random tiny models'
SCHEDULER = gen_models.SCHEDULER


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def to_tensor(frames_u8):
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(frames_u8).permute(0, 3, 1, 2).float() / 127.5 - 1


# ---- data -------------------------------------------------------------------------------

def load_data(work, n_clips):
    path = os.path.join(work, "frames.npz")
    if os.path.exists(path):
        z = np.load(path, allow_pickle=False)
        if int(z["n_clips"]) == n_clips:
            return z["frames"], list(z["captions"])
    t0 = time.time()
    frames, captions = [], []
    for i in range(n_clips):
        c = shapes_data.make_clip("train", i)
        frames.append(c["frames"])
        captions += [c["caption"]] * len(c["frames"])
    frames = np.concatenate(frames)
    np.savez(path, frames=frames, captions=np.array(captions), n_clips=n_clips)
    log(f"data: {n_clips} clips, {len(frames)} frames in {time.time() - t0:.0f} s")
    return frames, captions


# ---- VAE --------------------------------------------------------------------------------

def lr_at(lr0, step, warmup, frac):
    """Linear warm-up, then cosine from lr0 to 5% of it over the budget (frac in [0, 1])."""
    return lr0 * min(1.0, (step + 1) / warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def train_vae(frames, minutes, work, curves):
    """Encoder and decoder from scratch: MSE on a posterior sample + 1e-6 KL. Saves WORK/vae."""
    path = os.path.join(work, "vae")
    if os.path.exists(os.path.join(path, "config.json")):
        log("vae: reusing " + path)
        return AutoencoderKL.from_pretrained(path)
    torch.manual_seed(SEED)
    vae = AutoencoderKL(**VAE)
    log(f"vae: {sum(p.numel() for p in vae.parameters())} params")
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    gen = np.random.default_rng(SEED)
    bs, step, t0, losses = 16, 0, time.time(), []
    while time.time() - t0 < minutes * 60:
        for g in opt.param_groups:
            g["lr"] = lr_at(1e-3, step, 100, (time.time() - t0) / (minutes * 60))
        x = to_tensor(frames[gen.integers(len(frames), size=bs)])
        post = vae.encode(x).latent_dist
        mse = F.mse_loss(vae.decode(post.sample()).sample, x)
        loss = mse + 1e-6 * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(mse.item())
        step += 1
        if step % 100 == 0:
            m = float(np.mean(losses[-100:]))
            curves["vae"].append((step, time.time() - t0, m))
            log(f"vae: step {step} mse {m:.5f} (~{10 * math.log10(4 / m):.1f} dB) lr {opt.param_groups[0]['lr']:.2e}")
    vae.eval()
    with torch.no_grad():  # scaling factor: unit variance latents
        mu = torch.cat([vae.encode(to_tensor(frames[i:i + 256])).latent_dist.mean for i in range(0, len(frames), 256)])
    vae.register_to_config(scaling_factor=float(1.0 / mu.std()))
    vae.save_pretrained(path)
    log(f"vae: {step} steps in {time.time() - t0:.0f} s; scaling_factor {vae.config.scaling_factor:.5f}")
    return vae


def train_decoder(frames, minutes, work, curves):
    """WORK/vae's decoder (post_quant_conv + decoder) trained on for `minutes` on the posterior
    mean, the encoder frozen: the latents, and so the UNet stage, do not change, so this stage
    can run in parallel with the UNet's. Saves WORK/vae-decoder (the folder write uses it)."""
    vae = AutoencoderKL.from_pretrained(os.path.join(work, "vae"))
    vae.encoder.requires_grad_(False)
    vae.quant_conv.requires_grad_(False)
    params = list(vae.post_quant_conv.parameters()) + list(vae.decoder.parameters())
    opt = torch.optim.AdamW(params, lr=3e-4, weight_decay=0.0)
    gen = np.random.default_rng(SEED + 3)
    step0 = curves["vae"][-1][0] if curves["vae"] else 0
    bs, step, t0, losses = 16, 0, time.time(), []
    while time.time() - t0 < minutes * 60:
        for g in opt.param_groups:
            g["lr"] = lr_at(3e-4, step, 50, (time.time() - t0) / (minutes * 60))
        x = to_tensor(frames[gen.integers(len(frames), size=bs)])
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mean
        mse = F.mse_loss(vae.decode(z).sample, x)
        opt.zero_grad(set_to_none=True)
        mse.backward()
        opt.step()
        losses.append(mse.item())
        step += 1
        if step % 100 == 0:
            m = float(np.mean(losses[-100:]))
            curves["decoder"].append((step0 + step, time.time() - t0, m))
            log(f"decoder: step {step} mse {m:.5f} (~{10 * math.log10(4 / m):.1f} dB)")
    vae.eval()
    vae.save_pretrained(os.path.join(work, "vae-decoder"))
    log(f"decoder: {step} steps in {time.time() - t0:.0f} s")


# ---- UNet + text encoder ------------------------------------------------------------------

def cache_latents(vae, frames, work):
    path = os.path.join(work, "latents.pt")
    if os.path.exists(path):
        return torch.load(path)
    with torch.no_grad():
        mu = torch.cat([vae.encode(to_tensor(frames[i:i + 256])).latent_dist.mean for i in range(0, len(frames), 256)])
    lat = mu * vae.config.scaling_factor
    torch.save(lat, path)
    return lat


# caption attributes the text encoder is pre-trained to name (pretrain_text): first shape's colour,
# kind and motion, second shape's colour and kind (or none), background colour and texture
MOTION_WORDS = ("right", "left", "up", "down", "diagonally")
ATTR_CLASSES = (len(shapes_data.COLOURS), len(shapes_data.SHAPES), len(MOTION_WORDS), len(shapes_data.COLOURS) + 1,
                len(shapes_data.SHAPES) + 1, len(shapes_data.BACKGROUNDS), len(shapes_data.TEXTURES))


def caption_attributes(caption):
    """A caption of shapes_data.make_clip -> its ATTR_CLASSES indices."""
    shapes = re.findall(r"a (\w+) (\w+) moving (\w+)", caption)
    bg = re.search(r"on a (\w+) (?:(\w+) )?background", caption)
    colours, kinds = list(shapes_data.COLOURS), list(shapes_data.SHAPES)
    two = len(shapes) > 1
    return [colours.index(shapes[0][0]), kinds.index(shapes[0][1]), MOTION_WORDS.index(shapes[0][2]),
            colours.index(shapes[1][0]) if two else len(colours), kinds.index(shapes[1][1]) if two else len(kinds),
            list(shapes_data.BACKGROUNDS).index(bg.group(1)), shapes_data.TEXTURES.index(bg.group(2) or "")]


def pretrain_text(text, uniq, ids, eos_id, steps):
    """Pre-train the random text encoder so that every output from the first end-of-text token on
    (the padding, ~65 of the 77 tokens) names the caption's attributes (linear heads, cross-entropy).
    Why: the UNet's cross-attention starts out averaging all 77 tokens, and from random init the
    padding outputs barely depend on the caption, so the prompt's signal reaching the UNet is
    diluted ~1/77 and the joint training did not pick it up in its budget (the first shapes-sd1:
    23% hue check). A minute of this makes the average informative from the first UNet step; the
    encoder is then trained on jointly with the UNet as before. The heads are discarded."""
    caps = [c for c in uniq if c]
    target = torch.tensor([caption_attributes(c) for c in caps])
    cid = ids[[i for i, c in enumerate(uniq) if c]]
    first_eos = (cid == eos_id).int().argmax(1)
    mask = (torch.arange(cid.shape[1])[None] >= first_eos[:, None]).float()  # (captions, 77)
    heads = torch.nn.Linear(TEXT_HIDDEN, sum(ATTR_CLASSES))
    opt = torch.optim.AdamW(list(text.parameters()) + list(heads.parameters()), lr=3e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(SEED + 4)
    t0 = time.time()
    for step in range(steps):
        b = torch.randint(len(caps), (64,), generator=gen)
        logits = heads(text(cid[b])[0])  # (64, 77, sum(ATTR_CLASSES))
        m, loss, o, acc = mask[b], 0.0, 0, []
        for j, n in enumerate(ATTR_CLASSES):
            lj = logits[..., o:o + n]
            o += n
            want = target[b, j][:, None].expand(-1, lj.shape[1])
            ce = F.cross_entropy(lj.reshape(-1, n), want.reshape(-1), reduction="none").view(m.shape)
            loss = loss + (ce * m).sum() / m.sum()
            acc.append(float(((lj.argmax(-1) == want).float() * m).sum() / m.sum()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 100 == 0:
            log(f"text pre-training: step {step + 1} loss {loss.item():.3f} accuracy {min(acc):.3f} (worst attribute)")
    log(f"text pre-training: {steps} steps in {time.time() - t0:.0f} s")


def train_unet(latents, captions, tokenizer, minutes, work, curves, resume=False, text_pretrain_steps=600,
               t_mode="uniform", single_weight=1.0, attn2_lr=None):
    """UNet + text encoder from scratch (or, with resume, from WORK/unet + WORK/text_encoder, the
    saved EMA weights, at a lower learning rate). Saves the EMA weights every 500 steps and at the end.
    From scratch, the text encoder is first pre-trained on the captions (pretrain_text). t_mode
    "mix": half the batch t uniform, half with a density rising linearly in t (colour and shape
    are decided at high noise); single_weight: sampling weight of single-shape frames (the hue
    check's prompts name one shape); attn2_lr: learning rate of the cross-attention (default: lr)."""
    if resume:
        unet = UNet2DConditionModel.from_pretrained(os.path.join(work, "unet"))
        text = CLIPTextModel.from_pretrained(os.path.join(work, "text_encoder"))
        lr0, warmup = 3e-4, 50
    else:
        torch.manual_seed(SEED + 1)
        unet = UNet2DConditionModel(**UNET)
        text = CLIPTextModel(CLIPTextConfig(**TEXT))
        lr0, warmup = 1e-3, 200
    log(f"unet: {sum(p.numel() for p in unet.parameters())} params; text encoder "
        f"{sum(p.numel() for p in text.parameters())}")
    ddpm = DDPMScheduler(**{k: v for k, v in SCHEDULER.items() if k not in ("set_alpha_to_one",)})
    # every distinct caption tokenised once
    uniq = sorted(set(captions)) + [""]
    index = {c: i for i, c in enumerate(uniq)}
    ids = tokenizer(uniq, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    cap_idx = torch.tensor([index[c] for c in captions])
    empty = index[""]
    if not resume and text_pretrain_steps:
        torch.manual_seed(SEED + 5)
        pretrain_text(text, uniq, ids, tokenizer.eos_token_id, text_pretrain_steps)
    unet.train()
    text.train()
    weight = torch.tensor([1.0 if " and a " in c else single_weight for c in captions])

    # cross-attention (attn2) in its own group: its learning rate may differ
    cross = [p for n, p in unet.named_parameters() if ".attn2." in n]
    cross_ids = {id(p) for p in cross}
    rest = [p for p in unet.parameters() if id(p) not in cross_ids] + list(text.parameters())
    params = rest + cross
    ema = [p.detach().clone() for p in params]
    lrs = [lr0, lr0 * (attn2_lr / 1e-3 if attn2_lr else 1.0)]
    opt = torch.optim.AdamW([dict(params=rest, lr=lrs[0]), dict(params=cross, lr=lrs[1])], weight_decay=1e-2)
    step0 = curves["unet"][-1][0] if curves["unet"] else 0
    gen = torch.Generator().manual_seed(SEED + 2 + step0)
    bs, step, t0, losses = 32, 0, time.time(), []
    while time.time() - t0 < minutes * 60:
        for g, l in zip(opt.param_groups, lrs):
            g["lr"] = lr_at(l, step, warmup, (time.time() - t0) / (minutes * 60))
        b = torch.multinomial(weight, bs, replacement=True, generator=gen)
        x0 = latents[b]
        ci = cap_idx[b].clone()
        ci[torch.rand(bs, generator=gen) < 0.1] = empty  # ~10% unconditional (classifier-free guidance)
        ctx = text(ids[ci])[0]
        noise = torch.randn(x0.shape, generator=gen)
        u = torch.rand(bs, generator=gen)
        if t_mode == "mix":
            u = torch.where(torch.rand(bs, generator=gen) < 0.5, u, u.sqrt())
        t = (u * 1000).long().clamp(max=999)
        xt = ddpm.add_noise(x0, noise, t)
        loss = F.mse_loss(unet(xt, t, ctx).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema, params):
                e.lerp_(p.detach(), 1 - decay)
        losses.append(loss.item())
        step += 1
        if step % 100 == 0:
            m = float(np.mean(losses[-100:]))
            curves["unet"].append((step0 + step, time.time() - t0, m))
            log(f"unet: step {step0 + step} loss {m:.4f} lr {opt.param_groups[0]['lr']:.2e}")
        if step % 500 == 0:
            save_ema(unet, text, params, ema, work)
            plot_curves(curves, work)
    save_ema(unet, text, params, ema, work)
    log(f"unet: {step} steps in {time.time() - t0:.0f} s")


def save_ema(unet, text, params, ema, work):
    """Swap the EMA weights in, save WORK/unet and WORK/text_encoder, swap back."""
    with torch.no_grad():
        live = [p.detach().clone() for p in params]
        for p, e in zip(params, ema):
            p.copy_(e)
        unet.save_pretrained(os.path.join(work, "unet"))
        text.save_pretrained(os.path.join(work, "text_encoder"))
        for p, l in zip(params, live):
            p.copy_(l)


# ---- output -------------------------------------------------------------------------------

def write_folder(work, out, repo):
    tok_src = os.path.join(repo, "refdata", "tokenizer", "clip")
    tokenizer = CLIPTokenizer(os.path.join(tok_src, "vocab.json"), os.path.join(tok_src, "merges.txt"))
    vae_dir = os.path.join(work, "vae-decoder")
    if not os.path.exists(os.path.join(vae_dir, "config.json")):
        vae_dir = os.path.join(work, "vae")
    log(f"vae from {vae_dir}")
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(vae_dir).half(),
        text_encoder=CLIPTextModel.from_pretrained(os.path.join(work, "text_encoder")).half(),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel.from_pretrained(os.path.join(work, "unet")).half(),
        scheduler=DDIMScheduler(**SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    tmp = out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    tok_out = os.path.join(tmp, "tokenizer")
    shutil.rmtree(tok_out)
    os.makedirs(tok_out)
    for f in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(os.path.join(tok_src, f), os.path.join(tok_out, f))
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    log(f"wrote {out}")


def plot_curves(curves, work):
    """WORK/loss.json, and WORK/loss.png drawn with PIL (no matplotlib in the pinned env): left the
    VAE's reconstruction MSE (blue: VAE, orange: decoder fine-tune), right the UNet's epsilon MSE;
    log-scale y, each panel labelled with its range."""
    with open(os.path.join(work, "loss.json"), "w") as fh:
        json.dump(curves, fh)
    from PIL import Image, ImageDraw
    W, H, pad = 360, 240, 36
    img = Image.new("RGB", (2 * W, H), "white")
    d = ImageDraw.Draw(img)
    panels = ((0, "VAE reconstruction MSE", (("vae", (31, 119, 180)), ("decoder", (255, 127, 14)))),
              (1, "UNet epsilon MSE", (("unet", (31, 119, 180)),)))
    for i, title, series in panels:
        pts = [p for k, _ in series for p in curves.get(k, [])]
        x0 = i * W
        d.rectangle([x0 + pad, pad, x0 + W - 10, H - pad], outline="black")
        d.text((x0 + pad, 8), title, fill="black")
        if not pts:
            continue
        smax = max(p[0] for p in pts)
        lo, hi = math.log10(min(p[2] for p in pts)), math.log10(max(p[2] for p in pts))
        hi = hi if hi > lo else lo + 1
        for k, colour in series:
            xy = [(x0 + pad + (W - 10 - pad) * p[0] / smax, pad + (H - 2 * pad) * (hi - math.log10(p[2])) / (hi - lo))
                  for p in curves.get(k, [])]
            if len(xy) > 1:
                d.line(xy, fill=colour, width=2)
        d.text((x0 + 2, pad - 4), f"{10 ** hi:.3g}", fill="black")
        d.text((x0 + 2, H - pad - 8), f"{10 ** lo:.3g}", fill="black")
        d.text((x0 + W - 70, H - pad + 6), f"step {smax}", fill="black")
    img.save(os.path.join(work, "loss.png"))


def main():
    diffusers.utils.logging.set_verbosity_error()
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.normpath(os.path.join(here, "..", ".."))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True, help="scratch folder (data cache, checkpoints, loss curves)")
    ap.add_argument("--out", default=os.path.join(repo, "refdata", "models", "shapes-sd1"))
    ap.add_argument("--stage", default="all", choices=("all", "vae", "decoder", "unet", "unet-more", "write"))
    ap.add_argument("--clips", type=int, default=1400)
    ap.add_argument("--vae-minutes", type=float, default=10)
    ap.add_argument("--decoder-minutes", type=float, default=0, help="with --stage all: 0 skips the stage")
    ap.add_argument("--unet-minutes", type=float, default=30)
    ap.add_argument("--text-pretrain-steps", type=int, default=600, help="caption-attribute pre-training of the text encoder (0: none)")
    ap.add_argument("--t-mode", default="mix", choices=("uniform", "mix"), help="the UNet stage's timestep distribution")
    ap.add_argument("--single-weight", type=float, default=2.0, help="sampling weight of single-shape frames")
    ap.add_argument("--attn2-lr", type=float, default=2e-3, help="peak learning rate of the cross-attention")
    ap.add_argument("--vae-from", help="an AutoencoderKL folder (e.g. the committed shapes-sd1/vae) used as WORK/vae and "
                    "WORK/vae-decoder instead of training one: retrains only the UNet and text encoder")
    # one thread: on a loaded machine (2 cores, other jobs) two OpenMP threads ran 3-4x slower than one
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    t0 = time.time()
    # each stage keeps its own curve file, so that stages can run in parallel processes
    curves_path = os.path.join(args.work, "loss.json")
    curves = {"vae": [], "decoder": [], "unet": []}
    if os.path.exists(curves_path):
        curves.update(json.load(open(curves_path)))

    frames, captions = load_data(args.work, args.clips)
    if args.vae_from:  # its encoder is WORK/vae's (the decoder stage freezes it), so it stands for both
        for d in ("vae", "vae-decoder"):
            AutoencoderKL.from_pretrained(args.vae_from).float().save_pretrained(os.path.join(args.work, d))
    if args.stage in ("all", "vae"):
        train_vae(frames, args.vae_minutes, args.work, curves)
        plot_curves(curves, args.work)
    if args.stage == "decoder" or (args.stage == "all" and args.decoder_minutes > 0):
        curves["decoder"] = []
        train_decoder(frames, args.decoder_minutes, args.work, curves)
        dpath = os.path.join(args.work, "loss-decoder.json")
        json.dump(curves["decoder"], open(dpath, "w"))
    if args.stage in ("all", "unet", "unet-more"):
        vae = AutoencoderKL.from_pretrained(os.path.join(args.work, "vae"))
        latents = cache_latents(vae, frames, args.work)
        tok_src = os.path.join(repo, "refdata", "tokenizer", "clip")
        tokenizer = CLIPTokenizer(os.path.join(tok_src, "vocab.json"), os.path.join(tok_src, "merges.txt"))
        if args.stage != "unet-more":
            curves["unet"] = []
        train_unet(latents, captions, tokenizer, args.unet_minutes, args.work, curves, resume=args.stage == "unet-more",
                   text_pretrain_steps=args.text_pretrain_steps, t_mode=args.t_mode, single_weight=args.single_weight,
                   attn2_lr=args.attn2_lr)
        plot_curves(curves, args.work)
    if args.stage in ("all", "write"):
        dpath = os.path.join(args.work, "loss-decoder.json")
        if os.path.exists(dpath):
            curves["decoder"] = json.load(open(dpath))
        plot_curves(curves, args.work)
        write_folder(args.work, args.out, repo)
    log(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
