"""What validating a compressed file costs, two ways, for each file over --rounds loads:
  share  the time inside format/validate.py's checks as a share of the lean runtime's whole load
         (Runtime(path)) that holds them;
  ratio  the median load time with the checks over the median load time with them skipped, the
         two kinds of load alternating (what the checks add, their own reads of the file included).

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
    spent, shares, loads, bare = [0.0], [], [], []
    originals = {name: getattr(validate, name) for name in CHECKS}
    skipped = {name: (lambda *a, **k: None) for name in CHECKS}
    timed_checks = {name: timed(spent, fn) for name, fn in originals.items()}
    try:
        for r in range(2 * rounds + 2):  # the first two loads: page cache and kernel build, not counted
            checks = timed_checks if r % 2 else skipped
            for name, fn in checks.items():
                setattr(validate, name, fn)
            spent[0] = 0.0
            start = time.perf_counter()
            Runtime(path)
            load = time.perf_counter() - start
            if r >= 2:
                (loads if r % 2 else bare).append(load)
                if r % 2:
                    shares.append(spent[0] / load)
    finally:
        for name, fn in originals.items():
            setattr(validate, name, fn)
    row = {"file": os.path.basename(path), "load_ms": 1e3 * float(np.median(loads)),
           "load_unchecked_ms": 1e3 * float(np.median(bare)), "ratio": float(np.median(loads) / np.median(bare)),
           "validation_ms": 1e3 * float(np.median([s * t for s, t in zip(shares, loads)])),
           "share": float(np.median(shares)), "rounds": rounds}
    print(f"{row['file']}: load {row['load_ms']:.1f} ms (unchecked {row['load_unchecked_ms']:.1f}, ratio "
          f"{row['ratio']:.3f}); validation {row['validation_ms']:.2f} ms = {100 * row['share']:.2f}% of the load",
          flush=True)
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
