"""The TokenFlow editing reference of doc/algorithm.md §7 as diffusers hooks (used by
gen_edit.py; its docstring states every choice). Nothing here uses stem's C code.

Per UNet call the batch is [source | uncond | cond] x n frames. An EditState holds what
the hooks share; install() puts on a diffusers UNet2DConditionModel
  - an attention processor on every attn1 (only the pivotal pass calls attn1): extended
    attention, or STEM bases (--edit-attention stem), with PnP Q/K injection at the sites;
  - a forward on every BasicTransformerBlock: the pivotal pass caches the source branch's
    norm1 output and the attn1 output of every branch; the normal pass replaces attn1 by
    token flow from those caches;
  - a forward hook on the conv-injection resnet's conv2 (PnP residual injection);
  - a forward pre-hook on every up-block resnet (FreeU, gated on the hidden channel count);
and uninstall() takes everything off again.
"""
import math

import numpy as np
import torch

import philox_ref
from gen_ops import fourier_filter
from gen_stem import em_dense, em_init_philox, w3_of

# doc/algorithm.md §7: SD 1.5's PnP Q/K sites (transformer_blocks[0].attn1 of these) and conv site
PNP_QK_SITES = ["up_blocks.1.attentions.1", "up_blocks.1.attentions.2", "up_blocks.2.attentions.0",
                "up_blocks.2.attentions.1", "up_blocks.2.attentions.2", "up_blocks.3.attentions.0",
                "up_blocks.3.attentions.1", "up_blocks.3.attentions.2"]
PNP_CONV_SITE = "up_blocks.1.resnets.1"
TAU = 0.01
EDIT_PHASE = 2     # Philox phase of EM draws while editing (doc/algorithm.md §6)
KEYFRAME_PHASE = 3


def keyframe_pick(seed, step, chunk, length):
    """doc/algorithm.md §6: word 0 of counter (chunk, 0, 0, 3 << 24 | step << 12), mod length."""
    ctr = np.array([[chunk, 0, 0, (KEYFRAME_PHASE << 24) | (step << 12)]], dtype=np.uint32)
    return int(philox_ref.philox4x32_10(ctr, philox_ref.seed_key(seed))[0, 0]) % length


def check_keyframe_kats():
    """The known answers of SPEC §6 (seed 1)."""
    got8 = [keyframe_pick(1, s, 0, 8) for s in range(5)]
    got4 = [[keyframe_pick(1, s, c, 4) for c in range(2)] for s in range(5)]
    assert got8 == [4, 7, 1, 6, 5], got8
    assert got4 == [[0, 0], [3, 2], [1, 1], [2, 1], [1, 0]], got4


def chunks_of(frames, batch_size):
    """[(first, count)] over `frames` frames in runs of batch_size (the last may be shorter)."""
    return [(f0, min(batch_size, frames - f0)) for f0 in range(0, frames, batch_size)]


def argmax_cos(f, g):
    """f [n, C], g [m, C] -> (argmax_j cos(f_i, g_j) [n] (first index on exact ties, as
    torch.argmax), best minus second-best cosine [n]). x / ||x||, no epsilon."""
    sim = (f / f.norm(dim=-1, keepdim=True)) @ (g / g.norm(dim=-1, keepdim=True)).T
    idx = sim.argmax(dim=-1)
    if sim.shape[1] > 1:
        top = sim.topk(2, dim=-1).values
        margin = top[:, 0] - top[:, 1]
    else:
        margin = torch.full((sim.shape[0],), float("inf"), dtype=sim.dtype)
    return idx, margin


def softmax_attention(q, k, v, scale):
    """q [..., nq, d], k/v [..., nk, d]."""
    return torch.softmax(torch.einsum("...nd,...md->...nm", q, k) * scale, dim=-1) @ v


class EditState:
    def __init__(self, opts, steps):
        self.opts = opts               # dict: batch_size, edit_attention, bases, iters, seed, freeu, gate, ...
        self.steps = steps
        self.step = 0
        self.pivotal = False
        self.chunk = 0                 # normal pass: chunk index i
        self.chunk_frames = None       # normal pass: global frame indices of the chunk
        self.qk_on = self.conv_on = False
        self.layer = 0                 # attn1 index in execution order within one UNet evaluation
        self.cache = {}                # block name -> (norm1 source [n_kf, N, C], attn1 out [3, n_kf, N, C])
        self.record = {}               # block name -> dict of per-step token-flow arrays
        self.block_order = []          # transformer blocks in execution order
        self.freeu_fired = []          # (up block, resnet, channels) of the last UNet evaluation
        self.injected = {"qk": set(), "conv": 0}


