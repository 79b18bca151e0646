#!/usr/bin/env python3
"""Golden tensors for the STEM algorithm's ops (src/stem/stem_ops.c):
em, stem_attention and ddim -> refdata/golden/ops/<op>__<case>.safetensors.

Same file format as gen_ops.py: "in.<name>" inputs, "out.<name>" expected outputs,
metadata "op", "attr.<key>", "rtol", "atol" (allclose, elementwise:
|got - want| <= atol + rtol * |want|, i.e. a max-norm bound on every element) and
"source".

How the expected outputs are made (nothing here uses stem's C code):
  - em: the dense formulation of the original (doc/algorithm.md §5): the full n x M
    responsibility matrix z = softmax(k mu_hat^T / tau), zbar = z / (sum_n z + 1e-4),
    mu = zbar^T k, R times; V_base = zbar^T v with the last zbar. Evaluated in float64
    on the float32 inputs. The Philox initial draw comes from philox_ref.py (the
    independent numpy Philox of doc/algorithm.md §6): mu0 = mean + std * N, mean and the
    unbiased std per channel (n = 1: std := 0, see src/stem/em.h).
  - stem_attention: the same EM per scope (video, or chunks of batch_size frames with
    counter chunk = chunk index), then softmax(q K_base^T / sqrt(d)) V_base; frame and
    inflated modes: plain softmax attention per frame / over all frames of the scope.
  - ddim: the schedule in float64 from the formulas of doc/algorithm.md §4, checked here
    against diffusers 0.20.2's DDIMScheduler (timesteps: equal; alphas_cumprod and
    final_alpha_cumprod: diffusers computes them in float32, within 1e-6 relative);
    the steps are the original's formulas (TokenFlow's ddim_inversion / ddim_sample,
    diffusers' add_noise) in float64.

Every case is also evaluated in float32 by the same PyTorch code (a second, dense
implementation with another summation order than stem's streaming kernel); the
generator asserts it passes at a quarter of the stored tolerance.

Tolerances:
  - em (and stem mode of stem_attention): rtol = atol = 1e-3 on K_base/V_base (values
    O(1)). tau = 0.01 makes the responsibilities nearly hard: a float32 rounding of a
    score moves z by ~1e-4 relative for tokens near a tie between two bases, and R
    iterations carry that on. The float32 check shows the actual size (printed). The
    cases with a larger tau (0.05 to 0.5: softer, better conditioned) are held to the
    same tolerance.
  - stem_attention frame/inflated: as gen_ops.py's attention: max(1e-5, 1e-6 sqrt(nk))
    + 8u max|s| with s the scaled scores (u = 2^-24).
  - ddim: timesteps exact (int32); alphas rtol 1e-5 (diffusers' float32 values differ by
    <= 1e-6 relative); steps rtol = atol = 1e-5 (c1 x + c2 eps with coefficients in
    double: a few float32 roundings of O(1) values).

Usage: gen_stem.py [--out DIR]   (default: refdata/golden/ops next to this script)
Replaces the em__*, stem_attention__* and ddim__* files in DIR; keeps the others.
"""
import argparse
import glob
import json
import math
import os
import sys
import zlib

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import philox_ref  # noqa: E402

U = 2.0 ** -24
HEADROOM = 4.0
OPS = ("em", "stem_attention", "ddim")
EM_TOL = (1e-3, 1e-3)
DDIM_TOL = (1e-5, 1e-5)


from gen_ops import write_safetensors  # noqa: E402  (the one byte-reproducible writer)


