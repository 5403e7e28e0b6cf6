"""Two checkouts of rwkvlite decoding one compressed file, alternating in one run.

Where bench/runtime_ab.py compares two builds of the C code under this checkout's Python, this
compares whole checkouts (Python and C), e.g. before and after a change to the runtime's layout:
each round runs one child process per checkout (PYTHONPATH at its src/), in alternating order,
each loading the file, feeding a short prompt, then timing --tokens greedy decode steps. Prints
the median ms/token of each and the median and quartiles of the per-round ratios new/old.

usage: python bench/checkouts_ab.py FILE [FILE ...] --old OLD_CHECKOUT [--new .] [--rounds 12]
                                    [--tokens 32] [--threads N] [--save NAME]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402  (bench/results.py)

CHILD = """
import json, sys, time
from rwkvlite.runtime import Runtime
path, tokens, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) or None
rt = Runtime(path, threads=threads)
logits, state = rt.feed([1, 2, 3, 4, 5, 6, 7, 8])
token, times = 0, []
for _ in range(tokens + 4):  # the first 4: warm-up
    start = time.perf_counter()
    logits, state = rt.step(token, state, inplace=True)
    times.append(time.perf_counter() - start)
    token = int(logits.argmax())
print(json.dumps(times[4:]))
"""


def decode_ms(checkout: str, path: str, tokens: int, threads: int) -> float:
    """Median ms/token of one child process of `checkout` on `path`."""
    env = {**os.environ, "PYTHONPATH": os.path.join(os.path.abspath(checkout), "src")}
    out = subprocess.run([sys.executable, "-c", CHILD, path, str(tokens), str(threads)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return 1e3 * float(np.median(json.loads(out.strip().splitlines()[-1])))


def compare(path: str, args) -> dict:
    times = {"old": [], "new": []}
    for r in range(args.rounds + 1):  # round 0: warm-up (page cache, kernel builds), not counted
        for k in (("old", "new") if r % 2 else ("new", "old")):
            ms = decode_ms(getattr(args, k), path, args.tokens, args.threads)
            if r:
                times[k].append(ms)
    s = results.spread(times["new"], times["old"])
    row = {"file": os.path.basename(path), "old_ms": float(np.median(times["old"])),
           "new_ms": float(np.median(times["new"])), "ratio": s["ratio"], "ratio_q1": s["ratio_q1"],
           "ratio_q3": s["ratio_q3"], "new_faster": s["smaller_in"], "rounds": args.rounds}
    print(f"{row['file']}: old {row['old_ms']:.2f} ms/token, new {row['new_ms']:.2f}; new/old median "
          f"{row['ratio']:.3f} (quartiles {row['ratio_q1']:.3f}-{row['ratio_q3']:.3f}; new faster in "
          f"{row['new_faster']}/{args.rounds})", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--old", required=True, help="the baseline checkout's root folder")
    ap.add_argument("--new", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="kernel threads (0: the runtime's default)")
    results.add_argument(ap, "checkouts-ab")
    args = ap.parse_args()
    rows = [compare(path, args) for path in args.files]
    results.write(args, rows)


if __name__ == "__main__":
    main()