class EditSelfAttention:
    """attn1 of the pivotal pass (doc/algorithm.md §7): PnP Q/K injection at a site, then
    extended attention (source per frame; uncond / cond keyframes over all keyframes of their
    branch) or, with edit_attention 'stem', STEM bases per branch over its keyframes' tokens."""

    def __init__(self, state, name, qk_site):
        self.state, self.name, self.qk_site = state, name, qk_site

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        st = self.state
        assert st.pivotal, "attn1 runs only in the pivotal pass (token flow replaces it)"
        assert encoder_hidden_states is None and attention_mask is None and attn.spatial_norm is None
        assert attn.group_norm is None and not attn.residual_connection and attn.rescale_output_factor == 1.0
        layer = st.layer
        st.layer += 1
        B3, N, C = hidden_states.shape
        n, H = B3 // 3, attn.heads
        d = C // H
        assert abs(attn.scale - d ** -0.5) < 1e-12
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        if st.opts.get("jitter") is not None:  # trials: ~1 float32 ulp of seeded noise on q, k, v
            q, k, v = (x * (1 + 2.0 ** -23 * torch.randn(x.shape, generator=st.opts["jitter"], dtype=torch.float64)
                            ).to(x.dtype) for x in (q, k, v))
        if self.qk_site and st.qk_on:  # uncond and cond Q, K <- source Q, K (V is not injected)
            q, k = q.clone(), k.clone()
            for b in (1, 2):
                q[b * n:(b + 1) * n] = q[:n]
                k[b * n:(b + 1) * n] = k[:n]
            st.injected["qk"].add(self.name)

        def frames_heads(x, b):  # branch b -> [n, H, N, d], channel = head * d + j (head_to_batch_dim)
            return x[b * n:(b + 1) * n].reshape(n, N, H, d).permute(0, 2, 1, 3)

        def all_tokens(x, b):    # branch b, all keyframes' tokens frame-major -> [H, n * N, d]
            return frames_heads(x, b).permute(1, 0, 2, 3).reshape(H, n * N, d)

        outs = []
        for b in range(3):
            if st.opts["edit_attention"] == "stem":
                kh, vh = all_tokens(k, b), all_tokens(v, b)
                w3 = w3_of(EDIT_PHASE, st.step, b)  # chunk field = branch: one EM scope per branch
                mu0 = em_init_philox(kh, st.opts["bases"], st.opts["seed"], layer, w3)
                kb, vb = em_dense(kh, vh, mu0, st.opts["iters"], TAU)
                o = softmax_attention(all_tokens(q, b), kb, vb, attn.scale)            # [H, n N, d]
                o = o.reshape(H, n, N, d).permute(1, 0, 2, 3)                           # [n, H, N, d]
            elif b == 0:
                o = softmax_attention(frames_heads(q, 0), frames_heads(k, 0), frames_heads(v, 0), attn.scale)
            else:
                kh, vh = all_tokens(k, b), all_tokens(v, b)                             # [H, n N, d]
                o = softmax_attention(frames_heads(q, b), kh.unsqueeze(0), vh.unsqueeze(0), attn.scale)
            outs.append(o.permute(0, 2, 1, 3).reshape(n, N, C))
        o = torch.cat(outs, dim=0)
        return attn.to_out[1](attn.to_out[0](o))