class Gen:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.files = []

    def rng(self, op, case):
        return np.random.default_rng(zlib.crc32(("stem/%s/%s" % (op, case)).encode()))

    def emit(self, op, case, inputs, fn, attrs, tol, source, outputs_int=()):
        """fn(tensors, dtype) -> dict of outputs; stored at float64, checked at float32."""
        inputs = {k: np.ascontiguousarray(v) for k, v in inputs.items()}

        def run(dtype):
            t = {k: torch.from_numpy(v).to(dtype) for k, v in inputs.items()}
            with torch.no_grad():
                return fn(t, dtype)

        ref = run(torch.float64)
        outs = {}
        for k, v in ref.items():
            if k in outputs_int:
                outs[k] = np.asarray(v, dtype=np.int32)
            else:
                outs[k] = v.to(torch.float32).numpy()
                assert np.all(np.isfinite(outs[k])), (op, case, k)
        alt = run(torch.float32)
        rtol, atol = tol
        worst = 0.0
        for k, want in outs.items():
            got = np.asarray(alt[k].numpy() if torch.is_tensor(alt[k]) else alt[k])
            assert got.shape == want.shape, (op, case, k, got.shape, want.shape)
            if k in outputs_int:
                assert np.array_equal(got.astype(np.int64), want.astype(np.int64)), (op, case, k)
                continue
            g64, w64 = got.astype(np.float64), want.astype(np.float64)
            ratio = np.abs(g64 - w64) / (atol + rtol * np.abs(w64))
            worst = max(worst, float(ratio.max()))
            if ratio.max() * HEADROOM > 1.0:
                i = int(np.argmax(ratio))
                raise AssertionError("%s/%s: %s: the float32 check misses tol/%g at %d: got %r want %r" % (
                    op, case, k, HEADROOM, i, g64.flat[i], w64.flat[i]))
        tensors = {"in." + k: v for k, v in inputs.items()}
        tensors.update({"out." + k: np.ascontiguousarray(v) for k, v in outs.items()})
        meta = {"op": op, "rtol": "%.3g" % rtol, "atol": "%.3g" % atol, "source": source}
        for k, v in attrs.items():
            meta["attr." + k] = str(v)
        path = os.path.join(self.out_dir, "%s__%s.safetensors" % (op, case))
        write_safetensors(path, tensors, meta)
        back = load_file(path)
        assert sorted(back) == sorted(tensors), path
        for k, v in tensors.items():
            assert back[k].dtype == v.dtype and np.array_equal(back[k], v), (path, k)
        with safe_open(path, framework="numpy") as f:
            assert f.metadata() == meta, path
        self.files.append((os.path.basename(path), os.path.getsize(path), worst))


# ---------------------------------------------------------------------------------
# EM: the dense formulation of the original (doc/algorithm.md §5)

def em_init_philox(k, bases, seed, layer=0, w3=0):
    """mu0 [H, M, d] = mean + std * N (Philox counter (b, h, layer, w3)); k [H, n, d]."""
    H, n, d = k.shape
    mean = k.mean(dim=1, keepdim=True)
    std = k.std(dim=1, keepdim=True) if n > 1 else torch.zeros_like(mean)  # n = 1: std := 0
    noise = np.stack([philox_ref.philox_normal(bases * d, seed, h, layer, w3).reshape(bases, d) for h in range(H)])
    return mean + std * torch.from_numpy(noise).to(k.dtype)


def em_dense(k, v, mu, iters, tau):
    """k, v [H, n, d]; mu [H, M, d] -> K_base, V_base [H, M, d] (dense n x M matrices)."""
    zbar = None
    for r in range(max(iters, 1)):
        mu_hat = mu / (mu.norm(dim=2, keepdim=True) + 1e-4)
        z = torch.softmax(torch.einsum("hnd,hmd->hnm", k, mu_hat) / tau, dim=2)
        zbar = z / (z.sum(dim=1, keepdim=True) + 1e-4)
        if iters > 0:
            mu = torch.einsum("hnm,hnd->hmd", zbar, k)
    return mu, torch.einsum("hnm,hnd->hmd", zbar, v)


def w3_of(phase=0, step=0, chunk=0):
    return (phase << 24) | (step << 12) | chunk


