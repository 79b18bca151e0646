#!/usr/bin/env python3
"""Golden tensors for the CLIP text encoder and the VAE of the tiny models, and the
name tables of synthetic single-file (LDM) checkpoints made from them.

    gen_text_vae.py [--repo DIR]

For refdata/models/tiny-sd1 and tiny-sd2 (float16 weights, upcast to float32 on both
sides), writes:

  refdata/golden/text_encoder/<model>.safetensors
      in.ids [3, 77] int32   rows: a prompt through the model's own CLIPTokenizer
                             (padded with its pad token), the empty prompt, and 77
                             random ids (no padding)
      out.last_hidden_state  [3, 77, hidden]: transformers 4.33.3 CLIPTextModel
                             (causal mask, final layer norm)
  refdata/golden/vae/<model>__<H>x<W>.safetensors, for 40x56 and 30x46 (not multiples
  of 8: the encoder's stride-2 convs pad right/bottom, 30x46 -> 7x11):
      in.frames   [2, 3, H, W] uniform in [-1, 1]
      out.latents [2, 4, h, w]  diffusers 0.20.2 AutoencoderKL:
                                encode(frames).latent_dist.mean * scaling_factor
      out.decoded [2, 3, 4h, 4w] decode(out.latents / scaling_factor).sample
  refdata/golden/ldm/<model>.json
      how to build a single-file LDM checkpoint from the model folder: every LDM tensor
      name with its shape and the diffusers tensors it is made of (concatenated along
      axis 0: OpenCLIP's fused in_proj is q, k, v), plus tensors a real checkpoint also
      carries that must be left unused (EMA copies, schedule buffers, position_ids,
      OpenCLIP's text_projection/logit_scale and the layer beyond num_hidden_layers).
      The LDM names are made here by the inverse of diffusers' conversion and checked by
      running diffusers' own convert_ldm_unet_checkpoint / convert_ldm_vae_checkpoint /
      convert_ldm_clip_checkpoint / convert_open_clip_checkpoint on them: each must give
      back exactly the folder's tensors.

References run in float64 and are rounded to float32 once. Every case is also run in
float32 by PyTorch and must pass at a quarter of the stored tolerance (the tolerance is
what f32 arithmetic through the whole network warrants, with headroom):
  text encoder: rtol = atol = 1e-4   (a few hundred f32 roundings per output, O(1) values)
  vae:          rtol = 1e-4, atol = 1e-4 * max|reference| (deep conv stacks; outputs that
                cancel to ~0 are judged against the tensor's scale)
Nothing here is computed by stem's own C code. Output is byte-for-byte reproducible.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_ops import write_safetensors  # noqa: E402

from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from diffusers.pipelines.stable_diffusion import convert_from_ckpt as cfc  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

MODELS = ["tiny-sd1", "tiny-sd2"]
PROMPT = "A mallard floats on the sparkling pond"
TEXT_TOL = (1e-4, 1e-4)
VAE_RTOL = 1e-4
VAE_SIZES = [(40, 56), (30, 46)]
HEADROOM = 4.0


def check(name, got, want, rtol, atol):
    err = (got.double() - want.double()).abs()
    bound = atol + rtol * want.double().abs()
    worst = (err / bound).max().item()
    assert worst <= 1.0 / HEADROOM, "%s: float32 cross-check at %.2f of the tolerance" % (name, worst)
    return worst


def text_goldens(model_dir, out_dir, name):
    te_dir = os.path.join(model_dir, "text_encoder")
    model = CLIPTextModel.from_pretrained(te_dir, torch_dtype=torch.float32).eval()
    tok = CLIPTokenizer.from_pretrained(os.path.join(model_dir, "tokenizer"))
    rows = [
        tok(PROMPT, padding="max_length", max_length=77, truncation=True).input_ids,
        tok("", padding="max_length", max_length=77, truncation=True).input_ids,
        np.random.default_rng(1234).integers(0, model.config.vocab_size, 77).tolist(),
    ]
    ids = torch.tensor(rows, dtype=torch.int64)
    with torch.no_grad():
        # transformers builds the causal mask with torch.full(finfo(float64).min) in the
        # default dtype, which must then be float64 too
        torch.set_default_dtype(torch.float64)
        ref = model.double()(input_ids=ids).last_hidden_state.float()
        torch.set_default_dtype(torch.float32)
        f32 = model.float()(input_ids=ids).last_hidden_state
    worst = check(name + " text", f32, ref, *TEXT_TOL)
    path = os.path.join(out_dir, "text_encoder", name + ".safetensors")
    write_safetensors(path, {"in.ids": ids.numpy().astype(np.int32), "out.last_hidden_state": ref.numpy()}, {
        "model": name, "rtol": repr(TEXT_TOL[0]), "atol": repr(TEXT_TOL[1]),
        "source": "transformers 4.33.3 CLIPTextModel(input_ids).last_hidden_state, float64",
        "prompt": PROMPT,
    })
    print("%s: text encoder, f32 cross-check at %.3f of tol" % (name, worst))


def vae_goldens(model_dir, out_dir, name):
    vae = AutoencoderKL.from_pretrained(os.path.join(model_dir, "vae"), torch_dtype=torch.float32).eval()
    sf = vae.config.scaling_factor
    for H, W in VAE_SIZES:
        rng = np.random.default_rng(H * 1000 + W)
        frames = torch.from_numpy(rng.uniform(-1, 1, (2, 3, H, W)).astype(np.float32))
        with torch.no_grad():
            vae.double()
            lat = (vae.encode(frames.double()).latent_dist.mean * sf).float()
            dec = vae.decode(lat.double() / sf).sample.float()
            vae.float()
            lat32 = vae.encode(frames).latent_dist.mean * sf
            dec32 = vae.decode(lat / sf).sample
        atol_l, atol_d = VAE_RTOL * lat.abs().max().item(), VAE_RTOL * dec.abs().max().item()
        w1 = check(name + " latents", lat32, lat, VAE_RTOL, atol_l)
        w2 = check(name + " decoded", dec32, dec, VAE_RTOL, atol_d)
        path = os.path.join(out_dir, "vae", "%s__%dx%d.safetensors" % (name, H, W))
        write_safetensors(path, {"in.frames": frames.numpy(), "out.latents": lat.numpy(), "out.decoded": dec.numpy()}, {
            "model": name, "rtol": repr(VAE_RTOL), "atol.latents": repr(atol_l), "atol.decoded": repr(atol_d),
            "scaling_factor": repr(sf),
            "source": "diffusers 0.20.2 AutoencoderKL: encode(frames).latent_dist.mean * scaling_factor; "
                      "decode(latents / scaling_factor).sample; float64",
        })
        print("%s: vae %dx%d -> %s, f32 cross-check at %.3f / %.3f of tol" % (name, H, W, tuple(lat.shape[2:]), w1, w2))


# ---- LDM names: the inverse of diffusers' convert_from_ckpt ----------------------------------


def unet_to_ldm(name, cfg):
    """diffusers UNet name -> LDM name (model.diffusion_model.*)."""
    per = cfg["layers_per_block"] + 1
    p = name.split(".")
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    head = ".".join(p[:-1])
    if head in fixed:
        return "model.diffusion_model.%s.%s" % (fixed[head], p[-1])
    res = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
           ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]

    def resnet(rest):
        for a, b in res:
            if rest.startswith(a + "."):
                return b + rest[len(a):]
        raise ValueError(name)

    if p[0] == "down_blocks":
        b = int(p[1])
        if p[2] == "downsamplers":
            return "model.diffusion_model.input_blocks.%d.0.op.%s" % (per * (b + 1), p[-1])
        l = int(p[3])
        i = 1 + per * b + l
        rest = ".".join(p[4:])
        if p[2] == "resnets":
            return "model.diffusion_model.input_blocks.%d.0.%s" % (i, resnet(rest))
        return "model.diffusion_model.input_blocks.%d.1.%s" % (i, rest)
    if p[0] == "mid_block":
        rest = ".".join(p[3:])
        if p[1] == "resnets":
            return "model.diffusion_model.middle_block.%d.%s" % (2 * int(p[2]), resnet(rest))
        return "model.diffusion_model.middle_block.1.%s" % rest
    if p[0] == "up_blocks":
        b = int(p[1])
        if p[2] == "upsamplers":
            i = per * b + per - 1
            has_attn = cfg["up_block_types"][b].startswith("CrossAttn")
            return "model.diffusion_model.output_blocks.%d.%d.conv.%s" % (i, 2 if has_attn else 1, p[-1])
        i = per * b + int(p[3])
        rest = ".".join(p[4:])
        if p[2] == "resnets":
            return "model.diffusion_model.output_blocks.%d.0.%s" % (i, resnet(rest))
        return "model.diffusion_model.output_blocks.%d.1.%s" % (i, rest)
    raise ValueError(name)


def vae_to_ldm(name, shape, cfg):
    """diffusers VAE name -> (LDM name, LDM shape) under first_stage_model.*"""
    levels = len(cfg["block_out_channels"])
    p = name.split(".")
    pre = "first_stage_model."
    if p[0] in ("quant_conv", "post_quant_conv"):
        return pre + name, shape
    side, rest = p[0], p[1:]
    if rest[0] in ("conv_in", "conv_out"):
        return pre + name, shape
    if rest[0] == "conv_norm_out":
        return pre + "%s.norm_out.%s" % (side, rest[-1]), shape

    def res(r):
        return ".".join(r).replace("conv_shortcut", "nin_shortcut")

    if rest[0] == "mid_block":
        if rest[1] == "resnets":
            return pre + "%s.mid.block_%d.%s" % (side, int(rest[2]) + 1, res(rest[3:])), shape
        leaf = ".".join(rest[3:])
        m = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
        mod = leaf.rsplit(".", 1)[0]
        ldm_shape = list(shape) + [1, 1] if leaf.endswith("weight") and mod != "group_norm" else shape
        return pre + "%s.mid.attn_1.%s.%s" % (side, m[mod], rest[-1]), ldm_shape
    if rest[0] == "down_blocks":
        i = int(rest[1])
        if rest[2] == "downsamplers":
            return pre + "encoder.down.%d.downsample.conv.%s" % (i, rest[-1]), shape
        return pre + "encoder.down.%d.block.%s.%s" % (i, rest[3], res(rest[4:])), shape
    if rest[0] == "up_blocks":
        i = levels - 1 - int(rest[1])
        if rest[2] == "upsamplers":
            return pre + "decoder.up.%d.upsample.conv.%s" % (i, rest[-1]), shape
        return pre + "decoder.up.%d.block.%s.%s" % (i, rest[3], res(rest[4:])), shape
    raise ValueError(name)


def openclip_names(name):
    """diffusers/transformers CLIP name -> OpenCLIP LDM name (cond_stage_model.model.*),
    with the q/k/v index for the fused in_proj (None otherwise)."""
    pre = "cond_stage_model.model."
    fixed = {"text_model.embeddings.token_embedding.weight": "token_embedding.weight",
             "text_model.embeddings.position_embedding.weight": "positional_embedding",
             "text_model.final_layer_norm.weight": "ln_final.weight",
             "text_model.final_layer_norm.bias": "ln_final.bias"}
    if name in fixed:
        return pre + fixed[name], None
    p = name.split(".")
    assert p[:3] == ["text_model", "encoder", "layers"], name
    n, rest = p[3], ".".join(p[4:])
    base = pre + "transformer.resblocks.%s." % n
    for a, b in [("layer_norm1.", "ln_1."), ("layer_norm2.", "ln_2."), ("mlp.fc1.", "mlp.c_fc."),
                 ("mlp.fc2.", "mlp.c_proj."), ("self_attn.out_proj.", "attn.out_proj.")]:
        if rest.startswith(a):
            return base + b + rest[len(a):], None
    for k, q in enumerate(["q_proj", "k_proj", "v_proj"]):
        if rest.startswith("self_attn.%s." % q):
            return base + "attn.in_proj_" + rest.rsplit(".", 1)[1], k
    raise ValueError(name)


def ldm_table(model_dir, out_dir, name):
    load = lambda comp, f: load_file(os.path.join(model_dir, comp, f))  # noqa: E731
    unet_sd = load("unet", "diffusion_pytorch_model.safetensors")
    vae_sd = load("vae", "diffusion_pytorch_model.safetensors")
    te_sd = load("text_encoder", "model.safetensors")
    unet_cfg = json.load(open(os.path.join(model_dir, "unet", "config.json")))
    vae_cfg = json.load(open(os.path.join(model_dir, "vae", "config.json")))
    te_cfg = CLIPTextConfig.from_pretrained(os.path.join(model_dir, "text_encoder"))
    openclip = te_cfg.hidden_act == "gelu"

    entries = {}  # ldm name -> (shape, [diffusers names], component)
    ckpt = {}
    for k, t in unet_sd.items():
        ln = unet_to_ldm(k, unet_cfg)
        entries[ln] = (list(t.shape), ["unet/" + k])
        ckpt[ln] = t
    for k, t in vae_sd.items():
        ln, shape = vae_to_ldm(k, list(t.shape), vae_cfg)
        entries[ln] = (shape, ["vae/" + k])
        ckpt[ln] = t.reshape(shape)
    if not openclip:
        for k, t in te_sd.items():
            ln = "cond_stage_model.transformer." + k
            entries[ln] = (list(t.shape), ["text_encoder/" + k])
            ckpt[ln] = t
    else:
        fused = {}
        for k, t in te_sd.items():
            ln, part = openclip_names(k)
            if part is None:
                entries[ln] = (list(t.shape), ["text_encoder/" + k])
                ckpt[ln] = t
            else:
                fused.setdefault(ln, [None] * 3)[part] = (k, t)
        for ln, parts in fused.items():
            t = torch.cat([pt for _, pt in parts], 0)
            entries[ln] = (list(t.shape), ["text_encoder/" + pk for pk, _ in parts])
            ckpt[ln] = t
        # what convert_open_clip_checkpoint reads d_model from (unused by CLIPTextModel)
        C = te_cfg.hidden_size
        ckpt["cond_stage_model.model.text_projection"] = torch.zeros(C, C, dtype=torch.float16)

    # ---- diffusers' own conversion must give back the folder's tensors exactly ----
    def same(conv, ref, what):
        assert sorted(conv) == sorted(ref), "%s: names differ: %s" % (what, sorted(set(conv) ^ set(ref))[:5])
        for k in ref:
            assert conv[k].shape == ref[k].shape and torch.equal(conv[k], ref[k]), "%s: %s differs" % (what, k)

    conf = dict(unet_cfg)
    conf.setdefault("class_embed_type", None)
    conf.setdefault("addition_embed_type", None)
    same(cfc.convert_ldm_unet_checkpoint(dict(ckpt), conf), unet_sd, name + " unet")
    same(cfc.convert_ldm_vae_checkpoint(dict(ckpt), vae_cfg), vae_sd, name + " vae")
    if not openclip:
        tm = cfc.convert_ldm_clip_checkpoint(dict(ckpt), text_encoder=CLIPTextModel(te_cfg))
    else:
        # d_model comes from text_projection's shape; mapping it to text_projection.weight
        # only works for CLIPTextModelWithProjection, so it is left out of the mapping here
        proj = cfc.textenc_conversion_map.pop("text_projection")
        try:
            tm = cfc.convert_open_clip_checkpoint(dict(ckpt), os.path.join(model_dir, "text_encoder"))
        finally:
            cfc.textenc_conversion_map["text_projection"] = proj
    same({k: v.to(torch.float16) for k, v in tm.state_dict().items()}, te_sd, name + " text_encoder")

    # ---- what real checkpoints carry besides (must be left unused) ----
    extras = {"model_ema.decay": ([], "F32"), "model_ema.num_updates": ([], "I32"), "alphas_cumprod": ([1000], "F32"),
              "first_stage_model.loss.logvar": ([], "F32")}
    if openclip:
        C = te_cfg.hidden_size
        extras["cond_stage_model.model.text_projection"] = ([C, C], "F16")
        extras["cond_stage_model.model.logit_scale"] = ([], "F16")
        # the 24th OpenCLIP layer that SD 2.x does not use
        for k, (shape, src) in list(entries.items()):
            pre = "cond_stage_model.model.transformer.resblocks.0."
            if k.startswith(pre):
                extras["cond_stage_model.model.transformer.resblocks.%d.%s" %
                       (te_cfg.num_hidden_layers, k[len(pre):])] = (shape, "F16")
    else:
        extras["cond_stage_model.transformer.text_model.embeddings.position_ids"] = ([1, 77], "I64")
    table = {
        "model": name,
        "source": "inverse of diffusers 0.20.2 convert_from_ckpt.py, checked by running its converters",
        "tensors": [{"ldm": k, "shape": s, "from": f} for k, (s, f) in sorted(entries.items())],
        "unused": [{"ldm": k, "shape": s, "dtype": d} for k, (s, d) in sorted(extras.items())],
    }
    with open(os.path.join(out_dir, "ldm", name + ".json"), "w") as f:
        json.dump(table, f, indent=0, sort_keys=True)
        f.write("\n")
    print("%s: ldm table: %d mapped tensors (%d unet, %d vae, %d text), %d unused" % (
        name, len(entries), len(unet_sd), len(vae_sd), len(te_sd), len(extras)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", default=os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
    ap.add_argument("--out", default=None, help="golden directory (default <repo>/refdata/golden)")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    out = args.out or os.path.join(args.repo, "refdata", "golden")
    for sub in ("text_encoder", "vae", "ldm"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    for name in MODELS:
        model_dir = os.path.join(args.repo, "refdata", "models", name)
        text_goldens(model_dir, out, name)
        vae_goldens(model_dir, out, name)
        ldm_table(model_dir, out, name)


if __name__ == "__main__":
    main()
