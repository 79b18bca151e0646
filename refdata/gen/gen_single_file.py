#!/usr/bin/env python3
"""Single-file (original LDM layout) checkpoints of the tiny models, verified by
diffusers' own single-file loader.

    gen_single_file.py [--repo DIR] [--check-only]

For refdata/models/tiny-sd1 and tiny-sd2 writes refdata/models/<model>.safetensors: the
folder's UNet, VAE and text encoder under the names the original Stable Diffusion code
saves (model.diffusion_model.*, first_stage_model.*, cond_stage_model.transformer.* for
SD 1.x, cond_stage_model.model.* with fused attn.in_proj for SD 2.x's OpenCLIP), float16
as in the folder, plus what real checkpoints carry that a loader must leave unused:
model_ema.decay / num_updates, alphas_cumprod, first_stage_model.loss.logvar, and for
SD 1.x the position_ids buffer, for SD 2.x text_projection, logit_scale and one
OpenCLIP layer beyond the text config's num_hidden_layers (SD 2.x conditions on the
penultimate layer; the extra layer is a copy of layer 0, so a loader that used it would
change the output; an all-zero layer would be the identity). The LDM names are the
inverse of diffusers' conversion (gen_text_vae.py's unet_to_ldm, vae_to_ldm,
openclip_names); files are written with sorted headers (byte-reproducible).

Verification (the file is only written when it passes): diffusers 0.20.2's
download_from_original_stable_diffusion_ckpt, the function StableDiffusionPipeline.
from_single_file calls, loads the file with an original LDM config yaml written here
(v1-inference.yaml / v2-inference.yaml with the tiny sizes), scheduler_type "ddim",
prediction_type "epsilon", and every tensor of the pipeline's UNet, VAE and text encoder
must equal the folder's (f32 values of the same f16 numbers), with no tensor missing or
extra; the configs it derives must equal the folder's on every key stem reads, and its
DDIM scheduler the folder's scheduler_config.json (SD's values: what stem uses for a
single file without --model-config).

What from_single_file needs, and how this runs offline:
  - from_single_file (0.20.2) takes no original_config_file and fetches the yaml from
    GitHub with requests.get: the script calls download_from_original_stable_diffusion_ckpt
    with original_config_file= instead (the same code path after that fetch).
  - SD 1.x: the CLIP text config and tokenizer come from the hub
    (openai/clip-vit-large-patch14) unless passed: the folder's text_encoder (a fresh
    CLIPTextModel of its config, weights loaded from the file by convert_ldm_clip_checkpoint)
    and tokenizer are passed in; load_safety_checker=False.
  - SD 2.x: the text config and tokenizer are read from the hub repo
    stabilityai/stable-diffusion-2 (subfolders text_encoder, tokenizer): a private
    offline hub cache (HF_HOME in a temporary folder, HF_HUB_OFFLINE=1) holds the tiny
    folder's files under that name.
  - omegaconf (pinned in requirements.txt) parses the yaml.
Shims for what a tiny model cannot express in an LDM yaml (documented, applied to
diffusers' config/conversion helpers, never to its name mapping):
  - norm_num_groups: LDM hard-codes GroupNorm(32); the tiny folders use 8 (UNet) and
    4 (VAE): create_unet/vae_diffusers_config get the folder's value added.
  - SD 2.x text encoder: diffusers drops resblocks.23 and the text_projection mapping only
    for the 23-layer SD 2 config (keys_to_ignore); the shim applies that rule at the tiny
    config's layer count (the file's extra layer and text_projection are left unused,
    text_projection still gives d_model for the q/k/v split).

Also writes refdata/golden/ldm/sd15_header.json and sd21_header.json: the tensor names and
shapes (no weights) of a real SD 1.5 and SD 2.1-base single-file checkpoint, made from
diffusers/transformers modules with the published configs (built on the meta device, so
nothing is allocated) and the same LDM names, with those configs: a checkpoint of those
shapes must give them back (tests/test_single_file.c checks stem's configs from shapes).

Nothing here is computed by stem's own C code.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

# a private, offline hub cache: set before transformers / huggingface_hub are imported
_HF_HOME = tempfile.mkdtemp(prefix="stem-hf-")
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("HF_HUB_CACHE", None)
os.environ.pop("TRANSFORMERS_CACHE", None)

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_ops import write_safetensors  # noqa: E402
from gen_text_vae import openclip_names, unet_to_ldm, vae_to_ldm  # noqa: E402

from diffusers.pipelines.stable_diffusion import convert_from_ckpt as cfc  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

MODELS = ["tiny-sd1", "tiny-sd2"]
# the UNet / VAE / text keys stem reads (src/models/unet_config.c, vae.c, clip_text.c)
UNET_KEYS = ["in_channels", "out_channels", "block_out_channels", "layers_per_block", "down_block_types",
             "up_block_types", "attention_head_dim", "cross_attention_dim", "use_linear_projection",
             "transformer_layers_per_block", "norm_num_groups", "norm_eps", "flip_sin_to_cos", "freq_shift",
             "downsample_padding", "mid_block_scale_factor", "center_input_sample", "conv_in_kernel",
             "conv_out_kernel", "act_fn", "mid_block_type", "upcast_attention", "sample_size",
             "time_embedding_dim", "class_embed_type", "addition_embed_type", "only_cross_attention"]
VAE_KEYS = ["in_channels", "out_channels", "block_out_channels", "layers_per_block", "latent_channels",
            "down_block_types", "up_block_types", "norm_num_groups", "act_fn", "scaling_factor", "sample_size"]
TEXT_KEYS = ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
             "max_position_embeddings", "vocab_size", "hidden_act", "layer_norm_eps"]
SCHED_KEYS = ["num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "steps_offset",
              "set_alpha_to_one", "clip_sample", "prediction_type", "timestep_spacing", "thresholding",
              "rescale_betas_zero_snr", "trained_betas"]


def jload(*p):
    with open(os.path.join(*p)) as f:
        return json.load(f)


# ---- the checkpoint ------------------------------------------------------------------------


def build_checkpoint(model_dir):
    """name -> numpy array, LDM names, float16 as in the folder."""
    unet_cfg, vae_cfg = jload(model_dir, "unet", "config.json"), jload(model_dir, "vae", "config.json")
    te_cfg = jload(model_dir, "text_encoder", "config.json")
    openclip = te_cfg["hidden_act"] == "gelu"
    load = lambda comp, f: load_file(os.path.join(model_dir, comp, f))  # noqa: E731
    ckpt = {}

    def put(name, t):
        assert name not in ckpt, name
        ckpt[name] = t.numpy() if isinstance(t, torch.Tensor) else t

    for k, t in load("unet", "diffusion_pytorch_model.safetensors").items():
        put(unet_to_ldm(k, unet_cfg), t)
    for k, t in load("vae", "diffusion_pytorch_model.safetensors").items():
        name, shape = vae_to_ldm(k, list(t.shape), vae_cfg)
        put(name, t.reshape(shape))
    te = load("text_encoder", "model.safetensors")
    if not openclip:
        for k, t in te.items():
            put("cond_stage_model.transformer." + k, t)
        put("cond_stage_model.transformer.text_model.embeddings.position_ids",
            np.arange(te_cfg["max_position_embeddings"], dtype=np.int64)[None])
    else:
        fused = {}
        for k, t in te.items():
            name, part = openclip_names(k)
            if part is None:
                put(name, t)
            else:
                fused.setdefault(name, [None] * 3)[part] = t
        for name, parts in fused.items():
            put(name, torch.cat(parts, 0))
        C, L = te_cfg["hidden_size"], te_cfg["num_hidden_layers"]
        rng = np.random.default_rng(2)
        put("cond_stage_model.model.text_projection", rng.standard_normal((C, C)).astype(np.float16))
        put("cond_stage_model.model.logit_scale", np.array(4.6055, dtype=np.float16))
        pre = "cond_stage_model.model.transformer.resblocks."
        for k in [k for k in ckpt if k.startswith(pre + "0.")]:
            put(pre + "%d." % L + k[len(pre) + 2:], ckpt[k].copy())
    put("model_ema.decay", np.array(0.9999, dtype=np.float32))
    put("model_ema.num_updates", np.array(0, dtype=np.int32))
    put("first_stage_model.loss.logvar", np.array(0.0, dtype=np.float32))
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    put("alphas_cumprod", np.cumprod(1 - betas).astype(np.float32))
    return ckpt


def original_yaml(model_dir):
    """The original LDM inference config of the folder's sizes (v1-/v2-inference.yaml)."""
    u, v = jload(model_dir, "unet", "config.json"), jload(model_dir, "vae", "config.json")
    te = jload(model_dir, "text_encoder", "config.json")
    s = jload(model_dir, "scheduler", "scheduler_config.json")
    c0 = u["block_out_channels"][0]
    mult = [c // c0 for c in u["block_out_channels"]]
    assert [c0 * m for m in mult] == u["block_out_channels"]
    n = len(mult)
    attn_res = [2 ** i for i, t in enumerate(u["down_block_types"]) if t.startswith("CrossAttn")]
    # diffusers reads the up path from the same list: check it says what the folder has
    assert [("CrossAttnUpBlock2D" if 2 ** (n - 1 - i) in attn_res else "UpBlock2D") for i in range(n)] == \
        u["up_block_types"], u["up_block_types"]
    heads = u["attention_head_dim"]
    v2 = u["use_linear_projection"]
    if v2:  # SD 2.x: num_head_channels, heads per level = channels / num_head_channels
        hl = heads if isinstance(heads, list) else [heads] * n
        width = {c // h for c, h in zip(u["block_out_channels"], hl)}
        assert len(width) == 1, width
        head_line = "num_head_channels: %d" % width.pop()
    else:
        assert isinstance(heads, int)
        head_line = "num_heads: %d" % heads
    v0 = v["block_out_channels"][0]
    vmult = [c // v0 for c in v["block_out_channels"]]
    image_size = u["sample_size"] * 2 ** (len(vmult) - 1)
    assert image_size == v["sample_size"], (image_size, v["sample_size"])
    cond = ("ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder\n      params:\n        freeze: True\n"
            "        layer: \"penultimate\"" if v2 else "ldm.modules.encoders.modules.FrozenCLIPEmbedder")
    return """model:
  base_learning_rate: 1.0e-04
  target: ldm.models.diffusion.ddpm.LatentDiffusion
  params:
    linear_start: {b0}
    linear_end: {b1}
    num_timesteps_cond: 1
    log_every_t: 200
    timesteps: {T}
    first_stage_key: "jpg"
    cond_stage_key: "txt"
    image_size: {lat}
    channels: 4
    cond_stage_trainable: false
    conditioning_key: crossattn
    monitor: val/loss_simple_ema
    scale_factor: {sf}
    use_ema: False
    unet_config:
      target: ldm.modules.diffusionmodules.openaimodel.UNetModel
      params:
        image_size: {lat}
        in_channels: {cin}
        out_channels: {cout}
        model_channels: {c0}
        attention_resolutions: {attn}
        num_res_blocks: {nres}
        channel_mult: {mult}
        {head_line}
        use_spatial_transformer: True
        use_linear_in_transformer: {lin}
        transformer_depth: 1
        context_dim: {ctx}
        use_checkpoint: True
        legacy: False
    first_stage_config:
      target: ldm.models.autoencoder.AutoencoderKL
      params:
        embed_dim: {z}
        monitor: val/rec_loss
        ddconfig:
          double_z: true
          z_channels: {z}
          resolution: {img}
          in_channels: {vin}
          out_ch: {vout}
          ch: {v0}
          ch_mult: {vmult}
          num_res_blocks: {vres}
          attn_resolutions: []
          dropout: 0.0
        lossconfig:
          target: torch.nn.Identity
    cond_stage_config:
      target: {cond}
""".format(b0=s["beta_start"], b1=s["beta_end"], T=s["num_train_timesteps"], lat=u["sample_size"],
           sf=v["scaling_factor"], cin=u["in_channels"], cout=u["out_channels"], c0=c0, attn=attn_res,
           nres=u["layers_per_block"], mult=mult, head_line=head_line, lin=v2, ctx=u["cross_attention_dim"],
           z=v["latent_channels"], img=image_size, vin=v["in_channels"], vout=v["out_channels"], v0=v0,
           vmult=vmult, vres=v["layers_per_block"], cond=cond)


# ---- verification with diffusers' single-file loader ----------------------------------------


def fake_hub_repo(repo, model_dir):
    """The folder's text_encoder/ and tokenizer/ as hub repo `repo` in the offline cache."""
    base = os.path.join(_HF_HOME, "hub", "models--" + repo.replace("/", "--"))
    commit = "0" * 40
    snap = os.path.join(base, "snapshots", commit)
    if os.path.isdir(snap):
        shutil.rmtree(snap)
    for sub in ("text_encoder", "tokenizer"):
        shutil.copytree(os.path.join(model_dir, sub), os.path.join(snap, sub))
    os.remove(os.path.join(snap, "text_encoder", "model.safetensors"))  # config only
    os.makedirs(os.path.join(base, "refs"), exist_ok=True)
    with open(os.path.join(base, "refs", "main"), "w") as f:
        f.write(commit)


def load_with_diffusers(path, yaml_path, model_dir):
    unet_cfg, vae_cfg = jload(model_dir, "unet", "config.json"), jload(model_dir, "vae", "config.json")
    te_cfg = CLIPTextConfig.from_pretrained(os.path.join(model_dir, "text_encoder"))
    v2 = te_cfg.hidden_act == "gelu"
    saved = {k: getattr(cfc, k) for k in ("create_unet_diffusers_config", "create_vae_diffusers_config",
                                          "convert_open_clip_checkpoint")}

    def unet_config(*a, **k):
        c = saved["create_unet_diffusers_config"](*a, **k)
        c["norm_num_groups"] = unet_cfg["norm_num_groups"]  # shim: LDM hard-codes 32
        return c

    def vae_config(*a, **k):
        c = saved["create_vae_diffusers_config"](*a, **k)
        c["norm_num_groups"] = vae_cfg["norm_num_groups"]
        return c

    def open_clip(checkpoint, config_name, **kw):
        # shim: diffusers' SD 2 rule (drop layers >= 23 and text_projection) at the tiny layer count
        L = CLIPTextConfig.from_pretrained(config_name, subfolder="text_encoder").num_hidden_layers
        pre = "cond_stage_model.model.transformer.resblocks."
        kept = {k: t for k, t in checkpoint.items()
                if not (k.startswith(pre) and int(k[len(pre):].split(".")[0]) >= L)}
        proj = cfc.textenc_conversion_map.pop("text_projection")
        try:
            return saved["convert_open_clip_checkpoint"](kept, config_name, **kw)
        finally:
            cfc.textenc_conversion_map["text_projection"] = proj

    cfc.create_unet_diffusers_config, cfc.create_vae_diffusers_config = unet_config, vae_config
    cfc.convert_open_clip_checkpoint = open_clip
    try:
        kw = {}
        if v2:
            fake_hub_repo("stabilityai/stable-diffusion-2", model_dir)
        else:
            kw = dict(text_encoder=CLIPTextModel(te_cfg),
                      tokenizer=CLIPTokenizer.from_pretrained(os.path.join(model_dir, "tokenizer")))
        return cfc.download_from_original_stable_diffusion_ckpt(
            path, original_config_file=yaml_path, from_safetensors=True, scheduler_type="ddim",
            prediction_type="epsilon", image_size=vae_cfg["sample_size"], load_safety_checker=False, local_files_only=True,
            upcast_attention=unet_cfg.get("upcast_attention", False), **kw)
    finally:
        for k, f in saved.items():
            setattr(cfc, k, f)


def same_state(name, model, ref_path):
    ref = load_file(ref_path)
    got = {k: v for k, v in model.state_dict().items() if k != "text_model.embeddings.position_ids"}
    assert sorted(got) == sorted(ref), "%s: tensor names differ: %s" % (name, sorted(set(got) ^ set(ref))[:6])
    for k, want in ref.items():
        g = got[k]
        assert g.shape == want.shape, "%s: %s has shape %s, the folder %s" % (name, k, tuple(g.shape), tuple(want.shape))
        assert torch.equal(g.to(torch.float32), want.to(torch.float32)), "%s: %s differs" % (name, k)
    return len(ref)


def same_config(name, got, want, keys):
    for k in keys:
        if k not in want:
            continue
        g, w = got.get(k), want[k]
        if isinstance(g, tuple):
            g = list(g)
        if k == "transformer_layers_per_block" and isinstance(w, int) and isinstance(g, list):
            g = g[0] if len(set(g)) == 1 else g
        if k == "upcast_attention":
            g = bool(g)
        assert g == w, "%s config: %s is %r, the folder has %r" % (name, k, g, w)


def verify(path, yaml_path, model_dir, name):
    pipe = load_with_diffusers(path, yaml_path, model_dir)
    n_unet = same_state(name + " unet", pipe.unet, os.path.join(model_dir, "unet", "diffusion_pytorch_model.safetensors"))
    n_vae = same_state(name + " vae", pipe.vae, os.path.join(model_dir, "vae", "diffusion_pytorch_model.safetensors"))
    n_te = same_state(name + " text_encoder", pipe.text_encoder, os.path.join(model_dir, "text_encoder", "model.safetensors"))
    same_config(name + " unet", dict(pipe.unet.config), jload(model_dir, "unet", "config.json"), UNET_KEYS)
    same_config(name + " vae", dict(pipe.vae.config), jload(model_dir, "vae", "config.json"), VAE_KEYS)
    same_config(name + " text_encoder", pipe.text_encoder.config.to_dict(), jload(model_dir, "text_encoder", "config.json"),
                TEXT_KEYS)
    same_config(name + " scheduler", dict(pipe.scheduler.config), jload(model_dir, "scheduler", "scheduler_config.json"),
                SCHED_KEYS)
    tok = CLIPTokenizer.from_pretrained(os.path.join(model_dir, "tokenizer"))
    assert pipe.tokenizer.pad_token == tok.pad_token, (pipe.tokenizer.pad_token, tok.pad_token)
    print("%s: diffusers 0.20.2 single-file loader: %d unet, %d vae, %d text_encoder tensors equal the folder's; "
          "configs and DDIM scheduler match; pad token %r" % (name, n_unet, n_vae, n_te, tok.pad_token))


# ---- real SD checkpoints' shapes ------------------------------------------------------------

# The published diffusers configs (runwayml/stable-diffusion-v1-5, stabilityai/stable-diffusion-2-1-base),
# the keys a checkpoint's shapes and SD's fixed values must give back.
SD_UNET = dict(in_channels=4, out_channels=4, block_out_channels=[320, 640, 1280, 1280], layers_per_block=2,
               down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
               up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, norm_num_groups=32,
               transformer_layers_per_block=1, conv_in_kernel=3, conv_out_kernel=3)
SD_VAE = dict(in_channels=3, out_channels=3, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
              latent_channels=4, norm_num_groups=32, scaling_factor=0.18215,
              down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4)
SD_HEADERS = {
    "sd15": (dict(SD_UNET, attention_head_dim=8, cross_attention_dim=768, use_linear_projection=False),
             dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                  max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu", layer_norm_eps=1e-05)),
    "sd21": (dict(SD_UNET, attention_head_dim=[5, 10, 20, 20], cross_attention_dim=1024, use_linear_projection=True),
             dict(hidden_size=1024, num_hidden_layers=23, num_attention_heads=16, intermediate_size=4096,
                  max_position_embeddings=77, vocab_size=49408, hidden_act="gelu", layer_norm_eps=1e-05)),
}


def sd_header(name, out_dir):
    unet_cfg, te_cfg = SD_HEADERS[name]
    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**{k: v for k, v in SD_VAE.items()})
        te = CLIPTextModel(CLIPTextConfig(**te_cfg))
    full_unet = dict(unet.config)
    tensors = {}
    for k, t in unet.state_dict().items():
        tensors[unet_to_ldm(k, full_unet)] = list(t.shape)
    for k, t in vae.state_dict().items():
        n, shape = vae_to_ldm(k, list(t.shape), dict(vae.config))
        tensors[n] = shape
    te_sd = {k: list(t.shape) for k, t in te.state_dict().items() if k != "text_model.embeddings.position_ids"}
    if te_cfg["hidden_act"] == "quick_gelu":
        for k, shape in te_sd.items():
            tensors["cond_stage_model.transformer." + k] = shape
    else:
        C, L = te_cfg["hidden_size"], te_cfg["num_hidden_layers"]
        for k, shape in te_sd.items():
            n, part = openclip_names(k)
            tensors[n] = [3 * shape[0]] + shape[1:] if part is not None else shape
        pre = "cond_stage_model.model.transformer.resblocks."
        for k in [k for k in tensors if k.startswith(pre + "0.")]:
            tensors[pre + "%d." % L + k[len(pre) + 2:]] = tensors[k]  # the 24th layer SD 2.x does not use
        tensors["cond_stage_model.model.text_projection"] = [C, C]
        tensors["cond_stage_model.model.logit_scale"] = []
    out = {
        "model": {"sd15": "runwayml/stable-diffusion-v1-5 (v1-5-pruned.safetensors)",
                  "sd21": "stabilityai/stable-diffusion-2-1-base (v2-1_512-ema-pruned.safetensors)"}[name],
        "source": "tensor names and shapes of diffusers 0.20.2 / transformers 4.33.3 modules with these configs, "
                  "under the LDM names (inverse of convert_from_ckpt.py); no weights",
        "config": {"unet": unet_cfg, "vae": SD_VAE, "text_encoder": te_cfg},
        "tensors": [[k, tensors[k]] for k in sorted(tensors)],
    }
    path = os.path.join(out_dir, name + "_header.json")
    with open(path, "w") as f:
        f.write("{\n")
        for key in ("model", "source", "config"):
            f.write("%s: %s,\n" % (json.dumps(key), json.dumps(out[key], sort_keys=True)))
        f.write('"tensors": [\n%s\n]\n}\n' % ",\n".join(json.dumps(e, separators=(",", ":")) for e in out["tensors"]))
    print("%s: %d tensor shapes -> %s" % (name, len(tensors), path))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", default=os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
    ap.add_argument("--check-only", action="store_true", help="verify the committed files, write nothing")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    if not args.check_only:
        for name in SD_HEADERS:
            sd_header(name, os.path.join(args.repo, "refdata", "golden", "ldm"))
    tmp = tempfile.mkdtemp(prefix="stem-single-file-")
    try:
        for name in MODELS:
            model_dir = os.path.join(args.repo, "refdata", "models", name)
            out = os.path.join(args.repo, "refdata", "models", name + ".safetensors")
            yaml_path = os.path.join(tmp, name + ".yaml")
            with open(yaml_path, "w") as f:
                f.write(original_yaml(model_dir))
            path = out if args.check_only else os.path.join(tmp, name + ".safetensors")
            if not args.check_only:
                write_safetensors(path, build_checkpoint(model_dir), {"format": "pt"})
            verify(path, yaml_path, model_dir, name)
            if not args.check_only:
                shutil.copyfile(path, out)
                print("%s: wrote %s (%d bytes)" % (name, out, os.path.getsize(out)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(_HF_HOME, ignore_errors=True)


if __name__ == "__main__":
    main()
