"""What validating a compressed file costs: the time inside format/validate.py's checks as a share
of the lean runtime's whole load (Runtime(path)), for each file, over --rounds loads.

usage: python bench/validation.py FILE [FILE ...] [--rounds 10] [--save NAME]
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import numpy as np

from rwkvlite.format import validate
from rwkvlite.runtime import Runtime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402  (bench/results.py)

CHECKS = ("header_entries", "manifest", "contents")


def timed(spent: list, fn):
    """fn, adding the seconds each call takes to spent[0]."""
    @functools.wraps(fn)
    def wrapper(*a, **k):
        start = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            spent[0] += time.perf_counter() - start

    return wrapper


def measure(path: str, rounds: int) -> dict:
    spent, shares, loads = [0.0], [], []
    originals = {name: getattr(validate, name) for name in CHECKS}
    for name, fn in originals.items():
        setattr(validate, name, timed(spent, fn))
    try:
        for _ in range(rounds + 1):  # the first load: page cache and kernel build, not counted
            spent[0] = 0.0
            start = time.perf_counter()
            Runtime(path)
            load = time.perf_counter() - start
            loads.append(load)
            shares.append(spent[0] / load)
    finally:
        for name, fn in originals.items():
            setattr(validate, name, fn)
    row = {"file": os.path.basename(path), "load_ms": 1e3 * float(np.median(loads[1:])),
           "validation_ms": 1e3 * float(np.median([s * t for s, t in zip(shares[1:], loads[1:])])),
           "share": float(np.median(shares[1:])), "share_max": float(max(shares[1:])), "rounds": rounds}
    print(f"{row['file']}: load {row['load_ms']:.1f} ms, validation {row['validation_ms']:.2f} ms = "
          f"{100 * row['share']:.2f}% of the load (max {100 * row['share_max']:.2f}%)", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--rounds", type=int, default=10)
    results.add_argument(ap, "validation")
    args = ap.parse_args()
    results.write(args, [measure(path, args.rounds) for path in args.files])


if __name__ == "__main__":
    main()
