"""The lean runtime on randomly initialised RWKV models (RWKV-7 unless --version) of 0.1B and 0.4B shapes.

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
(bytes read / read bandwidth, the bandwidth measured here with as many threads as the kernels,
right before each run: the machine's speed drifts between minutes, so each run is set
against its own reading).

With --repeat N every file is benchmarked N times in turn and the median run is reported
(peak RSS: the largest of the runs; x bound: the median of the runs' own ratios).

usage: python bench/runtime.py [--version 7] [--shapes 0.1b 0.4b] [--recipes fp16 int8 rwkvquant lite-3bit]
                               [--threads N] [--repeat N] [--keep DIR] [--json out.json] [--save [NAME]]
--save writes the table to bench/results/NAME.json (bench/results.py).
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

import results  # bench/results.py

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
    from rwkvlite.runtime.native import Kernels, Settings, ptr

    a = np.ones(mib * 2**20 // 4, np.float32)
    k = Kernels(Settings(threads=threads))
    if k.lib is None:
        return a.nbytes / min(_timed(a.sum) for _ in range(repeat)) / 1e9
    read_sum = k.fn("read_sum")
    return a.nbytes / min(_timed(lambda: read_sum(ptr(a), a.size)) for _ in range(repeat)) / 1e9


def x_bound(figures: dict, gbs: float) -> float:
    """A run's decode time over the time its weight bytes take at gbs GB/s (the bandwidth bound)."""
    return figures["decode_ms_per_token_median"] / (figures["bytes_read_per_token"] / (gbs * 1e9) * 1e3)


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def build(src: str, out: str, recipe: list) -> float:
    """Compress src with the recipe into out unless it exists; seconds spent."""
    start = time.perf_counter()
    if not os.path.exists(out):
        r = subprocess.run([sys.executable, "-c", "import json, sys; from rwkvlite.recipes import compress; "
                            "compress(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), progress=False)",
                            src, out, json.dumps(recipe)], capture_output=True, text=True)
        if r.returncode:
            sys.exit(r.stderr)
    return time.perf_counter() - start


def bench_file(path: str, result: str, gen_tokens: int, threads: int) -> dict:
    """`rwkvlite bench` in a fresh process (no PyTorch imported): its figures."""
    r = subprocess.run([sys.executable, "-m", "rwkvlite.cli", "bench", path, "--gen-tokens", str(gen_tokens),
                        "--threads", str(threads), "--json", result], capture_output=True, text=True)
    if r.returncode:
        sys.exit(r.stderr)
    with open(result) as f:
        return json.load(f)[0]["figures"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--version", default="7", help="RWKV generation of the random models (7, 6, 5.2, 4)")
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES))
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES))
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="kernel threads (default: one per core)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="benchmark every file this many times, in turn; report the median run")
    ap.add_argument("--keep", default=None, help="folder to keep the files in")
    ap.add_argument("--json", default=None)
    results.add_argument(ap, "runtime-v{version}")
    args = ap.parse_args()
    from rwkvlite.runtime.native import Kernels, Settings

    bandwidth = read_bandwidth_gbs(args.threads)
    threads = Kernels(Settings(threads=args.threads)).threads
    print(f"read bandwidth ({threads} threads): {bandwidth:.1f} GB/s before building", flush=True)
    folder = args.keep or tempfile.mkdtemp()
    os.makedirs(folder, exist_ok=True)
    files, build_s = {}, {}
    for shape in args.shapes:
        layers, width = SHAPES[shape]
        src = os.path.join(folder, f"rwkv{args.version}-{shape}.pth")
        if not os.path.exists(src):
            subprocess.run([sys.executable, os.path.join(HERE, "make_random_model.py"), "-o", src, "--layers",
                            str(layers), "--width", str(width), "--version", args.version], check=True)
        for name in args.recipes:
            files[shape, name] = os.path.join(folder, f"rwkv{args.version}-{shape}-{name}.rwkvlite")
            build_s[shape, name] = build(src, files[shape, name], RECIPES[name])
    runs = {key: [] for key in files}
    for rep in range(args.repeat):  # in turn, so that a slow spell of the machine hits every file alike
        for (shape, name), path in files.items():
            gbs = read_bandwidth_gbs(args.threads)
            f = bench_file(path, os.path.join(folder, f"rwkv{args.version}-{shape}-{name}.json"), args.gen_tokens, threads)
            f["bandwidth_gbs"] = gbs
            f["x_bound"] = x_bound(f, gbs)
            runs[shape, name].append(f)
            print(f"run {rep + 1}/{args.repeat} {shape} {name}: {f['decode_ms_per_token_median']:.2f} ms/token, "
                  f"read bandwidth {gbs:.1f} GB/s, {f['x_bound']:.2f} x bound", flush=True)
    rows = []
    print(f"{'shape':<6} {'recipe':<10} {'file MB':>8} {'peak RSS MiB':>12} {'anon+file MiB':>13} {'ms/tok':>9} {'mean':>7} "
          f"{'MB read/tok':>11} {'GB/s':>5} {'x bound':>7} {'build s':>8}", flush=True)
    for (shape, name), figures in runs.items():
        f = sorted(figures, key=lambda g: g["decode_ms_per_token_median"])[len(figures) // 2]  # the median run
        row = {"shape": shape, "recipe": name, "build_s": build_s[shape, name], "repeats": len(figures),
               "ms_per_token_runs": [g["decode_ms_per_token_median"] for g in figures],
               "bandwidth_gbs_runs": [g["bandwidth_gbs"] for g in figures],
               "x_bound_runs": [g["x_bound"] for g in figures],
               "peak_rss_max_mib": max(g["peak_rss_generate_mib"] for g in figures), **f,
               "x_bound": float(np.median([g["x_bound"] for g in figures]))}
        rows.append(row)
        split, gbs = f"{f['rss_end_anon_mib']:.0f}+{f['rss_end_file_mib']:.0f}", np.median(row["bandwidth_gbs_runs"])
        print(f"{shape:<6} {name:<10} {f['file_bytes'] / 1e6:>8.1f} {row['peak_rss_max_mib']:>12.0f} {split:>13} "
              f"{f['decode_ms_per_token_median']:>9.2f} {f['decode_ms_per_token']:>7.2f} "
              f"{f['bytes_read_per_token'] / 1e6:>11.2f} {gbs:>5.1f} {row['x_bound']:>7.2f} "
              f"{build_s[shape, name]:>8.0f}", flush=True)
    results.write(args, rows, [table_row(r, args.version) for r in rows])


def table_row(r: dict, version: str) -> dict:
    """The printed table's figures of one file: the median run, the range of the runs."""
    return {"version": version, "shape": r["shape"], "recipe": r["recipe"], "file_mb": r["file_bytes"] / 1e6,
            "peak_rss_mib": r["peak_rss_max_mib"], "anon_mib": r["rss_end_anon_mib"],
            "file_pages_mib": r["rss_end_file_mib"], "ms_per_token": r["decode_ms_per_token_median"],
            "ms_per_token_min": min(r["ms_per_token_runs"]), "ms_per_token_max": max(r["ms_per_token_runs"]),
            "read_mb_per_token": r["bytes_read_per_token"] / 1e6, "x_bound": r["x_bound"],
            "bandwidth_gbs": float(np.median(r["bandwidth_gbs_runs"])), "repeats": r["repeats"]}


if __name__ == "__main__":
    main()
