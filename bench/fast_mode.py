"""The lean runtime's fast mode against its exact mode on the same files, alternating in one run.

For each compressed file, two runtimes (fast: x rounded to integers on the integer paths;
exact: float32 x everywhere) decode --tokens greedy steps in turn for --rounds rounds, the
order alternating. Prints, per file: the median ms/token of each mode, the median and quartiles
of the per-round ratios exact/fast, the bytes one token reads, the read bandwidth of the same
threads (bench/runtime.py's probe), and each mode's decode time over the time its bytes take
at that bandwidth (x bound: 1.0 is the bandwidth bound).

usage: python bench/fast_mode.py FILE [FILE ...] [--rounds 10] [--tokens 32] [--threads N] [--save NAME]
Files: bench/runtime.py --keep DIR makes the 0.1B-shaped ones (int8, rwkvquant, lite-3bit).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from rwkvlite.runtime import Runtime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402  (bench/results.py)
from runtime import read_bandwidth_gbs  # noqa: E402  (bench/runtime.py)


def decode_ms(rt: Runtime, state, tokens: int) -> tuple[float, object]:
    token, start = 5, time.perf_counter()
    for _ in range(tokens):
        logits, state = rt.step(token, state, inplace=True)
        token = int(logits.argmax())
    return (time.perf_counter() - start) / tokens * 1e3, state


def measure(path: str, rounds: int, tokens: int, threads: int | None, gbs: float) -> dict:
    runtimes = {mode: Runtime(path, exact=mode == "exact", threads=threads) for mode in ("fast", "exact")}
    states = {mode: rt.feed([1, 2, 3, 4, 5, 6, 7, 8])[1] for mode, rt in runtimes.items()}
    for mode, rt in runtimes.items():  # warm: pages mapped, kernels built
        _, states[mode] = decode_ms(rt, states[mode], 4)
    times = {mode: [] for mode in runtimes}
    for r in range(rounds):
        for mode in (("fast", "exact") if r % 2 else ("exact", "fast")):
            ms, states[mode] = decode_ms(runtimes[mode], states[mode], tokens)
            times[mode].append(ms)
    rt = runtimes["fast"]
    rt.reset_counters()
    _, states["fast"] = decode_ms(rt, states["fast"], tokens)
    read = rt.bytes_read_per_token()["total"]
    s = results.spread(times["exact"], times["fast"])
    bound_ms = read / (gbs * 1e9) * 1e3
    row = {"file": os.path.basename(path), "fast_ms": float(np.median(times["fast"])),
           "exact_ms": float(np.median(times["exact"])), "exact_over_fast": s["ratio"],
           "ratio_q1": s["ratio_q1"], "ratio_q3": s["ratio_q3"],
           "read_mb_per_token": read / 1e6, "bandwidth_gbs": gbs,
           "fast_x_bound": float(np.median(times["fast"])) / bound_ms,
           "exact_x_bound": float(np.median(times["exact"])) / bound_ms,
           "int8_x": rt.kernels.int8_x, "threads": rt.threads, "rounds": rounds, "tokens": tokens}
    print(f"{row['file']}: fast {row['fast_ms']:.2f} ms/token, exact {row['exact_ms']:.2f}; exact/fast "
          f"{row['exact_over_fast']:.3f} (quartiles {row['ratio_q1']:.3f}-{row['ratio_q3']:.3f}); reads "
          f"{row['read_mb_per_token']:.1f} MB/token at {gbs:.1f} GB/s: fast {row['fast_x_bound']:.2f}x the bound, "
          f"exact {row['exact_x_bound']:.2f}x", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="kernel threads (default: one per core)")
    results.add_argument(ap, "fast-mode")
    args = ap.parse_args()
    gbs = read_bandwidth_gbs(args.threads)
    results.write(args, [measure(path, args.rounds, args.tokens, args.threads, gbs) for path in args.files])


if __name__ == "__main__":
    main()
