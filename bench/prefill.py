"""Prompt speed of the lean runtime, three ways in one process, in rotating order so that all
three see the same minutes of this machine:
  stepped   the prompt stepped token by token (Runtime.step: the head for every token);
  head once Runtime.feed with chunks of one token: the blocks as stepped, the head for the
            last token only;
  feed      Runtime.feed as it is: also chunks of Runtime.CHUNK tokens through each block
            before the next (a block's weights read once per chunk, not per token).
The file is warmed first (its pages mapped in), so this is the steady prefill speed, not the
first touch. Ratios are per round against `stepped`; median and range.

usage: python bench/prefill.py FILE [FILE ...] [--tokens 64] [--rounds 6] [--threads N] [--save [NAME]]
--save writes the table to bench/results/NAME.json (bench/results.py).
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import time

from rwkvlite.runtime import Runtime  # before numpy: its BLAS held to one thread

import results  # bench/results.py


def stepped(rt, tokens):
    state, logits = None, None
    for t in tokens:
        logits, state = rt.step(t, state, inplace=state is not None)
    return logits


def head_once(rt, tokens):
    rt.CHUNK = 1
    try:
        return rt.feed(tokens)[0]
    finally:
        del rt.CHUNK  # the class's again


WAYS = {"stepped": stepped, "head once": head_once, "feed": lambda rt, tokens: rt.feed(tokens)[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--threads", type=int, default=None)
    results.add_argument(ap, "prefill")
    args = ap.parse_args()
    names = list(WAYS)
    print(f"ms/token, median of {args.rounds} rounds of {args.tokens} prompt tokens; (x stepped: median, range)")
    print(f"{'file':40} " + " ".join(f"{n:>26}" for n in names))
    rows = []
    for path in args.files:
        rt = Runtime(path, threads=args.threads)
        rng = random.Random(0)
        tokens = [rng.randrange(1, rt.config["vocab_size"]) for _ in range(args.tokens)]
        stepped(rt, tokens)  # warm: every page a prompt touches mapped in
        times = {n: [] for n in names}
        for r in range(args.rounds):
            for n in names[r % 3:] + names[:r % 3]:
                start = time.perf_counter()
                WAYS[n](rt, tokens)
                times[n].append(1e3 * (time.perf_counter() - start) / len(tokens))
        cells, row = [], {"file": os.path.basename(path)}
        for n in names:
            ratios = [t / s for t, s in zip(times[n], times["stepped"])]
            key = n.replace(" ", "_")
            row[f"{key}_ms"] = statistics.median(times[n])
            if n != "stepped":
                row[f"{key}_x_stepped"] = statistics.median(ratios)
            cells.append(f"{statistics.median(times[n]):7.2f} ({statistics.median(ratios):.2f}, "
                         f"{min(ratios):.2f}-{max(ratios):.2f})")
        print(f"{path[-40:]:40} " + " ".join(f"{c:>26}" for c in cells), flush=True)
        rows.append(row)
    results.write(args, rows)


if __name__ == "__main__":
    main()
