"""Two builds of the runtime's C code generating from one compressed file, in alternation in
one process: the whole token (blocks, head) with one build, then with the other.

bench/kernels_ab.py judges single kernels this way; this judges a change to rwkv7.c or to how
the kernels are called, on a real file. OLD is the runtime folder of another checkout (e.g.
`git worktree add /tmp/old HEAD~1`, then --old /tmp/old/src/rwkvlite/runtime; the two builds
must share this checkout's C interface, its structs as runtime/kernels.py mirrors them and its
kernels' arguments: the version kernels.c stamps, checked before anything runs). The two
builds share one Runtime and one state: each round decodes --tokens tokens greedily with one
build, then as many with the other (the order alternating between rounds). Reported: the
median ms/token of each build and the median and spread of the per-round ratios new/old.
--old numpy: the old side is every block's numpy step (step_numpy: numpy between the new
build's kernel calls), which is what the one-call C blocks replace. --old per-block: the old
side calls the C blocks from the per-block Python loop (Runtime._blocks), which the in-place
loop of prepared calls (Runtime._blocks_in_place) replaces.

usage: python bench/runtime_ab.py FILE --old DIR|numpy|per-block [--rounds 20] [--tokens 16] [--threads N]
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the runtime sets it when imported first (runtime/__init__.py)
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from kernels_ab import load  # noqa: E402

from rwkvlite.runtime import kernels  # noqa: E402
from rwkvlite.runtime import Runtime  # noqa: E402


def abi(lib) -> int:
    """A build's C interface version (kernels.c, rwkvlite_abi); 1 for builds from before it."""
    try:
        return ctypes.c_int64.in_dll(lib, "rwkvlite_abi").value
    except ValueError:
        return 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("--old", required=True, help="runtime folder of the baseline checkout, numpy or per-block")
    ap.add_argument("--new", default=os.path.dirname(kernels.__file__))
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=16, help="tokens per build per round")
    ap.add_argument("--threads", type=int, default=None, help="default: the runtime's (one per core)")
    args = ap.parse_args()
    rt = Runtime(args.file, threads=args.threads)
    threads = kernels.threads()
    numpy_steps, per_block = args.old == "numpy", args.old == "per-block"
    libs = {k: load(args.new if numpy_steps or per_block else getattr(args, k), threads) for k in ("old", "new")}
    versions = {k: abi(lib) for k, lib in libs.items()}
    ours = abi(kernels.lib())  # what this checkout's Python calls
    for k, v in versions.items():
        if v != ours:
            raise SystemExit(f"--{k} {getattr(args, k)}: its C interface is version {v}, this checkout's {ours} "
                             "(a struct or a kernel's arguments changed): compare builds of this checkout's version")
    if any(b.c is None for b in rt.blocks):
        raise SystemExit(f"{args.file}: blocks without the C path; nothing to compare")
    if any(not hasattr(lib, b.kernel) for lib in libs.values() for b in rt.blocks):
        raise SystemExit(f"{args.file}: a build lacks this generation's one-call block; nothing to compare")
    # one workspace as large as either build asks (the default int16-x path in both)
    floats = max(getattr(lib, f"{b.kernel}_floats")(b._args) for lib in libs.values() for b in rt.blocks)
    work, rows = np.empty(floats, np.float32), np.empty(max(b.ffn.key.rows for b in rt.blocks), np.int32)
    for b in rt.blocks:
        b.use_workspace(work, rows)
    state, token = rt.zero_state(), 0
    times = {k: [] for k in libs}

    def use(k):
        kernels._lib = lib = libs[k]  # the matrices' kernels (head, embedding) look the library up per call
        for b in rt.blocks:
            b.c = None if numpy_steps and k == "old" else getattr(lib, b.kernel)
        if per_block and k == "old":
            rt._blocks_in_place = lambda tokens, state: [rt._blocks(rt._embed(t), state) for t in tokens][-1]
        else:
            rt.__dict__.pop("_blocks_in_place", None)  # the class's
        rt._calls = (None, None)  # the prepared calls hold the block functions: made again

    for r in range(args.rounds + 1):  # round 0: warm-up, not counted
        for k in (("old", "new") if r % 2 else ("new", "old")):
            use(k)
            start = time.perf_counter()
            for _ in range(args.tokens):
                logits, state = rt.step(token, state, inplace=True)
                token = int(np.argmax(logits))
            if r:
                times[k].append((time.perf_counter() - start) / args.tokens * 1e3)
    ratio = np.array(times["new"]) / np.array(times["old"])
    print(f"{args.file}: {threads} threads, {args.rounds} rounds of {args.tokens} tokens per build")
    print(f"old {np.median(times['old']):.2f} ms/token   new {np.median(times['new']):.2f} ms/token   "
          f"new/old median {np.median(ratio):.3f} (quartiles {np.quantile(ratio, 0.25):.3f}-"
          f"{np.quantile(ratio, 0.75):.3f}; new faster in {int((ratio < 1).sum())}/{len(ratio)})")


if __name__ == "__main__":
    main()
