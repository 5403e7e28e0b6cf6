"""Throughput of the lean runtime's C kernels, one matrix at a time (random codes).

For each encoding (fp16; scalar codes of 2, 3, 4 and 8 bits; 2-D VQ with 6-bit indices)
a rows x cols matrix is multiplied by a vector (mv) and its rows are combined (axpy, the
transposed FFN value path) through runtime/matrix.py, as the runtime does. Reported: the
median time of --repeat calls, G weights/s and GB/s of stored codes. The matrix is small
enough to stay in cache after the first call, so this is the kernels' compute rate, not
memory bandwidth (bench/runtime.py measures whole models against the bandwidth bound).

usage: python bench/kernels.py [--rows 3072] [--cols 768] [--threads 1 2] [--repeat 200]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from rwkvlite.format.encodings import encode_dense, encode_sq, encode_vq
from rwkvlite.runtime.native import Kernels, Settings
from rwkvlite.runtime.matrix import matrix


def encodings(rows: int, cols: int, rng) -> dict:
    out = {"fp16": encode_dense(rng.standard_normal((rows, cols)).astype(np.float32))}
    for bits in (2, 3, 4, 8):
        groups = cols // 64
        out[f"sq {bits}-bit g64"] = encode_sq(rng.integers(0, 2**bits, (rows, cols)), rng.uniform(0.01, 0.02, (rows, groups)),
                                              rng.integers(0, 2**bits, (rows, groups)), bits, 64, [rows, cols])
    groups = cols // 256
    out["vq 2-D 6-bit g256"] = encode_vq(rng.integers(0, 64, (rows, cols // 2)), rng.integers(-127, 128, (groups, 64, 2)),
                                         rng.uniform(0.005, 0.02, groups), 6, 2, 256, [rows, cols])
    return out


def timed(fn, repeat: int) -> float:
    fn()  # warm: pages mapped, buffers bound
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=3072)
    ap.add_argument("--cols", type=int, default=768)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    if Kernels().lib is None:
        raise SystemExit("the C kernels are not available (no C compiler?)")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(args.cols).astype(np.float32)
    a = rng.standard_normal(args.rows).astype(np.float32)
    weights = args.rows * args.cols
    print(f"{args.rows} x {args.cols} matrix, median of {args.repeat} calls")
    print(f"{'encoding':<20} {'threads':>7} {'mv us':>8} {'Gw/s':>6} {'GB/s':>6} {'axpy us':>8} {'Gw/s':>6}")
    for name, (entry, arrays) in encodings(args.rows, args.cols, rng).items():
        nbytes = sum(v.nbytes for v in arrays.values())
        for n in args.threads:
            m = matrix(entry, arrays, Kernels(Settings(threads=n)))
            t_mv = timed(lambda: m.mv(x), args.repeat)
            t_axpy = timed(lambda: m.rmv(a), args.repeat)
            print(f"{name:<20} {n:>7} {t_mv * 1e6:>8.1f} {weights / t_mv / 1e9:>6.1f} {nbytes / t_mv / 1e9:>6.1f} "
                  f"{t_axpy * 1e6:>8.1f} {weights / t_axpy / 1e9:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
