#!/usr/bin/env python3
"""Independent numpy reference of the random stream of doc/algorithm.md §6.

Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as
1, 2, 3", SC'11), with Random123's conventions:
  - one round maps counter (c0, c1, c2, c3) and key (k0, k1) to
        (hi(M1*c2) ^ c1 ^ k0,  lo(M1*c2),  hi(M0*c0) ^ c3 ^ k1,  lo(M0*c0))
    with M0 = 0xD2511F53, M1 = 0xCD9E8D57 (hi/lo: the upper/lower 32 bits of the
    64-bit product);
  - 10 rounds; the key is bumped by (0x9E3779B9, 0xBB67AE85) mod 2^32 between
    rounds (before rounds 2..10).
Checked against the known-answer vectors of Random123's tests/kat_vectors
(github.com/DEShawResearch/random123, commit 9545ff6413f258be2f04c1d319d99aaef7521150,
lines 27-29), reproduced in KAT below.

The normal transform (doc/algorithm.md §6): key = (seed mod 2^32, seed >> 32); element
e of a draw with counter words (w1, w2, w3) uses the block with counter
(e // 4, w1, w2, w3); u = (word + 0.5) * 2^-32; Box-Muller on word pairs (0, 1) and
(2, 3), in float64: r = sqrt(-2 ln u_a), n_a = r cos(2 pi u_b), n_b = r sin(2 pi u_b),
rounded to float32. e % 4 in {0, 2} -> n_a of its pair, {1, 3} -> n_b.

This file is written from the papers/spec, not from src/core/philox.h: it exists to
check that header, so it must not share its code.

Usage:
  philox_ref.py --self-test            check the KATs (vectorised and scalar paths)
  philox_ref.py --print SEED W1 W2 W3 E [E ...]
                                       print normal numbers e of that stream (%.9g)
"""
import math
import sys

import numpy as np

M0 = 0xD2511F53
M1 = 0xCD9E8D57
W0 = 0x9E3779B9
W1 = 0xBB67AE85
MASK32 = 0xFFFFFFFF

# Random123 tests/kat_vectors (commit 9545ff6413f258be2f04c1d319d99aaef7521150),
# "philox4x32 10" lines: counter[4], key[2] -> output[4].
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def philox4x32_10(ctr, key):
    """ctr: uint32 array [..., 4]; key: (k0, k1) ints. Returns uint32 [..., 4]."""
    c = np.asarray(ctr, dtype=np.uint32).astype(np.uint64)
    c0, c1, c2, c3 = c[..., 0], c[..., 1], c[..., 2], c[..., 3]
    k0, k1 = int(key[0]) & MASK32, int(key[1]) & MASK32
    m0, m1 = np.uint64(M0), np.uint64(M1)
    lo_mask, sh = np.uint64(MASK32), np.uint64(32)
    for rnd in range(10):
        if rnd:
            k0 = (k0 + W0) & MASK32
            k1 = (k1 + W1) & MASK32
        p0 = m0 * c0  # < 2^64: both factors < 2^32
        p1 = m1 * c2
        c0, c1, c2, c3 = ((p1 >> sh) ^ c1 ^ np.uint64(k0), p1 & lo_mask,
                          (p0 >> sh) ^ c3 ^ np.uint64(k1), p0 & lo_mask)
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)


def philox4x32_10_scalar(ctr, key):
    """The same with Python integers, one block: a second, loop-free-of-numpy path."""
    c = [int(x) & MASK32 for x in ctr]
    k = [int(key[0]) & MASK32, int(key[1]) & MASK32]
    for rnd in range(10):
        if rnd:
            k = [(k[0] + W0) & MASK32, (k[1] + W1) & MASK32]
        p0, p1 = M0 * c[0], M1 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k[0], p1 & MASK32, (p0 >> 32) ^ c[3] ^ k[1], p0 & MASK32]
    return tuple(c)


def uniform(words):
    """u = (word + 0.5) * 2^-32 in float64: in (0, 1), never 0 or 1."""
    return (np.asarray(words, dtype=np.float64) + 0.5) * (2.0 ** -32)