def clustered_keys(rng, H, n, d, clusters, spread=0.35, scale=1.0):
    """Keys around `clusters` centres per head, with a per-channel offset. SD keys are
    far from isotropic; a few well-separated clusters keep the EM away from knife-edge
    ties between two bases, where (tau = 0.01) a float32 rounding of one score moves a
    token's responsibilities visibly. With isotropic keys and many clusters the float32
    and float64 dense EMs differ by up to ~4e-4 now and then; here by ~1e-5 (printed)."""
    centres = rng.standard_normal((H, clusters, d)) * scale
    pick = rng.integers(0, clusters, size=(H, n))
    k = np.take_along_axis(centres, pick[:, :, None], axis=1) + spread * rng.standard_normal((H, n, d))
    k += 0.3 * rng.standard_normal((H, 1, d))
    return k.astype(np.float32)


def gen_em(g):
    src = "dense EM of SPEC 5 in torch float64 (n x M responsibilities); init: philox_ref.py"

    def case(name, H, n, d, M, R, init=False, seed=0, block=None, tau=0.01, keys=None, layer=0, step=0, chunk=0,
             phase=0, scale=1.0):
        rng = g.rng("em", name)
        k = keys(rng) if keys else clustered_keys(rng, H, n, d, clusters=max(1, min(10, n // 8)), scale=scale)
        v = rng.standard_normal((H, n, d)).astype(np.float32)
        inputs = {"k": k, "v": v}
        attrs = {"bases": M, "iters": R}
        if init:
            inputs["init"] = (k.mean(axis=1, keepdims=True) + rng.standard_normal((H, M, d))).astype(np.float32)
        else:
            attrs["seed"] = seed
        if block:
            attrs["block"] = block
        if tau != 0.01:
            attrs["tau"] = tau
        for key, val in (("layer", layer), ("step", step), ("chunk", chunk), ("phase", phase)):
            if val:
                attrs[key] = val
        w3 = w3_of(phase, step, chunk)

        def fn(t, dt):
            mu0 = t["init"] if init else em_init_philox(t["k"], M, seed, layer, w3)
            kb, vb = em_dense(t["k"], t["v"], mu0, R, tau)
            return {"k_base": kb, "v_base": vb}
        g.emit("em", name, inputs, fn, attrs, EM_TOL, src)

    case("explicit_init", 2, 384, 16, 32, 5, init=True)
    case("philox_init_m256", 2, 512, 40, 256, 5, seed=1234)
    case("n_lt_m_128x256", 1, 128, 40, 256, 5, seed=7)
    case("blocks_uneven", 2, 300, 24, 16, 3, seed=99, block=64)
    case("r0_init", 2, 200, 16, 12, 0, init=True)
    case("r0_philox", 1, 150, 16, 8, 0, seed=5)
    case("m1", 2, 100, 16, 1, 5, seed=3)
    case("n1", 2, 1, 16, 8, 5, seed=4)
    case("d80_r2", 1, 256, 80, 64, 2, seed=2, block=100, scale=0.5)
    case("seed64_counter", 2, 160, 32, 24, 4, seed=(1 << 40) + 17, layer=13, step=49, chunk=3, phase=1)

    def zero_var(rng):
        k = clustered_keys(rng, 2, 200, 16, clusters=12)
        k[:, :, 5] = 0.75   # a channel with zero variance
        k[1, :, 9] = -2.0
        return k
    case("zero_variance_channel", 2, 200, 16, 16, 5, seed=21, keys=zero_var)

    # tau other than the default 0.01: softer responsibilities (at 0.5 every basis takes
    # a share of every token), so a kernel that ignores tau, or applies it twice, is off
    # by O(1) here
    case("tau0.05_r4", 2, 300, 24, 16, 4, seed=11, tau=0.05)
    case("tau0.5_init", 1, 256, 16, 12, 5, init=True, tau=0.5)
    case("tau0.5_blocks", 2, 200, 32, 20, 3, seed=12, block=48, tau=0.5)


# ---------------------------------------------------------------------------------
# stem_attention

def attention(q, k, v, scale):
    return torch.softmax(torch.einsum("...nd,...md->...nm", q, k) * scale, dim=-1) @ v


def attn_tol(q, k, nk):
    d = q.shape[-1]
    smax = float(np.abs(np.einsum("...nd,...md->...nm", q.astype(np.float64), k.astype(np.float64))).max()) / math.sqrt(d)
    t = max(1e-5, 1e-6 * math.sqrt(nk)) + 8 * U * smax
    return (t, t)


def gen_stem_attention(g):
    def case(name, mode, H, F, N, d, scope="video", batch_size=8, M=16, R=5, seed=0, layer=0, step=0, phase=0,
             tau=0.01):
        rng = g.rng("stem_attention", name)
        n = F * N
        q = rng.standard_normal((H, n, d)).astype(np.float32)
        k = clustered_keys(rng, H, n, d, clusters=10)
        v = rng.standard_normal((H, n, d)).astype(np.float32)
        attrs = {"mode": mode, "frames": F}
        if scope != "video":
            attrs["scope"] = scope
            attrs["batch_size"] = batch_size
        if mode == "stem":
            attrs.update({"bases": M, "iters": R, "seed": seed})
            if tau != 0.01:
                attrs["tau"] = tau
            for key, val in (("layer", layer), ("step", step), ("phase", phase)):
                if val:
                    attrs[key] = val
        scale = 1.0 / math.sqrt(d)
        per = F if scope == "video" else batch_size
        chunks = [(f0, min(F, f0 + per)) for f0 in range(0, F, per)]

        def fn(t, dt):
            Q, K, V = t["q"], t["k"], t["v"]
            if mode == "frame":
                o = attention(Q.reshape(H, F, N, d), K.reshape(H, F, N, d), V.reshape(H, F, N, d), scale)
                return {"out": o.reshape(H, n, d)}
            outs = []
            for c, (f0, f1) in enumerate(chunks):
                sl = slice(f0 * N, f1 * N)
                if mode == "inflated":
                    outs.append(attention(Q[:, sl], K[:, sl], V[:, sl], scale))
                else:
                    w3 = w3_of(phase, step, c if scope == "chunk" else 0)
                    mu0 = em_init_philox(K[:, sl], M, seed, layer, w3)
                    kb, vb = em_dense(K[:, sl], V[:, sl], mu0, R, tau)
                    outs.append(attention(Q[:, sl], kb, vb, scale))
            return {"out": torch.cat(outs, dim=1)}

        if mode == "stem":
            tol = EM_TOL
            src = "per scope: dense EM (SPEC 5, torch float64, Philox init from philox_ref.py), then softmax(q kb^T/sqrt(d)) vb"
        else:
            nk = N if mode == "frame" else per * N
            tol = attn_tol(q, k, nk)
            src = "torch softmax attention in float64, %s" % ("per frame" if mode == "frame" else "over all frames of each scope")
        g.emit("stem_attention", name, {"q": q, "k": k, "v": v}, fn, attrs, tol, src)

    case("stem_video", "stem", 2, 4, 24, 16, M=16, seed=42)
    case("stem_chunk", "stem", 2, 5, 16, 16, scope="chunk", batch_size=2, M=12, seed=43, layer=3, step=7)
    case("stem_video_m256", "stem", 1, 2, 64, 40, M=256, seed=44)
    case("stem_chunk_tau0.2", "stem", 2, 4, 16, 16, scope="chunk", batch_size=2, M=10, seed=46, tau=0.2)
    case("frame", "frame", 2, 3, 20, 16)
    case("inflated_video", "inflated", 2, 4, 20, 16)
    case("inflated_chunk", "inflated", 2, 5, 12, 16, scope="chunk", batch_size=2)


# ---------------------------------------------------------------------------------
# ddim

def ddim_schedule(T=1000, beta_start=0.00085, beta_end=0.012, schedule="scaled_linear", set_alpha_to_one=False):
    i = np.arange(T, dtype=np.float64)
    f = i / (T - 1) if T > 1 else i
    if schedule == "scaled_linear":
        betas = (math.sqrt(beta_start) + f * (math.sqrt(beta_end) - math.sqrt(beta_start))) ** 2
    else:
        betas = beta_start + f * (beta_end - beta_start)
    a = np.cumprod(1.0 - betas)
    return a, (1.0 if set_alpha_to_one else a[0])


def diffusers_scheduler(steps, **cfg):
    from diffusers import DDIMScheduler
    s = DDIMScheduler(num_train_timesteps=cfg.get("T", 1000), beta_start=cfg.get("beta_start", 0.00085),
                      beta_end=cfg.get("beta_end", 0.012), beta_schedule=cfg.get("schedule", "scaled_linear"),
                      clip_sample=False, set_alpha_to_one=cfg.get("set_alpha_to_one", False),
                      steps_offset=cfg.get("steps_offset", 1), timestep_spacing=cfg.get("spacing", "leading"))
    s.set_timesteps(steps)
    return s


def gen_ddim(g):
    def cfg_attrs(cfg):
        names = {"beta_start": "beta_start", "beta_end": "beta_end", "schedule": "schedule",
                 "set_alpha_to_one": "set_alpha_to_one", "steps_offset": "steps_offset", "spacing": "spacing"}
        out = {}
        for k, v in cfg.items():
            out[names[k]] = int(v) if isinstance(v, bool) else v
        return out

    def schedule_cases(name, steps, **cfg):
        s = diffusers_scheduler(steps, **cfg)
        a, final = ddim_schedule(beta_start=cfg.get("beta_start", 0.00085), beta_end=cfg.get("beta_end", 0.012),
                                 schedule=cfg.get("schedule", "scaled_linear"),
                                 set_alpha_to_one=cfg.get("set_alpha_to_one", False))
        ts = s.timesteps.numpy().astype(np.int64)
        ratio = 1000 // steps
        # diffusers' own float32 alphas agree with the float64 ones to < 1e-5/4 relative
        d32 = s.alphas_cumprod.numpy().astype(np.float64)
        assert np.max(np.abs(d32 - a) / a) < DDIM_TOL[0] / HEADROOM, name
        assert abs(float(s.final_alpha_cumprod) - final) / final < DDIM_TOL[0] / HEADROOM, name
        prev = np.array([a[t - ratio] if t - ratio >= 0 else final for t in ts])
        attrs = dict(cfg_attrs(cfg), steps=steps)

        def fn_ts(t, dt):
            return {"y": ts.astype(np.int32)}
        g.emit("ddim", "timesteps_" + name, {}, fn_ts, dict(attrs, which="timesteps"), (0.0, 0.0),
               "diffusers 0.20.2 DDIMScheduler.set_timesteps(%d).timesteps" % steps, outputs_int=("y",))

        def fn_al(t, dt):
            return {"y": torch.from_numpy(np.stack([a[ts], prev], axis=1)).to(dt)}
        g.emit("ddim", "alphas_" + name, {}, fn_al, dict(attrs, which="alphas"), (DDIM_TOL[0], 0.0),
               "(abar_t, abar_prev(t)) per timestep, float64 cumprod; checked against diffusers' float32 alphas_cumprod")
        return a, final, ts, ratio, attrs

    def step_case(name, which, t, a, final, ratio, attrs, shape=(2, 4, 8, 8)):
        rng = g.rng("ddim", name)
        x = rng.standard_normal(shape).astype(np.float32)
        eps = rng.standard_normal(shape).astype(np.float32)
        at = a[t]
        ap = a[t - ratio] if t - ratio >= 0 else final

        def fn(T, dt):
            x_, e_ = T["x"], T["eps"]
            if which == "invert":   # TokenFlow ddim_inversion: from a' = prev(t) up to a = abar_t
                x0 = (x_ - math.sqrt(1 - ap) * e_) / math.sqrt(ap)
                y = math.sqrt(at) * x0 + math.sqrt(1 - at) * e_
            elif which == "sample":  # DDIM eta = 0, from abar_t down to prev(t)
                x0 = (x_ - math.sqrt(1 - at) * e_) / math.sqrt(at)
                y = math.sqrt(ap) * x0 + math.sqrt(1 - ap) * e_
            else:
                y = math.sqrt(at) * x_ + math.sqrt(1 - at) * e_
            return {"y": y}
        src = {"invert": "TokenFlow/STEM ddim_inversion step (SPEC 4) in float64",
               "sample": "DDIM eta=0 step (diffusers DDIMScheduler.step formula) in float64",
               "add_noise": "diffusers DDIMScheduler.add_noise formula in float64"}[which]
        g.emit("ddim", name, {"x": x, "eps": eps}, fn, dict(attrs, which=which, t=t), DDIM_TOL, src)

    for steps in (50, 10):
        a, final, ts, ratio, attrs = schedule_cases("s%d" % steps, steps)
        for which in ("invert", "sample"):
            for t in (ts[-1], ts[len(ts) // 2], ts[0]):
                step_case("%s_s%d_t%d" % (which, steps, t), which, int(t), a, final, ratio, attrs)
        # the sampling step must agree with diffusers' own step() (eta = 0, no clipping)
        s = diffusers_scheduler(steps)
        rng = np.random.default_rng(5)
        x = torch.from_numpy(rng.standard_normal((1, 4, 4, 4)).astype(np.float32))
        e = torch.from_numpy(rng.standard_normal((1, 4, 4, 4)).astype(np.float32))
        for t in (int(ts[0]), int(ts[-1])):
            want = s.step(e, t, x).prev_sample.double()
            ap = a[t - ratio] if t - ratio >= 0 else final
            x0 = (x.double() - math.sqrt(1 - a[t]) * e.double()) / math.sqrt(a[t])
            mine = math.sqrt(ap) * x0 + math.sqrt(1 - ap) * e.double()
            assert float((mine - want).abs().max()) < 1e-5, ("diffusers step", steps, t)
    for t in (1, 500, 981, 999):
        step_case("add_noise_t%d" % t, "add_noise", t, a, final, ratio, dict(attrs))
    # other configurations: linear betas with alpha_to_one, trailing and linspace spacing, offset 0
    a, final, ts, ratio, attrs = schedule_cases("linear_one_s20", 20, beta_start=0.0001, beta_end=0.02,
                                                schedule="linear", set_alpha_to_one=True, steps_offset=0)
    step_case("invert_linear_one_s20_t0", "invert", 0, a, final, ratio, attrs)
    step_case("sample_linear_one_s20_t0", "sample", 0, a, final, ratio, attrs)
    schedule_cases("trailing_s25", 25, spacing="trailing", steps_offset=0)
    schedule_cases("linspace_s30", 30, spacing="linspace", steps_offset=0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "ops"))
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    for op in OPS:
        for p in glob.glob(os.path.join(out, "%s__*.safetensors" % op)):
            os.remove(p)
    torch.set_num_threads(1)
    g = Gen(out)
    gen_em(g)
    gen_stem_attention(g)
    gen_ddim(g)
    total = sum(s for _, s, _ in g.files)
    for name, size, worst in g.files:
        print("%-48s %8d bytes  float32 check at %.3f of tol" % (name, size, worst))
    print("gen_stem: %d files, %.1f KiB" % (len(g.files), total / 1024.0))
    assert total < 3 * 1024 * 1024, "golden files over 3 MB"


if __name__ == "__main__":
    main()
