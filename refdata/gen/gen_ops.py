#!/usr/bin/env python3
"""Golden tensors for every op of src/core/op_registry (refdata/golden/ops/).

One file per (op, case): refdata/golden/ops/<op>__<case>.safetensors holding
  - "in.<input>":   float32 inputs (index tensors int32),
  - "out.<output>": expected outputs (float32, or int32 for indices),
  - metadata, all strings: "op", "attr.<key>" for every attribute set (others take
    the registry default), "rtol", "atol" (allclose: |got - want| <= atol + rtol*|want|)
    and "source" (which PyTorch/diffusers function produced the expected output).

How the expected outputs are made: inputs are drawn in float32 with a seed fixed per
(op, case); the reference runs in float64 on those float32 values (PyTorch, or
diffusers where the op is a diffusers function) and is rounded to float32 once.
The one exception is timestep_embedding, stored as diffusers computes it (float32
internally, exactly what the UNet sees) and checked against a float64 evaluation.
Nothing here is computed by stem's own C code.

Every case is also evaluated by a second float32 implementation (PyTorch in float32,
a different summation order than ours); the generator asserts that it passes at a
quarter of the stored tolerances, so the tolerances have headroom for a correct f32
kernel and are not looser than the arithmetic warrants by much.

Tolerances (per case; the rationale, with u = 2^-24 the float32 unit roundoff):
  - layout / copy ops (concat, slice, permute, upsample_nearest, gather_rows) and
    integer outputs (argmax_cos): exact, rtol = atol = 0.
  - add/sub/mul/div/scale: one or two roundings (an FMA in scale may round
    differently): rtol 1e-6 (~16 ulp), atol 1e-6.
  - silu, gelu, gelu_tanh, quick_gelu, geglu: vectorised exp/erf/tanh are a few ulp;
    x*(1+tanh) and x*sigmoid cancel in the negative tail: rtol 1e-5, atol 1e-5.
  - matmul, linear, conv2d: a length-K dot product in f32 accumulates about
    u*sqrt(K)*|out| of error (random-walk rounding); inputs are scaled so outputs are
    O(1), and rtol = atol = max(1e-5, 1e-6*sqrt(K)) (>= 10x the expected error).
  - group_norm, layer_norm, mean_std over G elements: the same sqrt(G) law, plus
    8u*|mean|/std for inputs with a large common offset (a stable two-pass or
    Welford f32 kernel passes; a one-pass E[x^2]-E[x]^2 does not, on purpose).
  - softmax, attention: a relative error of the exponent's argument s becomes an
    absolute error of s in the log-probabilities: tol = max(1e-5, ...) + 8u*max|s|,
    s = scale*x (for softmax with scale 1 the subtraction of the row maximum is exact
    for values within a factor 2, so the row spread is used instead).
  - timestep_embedding: the argument t*freq is formed in f32 (|t| up to 999), so its
    error is a few ulp of t*freq: atol = 1e-5 + 4u*max|t|, rtol 0.
  - freeu_filter: sums over the h*w elements of a plane (the dot-product law above),
    atol raised by 8u*|offset|*sqrt(h*w) for inputs with a large common offset.
  - philox_normal: float64 Box-Muller rounded to float32; libm/CUDA/numpy
    transcendental functions may differ by an ulp in double, which can flip at most one
    float32 ulp: rtol = atol = 1e-6.
"""
import argparse
import json
import math
import os
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.numpy import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import philox_ref  # noqa: E402

U = 2.0 ** -24  # float32 unit roundoff
EXACT = (0.0, 0.0)
ARITH = (1e-6, 1e-6)
TRANS = (1e-5, 1e-5)
HEADROOM = 4.0  # the float32 cross-check must pass at tol / HEADROOM


def tol_dot(k):
    t = max(1e-5, 1e-6 * math.sqrt(k))
    return (t, t)


def tol_stats(g, offset_ratio=0.0):
    t = max(1e-5, 1e-6 * math.sqrt(g)) + 8 * U * offset_ratio
    return (t, t)


def tol_exp(s_max, k=1):
    t = max(1e-5, 1e-6 * math.sqrt(k)) + 8 * U * s_max
    return (t, t)


