#!/usr/bin/env python3
"""Compares `stem invert` output folders latents by latents against the first (the reference).

    compare_invert.py REF_DIR OTHER_DIR...

For each OTHER_DIR: over every latents/{inv,rec}_*.safetensors step file both folders hold,
the largest max |other - ref| / max |ref| (and at which step), the same for the last
inverted and the last reconstructed latents, and each run's reconstruction PSNR against
its input (manifest.json). One JSON line per folder; a short table on stdout too.
Needs numpy and safetensors only.
"""
import glob
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file


def latents(d):
    return {os.path.basename(p): p for p in sorted(glob.glob(os.path.join(d, "latents", "*.safetensors")))}


def manifest(d):
    with open(os.path.join(d, "manifest.json")) as f:
        return json.load(f)


def rel_diff(a, b):
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30))


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    ref_dir, others = sys.argv[1], sys.argv[2:]
    ref = latents(ref_dir)
    ref_man = manifest(ref_dir)
    status = 0
    for d in others:
        got = latents(d)
        common = [k for k in ref if k in got]
        if not common:
            print(json.dumps({"run": d, "error": "no common latents files"}))
            status = 1
            continue
        rels = {k: rel_diff(load_file(ref[k])["latents"], load_file(got[k])["latents"]) for k in common}
        worst = max(rels, key=rels.get)
        inv = [k for k in common if k.startswith("inv_")]
        rec = [k for k in common if k.startswith("rec_")]
        man = manifest(d)

        def psnr(m):
            return m.get("metrics", {}).get("reconstruction_vs_input", {}).get("mean_psnr_db")

        line = {
            "run": d, "reference": ref_dir,
            "backend": man["environment"].get("backend"), "dtype": man.get("options", {}).get("dtype"),
            "steps_compared": len(common),
            "max_rel_diff": rels[worst], "worst_step": worst,
            "last_inversion_rel_diff": rels[inv[-1]] if inv else None,
            "last_reconstruction_rel_diff": rels[rec[-1]] if rec else None,
            "recon_psnr_db": psnr(man), "reference_recon_psnr_db": psnr(ref_man),
            "inversion_s": man.get("timing", {}).get("inversion_s"),
            "reference_inversion_s": ref_man.get("timing", {}).get("inversion_s"),
        }
        print(json.dumps(line))
    sys.exit(status)


if __name__ == "__main__":
    main()
