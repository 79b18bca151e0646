#!/usr/bin/env python3
"""Tiny random-weight Stable Diffusion folders (diffusers layout) for stem's tests.

    gen_models.py [--repo DIR]

Writes, under <repo>/refdata/models/:

  tiny-sd1/   SD 1.x style: UNet with 1x1-conv proj_in/proj_out, attention_head_dim an
              int (= number of heads, diffusers' naming quirk), 3 levels
              (CrossAttnDownBlock2D x2 + DownBlock2D; UpBlock2D + CrossAttnUpBlock2D x2),
              layers_per_block 1; CLIP text encoder with quick_gelu; tokenizer with pad
              "<|endoftext|>".
  tiny-sd2/   SD 2.x style: use_linear_projection, upcast_attention, attention_head_dim
              a per-level list, 2 levels (CrossAttnDownBlock2D + DownBlock2D; UpBlock2D +
              CrossAttnUpBlock2D), layers_per_block 2 (three resnets per up block, as in
              the real models); CLIP text encoder with gelu; tokenizer pad "!".

Each folder has model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/,
exactly as StableDiffusionPipeline.save_pretrained writes them (diffusers 0.20.2,
transformers 4.33.3). Weights are random (seeded), stored as float16 safetensors;
stem and the golden generators both upcast them to float32, so goldens computed from
these files are exact references for stem's f32 path.

Weights: PyTorch's default initialisation, then every normalisation weight/bias and
every bias is perturbed (weight = 1 + 0.2 n, bias = 0.1 n), so that a swapped
gamma/beta or a dropped bias shows up in the goldens. The UNet's conv_out and the
attention/feed-forward output projections keep their default scale (diffusers does not
zero-initialise them in UNet2DConditionModel), so every path contributes to the output.

tokenizer/: vocab.json and merges.txt are copies of refdata/tokenizer/clip/ (made by
gen_tokenizer.py from CLIP's bpe_simple_vocab_16e6.txt.gz); the json configs come from
refdata/tokenizer/clip/ (SD 1.x) or refdata/tokenizer/clip-sd2/ (SD 2.x). Git stores
identical files once, so the copies cost nothing in the repository.

scheduler/: DDIMScheduler with the parameters SD 1.5 ships (scaled_linear 0.00085 ..
0.012, 1000 steps, set_alpha_to_one false, steps_offset 1, epsilon, clip_sample false).

Sizes: the text encoders dominate (49408 x 16/24 token embeddings in f16 = 1.6/2.4 MB);
both folders together hold about 7 MB of distinct files (the tokenizer copies are shared).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import torch
import diffusers

from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

# CLIP hidden size == UNet cross_attention_dim; the 49408-row token embedding dominates
# the folder size, so the text encoders are narrow.
TEXT_HIDDEN_SD1 = 16
TEXT_HIDDEN_SD2 = 24

UNET_SD1 = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    only_cross_attention=False,
    block_out_channels=(16, 32, 32),
    layers_per_block=1,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=8,
    norm_eps=1e-5,
    cross_attention_dim=TEXT_HIDDEN_SD1,
    attention_head_dim=2,  # = 2 heads per attention (diffusers' naming quirk)
    dual_cross_attention=False,
    use_linear_projection=False,
    upcast_attention=False,
)

UNET_SD2 = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    only_cross_attention=False,
    block_out_channels=(16, 32),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=8,
    norm_eps=1e-5,
    cross_attention_dim=TEXT_HIDDEN_SD2,
    attention_head_dim=[2, 4],  # heads per level: level 0 d = 8, mid (level 1) d = 8
    dual_cross_attention=False,
    use_linear_projection=True,
    upcast_attention=True,
)

VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(8, 16, 16),
    layers_per_block=1,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=4,
    sample_size=32,
    scaling_factor=0.18215,
)


def text_config(act, hidden):
    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        projection_dim=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        hidden_act=act,
        layer_norm_eps=1e-5,
        attention_dropout=0.0,
        dropout=0.0,
        initializer_range=0.02,
        initializer_factor=1.0,
        # the ids SD 1.x/2.x text_encoder/config.json carry (legacy CLIP values)
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )


SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    trained_betas=None,
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    prediction_type="epsilon",
)


@torch.no_grad()
def perturb(module, gen):
    """Non-trivial norm affine parameters and biases (see the module docstring)."""
    for name, p in module.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        parent = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
        is_norm = isinstance(parent, (torch.nn.GroupNorm, torch.nn.LayerNorm))
        if is_norm and leaf == "weight":
            p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
        elif leaf == "bias":
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))


def build(name, unet_cfg, text_act, tok_cfg_dir, seed, out_root, repo):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    unet = UNet2DConditionModel(**unet_cfg)
    vae = AutoencoderKL(**VAE)
    hidden = unet_cfg["cross_attention_dim"]
    text = CLIPTextModel(text_config(text_act, hidden))
    for m in (unet, vae, text):
        perturb(m, gen)
        m.eval()

    tok_src = os.path.join(repo, "refdata", "tokenizer", "clip")
    tokenizer = CLIPTokenizer(os.path.join(tok_src, "vocab.json"), os.path.join(tok_src, "merges.txt"))
    scheduler = DDIMScheduler(**SCHEDULER)

    pipe = StableDiffusionPipeline(
        vae=vae.half(),
        text_encoder=text.half(),
        tokenizer=tokenizer,
        unet=unet.half(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    out = os.path.join(out_root, name)
    pipe.save_pretrained(out, safe_serialization=True)

    # tokenizer/: byte-identical copies of the reference tokenizer files
    tok_out = os.path.join(out, "tokenizer")
    shutil.rmtree(tok_out)
    os.makedirs(tok_out)
    for f in ("vocab.json", "merges.txt"):
        shutil.copyfile(os.path.join(tok_src, f), os.path.join(tok_out, f))
    for f in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(os.path.join(tok_cfg_dir, f), os.path.join(tok_out, f))

    # sanity: the folder loads back and runs
    back = StableDiffusionPipeline.from_pretrained(out, torch_dtype=torch.float32, safety_checker=None)
    ids = back.tokenizer(["a photo of a cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    ctx = back.text_encoder(ids)[0]
    assert ctx.shape == (1, 77, hidden), ctx.shape
    x = torch.randn(1, 4, 8, 8, generator=gen)
    eps = back.unet(x, 981, ctx).sample
    assert eps.shape == x.shape and torch.isfinite(eps).all()
    lat = back.vae.encode(torch.rand(1, 3, 32, 32, generator=gen) * 2 - 1).latent_dist.mean
    assert lat.shape == (1, 4, 8, 8), lat.shape
    pad = back.tokenizer.pad_token_id
    n = sum(p.numel() for p in back.unet.parameters())
    print(f"{name}: unet {n} params, pad id {pad}, eps std {eps.std():.3f}")


def main():
    diffusers.utils.logging.set_verbosity_error()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--repo", default=os.path.normpath(os.path.join(here, "..", "..")))
    args = ap.parse_args()
    repo = args.repo
    torch.set_num_threads(1)
    for need in ("vocab.json", "merges.txt"):
        p = os.path.join(repo, "refdata", "tokenizer", "clip", need)
        if not os.path.exists(p):
            sys.exit(f"gen_models.py: {p} is missing (run refdata/gen/gen_tokenizer.py first)")

    models = os.path.join(repo, "refdata", "models")
    os.makedirs(models, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="models.tmp.", dir=models)
    try:
        tok = os.path.join(repo, "refdata", "tokenizer")
        build("tiny-sd1", UNET_SD1, "quick_gelu", os.path.join(tok, "clip"), 1, tmp, repo)
        build("tiny-sd2", UNET_SD2, "gelu", os.path.join(tok, "clip-sd2"), 2, tmp, repo)
        for name in ("tiny-sd1", "tiny-sd2"):
            dst = os.path.join(models, name)
            shutil.rmtree(dst, ignore_errors=True)
            os.rename(os.path.join(tmp, name), dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
