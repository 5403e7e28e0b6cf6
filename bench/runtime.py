"""The lean runtime on randomly initialised RWKV-7 models with 0.1B and 0.4B shapes.

For each shape: a random fp16 checkpoint (bench/make_random_model.py), compressed by
  fp16        no pass (16-bit file)
  int8        RTN INT8 of every matrix (embedding and head included)
  rwkvquant   RWKVQuant hybrid at 3 bits (projections; embedding/head 16-bit), data-free calibration
  lite-3bit   low-rank r/k/v (rank width/8), FFN predictors, clustered head, ln0 folded for the
              embedding cache, then RTN 3-bit (group 64) of every matrix; no recovery training
              (these weights are random, so only speed and memory mean anything here)
then each file is benchmarked by `rwkvlite bench FILE` in a fresh process (no PyTorch
imported): file size, peak RSS while generating --gen-tokens tokens (and the RSS split into
anonymous memory and pages of the mapped file at the end), decode ms/token (median over the
generated tokens, then the mean),
weight bytes read per token, and the ratio of decode time to the bandwidth bound
(bytes read / read bandwidth, the bandwidth measured here with as many threads as the kernels).

usage: python bench/runtime.py [--shapes 0.1b 0.4b] [--recipes fp16 int8 rwkvquant lite-3bit]
                               [--threads N] [--keep DIR] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

SHAPES = {"0.1b": (12, 768), "0.4b": (24, 1024)}
LITE = [{"lowrank": {"factor": 8}}, {"ffn_predictor": {}}, {"cluster_head": {}}, {"fold_ln0": {}}]
RECIPES = {
    "fp16": [],
    "int8": [{"int": {"bits": 8}}],
    "rwkvquant": [{"quantize": {"method": "rwkvquant", "bits": 3}}],
    "lite-3bit": LITE + [{"int": {"bits": 3, "group_size": 64}}],
}
HERE = os.path.dirname(os.path.abspath(__file__))


def read_bandwidth_gbs(threads: int | None, mib: int = 512, repeat: int = 5) -> float:
    """The kernels' threads summing a buffer that does not fit in cache: bytes / best time
    (numpy's one-thread sum without the C kernels)."""
    from rwkvlite.runtime import kernels

    a = np.ones(mib * 2**20 // 4, np.float32)
    lib = kernels.lib()
    if lib is None:
        return a.nbytes / min(_timed(a.sum) for _ in range(repeat)) / 1e9
    if threads:
        lib.set_threads(threads)
    return a.nbytes / min(_timed(lambda: lib.read_sum(kernels.ptr(a), a.size)) for _ in range(repeat)) / 1e9


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES))
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES))
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="kernel threads (default: one per core)")
    ap.add_argument("--keep", default=None, help="folder to keep the files in")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from rwkvlite.runtime import kernels

    bandwidth = read_bandwidth_gbs(args.threads)
    threads = kernels.threads()
    print(f"read bandwidth ({threads} threads): {bandwidth:.1f} GB/s", flush=True)
    folder = args.keep or tempfile.mkdtemp()
    os.makedirs(folder, exist_ok=True)
    rows = []
    print(f"{'shape':<6} {'recipe':<10} {'file MB':>8} {'peak RSS MiB':>12} {'anon+file MiB':>13} {'ms/tok':>9} {'mean':>7} "
          f"{'MB read/tok':>11} {'bound ms':>8} {'x bound':>7} {'build s':>8}", flush=True)
    for shape in args.shapes:
        layers, width = SHAPES[shape]
        src = os.path.join(folder, f"rwkv7-{shape}.pth")
        if not os.path.exists(src):
            subprocess.run([sys.executable, os.path.join(HERE, "make_random_model.py"), "-o", src, "--layers",
                            str(layers), "--width", str(width)], check=True)
        for name in args.recipes:
            out = os.path.join(folder, f"rwkv7-{shape}-{name}.rwkvlite")
            start = time.perf_counter()
            if not os.path.exists(out):
                build = subprocess.run([sys.executable, "-c", "import json, sys; from rwkvlite.recipes import compress; "
                                        "compress(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), progress=False)",
                                        src, out, json.dumps(RECIPES[name])], capture_output=True, text=True)
                if build.returncode:
                    sys.exit(build.stderr)
            build_s = time.perf_counter() - start
            result = os.path.join(folder, f"{shape}-{name}.json")
            r = subprocess.run([sys.executable, "-m", "rwkvlite.cli", "bench", out, "--gen-tokens", str(args.gen_tokens),
                                "--threads", str(threads), "--json", result], capture_output=True, text=True)
            if r.returncode:
                sys.exit(r.stderr)
            f = json.load(open(result))[0]["figures"]
            bound_ms = f["bytes_read_per_token"] / (bandwidth * 1e9) * 1e3
            row = {"shape": shape, "recipe": name, "build_s": build_s, "bandwidth_gbs": bandwidth,
                   "bound_ms": bound_ms, "x_bound": f["decode_ms_per_token_median"] / bound_ms, **f}
            rows.append(row)
            split = f"{f['rss_end_anon_mib']:.0f}+{f['rss_end_file_mib']:.0f}"
            print(f"{shape:<6} {name:<10} {f['file_bytes'] / 1e6:>8.1f} {f['peak_rss_generate_mib']:>12.0f} {split:>13} "
                  f"{f['decode_ms_per_token_median']:>9.2f} {f['decode_ms_per_token']:>7.2f} "
                  f"{f['bytes_read_per_token'] / 1e6:>11.2f} {bound_ms:>8.2f} "
                  f"{row['x_bound']:>7.2f} {build_s:>8.0f}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