def tokenflow_forward(block, name, st):
    """BasicTransformerBlock.forward (diffusers 0.20.2) with attn1 cached (pivotal pass) or
    replaced by token flow (normal pass), doc/algorithm.md §7."""
    assert not block.use_ada_layer_norm and not block.use_ada_layer_norm_zero and not block.only_cross_attention
    assert block.attn2 is not None and block._chunk_size is None

    def forward(hidden_states, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                timestep=None, cross_attention_kwargs=None, class_labels=None):
        assert attention_mask is None and encoder_attention_mask is None and not cross_attention_kwargs
        B3, N, C = hidden_states.shape
        n = B3 // 3
        norm = block.norm1(hidden_states)
        if st.pivotal:
            if name not in st.block_order:
                st.block_order.append(name)
            a = block.attn1(norm)
            st.cache[name] = (norm[:n].clone(), a.reshape(3, n, N, C).clone())
        else:
            i, B = st.chunk, st.opts["batch_size"]
            piv_norm, piv_attn = st.cache[name]
            f = norm[:n].reshape(n * N, C)  # the source branch's features of the chunk's frames
            idx1, m1 = argmax_cos(f, piv_norm[i])
            a = piv_attn[:, i][:, idx1].reshape(3, n, N, C)  # shared by the three branches
            rec = st.record[name]
            rec["idx1"][st.step, st.chunk_frames] = idx1.reshape(n, N).numpy()
            rec["margin1"][st.step, st.chunk_frames] = m1.reshape(n, N).double().numpy()
            if i > 0:
                idx2, m2 = argmax_cos(f, piv_norm[i - 1])
                a2 = piv_attn[:, i - 1][:, idx2].reshape(3, n, N, C)
                s = torch.tensor(st.chunk_frames, dtype=torch.float64)  # global frame indices
                p1, p2 = i * B + B // 2, (i - 1) * B + B // 2           # nominal chunk centres
                d1, d2 = (s - p1).abs(), (s - p2).abs()
                w = torch.sigmoid(d2 / (d1 + d2)).to(a.dtype).reshape(1, n, 1, 1)
                a = w * a + (1 - w) * a2
                rows = [f - B for f in st.chunk_frames]  # idx2 exists from chunk 1 on
                rec["idx2"][st.step, rows] = idx2.reshape(n, N).numpy()
                rec["margin2"][st.step, rows] = m2.reshape(n, N).double().numpy()
            a = a.reshape(B3, N, C)
        h = a + hidden_states
        h = block.attn2(block.norm2(h), encoder_hidden_states=encoder_hidden_states) + h
        return block.ff(block.norm3(h)) + h

    return forward


def up_resnet_hidden_channels(unet):
    """{(k, j): channels of the hidden state (before the skip concat) entering up_blocks[k].resnets[j]}."""
    rev = list(reversed(unet.config.block_out_channels))
    out = {}
    for k, blk in enumerate(unet.up_blocks):
        for j in range(len(blk.resnets)):
            out[(k, j)] = rev[k] if j > 0 else (rev[k - 1] if k > 0 else rev[0])
    return out


