"""The lean runtime's embedding lookups during generation: the time of each lookup that
misses the LRU cache (a row read from the file) and of those that hit it.

A Runtime generates --tokens tokens greedily from FILE, in place, as `rwkvlite run` does;
before each step the next token's row is looked up on its own and timed (the step then
finds it cached). With random weights nearly every generated token is new, so nearly every
lookup is a miss. To compare with another checkout, run this file with that checkout's
src first on PYTHONPATH.

usage: python bench/embedding.py FILE [--tokens 144] [--save [NAME]]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from rwkvlite.runtime import Runtime

import results  # bench/results.py


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("--tokens", type=int, default=144)
    results.add_argument(ap, "embedding")
    args = ap.parse_args()
    rt = Runtime(args.file)
    if rt.emb.cache is None:
        raise SystemExit(f"{args.file}: no embedding cache (ln0 not folded): every lookup reads the file")
    state, token, times = rt.zero_state(), 0, {True: [], False: []}
    for _ in range(args.tokens):
        misses = rt.emb.cache.misses
        start = time.perf_counter()
        rt.emb(token)
        times[rt.emb.cache.misses > misses].append(time.perf_counter() - start)
        logits, state = rt.step(token, state, inplace=True)
        token = int(np.argmax(logits))
    rows = []
    for miss, name in ((True, "miss"), (False, "hit")):
        t = np.array(times[miss]) * 1e6
        if len(t):
            print(f"{name:5s} {len(t):4d} lookups   median {np.median(t):7.1f} us   mean {t.mean():7.1f} us")
            rows.append({"lookup": name, "count": len(t), "median_us": float(np.median(t)), "mean_us": float(t.mean())})
    results.write(args, rows)


if __name__ == "__main__":
    main()
