"""Two builds of the C kernels on the same matrices, called in alternation in one process.

The machine's speed drifts by tens of percent between minutes, so kernel changes are judged
by alternating calls of the old and new builds rather than by runs taken apart. OLD is the
runtime folder of another checkout (e.g. `git worktree add /tmp/old 40d1ac3`, then
--old /tmp/old/src/rwkvlite/runtime); NEW is this checkout's. A folder's sources are its c/
folder's, or (older checkouts) its own .c files; builds from before the settings argument
(interface version 6) are called with their settings in library globals. For each case: a random
scalar-quantized (group 64, or /GROUP), vector-quantized (vqBITS: 2-D, group 256) or fp16 matrix, `mv` over all rows or a sorted share of them,
--rounds rounds of --calls calls per build; reported: the median time per call of each
build, the median of the per-round ratios new/old, and the largest difference between the
two builds' outputs. --cycle K multiplies K different matrices in turn (K x the size beyond
the caches: memory-bound rather than compute-bound).

usage: python bench/kernels_ab.py --old DIR [--threads 1] [--rounds 30] [--calls 50] [--axpy]
                                  [--cases 3072x768:3 1024x1024:3/128 768x96:3 ...] [--cycle 1]
"""
from __future__ import annotations

import argparse
import ctypes
import functools
import glob
import os
import time

import numpy as np

from rwkvlite.format.encodings import encode_dense, encode_sq, encode_vq
from rwkvlite.runtime import native
from rwkvlite.runtime.matrix import matrix

CASES = ["3072x768:3", "3072x768:2", "3072x768:4", "3072x768:8", "3072x64:3", "768x96:3", "3072x768:16",
         "3072x768:3@0.7"]


def abi(lib) -> int:
    """A build's C interface version (rwkvlite_abi); 1 for builds from before it."""
    try:
        return ctypes.c_int64.in_dll(lib, "rwkvlite_abi").value
    except ValueError:
        return 1


def load(folder: str, threads: int):
    """(path, fn) for the kernels of a runtime folder, compiled and cached as the runtime
    compiles its own: fn(name) is the kernel called in the fast mode on `threads` threads."""
    c = os.path.join(folder, "c")
    if os.path.isdir(c):
        path = native.build(native.sources(c), native.headers(c))
    else:  # an older checkout: its C beside its Python
        path = native.build(sorted(glob.glob(os.path.join(folder, "*.c"))), [os.path.join(folder, "kernels.h")])
    if path is None:
        raise SystemExit(f"could not compile the kernels in {folder}")
    lib = native.load(path)
    if abi(lib) >= 6:
        settings = native.SettingsT(threads, 0, native.Settings().parallel_min)
        return path, lambda name: functools.partial(getattr(lib, name), settings)
    for name in (n for n in native.TAKES_SETTINGS if hasattr(lib, n)):
        getattr(lib, name).argtypes = native.SIGNATURES[name][0][1:]  # no settings argument
    lib.set_threads(threads)
    return path, lambda name: getattr(lib, name)


def case_matrix(rng, rows: int, cols: int, bits: int, group: int = 64, vq: bool = False, kernels=None):
    if bits == 16:
        return matrix(*encode_dense(rng.standard_normal((rows, cols)).astype(np.float32)), kernels)
    if vq:  # 2-D codebooks of 2^bits int8 centroids, one per group of columns
        groups = -(-cols // group)
        return matrix(*encode_vq(rng.integers(0, 2**bits, (rows, cols // 2)), rng.integers(-127, 128, (groups, 2**bits, 2)),
                                 rng.uniform(0.005, 0.02, groups), bits, 2, group, [rows, cols]), kernels)
    groups = -(-cols // group)
    return matrix(*encode_sq(rng.integers(0, 2**bits, (rows, cols)), rng.uniform(0.01, 0.02, (rows, groups)),
                             rng.integers(0, 2**bits, (rows, groups)), bits, group, [rows, cols]), kernels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", required=True, help="runtime folder of the baseline checkout")
    ap.add_argument("--new", default=os.path.dirname(native.__file__))
    ap.add_argument("--cases", nargs="+", default=CASES, help="ROWSxCOLS:[vq]BITS[/GROUP][@SHARE] (16 bits: fp16; vq: 2-D codebooks; group 64, vq 256, unless given)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--cycle", type=int, default=1, help="matrices per case, multiplied in turn")
    ap.add_argument("--axpy", action="store_true", help="y += sum_i a_i W[row_i] (rmv: LoRA factors, FFN values) "
                                                        "instead of y = W x")
    args = ap.parse_args()
    libs = {k: load(getattr(args, k), args.threads)[1] for k in ("old", "new")}
    rng = np.random.default_rng(0)
    print(f"threads {args.threads}, {args.rounds} rounds of {args.calls} calls, {args.cycle} matrices per case")
    print(f"{'case':18s} {'old us':>9s} {'new us':>9s} {'new/old':>8s} {'max diff':>9s} {'of max':>8s}")
    for case in args.cases:
        shape, _, rest = case.partition(":")
        rest, _, share = rest.partition("@")
        bits, _, group = rest.partition("/")
        vq = bits.startswith("vq")
        rows, cols, bits = *map(int, shape.split("x")), int(bits.removeprefix("vq"))
        ms = [case_matrix(rng, rows, cols, bits, int(group or (256 if vq else 64)), vq, native.Kernels())
              for _ in range(args.cycle)]
        for m in ms:
            m._bound()
        sel = None
        if share:
            sel = np.sort(rng.choice(rows, int(rows * float(share)), replace=False)).astype(np.int32)
        n = rows if sel is None else len(sel)
        x = rng.standard_normal(n if args.axpy else cols).astype(np.float32)
        y = {k: np.zeros(cols if args.axpy else n, np.float32) for k in libs}
        times = {k: [] for k in libs}
        name = f"{'axpy' if args.axpy else 'mv'}_{'vq' if vq else 'f16' if bits == 16 else 'sq'}"
        for _ in range(args.rounds):
            for k, lib in libs.items():
                fn = lib(name)
                start = time.perf_counter()
                for i in range(args.calls):
                    fn(*ms[i % len(ms)]._pre, native.ptr(x), native.ptr(y[k]), native.ptr(sel), n)
                times[k].append((time.perf_counter() - start) / args.calls * 1e6)
        for k, lib in libs.items():  # the outputs compared: one call each, from zero
            y[k][:] = 0
            lib(name)(*ms[0]._pre, native.ptr(x), native.ptr(y[k]), native.ptr(sel), n)
        ratio = float(np.median(np.array(times["new"]) / np.array(times["old"])))
        print(f"{case:18s} {np.median(times['old']):9.1f} {np.median(times['new']):9.1f} {ratio:8.3f} "
              f"{float(np.abs(y['new'] - y['old']).max()):9.2e} {float(np.abs(y['old']).max()):8.2e}")


if __name__ == "__main__":
    main()
