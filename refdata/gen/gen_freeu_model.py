#!/usr/bin/env python3
"""refdata/models/tiny-freeu: a random-weight UNet shaped like SD 1.5's, 20x narrower, for
the editing golden (gen_edit.py), where FreeU, every PnP site and the conv injection must
really act.

    gen_freeu_model.py [--repo DIR]

The UNet (diffusers 0.20.2 UNet2DConditionModel, float16 safetensors):
  block_out_channels (16, 32, 64, 64) = SD 1.5's (320, 640, 1280, 1280) / 20,
  down CrossAttnDownBlock2D x3 + DownBlock2D, mid UNetMidBlock2DCrossAttn, up UpBlock2D +
  CrossAttnUpBlock2D x3, layers_per_block 2 (three resnets and attentions per up block),
  2 heads everywhere, 8 norm groups, cross_attention_dim 16 (tiny-sd1's text encoder).
So it has SD 1.5's module tree: the 16 transformer blocks, the eight PnP Q/K sites
up_blocks[1].attentions[1, 2], up_blocks[2].attentions[0..2], up_blocks[3].attentions[0..2],
the conv site up_blocks[1].resnets[1], and the up-block hidden states whose channel counts
are SD's 1280/640 divided by 20: 64 in up_blocks[0], [1] and up_blocks[2].resnets[0], 32 in
up_blocks[2].resnets[1, 2] and up_blocks[3].resnets[0], 16 elsewhere, i.e. the resnets
where the original's FreeU gate (1280 / 640) fires on SD 1.5 are exactly the ones where a
gate of 64 / 32 fires here.

Why not real 1280/640 widths: a ResnetBlock2D producing 1280 channels has a 1280x1280x3x3
conv2 (14.7M parameters, 29 MB in float16) whatever else is trimmed, and one producing 640
channels another 7 MB; no small UNet has such states. gen_edit.py therefore runs FreeU with
the gate as a parameter: (1280, 640) on tiny-sd1/tiny-sd2, as the original (it never fires
there, silently, as in the original), and (64, 32) on this model (metadata
freeu_gate_channels of each golden). Everything else of FreeU (b1, b2 on the first half of
the hidden channels, the filter with s1, s2 on the skip) is the original's.

Weights: PyTorch's default initialisation (torch.manual_seed(3)), then gen_models.perturb
(norm weights 1 + 0.2 n, biases 0.1 n). Latents are 16x16 for 64x64 frames (the tiny VAE
downsamples by 4), so the four levels are 16, 8, 4, 2.

The other parts of the folder (vae/, text_encoder/, tokenizer/, scheduler/,
model_index.json) are byte-identical copies of refdata/models/tiny-sd1 (run gen_models.py
first); git stores identical files once.
"""
import argparse
import os
import shutil
import sys
import tempfile

import torch
import diffusers
from diffusers import UNet2DConditionModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_models import perturb  # noqa: E402

NAME = "tiny-freeu"
SEED = 3
UNET_FREEU = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    only_cross_attention=False,
    block_out_channels=(16, 32, 64, 64),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=8,
    norm_eps=1e-5,
    cross_attention_dim=16,
    attention_head_dim=2,  # = 2 heads (diffusers' naming quirk), as tiny-sd1
    dual_cross_attention=False,
    use_linear_projection=False,
    upcast_attention=False,
)
# the channel counts at which FreeU fires on this UNet (SD 1.5's 1280, 640 / 20)
FREEU_GATE = (64, 32)
COPIED = ("model_index.json", "scheduler", "text_encoder", "tokenizer", "vae")


def main():
    diffusers.utils.logging.set_verbosity_error()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--repo", default=os.path.normpath(os.path.join(here, "..", "..")))
    args = ap.parse_args()
    torch.set_num_threads(1)
    models = os.path.join(args.repo, "refdata", "models")
    src = os.path.join(models, "tiny-sd1")
    if not os.path.isdir(os.path.join(src, "vae")):
        sys.exit("gen_freeu_model.py: %s is missing (run refdata/gen/gen_models.py first)" % src)
    tmp = tempfile.mkdtemp(prefix="freeu.tmp.", dir=models)
    try:
        out = os.path.join(tmp, NAME)
        os.makedirs(out)
        for part in COPIED:
            s, d = os.path.join(src, part), os.path.join(out, part)
            if os.path.isdir(s):
                shutil.copytree(s, d)
            else:
                shutil.copyfile(s, d)
        torch.manual_seed(SEED)
        gen = torch.Generator().manual_seed(SEED)
        unet = UNet2DConditionModel(**UNET_FREEU)
        perturb(unet, gen)
        unet.eval().half().save_pretrained(os.path.join(out, "unet"), safe_serialization=True)

        # sanity: it loads back, runs, and has the states FreeU's gate looks for
        back = UNet2DConditionModel.from_pretrained(os.path.join(out, "unet"), torch_dtype=torch.float32)
        seen = []
        for k, blk in enumerate(back.up_blocks):
            for j, res in enumerate(blk.resnets):
                res.register_forward_pre_hook(lambda m, a, k=k, j=j: seen.append((k, j, a[0].shape[1])))
        x = torch.randn(2, 4, 16, 16, generator=gen)
        eps = back(x, 981, torch.randn(2, 77, 16, generator=gen)).sample
        assert eps.shape == x.shape and torch.isfinite(eps).all()
        assert len(back.up_blocks) == 4 and all(len(b.resnets) == 3 for b in back.up_blocks)
        for k, j in ((1, 1), (1, 2), (2, 0), (2, 1), (2, 2), (3, 0), (3, 1), (3, 2)):
            assert back.up_blocks[k].attentions[j].transformer_blocks[0].attn1 is not None
        n = sum(p.numel() for p in back.parameters())
        print("%s: unet %d params, %d bytes; up-block resnet inputs (block, resnet, channels incl. skip): %s" % (
            NAME, n, os.path.getsize(os.path.join(out, "unet", "diffusion_pytorch_model.safetensors")), seen))
        dst = os.path.join(models, NAME)
        shutil.rmtree(dst, ignore_errors=True)
        os.rename(out, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