def install(unet, st):
    """Puts the hooks on; returns what uninstall() needs."""
    handles, blocks = [], []
    names = dict(unet.named_modules())
    sites = [s for s in PNP_QK_SITES if s in names]
    for name, m in unet.named_modules():
        if type(m).__name__ == "BasicTransformerBlock":
            parent = name.rsplit(".transformer_blocks.", 1)[0]
            m.attn1.set_processor(EditSelfAttention(st, name + ".attn1", parent in sites and name.endswith(".0")))
            m.forward = tokenflow_forward(m, name, st)
            blocks.append(m)
    conv_site = PNP_CONV_SITE
    assert conv_site in names, "%s is missing" % conv_site

    def conv_hook(module, args, out):  # after conv2, before the shortcut add
        if not st.conv_on:
            return out
        n = out.shape[0] // 3
        out = out.clone()
        out[n:2 * n] = out[:n]
        out[2 * n:] = out[:n]
        st.injected["conv"] += 1
        return out
    handles.append(names[conv_site].conv2.register_forward_hook(conv_hook))

    if st.opts["freeu"]:
        b1, b2, s1, s2 = st.opts["freeu_factors"]
        g1, g2 = st.opts["freeu_gate"]
        for (k, j), ch in up_resnet_hidden_channels(unet).items():
            def pre_hook(module, args, k=k, j=j, ch=ch):
                x, temb = args
                h, skip = x[:, :ch], x[:, ch:]
                if ch == g1:
                    b, s = b1, s1
                elif ch == g2:
                    b, s = b2, s2
                else:
                    return None
                h = h.clone()
                h[:, :ch // 2] = h[:, :ch // 2] * b
                st.freeu_fired.append((k, j, ch))
                return (torch.cat([h, fourier_filter(skip, 1, s)], dim=1), temb)
            handles.append(unet.up_blocks[k].resnets[j].register_forward_pre_hook(pre_hook))
    return {"handles": handles, "blocks": blocks, "qk_sites": sites, "conv_site": conv_site}


def uninstall(unet, inst):
    from diffusers.models.attention_processor import AttnProcessor2_0
    for h in inst["handles"]:
        h.remove()
    for m in inst["blocks"]:
        del m.forward
        m.attn1.set_processor(AttnProcessor2_0())


def edit(unet, vae_sf, inputs, opts, sched, decode):
    """The editing loop of doc/algorithm.md §7 in unet's dtype from the stored (float32)
    inputs. inputs: z0 [F, 4, h, w], inv [S, F, 4, h, w] (ascending t), ctx_src / ctx_neg /
    ctx_tgt [1, 77, X]. Returns the outputs (float32) and the state."""
    dt = unet.dtype
    a, final, ts, ratio = sched
    S = len(ts)
    F = inputs["z0"].shape[0]
    B = opts["batch_size"]
    Fe = F - F % B if opts["tail"] == "drop" else F
    chunks = chunks_of(Fe, B)
    z0 = inputs["z0"][:Fe].to(dt)
    inv = inputs["inv"][:, :Fe].to(dt)
    ctx = [inputs[k].to(dt) for k in ("ctx_src", "ctx_neg", "ctx_tgt")]
    st = EditState(opts, S)
    inst = install(unet, st)
    out = {"keyframes": np.zeros((S, len(chunks)), dtype=np.int32)}
    n_qk, n_conv = int(S * opts["pnp_attn_t"]), int(S * opts["pnp_f_t"])
    try:
        with torch.no_grad():
            T = ts[0]
            eps = (inv[S - 1] - math.sqrt(a[T]) * z0) / math.sqrt(1 - a[T])
            x = math.sqrt(a[T]) * z0 + math.sqrt(1 - a[T]) * eps
            out["x_T"] = x.float()

            def unet_call(src, lat, t):
                n = lat.shape[0]
                st.layer = 0
                st.freeu_fired = []
                text = torch.cat([c.expand(n, -1, -1) for c in ctx])
                e = unet(torch.cat([src, lat, lat]), torch.tensor(t, dtype=torch.int64), encoder_hidden_states=text).sample
                return e[n:2 * n], e[2 * n:]

            for s, t in enumerate(ts):
                st.step, st.qk_on, st.conv_on = s, s < n_qk, s < n_conv
                src_all = inv[S - 1 - s]  # the saved inverted latent at t
                picks = [f0 + keyframe_pick(opts["seed"], s, c, cnt) for c, (f0, cnt) in enumerate(chunks)]
                out["keyframes"][s] = picks
                st.pivotal, st.cache = True, {}
                unet_call(src_all[picks], x[picks], t)  # output discarded, as the original's
                if s == 0:
                    out["freeu_fired"] = list(st.freeu_fired)
                    for name, (pn, _) in st.cache.items():
                        Nb = pn.shape[1]
                        st.record[name] = {
                            "idx1": np.full((S, Fe, Nb), -1, np.int32), "margin1": np.zeros((S, Fe, Nb)),
                            "idx2": np.full((S, Fe - chunks[0][1], Nb), -1, np.int32),
                            "margin2": np.zeros((S, Fe - chunks[0][1], Nb))}
                st.pivotal = False
                at = a[t]
                ap = a[t - ratio] if t - ratio >= 0 else final
                new = []
                for c, (f0, cnt) in enumerate(chunks):
                    st.chunk, st.chunk_frames = c, list(range(f0, f0 + cnt))
                    eu, ec = unet_call(src_all[f0:f0 + cnt], x[f0:f0 + cnt], t)
                    e = eu + opts["guidance"] * (ec - eu)
                    x0 = (x[f0:f0 + cnt] - math.sqrt(1 - at) * e) / math.sqrt(at)
                    new.append(math.sqrt(ap) * x0 + math.sqrt(1 - ap) * e)
                x = torch.cat(new)
                if s in (0, 1, S - 1):
                    out["edit_step%d" % s] = x.float()
            fin = inputs.get("feed_final", x.float()).to(dt)  # decode the stored (rounded) final latent
            out["frames"] = decode(fin / vae_sf).float()
    finally:
        uninstall(unet, inst)
    out["qk_sites"], out["conv_site"] = inst["qk_sites"], inst["conv_site"]
    out["frames_edited"] = Fe
    return out, st
