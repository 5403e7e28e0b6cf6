"""Nucleus sampling (rwkvlite/sampling.py) against a stable sort of the
whole vocabulary, the rule it implements, on the same logits in the same run.

Logits: random normal times a scale, 65536 tokens; a small scale is flat (random weights:
the nucleus holds half the vocabulary), a large one peaked (as a trained model's usually
are: a few hundred tokens). Reported: ms per draw of each, their ratio, the nucleus size.

usage: python bench/sampling.py [--vocab 65536] [--top-p 0.85] [--draws 50] [--save [NAME]]
"""
from __future__ import annotations

import argparse
import random
import time

import numpy as np

from rwkvlite.sampling import sample

import results  # bench/results.py


def full_sort(logits: np.ndarray, top_p: float, rng: random.Random) -> int:
    p = np.exp(logits.astype(np.float64) - logits.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")
    keep = np.cumsum(p[order]) - p[order] < top_p
    cdf = np.cumsum(p[order] * keep)
    return int(order[int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))])


def per_draw_ms(fn, draws: int) -> float:
    start = time.perf_counter()
    for i in range(draws):
        fn(random.Random(i))
    return (time.perf_counter() - start) / draws * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab", type=int, default=65536)
    ap.add_argument("--top-p", type=float, default=0.85)
    ap.add_argument("--draws", type=int, default=50)
    results.add_argument(ap, "sampling")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'logits':<14} {'nucleus':>8} {'sample ms':>10} {'full sort ms':>13} {'ratio':>6}")
    rows = []
    for scale in (1.0, 4.0, 8.0):
        logits = (rng.standard_normal(args.vocab) * scale).astype(np.float32)
        p = np.sort(np.exp(logits - logits.max()).astype(np.float64))[::-1]
        nucleus = int(np.searchsorted(np.cumsum(p / p.sum()), args.top_p)) + 1
        ours = per_draw_ms(lambda r: sample(logits, 1.0, args.top_p, r), args.draws)
        ref = per_draw_ms(lambda r: full_sort(logits, args.top_p, r), args.draws)
        same = all(sample(logits, 1.0, args.top_p, random.Random(i)) == full_sort(logits, args.top_p, random.Random(i))
                   for i in range(10))
        print(f"normal x {scale:<5} {nucleus:>8} {ours:>10.2f} {ref:>13.2f} {ours / ref:>6.2f}"
              + ("" if same else "  DIFFERENT DRAWS"))
        rows.append({"logit_scale": scale, "nucleus": nucleus, "sample_ms": ours, "full_sort_ms": ref,
                     "ratio": ours / ref, "same_draws": same})
    results.write(args, rows)


if __name__ == "__main__":
    main()