def seed_key(seed):
    seed = int(seed)
    if seed < 0 or seed >= 1 << 64:
        raise ValueError("seed must be in [0, 2^64)")
    return (seed & MASK32, seed >> 32)


def philox_normal(n, seed, w1=0, w2=0, w3=0):
    """The first n normal numbers of the stream, float32 [n]."""
    n = int(n)
    nblocks = (n + 3) // 4
    ctr = np.zeros((nblocks, 4), dtype=np.uint32)
    ctr[:, 0] = np.arange(nblocks, dtype=np.uint64).astype(np.uint32)
    ctr[:, 1], ctr[:, 2], ctr[:, 3] = w1 & MASK32, w2 & MASK32, w3 & MASK32
    if nblocks >= 1 << 32:
        raise ValueError("too many elements for a 32-bit block counter")
    u = uniform(philox4x32_10(ctr, seed_key(seed)))
    out = np.empty((nblocks, 4), dtype=np.float64)
    for pair in (0, 2):
        r = np.sqrt(-2.0 * np.log(u[:, pair]))
        ang = 2.0 * np.pi * u[:, pair + 1]
        out[:, pair] = r * np.cos(ang)
        out[:, pair + 1] = r * np.sin(ang)
    return out.reshape(-1)[:n].astype(np.float32)


def philox_normal_at_scalar(seed, w1, w2, w3, e):
    """Element e alone, with Python ints and the math module (libm)."""
    words = philox4x32_10_scalar((e // 4, w1, w2, w3), seed_key(seed))
    pair = e % 4 & 2
    ua = (words[pair] + 0.5) * 2.0 ** -32
    ub = (words[pair + 1] + 0.5) * 2.0 ** -32
    r = math.sqrt(-2.0 * math.log(ua))
    v = r * math.cos(2.0 * math.pi * ub) if e % 2 == 0 else r * math.sin(2.0 * math.pi * ub)
    return float(np.float32(v))


def self_test(verbose=True):
    ctrs = np.array([k[0] for k in KAT], dtype=np.uint32)
    for i, (ctr, key, want) in enumerate(KAT):
        got_v = tuple(int(x) for x in philox4x32_10(ctrs[i], key))
        got_s = philox4x32_10_scalar(ctr, key)
        if got_v != want or got_s != want:
            raise AssertionError("KAT %d: counter %s key %s: want %s, numpy %s, scalar %s" % (
                i, ["%08x" % x for x in ctr], ["%08x" % x for x in key],
                ["%08x" % x for x in want], ["%08x" % x for x in got_v], ["%08x" % x for x in got_s]))
    # The vectorised normal path agrees with the scalar one, incl. a 64-bit seed and a
    # partial last block.
    for seed, w, n in ((1, (0, 0, 0), 23), ((1 << 33) + 12345, (7, 3, (1 << 24) | (5 << 12) | 2), 41)):
        v = philox_normal(n, seed, *w)
        for e in range(n):
            s = philox_normal_at_scalar(seed, *w, e)
            # libm vs numpy transcendental functions may differ by an ulp in float64;
            # after rounding to float32 that can flip at most one float32 ulp.
            if abs(float(v[e]) - s) > 1e-6 * max(1.0, abs(s)):
                raise AssertionError("normal element %d (seed %d): numpy %r scalar %r" % (e, seed, v[e], s))
    if verbose:
        print("philox_ref: %d Random123 KATs and the normal transform: ok" % len(KAT))


def main(argv):
    if len(argv) >= 1 and argv[0] == "--self-test":
        self_test()
        return 0
    if len(argv) >= 6 and argv[0] == "--print":
        seed, w1, w2, w3 = (int(x, 0) for x in argv[1:5])
        es = [int(x, 0) for x in argv[5:]]
        v = philox_normal(max(es) + 1, seed, w1, w2, w3)
        for e in es:
            print("seed=%d w=(%d,%d,%d) e=%d: %.9g" % (seed, w1, w2, w3, e, v[e]))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