def write_safetensors(path, tensors, metadata):
    """A byte-reproducible safetensors file: header keys and data in sorted name order
    (safetensors' own writer orders metadata by hash, so every run would differ), the
    header padded with spaces to a multiple of 8 bytes. Read back by the official
    loader below."""
    dtypes = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int32): "I32",
              np.dtype(np.int64): "I64", np.dtype(np.uint8): "U8"}
    header = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, off = [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        b = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dtypes[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def fmt(x):
    return repr(float(x)) if isinstance(x, float) else str(x)


class Gen:
    def __init__(self, out_dir, only=None):
        self.out_dir = out_dir
        self.only = only
        self.files = []
        self.total_bytes = 0

    def rng(self, op, case):
        return np.random.default_rng(zlib.crc32(("%s/%s" % (op, case)).encode()))

    def emit(self, op, case, inputs, fn, attrs=None, tol=EXACT, source="", ref_dtype=torch.float64,
             check_dtype=torch.float32, check_fn=None, outputs_int=()):
        """fn(tensors: dict name -> torch tensor (floats in `dtype`), dtype) -> dict of outputs.

        The expected outputs are fn at ref_dtype (float64), stored as float32 (or int32
        for outputs_int); fn (or check_fn) at check_dtype must pass at tol/HEADROOM."""
        if self.only and op not in self.only:
            return
        attrs = attrs or {}
        inputs = {k: np.ascontiguousarray(v) for k, v in inputs.items()}
        for k, v in inputs.items():
            assert v.dtype in (np.float32, np.int32), (op, case, k, v.dtype)

        def run(f, dtype):
            t = {k: (torch.from_numpy(v).to(dtype) if v.dtype == np.float32 else torch.from_numpy(v).long())
                 for k, v in inputs.items()}
            with torch.no_grad():
                return {k: v.detach() for k, v in f(t, dtype).items()}

        ref = run(fn, ref_dtype)
        outs = {}
        for k, v in ref.items():
            if k in outputs_int:
                outs[k] = v.numpy().astype(np.int32)
            else:
                assert v.is_floating_point(), (op, case, k)
                outs[k] = v.to(torch.float32).numpy()
                assert np.all(np.isfinite(outs[k])), (op, case, k)
        alt = run(check_fn or fn, check_dtype)
        rtol, atol = tol
        worst = 0.0
        for k, want in outs.items():
            got = alt[k].numpy()
            assert got.shape == want.shape, (op, case, k, got.shape, want.shape)
            if k in outputs_int or tol == EXACT:
                bad = np.sum(got.astype(np.float64) != want.astype(np.float64))
                assert bad == 0, "%s/%s: %s: %d elements differ from the %s check" % (op, case, k, bad, check_dtype)
                continue
            got = got.astype(np.float64)
            w = want.astype(np.float64)
            excess = np.abs(got - w) - (atol + rtol * np.abs(w)) / HEADROOM
            worst = max(worst, float(np.max(np.abs(got - w) / (atol + rtol * np.abs(w)))))
            if np.max(excess) > 0:
                i = int(np.argmax(excess))
                raise AssertionError("%s/%s: %s: the %s check misses tol/%g at flat index %d: got %r want %r "
                                     "(rtol %g atol %g)" % (op, case, k, check_dtype, HEADROOM, i,
                                                            got.flat[i], w.flat[i], rtol, atol))
        tensors = {"in." + k: v for k, v in inputs.items()}
        tensors.update({"out." + k: np.ascontiguousarray(v) for k, v in outs.items()})
        meta = {"op": op, "rtol": "%.3g" % rtol, "atol": "%.3g" % atol, "source": source}
        for k, v in attrs.items():
            meta["attr." + k] = str(v)
        path = os.path.join(self.out_dir, "%s__%s.safetensors" % (op, case))
        assert not os.path.exists(path), path
        write_safetensors(path, tensors, meta)
        # read back with the official loader: names, dtypes, values and metadata survive
        back = load_file(path)
        assert sorted(back) == sorted(tensors), path
        for k, v in tensors.items():
            assert back[k].dtype == v.dtype and back[k].shape == v.shape and np.array_equal(back[k], v), (path, k)
        with safe_open(path, framework="numpy") as f:
            assert f.metadata() == meta, path
        size = os.path.getsize(path)
        self.files.append((os.path.basename(path), size, op, worst))
        self.total_bytes += size


def randn(rng, *shape, scale=1.0, offset=0.0):
    return (rng.standard_normal(shape) * scale + offset).astype(np.float32)


def f32(x):
    return np.asarray(x, dtype=np.float32)


# ---------------------------------------------------------------------------------
# GEMM-like ops


def gen_matmul(g):
    src = "torch.matmul in float64: alpha * op(a) @ op(b) + beta * c"

    def case(name, a_shape, b_shape, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, with_c=False):
        rng = g.rng("matmul", name)
        k = a_shape[-2] if trans_a else a_shape[-1]
        a = randn(rng, *a_shape)
        b = randn(rng, *b_shape, scale=1.0 / math.sqrt(k))
        inputs = {"a": a, "b": b}
        m = a_shape[-1] if trans_a else a_shape[-2]
        n = b_shape[-2] if trans_b else b_shape[-1]
        if with_c:
            inputs["c"] = randn(rng, *(tuple(a_shape[:-2]) + (m, n)))
        attrs = {}
        if trans_a:
            attrs["trans_a"] = 1
        if trans_b:
            attrs["trans_b"] = 1
        if alpha != 1.0:
            attrs["alpha"] = fmt(alpha)
        if beta != 0.0:
            attrs["beta"] = fmt(beta)

        def fn(t, dt):
            A = t["a"].transpose(-1, -2) if trans_a else t["a"]
            B = t["b"].transpose(-1, -2) if trans_b else t["b"]
            y = alpha * torch.matmul(A, B)
            if with_c and beta != 0.0:
                y = y + beta * t["c"]
            return {"y": y}
        g.emit("matmul", name, inputs, fn, attrs, tol_dot(k), src)

    case("basic_37x45x29", (37, 45), (45, 29))
    case("batched_b_shared", (2, 3, 33, 40), (40, 17))
    case("batched_b", (2, 19, 64), (2, 64, 23))
    case("trans_a", (2, 40, 31), (40, 20), trans_a=True)
    case("trans_b", (16, 64), (24, 64), trans_b=True)
    case("trans_ab_batched", (3, 80, 9), (3, 11, 80), trans_a=True, trans_b=True)
    case("alpha_beta_c", (2, 13, 50), (50, 21), alpha=0.5, beta=2.0, with_c=True)
    case("alpha_only", (7, 320), (320, 5), alpha=0.125)
    case("k1", (9, 1), (1, 6))
    case("m1_k1280", (1, 1280), (1280, 12))
    case("n1", (4, 25, 77), (77, 1))


def gen_linear(g):
    src = "torch.nn.functional.linear in float64"

    def case(name, x_shape, n, bias=True):
        rng = g.rng("linear", name)
        k = x_shape[-1]
        inputs = {"x": randn(rng, *x_shape), "weight": randn(rng, n, k, scale=1.0 / math.sqrt(k))}
        if bias:
            inputs["bias"] = randn(rng, n, scale=0.5)

        def fn(t, dt):
            return {"y": F.linear(t["x"], t["weight"], t.get("bias"))}
        g.emit("linear", name, inputs, fn, {}, tol_dot(k), src)

    case("clip_tokens_bias", (2, 77, 64), 96)
    case("temb_320_bias", (2, 320), 40)
    case("no_bias_odd", (3, 5, 33), 17, bias=False)
    case("vector_1d", (45,), 7)
    case("k768", (6, 768), 24, bias=False)
    case("k1280_rows3", (3, 1280), 10)


def parse_pad(s):
    p = [int(x) for x in str(s).split(",")]
    if len(p) == 1:
        return p * 4
    if len(p) == 2:
        return [p[0], p[0], p[1], p[1]]
    return p  # top, bottom, left, right


def gen_conv2d(g):
    def case(name, x_shape, cout, kh, kw, stride="1", padding="0", bias=True):
        rng = g.rng("conv2d", name)
        n, cin, h, w = x_shape
        k = cin * kh * kw
        inputs = {"x": randn(rng, *x_shape),
                  "weight": randn(rng, cout, cin, kh, kw, scale=1.0 / math.sqrt(k))}
        if bias:
            inputs["bias"] = randn(rng, cout, scale=0.5)
        st = [int(x) for x in stride.split(",")]
        st = st * 2 if len(st) == 1 else st
        top, bottom, left, right = parse_pad(padding)
        attrs = {}
        if stride != "1":
            attrs["stride"] = stride
        if padding != "0":
            attrs["padding"] = padding

        def fn(t, dt):
            x = F.pad(t["x"], (left, right, top, bottom))
            return {"y": F.conv2d(x, t["weight"], t.get("bias"), stride=tuple(st))}
        src = ("torch.nn.functional.pad + conv2d in float64" if (top, left) != (bottom, right)
               else "torch.nn.functional.conv2d in float64")
        g.emit("conv2d", name, inputs, fn, attrs, tol_dot(k), src)

    case("3x3_pad1", (2, 8, 11, 13), 16, 3, 3, padding="1")
    case("conv_in_4to32", (1, 4, 9, 11), 32, 3, 3, padding="1")
    case("vae_down_s2_pad0101", (1, 8, 15, 9), 8, 3, 3, stride="2", padding="0,1,0,1")
    case("vae_down_s2_pad0101_even", (2, 6, 10, 12), 5, 3, 3, stride="2", padding="0,1,0,1", bias=False)
    case("unet_down_s2_pad1", (1, 16, 13, 10), 16, 3, 3, stride="2", padding="1")
    case("1x1", (2, 32, 7, 5), 24, 1, 1)
    case("1x1_no_bias", (1, 13, 3, 4), 7, 1, 1, bias=False)
    case("cin96_k864", (1, 96, 6, 7), 32, 3, 3, padding="1")
    case("k3x1_pad_hw", (1, 5, 8, 6), 6, 3, 1, padding="1,0")
    case("stride_2x1_pad0", (1, 3, 9, 7), 4, 3, 3, stride="2,1")
    case("asym_pad_1021", (1, 4, 5, 6), 3, 3, 3, padding="1,0,2,1")


# ---------------------------------------------------------------------------------
# normalisations


def gen_group_norm(g):
    src = "torch.nn.functional.group_norm (+ silu) in float64"

    def case(name, x_shape, groups, eps=1e-5, silu=False, affine=True, offset=0.0, attrs_groups=True, scale=2.0):
        rng = g.rng("group_norm", name)
        c = x_shape[1]
        inputs = {"x": randn(rng, *x_shape, scale=scale, offset=offset)}
        if affine:
            inputs["gamma"] = randn(rng, c, scale=0.3, offset=1.0)
            inputs["beta"] = randn(rng, c, scale=0.3)
        attrs = {}
        if attrs_groups:
            attrs["groups"] = groups
        if eps != 1e-5:
            attrs["eps"] = fmt(eps)
        if silu:
            attrs["silu"] = 1
        gsize = (c // groups) * int(np.prod(x_shape[2:]))

        def fn(t, dt):
            y = F.group_norm(t["x"], groups, t.get("gamma"), t.get("beta"), eps)
            return {"y": F.silu(y) if silu else y}
        g.emit("group_norm", name, inputs, fn, attrs, tol_stats(gsize, abs(offset) / 2.0), src)

    case("unet_64c_g32", (2, 64, 5, 7), 32)
    case("vae_320c_silu_eps1e-6", (1, 320, 6, 5), 32, eps=1e-6, silu=True)
    case("default_groups_silu", (1, 96, 3, 3), 32, silu=True, attrs_groups=False)
    case("no_affine_3d", (2, 96, 11), 32, affine=False)
    case("groups3_odd_spatial", (1, 12, 3, 5), 3)
    case("groups1_silu", (2, 6, 4, 4), 1, silu=True)
    case("offset50", (1, 64, 9, 9), 32, offset=50.0)
    # eps where it shows: groups of variance ~0.01-0.2 (a per-channel spread) against
    # eps = 0.05, so a kernel that drops eps, uses the default 1e-5 or adds it outside
    # the square root is off by far more than the tolerance
    case("eps0.05_small_var_silu", (2, 16, 3, 5), 4, eps=0.05, silu=True, scale=0.25)
    case("eps0.05_small_var", (1, 24, 7), 6, eps=0.05, scale=0.15)


def gen_layer_norm(g):
    src = "torch.nn.functional.layer_norm in float64"

    def case(name, x_shape, eps=1e-5, affine=True, offset=0.0, scale=1.0):
        rng = g.rng("layer_norm", name)
        c = x_shape[-1]
        inputs = {"x": randn(rng, *x_shape, scale=scale, offset=offset)}
        if affine:
            inputs["gamma"] = randn(rng, c, scale=0.3, offset=1.0)
            inputs["beta"] = randn(rng, c, scale=0.3)
        attrs = {} if eps == 1e-5 else {"eps": fmt(eps)}

        def fn(t, dt):
            return {"y": F.layer_norm(t["x"], (c,), t.get("gamma"), t.get("beta"), eps)}
        g.emit("layer_norm", name, inputs, fn, attrs, tol_stats(c, abs(offset) / scale), src)

    case("clip_77x64", (2, 77, 64))
    case("unet_320", (3, 5, 320))
    case("no_affine_odd", (7, 33), affine=False)
    case("clip_768_offset20", (4, 768), offset=20.0)
    case("eps1e-6_1024_large", (2, 1024), eps=1e-6, scale=300.0)
    case("c1", (5, 1))
    # eps where it shows: rows of variance ~0.04 against eps = 0.02 (see group_norm)
    case("eps0.02_small_var", (3, 5, 48), eps=0.02, scale=0.2)


# ---------------------------------------------------------------------------------
# softmax and activations


def gen_softmax(g):
    src = "torch.softmax(scale * x, -1) in float64"

    def case(name, x, scale=1.0):
        attrs = {} if scale == 1.0 else {"scale": fmt(scale)}
        if scale == 1.0:
            s_max = float(np.max(x.max(-1) - x.min(-1)))
        else:
            s_max = float(np.max(np.abs(x))) * abs(scale)

        def fn(t, dt):
            return {"y": torch.softmax(scale * t["x"], dim=-1)}
        g.emit("softmax", name, {"x": x}, fn, attrs, tol_exp(s_max, x.shape[-1]), src)

    rng = g.rng("softmax", "data")
    case("rows_2x4x77", randn(rng, 2, 4, 77, scale=3.0))
    case("scale_0.125_257", randn(rng, 3, 257, scale=4.0), scale=0.125)
    case("em_tau_scale100", f32(np.clip(rng.standard_normal((6, 256)) * 0.3, -1, 1)), scale=100.0)
    case("large_positive_1e4", randn(rng, 4, 50, scale=5.0, offset=1e4))
    case("large_negative_1e4", randn(rng, 4, 33, scale=5.0, offset=-1e4))
    x = randn(rng, 3, 40)
    x[:, 7] = 80.0  # one dominant entry: exp(-80) neighbours, a near one-hot row
    case("one_hot_like", x)
    case("cols1", randn(rng, 5, 1))
    case("uniform_row", np.full((2, 9), 3.5, np.float32))


def activation_input(rng):
    ramp = np.linspace(-12.0, 12.0, 481)
    rnd = rng.standard_normal(500) * 3.0
    special = np.array([0.0, -0.0, 1e-7, -1e-7, 1e-3, -1e-3, 0.5, -0.5, -30.0, 30.0, -50.0, 50.0,
                        -88.0, 88.0, -100.0, 100.0, -1000.0, 1000.0], np.float64)
    x = np.concatenate([ramp, rnd, special])
    x = np.concatenate([x, np.zeros(1020 - x.size)])  # pad to 1020 = 4 x 255
    return f32(x.reshape(4, 255))


def gen_activations(g):
    defs = {
        "silu": ("torch.nn.functional.silu in float64", lambda x: F.silu(x)),
        "gelu": ("torch.nn.functional.gelu(approximate='none') in float64", lambda x: F.gelu(x)),
        "gelu_tanh": ("torch.nn.functional.gelu(approximate='tanh') in float64",
                      lambda x: F.gelu(x, approximate="tanh")),
        "quick_gelu": ("x * torch.sigmoid(1.702 * x) in float64 (transformers QuickGELUActivation)",
                       lambda x: x * torch.sigmoid(1.702 * x)),
    }
    for op, (src, f) in defs.items():
        rng = g.rng(op, "data")
        g.emit(op, "ramp_random_extremes", {"x": activation_input(rng)},
               lambda t, dt, f=f: {"y": f(t["x"])}, {}, TRANS, src)
        g.emit(op, "odd_3d", {"x": randn(rng, 3, 7, 13, scale=2.0)},
               lambda t, dt, f=f: {"y": f(t["x"])}, {}, TRANS, src)


def gen_geglu(g):
    from diffusers.models.attention import GEGLU
    src = "diffusers.models.attention.GEGLU (0.20.2) with proj = identity, float64"

    def case(name, x_shape):
        rng = g.rng("geglu", name)
        two_h = x_shape[-1]

        def fn(t, dt):
            m = GEGLU(two_h, two_h // 2).to(dt)
            with torch.no_grad():
                m.proj.weight.copy_(torch.eye(two_h, dtype=dt))
                m.proj.bias.zero_()
            return {"y": m(t["x"])}

        def check(t, dt):
            hidden, gate = t["x"].chunk(2, dim=-1)
            return {"y": hidden * F.gelu(gate)}
        g.emit("geglu", name, {"x": randn(rng, *x_shape, scale=2.0)}, fn, {}, TRANS, src, check_fn=check)

    case("h40_tokens", (2, 13, 80))
    case("h160", (3, 320))
    case("h1280", (1, 7, 2560))
    case("h_odd7", (5, 14))


# ---------------------------------------------------------------------------------
# elementwise


def gen_binary(g):
    ops = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}
    cases = [
        ("same_shape", (3, 7, 11), (3, 7, 11)),
        ("nchw_plus_c11", (2, 320, 3, 5), (320, 1, 1)),
        ("tokens_times_channels", (2, 5, 768), (768,)),
        ("both_broadcast", (2, 1, 5), (3, 1)),
        ("rank5_broadcast", (2, 1, 3, 1, 4), (3, 5, 1)),
        ("scalar_b", (6, 9), (1,)),
        ("a_broadcast_row", (1, 17), (9, 17)),
    ]
    for op, f in ops.items():
        src = "torch.%s with numpy broadcasting in float64" % op
        for name, sa, sb in cases:
            rng = g.rng(op, name)
            a = randn(rng, *sa, scale=2.0)
            if op == "div":  # denominators away from zero: |b| in [0.25, 4]
                b = f32(rng.choice([-1.0, 1.0], size=sb) * np.exp2(rng.uniform(-2, 2, size=sb)))
            else:
                b = randn(rng, *sb, scale=2.0)
            g.emit(op, name, {"a": a, "b": b}, lambda t, dt, f=f: {"y": f(t["a"], t["b"])}, {}, ARITH, src)


def gen_scale(g):
    src = "alpha * x + beta in float64"

    def case(name, x_shape, alpha=None, beta=None):
        rng = g.rng("scale", name)
        attrs = {}
        a, b = 1.0, 0.0
        if alpha is not None:
            attrs["alpha"], a = fmt(alpha), alpha
        if beta is not None:
            attrs["beta"], b = fmt(beta), beta
        # the C side holds alpha/beta as float: use the float32 value in the reference
        a32, b32 = float(np.float32(a)), float(np.float32(b))
        g.emit("scale", name, {"x": randn(rng, *x_shape, scale=2.0)},
               lambda t, dt: {"y": a32 * t["x"] + b32}, attrs, ARITH, src)

    case("vae_scaling_0.18215", (2, 4, 7, 9), alpha=0.18215)
    case("unscale_1_over_0.18215", (1, 4, 6, 5), alpha=1.0 / 0.18215)
    case("to_minus1_1", (3, 17), alpha=2.0, beta=-1.0)
    case("beta_only", (11,), beta=0.5)
    case("defaults_identity", (2, 5))


# ---------------------------------------------------------------------------------
# layout


def gen_upsample(g):
    src = "torch.nn.functional.interpolate(mode='nearest', size=...)"

    def case(name, x_shape, size=None):
        rng = g.rng("upsample_nearest", name)
        h, w = x_shape[-2:]
        ho, wo = size if size else (2 * h, 2 * w)
        attrs = {"size": "%d,%d" % (ho, wo)} if size else {}

        def fn(t, dt):
            x = t["x"]
            y = F.interpolate(x.reshape(-1, 1, h, w), size=(ho, wo), mode="nearest")
            return {"y": y.reshape(tuple(x_shape[:-2]) + (ho, wo))}
        g.emit("upsample_nearest", name, {"x": randn(rng, *x_shape)}, fn, attrs, EXACT, src)

    case("default_2x", (1, 8, 5, 7))
    case("15_to_30", (1, 3, 15, 15), (30, 30))
    case("8x7_to_15x13", (2, 4, 8, 7), (15, 13))
    case("tennis_latent_30x53_to_60x106", (1, 2, 30, 53), (60, 106))
    case("3d_planes", (4, 5, 6), (9, 11))
    case("h1_w1", (1, 2, 1, 1), (3, 2))


def gen_concat(g):
    src = "torch.cat"

    def case(name, shapes, axis):
        rng = g.rng("concat", name)
        inputs = {"x%d" % i: randn(rng, *s) for i, s in enumerate(shapes)}
        attrs = {} if axis == 0 else {"axis": axis}
        g.emit("concat", name, inputs,
               lambda t, dt: {"y": torch.cat([t["x%d" % i] for i in range(len(shapes))], dim=axis)},
               attrs, EXACT, src)

    case("axis0_batch", [(2, 3, 4), (1, 3, 4)], 0)
    case("unet_skip_axis1", [(2, 64, 5, 7), (2, 32, 5, 7)], 1)
    case("last_axis", [(3, 5, 7), (3, 5, 2)], 2)
    case("three_branches", [(2, 4, 3, 3), (2, 4, 3, 3), (2, 4, 3, 3)], 0)
    case("four_inputs_axis1", [(2, 1, 5), (2, 3, 5), (2, 2, 5), (2, 1, 5)], 1)


def gen_slice(g):
    src = "torch.narrow"

    def case(name, shape, axis, start, length):
        rng = g.rng("slice", name)
        attrs = {"length": length}
        if axis:
            attrs["axis"] = axis
        if start:
            attrs["start"] = start
        g.emit("slice", name, {"x": randn(rng, *shape)},
               lambda t, dt: {"y": torch.narrow(t["x"], axis, start, length).contiguous()}, attrs, EXACT, src)

    case("axis0", (5, 3, 4), 0, 1, 2)
    case("channels_second_half", (2, 16, 3, 3), 1, 8, 8)
    case("last_axis_geglu_gate", (2, 5, 14), 2, 7, 7)
    case("middle_odd", (3, 11, 6), 1, 3, 5)
    case("full", (4, 6), 1, 0, 6)
    case("single", (9, 2), 0, 8, 1)


def gen_permute(g):
    src = "torch.Tensor.permute(...).contiguous()"

    def case(name, shape, perm):
        rng = g.rng("permute", name)
        g.emit("permute", name, {"x": randn(rng, *shape)},
               lambda t, dt: {"y": t["x"].permute(*perm).contiguous()},
               {"perm": ",".join(str(p) for p in perm)}, EXACT, src)

    case("heads_0213", (2, 5, 4, 8), (0, 2, 1, 3))
    case("nchw_to_nhwc", (2, 8, 3, 5), (0, 2, 3, 1))
    case("nhwc_to_nchw", (2, 3, 5, 8), (0, 3, 1, 2))
    case("transpose_2d", (7, 9), (1, 0))
    case("rot_3d", (3, 4, 5), (2, 0, 1))
    case("identity", (3, 4), (0, 1))
    case("rank5", (2, 3, 1, 4, 2), (4, 2, 0, 3, 1))


# ---------------------------------------------------------------------------------
# timestep embedding


def gen_timestep(g):
    from diffusers.models.embeddings import get_timestep_embedding
    src = "diffusers.models.embeddings.get_timestep_embedding (0.20.2; float32 inside, as the UNet sees it)"

    def case(name, t_values, dim=None, flip=None, shift=None, max_period=None):
        d = 320 if dim is None else dim
        fl = True if flip is None else flip
        sh = 0.0 if shift is None else shift
        mp = 10000 if max_period is None else max_period
        attrs = {}
        if dim is not None:
            attrs["dim"] = dim
        if flip is not None:
            attrs["flip_sin_to_cos"] = int(flip)
        if shift is not None:
            attrs["freq_shift"] = fmt(float(shift))
        if max_period is not None:
            attrs["max_period"] = max_period
        t = f32(t_values)

        def ref(tt, dt):  # diffusers, float32 internally whatever the input dtype
            return {"y": get_timestep_embedding(tt["t"], d, flip_sin_to_cos=fl, downscale_freq_shift=sh,
                                                max_period=mp).to(torch.float64)}

        def check(tt, dt):  # the formula of core/backend.h in float64
            tv = tt["t"].to(torch.float64)
            half = d // 2
            j = torch.arange(half, dtype=torch.float64)
            arg = tv[:, None] * torch.exp(-math.log(mp) * j / (half - sh))[None, :]
            s, c = torch.sin(arg), torch.cos(arg)
            y = torch.cat([c, s] if fl else [s, c], dim=-1)
            if d % 2:
                y = F.pad(y, (0, 1))
            return {"y": y}
        atol = 1e-5 + 4 * U * float(np.max(np.abs(t)))
        g.emit("timestep_embedding", name, {"t": t}, ref, attrs, (0.0, atol), src, check_fn=check,
               check_dtype=torch.float64)

    case("sd_320_defaults", [981.0, 1.0, 501.0, 0.0])
    case("sd_320_explicit", [961.0, 21.0], dim=320, flip=True, shift=0.0, max_period=10000)
    case("dim1280_fractional", [999.0, 0.5, 250.25], dim=1280)
    case("odd_dim_321", [981.0, 1.0], dim=321)
    case("no_flip_shift1_dim32", [981.0, 41.0, 3.0], dim=32, flip=False, shift=1.0)
    case("odd_dim_7_maxp100", [7.0], dim=7, max_period=100)
    # freq_shift beyond 0 and 1 (diffusers' downscale_freq_shift): the exponent's
    # denominator half - shift, at large t where a changed frequency moves sin/cos by O(1)
    case("shift0.5_dim64", [999.0, 640.0, 17.0], dim=64, shift=0.5)
    case("shift_minus2_no_flip_dim24", [981.0, 250.0, 2.0], dim=24, flip=False, shift=-2.0)


# ---------------------------------------------------------------------------------
# attention


def attn_ref(q, k, v, scale):
    return torch.matmul(torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale, dim=-1), v)


def gen_attention(g):
    src = "torch.softmax(scale * q @ k^T, -1) @ v in float64"

    def case(name, q_shape, nk, dv=None, scale="auto", qk_scale=1.0):
        rng = g.rng("attention", name)
        d = q_shape[-1]
        dv = d if dv is None else dv
        lead = tuple(q_shape[:-2])
        q = randn(rng, *q_shape, scale=qk_scale)
        k = randn(rng, *(lead + (nk, d)), scale=qk_scale)
        v = randn(rng, *(lead + (nk, dv)))
        sc = d ** -0.5 if scale == "auto" else float(scale)
        attrs = {} if scale == "auto" else {"scale": fmt(float(scale))}
        s_max = float(np.max(np.abs(np.matmul(q.astype(np.float64), np.swapaxes(k, -1, -2).astype(np.float64))))) * sc

        def fn(t, dt):
            return {"out": attn_ref(t["q"], t["k"], t["v"], sc)}

        def check(t, dt):  # PyTorch's fused path in float32 (4-D view for SDPA)
            qq, kk, vv = (x.reshape((-1, 1) + tuple(x.shape[-2:])) for x in (t["q"], t["k"], t["v"]))
            o = F.scaled_dot_product_attention(qq, kk, vv, scale=sc)
            return {"out": o.reshape(lead + (q_shape[-2], dv))}
        g.emit("attention", name, {"q": q, "k": k, "v": v}, fn, attrs, tol_exp(s_max, max(d, nk)), src,
               check_fn=check)

    case("d40_self_37", (1, 8, 37, 40), 37)
    case("d64_cross_nq30_nk77", (2, 30, 64), 77)
    case("d80_stem_bases_256", (1, 2, 20, 80), 256)
    case("d160_nq16_nk9", (3, 16, 160), 9)
    case("d512_vae_wide_head", (2, 70, 512), 70)  # the VAE mid-block attention: one 512-wide head
    case("odd_d13_dv7", (2, 5, 13), 11, dv=7)
    case("scale_0.5", (2, 6, 16), 10, scale=0.5)
    case("large_scores", (1, 12, 64), 40, qk_scale=4.0)
    case("nk1", (2, 3, 40), 1)
    case("unbatched_2d", (19, 24), 33)
    # more keys than one block of the CPU kernel (256) and more queries than one work item
    # (128): the running maximum rises in later key blocks, so the rescaling of the
    # partial sums (online softmax) is exercised
    case("long_nk600_nq200_blocks", (1, 200, 16), 600, qk_scale=1.5)


def gen_mha(g):
    from diffusers.models.attention_processor import Attention
    src_d = ("diffusers.models.attention_processor.Attention (0.20.2, AttnProcessor2_0) with identity "
             "to_q/to_k/to_v/to_out, float64")
    src_t = "heads split by reshape(b, n, heads, d); torch.softmax(scale * q @ k^T) @ v in float64"

    def case(name, b, nq, nk, heads, d, dv=None, scale="auto", use_diffusers=True):
        rng = g.rng("mha", name)
        dv = d if dv is None else dv
        q = randn(rng, b, nq, heads * d)
        k = randn(rng, b, nk, heads * d)
        v = randn(rng, b, nk, heads * dv)
        sc = d ** -0.5 if scale == "auto" else float(scale)
        attrs = {"heads": heads}
        if scale != "auto":
            attrs["scale"] = fmt(float(scale))
        qh = q.reshape(b, nq, heads, d).transpose(0, 2, 1, 3).astype(np.float64)
        kh = k.reshape(b, nk, heads, d).transpose(0, 2, 1, 3).astype(np.float64)
        s_max = float(np.max(np.abs(qh @ np.swapaxes(kh, -1, -2)))) * sc

        def split(x, n, w):
            return x.reshape(b, n, heads, w).transpose(1, 2)

        def manual(t, dt):
            o = attn_ref(split(t["q"], nq, d), split(t["k"], nk, d), split(t["v"], nk, dv), sc)
            return {"out": o.transpose(1, 2).reshape(b, nq, heads * dv)}

        def via_diffusers(t, dt):
            # Attention.forward(q, encoder_hidden_states=[k | v]) with to_q = to_out = I,
            # to_k = [I 0] and to_v = [0 I] (exact in float64), so that its own processor
            # (AttnProcessor2_0: view(b, -1, heads, d).transpose(1, 2), SDPA) does the work.
            c = heads * d
            m = Attention(c, cross_attention_dim=2 * c, heads=heads, dim_head=d).to(dt)
            eye = torch.eye(c, dtype=dt)
            zero = torch.zeros(c, c, dtype=dt)
            with torch.no_grad():
                m.to_q.weight.copy_(eye)
                m.to_k.weight.copy_(torch.cat([eye, zero], dim=1))
                m.to_v.weight.copy_(torch.cat([zero, eye], dim=1))
                m.to_out[0].weight.copy_(eye)
                m.to_out[0].bias.zero_()
            assert type(m.processor).__name__ == "AttnProcessor2_0" and abs(m.scale - sc) < 1e-15
            return {"out": m(t["q"], encoder_hidden_states=torch.cat([t["k"], t["v"]], dim=-1))}
        fn = via_diffusers if use_diffusers and dv == d and scale == "auto" else manual
        if fn is via_diffusers:  # the diffusers path and the plain torch path must agree in f64
            t64 = {n: torch.from_numpy(x).double() for n, x in (("q", q), ("k", k), ("v", v))}
            with torch.no_grad():
                assert torch.allclose(via_diffusers(t64, torch.float64)["out"], manual(t64, torch.float64)["out"],
                                      rtol=1e-12, atol=1e-12)
        g.emit("mha", name, {"q": q, "k": k, "v": v}, fn, attrs, tol_exp(s_max, max(d, nk)),
               src_d if fn is via_diffusers else src_t, check_fn=manual)

    case("sd15_self_h8_d40", 1, 24, 24, 8, 40)
    case("sd2_cross_h5_d64", 2, 12, 20, 5, 64)
    case("sd15_1280_h8_d160", 1, 6, 6, 8, 160)
    case("d80_h4_nq_ne_nk", 2, 10, 7, 4, 80)
    case("odd_h3_d7_dv5", 2, 9, 4, 3, 7, dv=5, use_diffusers=False)
    case("scale_0.25_h2", 1, 5, 8, 2, 16, scale=0.25, use_diffusers=False)


# ---------------------------------------------------------------------------------
# token flow and EM helpers


def gen_gather_rows(g):
    src = "torch.index_select(src, 0, idx)"

    def case(name, n, c, idx):
        rng = g.rng("gather_rows", name)
        g.emit("gather_rows", name, {"src": randn(rng, n, c), "idx": np.asarray(idx, np.int32)},
               lambda t, dt: {"y": torch.index_select(t["src"], 0, t["idx"])}, {}, EXACT, src)

    rng = g.rng("gather_rows", "idx")
    case("repeats_and_ends", 50, 7, np.concatenate([[0, 49, 49, 0], rng.integers(0, 50, 19)]))
    case("permutation_64x40", 64, 40, rng.permutation(64))
    case("single_row", 9, 320, [4])
    case("more_rows_than_src", 3, 5, rng.integers(0, 3, 11))


def gen_argmax_cos(g):
    src = "torch.argmax((a/|a|) @ (ref/|ref|)^T, -1) in float64 (no epsilon)"

    def case(name, a_shape, m, copy_frac=0.7, min_margin=1e-3):
        rng = g.rng("argmax_cos", name)
        c = a_shape[-1]
        lead = tuple(a_shape[:-2])
        n = a_shape[-2]
        ref = rng.standard_normal(lead + (m, c)) * 10.0 ** rng.uniform(-2, 2, lead + (m, 1))
        a = rng.standard_normal(lead + (n, c))
        # most queries are noisy, rescaled copies of some reference row (a clear winner),
        # the rest random; every row must win by min_margin in cosine
        src_j = rng.integers(0, m, lead + (n,))
        copy = rng.uniform(size=lead + (n,)) < copy_frac
        picked = np.take_along_axis(ref, src_j[..., None].repeat(c, -1), axis=-2)
        picked = picked / np.linalg.norm(picked, axis=-1, keepdims=True)
        noisy = picked + 0.1 * rng.standard_normal(picked.shape) / math.sqrt(c)
        a = np.where(copy[..., None], noisy, a) * 10.0 ** rng.uniform(-2, 2, lead + (n, 1))
        a, ref = f32(a), f32(ref)
        a64, r64 = a.astype(np.float64), ref.astype(np.float64)
        cos = (a64 / np.linalg.norm(a64, axis=-1, keepdims=True)) @ np.swapaxes(
            r64 / np.linalg.norm(r64, axis=-1, keepdims=True), -1, -2)
        top2 = np.sort(cos, axis=-1)[..., -2:]
        margin = float(np.min(top2[..., 1] - top2[..., 0])) if m > 1 else 1.0
        assert margin >= min_margin, "%s: argmax margin %g too small; change the case" % (name, margin)

        def fn(t, dt):
            an = t["a"] / torch.linalg.vector_norm(t["a"], dim=-1, keepdim=True)
            rn = t["ref"] / torch.linalg.vector_norm(t["ref"], dim=-1, keepdim=True)
            return {"idx": torch.argmax(torch.matmul(an, rn.transpose(-1, -2)), dim=-1)}
        g.emit("argmax_cos", name, {"a": a, "ref": ref}, fn, {}, EXACT, src, outputs_int=("idx",))

    case("batched_30x25x40", (2, 30, 40), 25)
    case("tokenflow_48x48x320", (2, 48, 320), 48, copy_frac=0.9)
    case("unbatched_odd_c13", (30, 13), 17, copy_frac=0.8)
    case("m1", (1, 6, 8), 1)


def gen_mean_std(g):
    src = "torch.std_mean(x, dim=axis, unbiased=True) in float64"

    def case(name, shape, axis, offset=0.0):
        rng = g.rng("mean_std", name)
        x = randn(rng, *shape, scale=1.5, offset=offset)
        n = shape[axis]
        attrs = {} if axis == 0 else {"axis": axis}

        def fn(t, dt):
            std, mean = torch.std_mean(t["x"], dim=axis, unbiased=True)
            return {"mean": mean, "std": std}
        g.emit("mean_std", name, {"x": x}, fn, attrs, tol_stats(n, abs(offset) / 1.5), src)

    case("em_keys_300x40", (300, 40), 0)
    case("middle_axis", (2, 37, 5), 1)
    case("last_axis", (2, 8, 37), 2)
    case("n2", (2, 9), 0)
    case("offset100_500x8", (500, 8), 0, offset=100.0)
    case("n4096_d8", (4096, 8), 0)


# ---------------------------------------------------------------------------------
# random numbers


def gen_philox(g):
    src = "refdata/gen/philox_ref.py (numpy Philox4x32-10, checked against Random123 kat_vectors)"

    def case(name, shape, seed, w1=0, w2=0, w3=0):
        n = int(np.prod(shape))
        attrs = {"shape": ",".join(str(s) for s in shape), "seed": seed, "w1": w1, "w2": w2, "w3": w3}

        def fn(t, dt):
            return {"y": torch.from_numpy(philox_ref.philox_normal(n, seed, w1, w2, w3).reshape(shape))}

        def check(t, dt):  # the scalar, libm-based path of philox_ref, element by element
            ys = [philox_ref.philox_normal_at_scalar(seed, w1, w2, w3, e) for e in range(n)]
            return {"y": torch.tensor(ys, dtype=torch.float32).reshape(shape)}
        g.emit("philox_normal", name, {}, fn, attrs, (1e-6, 1e-6), src, ref_dtype=torch.float32, check_fn=check)

    em_w3 = (0 << 24) | (0 << 12) | 0
    case("em_256x40_seed1", (256, 40), 1, 0, 0, em_w3)
    case("em_256x64_seed64bit", (256, 64), (1 << 33) + 12345, 7, 3, (1 << 24) | (5 << 12) | 2)
    case("partial_block_3x5", (3, 5), 42, 1, 15, (2 << 24) | (49 << 12) | 7)
    case("max_words_5x7", (5, 7), (1 << 63) - 1, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    case("flat_4097_seed0", (4097,), 0)


# ---------------------------------------------------------------------------------
# FreeU


def fourier_filter(x, threshold, scale):
    """FreeU's Fourier_filter as the original STEM/TokenFlow code has it (free_u/
    free_lunch_utils.py, the same as diffusers' later fourier_filter): fftn over the last
    two axes, fftshift, the centre [h//2 - threshold : h//2 + threshold] x [the same for w]
    times `scale`, ifftshift, ifftn, real part. The original first casts x to float32; here
    the caller's dtype is kept (float64 for the reference, float32 for the check)."""
    x_freq = torch.fft.fftshift(torch.fft.fftn(x, dim=(-2, -1)), dim=(-2, -1))
    B, C, H, W = x_freq.shape
    mask = torch.ones((B, C, H, W), dtype=x.dtype)
    crow, ccol = H // 2, W // 2
    mask[..., crow - threshold:crow + threshold, ccol - threshold:ccol + threshold] = scale
    x_freq = torch.fft.ifftshift(x_freq * mask, dim=(-2, -1))
    return torch.fft.ifftn(x_freq, dim=(-2, -1)).real


def gen_freeu_filter(g):
    src = "FreeU's Fourier_filter(x, threshold=1, scale=s) (the original's free_lunch_utils) with torch.fft in float64"

    def case(name, shape, s, offset=0.0):
        rng = g.rng("freeu_filter", name)
        x = randn(rng, *shape, offset=offset)
        h, w = shape[-2:]

        def fn(t, dt):
            return {"y": fourier_filter(t["x"], 1, s)}
        # sums over the h*w elements of a plane: the dot-product law, plus the offset's share
        rtol, atol = tol_dot(h * w)
        tol = (rtol, atol + 8 * U * abs(offset) * math.sqrt(h * w))
        g.emit("freeu_filter", name, {"x": x}, fn, {"s": fmt(s)}, tol, src)

    case("odd_7x9_s0.9", (2, 3, 7, 9), 0.9)
    case("even_8x8_s0.2", (1, 4, 8, 8), 0.2)
    case("sd_level_64x64_s0.9", (1, 2, 64, 64), 0.9)
    case("mixed_5x4_s0.2", (2, 2, 5, 4), 0.2)
    case("odd_9x7_s0", (1, 2, 9, 7), 0.0)
    case("s1_identity_6x5", (1, 2, 6, 5), 1.0)
    case("s1.5_4x6", (1, 3, 4, 6), 1.5)
    case("two_2x2_s0.5", (2, 3, 2, 2), 0.5)   # {0, -1} covers every frequency: y = s x
    case("one_1x1_s0.9", (2, 5, 1, 1), 0.9)   # -1 = 0: the one coefficient, once
    case("row_1x6_s0.2", (1, 3, 1, 6), 0.2)
    case("col_7x1_s0.2", (1, 3, 7, 1), 0.2)
    case("offset3_16x12_s0.9", (2, 4, 16, 12), 0.9, offset=3.0)


GENERATORS = [gen_matmul, gen_linear, gen_conv2d, gen_group_norm, gen_layer_norm, gen_softmax,
              gen_activations, gen_geglu, gen_binary, gen_scale, gen_upsample, gen_concat, gen_slice,
              gen_permute, gen_timestep, gen_attention, gen_mha, gen_gather_rows, gen_argmax_cos,
              gen_mean_std, gen_philox, gen_freeu_filter]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory (refdata/golden/ops)")
    ap.add_argument("--only", nargs="*", help="only these ops (for development)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    philox_ref.self_test(verbose=False)
    os.makedirs(args.out, exist_ok=True)
    g = Gen(args.out, set(args.only) if args.only else None)
    for gen in GENERATORS:
        gen(g)
    ops = sorted(set(f[2] for f in g.files))
    print("    bytes  check/tol  file  (check/tol: worst |f32 check - golden| / (atol + rtol*|golden|))")
    for name, size, _, worst in g.files:
        print("%9d  %9.3g  %s" % (size, worst, name))
    print("%d files, %d ops, %.2f MB" % (len(g.files), len(ops), g.total_bytes / 1e6))
    assert g.total_bytes < 6e6, "golden op data over the 6 MB budget"


if __name__ == "__main__":
    main()
