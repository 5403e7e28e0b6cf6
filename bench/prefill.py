"""Prompt speed of the lean runtime: Runtime.feed (the head for the last token only) against
stepping the prompt token by token (the head for every token, as before feed existed), in one
process, alternating rounds so that both see the same minutes of this machine. The file is
warmed first (its pages mapped in), so this is the steady prefill speed, not the first touch.

usage: python bench/prefill.py FILE [FILE ...] [--tokens 64] [--rounds 6] [--threads N]
"""
from __future__ import annotations

import argparse
import random
import statistics
import time

from rwkvlite.runtime import Runtime  # before numpy: its BLAS held to one thread


def stepped(rt, tokens):
    state, logits = None, None
    for t in tokens:
        logits, state = rt.step(t, state, inplace=state is not None)
    return logits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    print(f"{'file':48} {'stepped ms/token':>16} {'feed ms/token':>14} {'feed/stepped (range)':>22}")
    for path in args.files:
        rt = Runtime(path, threads=args.threads)
        rng = random.Random(0)
        tokens = [rng.randrange(1, rt.config["vocab_size"]) for _ in range(args.tokens)]
        stepped(rt, tokens)  # warm: every page a prompt touches mapped in
        times = {"stepped": [], "feed": []}
        for r in range(args.rounds):
            for name in (("stepped", "feed") if r % 2 == 0 else ("feed", "stepped")):
                start = time.perf_counter()
                stepped(rt, tokens) if name == "stepped" else rt.feed(tokens)
                times[name].append(1e3 * (time.perf_counter() - start) / len(tokens))
        ratios = [f / s for f, s in zip(times["feed"], times["stepped"])]
        print(f"{path[-48:]:48} {statistics.median(times['stepped']):16.2f} {statistics.median(times['feed']):14.2f} "
              f"{statistics.median(ratios):10.3f} ({min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
