"""Two builds of the runtime's C code generating from one compressed file, in alternation in
one process: the whole token (blocks, head) with one build, then with the other.

bench/kernels_ab.py judges single kernels this way; this judges a change to rwkv7.c or to how
the kernels are called, on a real file. OLD is the runtime folder of another checkout (e.g.
`git worktree add /tmp/old HEAD~1`, then --old /tmp/old/src/rwkvlite/runtime; the two builds
must share this checkout's C interface, its structs as runtime/native.py mirrors them and its
kernels' arguments: the version runtime/c/threads.c stamps, checked before anything runs). Each
build has a Runtime of its own on the file (native.Kernels on that build), and the two share
one state: each round decodes --tokens tokens greedily with one build, then as many with the
other (the order alternating between rounds). Reported: the
median ms/token of each build and the median and spread of the per-round ratios new/old.
--old numpy: the old side is every block's numpy step (step_numpy: numpy between the new
build's kernel calls), which is what the one-call C blocks replace. --old per-block: the old
side calls the C blocks from the per-block Python loop (Runtime._blocks), which the in-place
loop of prepared calls (Runtime._blocks_in_place) replaces.

usage: python bench/runtime_ab.py FILE --old DIR|numpy|per-block [--rounds 20] [--tokens 16] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the runtime sets it when imported first (runtime/__init__.py)
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import results  # noqa: E402  (bench/results.py)
from kernels_ab import abi, load  # noqa: E402

from rwkvlite.runtime import native  # noqa: E402
from rwkvlite.runtime import Runtime  # noqa: E402


def runtimes(args) -> dict:
    """A Runtime per build on the file, each with its own kernels, after checking the builds'
    interface is this checkout's."""
    numpy_steps, per_block = args.old == "numpy", args.old == "per-block"
    paths = {k: load(args.new if numpy_steps or per_block else getattr(args, k), 1)[0] for k in ("old", "new")}
    for k, path in paths.items():
        if abi(native.library(path)) != native.ABI:
            raise SystemExit(f"--{k} {getattr(args, k)}: its C interface is version {abi(native.library(path))}, this "
                             f"checkout's {native.ABI} (a struct or a kernel's arguments changed): compare builds of "
                             "this checkout's version")
    rts = {k: Runtime(args.file, kernels=native.Kernels(native.Settings(args.threads), library_path=path))
           for k, path in paths.items()}
    if any(b.c is None for rt in rts.values() for b in rt.blocks):
        raise SystemExit(f"{args.file}: blocks without the C path (or a build lacks this generation's one-call "
                         "block); nothing to compare")
    if numpy_steps:  # every block's numpy step, between the kernels' calls
        for b in rts["old"].blocks:
            b.c = None
    if per_block:  # the per-block Python loop instead of the in-place loop of prepared calls
        old = rts["old"]
        old._blocks_in_place = lambda tokens, state: [old._blocks(old._embed(t), state) for t in tokens][-1]
    return rts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("--old", required=True, help="runtime folder of the baseline checkout, numpy or per-block")
    ap.add_argument("--new", default=os.path.dirname(native.__file__))
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=16, help="tokens per build per round")
    ap.add_argument("--threads", type=int, default=None, help="default: the runtime's (one per core)")
    args = ap.parse_args()
    rts = runtimes(args)
    threads = rts["new"].threads
    state, token = rts["new"].zero_state(), 0
    times = {k: [] for k in rts}

    for r in range(args.rounds + 1):  # round 0: warm-up, not counted
        for k in (("old", "new") if r % 2 else ("new", "old")):
            start = time.perf_counter()
            for _ in range(args.tokens):
                logits, state = rts[k].step(token, state, inplace=True)
                token = int(np.argmax(logits))
            if r:
                times[k].append((time.perf_counter() - start) / args.tokens * 1e3)
    s = results.spread(times["new"], times["old"])
    print(f"{args.file}: {threads} threads, {args.rounds} rounds of {args.tokens} tokens per build")
    print(f"old {np.median(times['old']):.2f} ms/token   new {np.median(times['new']):.2f} ms/token   "
          f"new/old median {s['ratio']:.3f} (quartiles {s['ratio_q1']:.3f}-{s['ratio_q3']:.3f}; "
          f"new faster in {s['smaller_in']}/{s['rounds']})")


if __name__ == "__main__":
    main()
