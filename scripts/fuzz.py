"""Fuzz compressed files (the long mode of tests/format/test_fuzz.py).

Small random models of RWKV-4, 5.2, 6 and 7 are compressed with every recipe kind (int8, int4,
RWKVQuant 3-bit with act-order, lite + int4); then --files mutated files (one manifest field or
header entry changed, checksums recomputed) are run through `rwkvlite run` and `rwkvlite eval`.
With --asan the C kernels are built with AddressSanitizer (and the interpreter runs with it
preloaded), so out-of-bounds reads that do not crash are still caught.
Prints the count of each outcome; exits 1 if any run crashed, hung, printed a traceback or a
sanitizer report.

usage: python scripts/fuzz.py [--files 2000] [--seed 0] [--asan] [--keep DIR] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.conftest import make_model  # noqa: E402
from tests.format.fuzz import fuzz  # noqa: E402

LITE = [{"lowrank": {"factor": 4}}, {"ffn_predictor": {"steps": 20}},
        {"cluster_head": {"k": 16, "pca_dim": 8, "steps": 20}}, {"fold_ln0": {}}]
RECIPES = {
    "int8": [{"int": {"bits": 8, "group_size": 32}}],
    "int4": [{"int": {"bits": 4, "group_size": 32}}],
    "rwkvquant": [{"quantize": {"method": "rwkvquant", "bits": 3, "group_size": 32, "vq_group": 32,
                                "sq_share": 0.5, "act_order": True}}],
    "lite-int4": LITE + [{"int": {"bits": 4, "group_size": 32}}],
}
GENERATIONS = ("7", "6", "5.2", "4")
TEXT = "And God said, Let there be light: and there was light. " * 100


def sources(folder: str) -> list[str]:
    """Every (generation, recipe) file, made once in folder."""
    from rwkvlite.loaders import save_model
    from rwkvlite.recipes import compress

    with open(os.path.join(folder, "text.txt"), "w") as f:
        f.write(TEXT)
    out = []
    for v in GENERATIONS:
        src = os.path.join(folder, f"{v}.safetensors")
        if not os.path.exists(src):
            save_model(make_model(v), src)
        for name, recipe in RECIPES.items():
            path = os.path.join(folder, f"{v}-{name}.rwkvlite")
            if not os.path.exists(path):
                compress(src, path, recipe, calibration=os.path.join(folder, "text.txt"), n_seq=4, seq_len=32,
                         tokenizer="bytes", progress=False)
            out.append(path)
    return out


def asan_env() -> dict:
    """The environment of a worker whose kernels are built and run under AddressSanitizer."""
    lib = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(lib):
        sys.exit("--asan: gcc has no libasan.so (apt-get install libasan8 or gcc)")
    return {**os.environ, "LD_PRELOAD": lib, "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
            "CC": "gcc -fsanitize=address -fno-omit-frame-pointer -g",
            "RWKVLITE_THREADS": "1"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--asan", action="store_true")
    ap.add_argument("--keep", default=None, help="folder for the source files (reused when present)")
    ap.add_argument("--json", default=None, help="write the counts and every bad run here")
    args = ap.parse_args()
    folder = args.keep or tempfile.mkdtemp()
    os.makedirs(folder, exist_ok=True)
    files = sources(folder)
    print(f"{len(files)} source files in {folder}", flush=True)
    env = asan_env() if args.asan else None
    result = fuzz(files, args.files, folder, os.path.join(folder, "text.txt"), seed=args.seed, env=env,
                  log=lambda s: print(s, flush=True))
    result.update(asan=args.asan, seed=args.seed, sources=[os.path.basename(f) for f in files])
    print(json.dumps({k: result[k] for k in ("files", "runs", "asan", "seed")}))
    for b in result["bad"][:20]:
        print(b)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    sys.exit(1 if result["bad"] else 0)


if __name__ == "__main__":
    main()
