"""The fast mode against the exact mode (rwkvlite/runtime/contract.py) on every case of the
contract (tests/runtime/contract_files.py): rwkv.cpp's real tiny models and 0.1B-shaped random
ones, each generation with each of its recipes, 512 tokens of WikiText-2's raw test text.
Per case: mean and max KL(exact || fast) per token, top-1 agreement (all tokens, and on a
random model the tokens that are not ties), and whether the contract holds.

usage: python bench/fast_contract.py [--only PATTERN ...] [--skip PATTERN ...] [--work DIR]
       [--shared ../shared] [--threads 1] [--save [NAME]]
PATTERN matches MODEL:GENERATION:RECIPE (fnmatch), e.g. "0.1b:*:int8" or "tiny:7:*". --work
keeps the compressed files there, so a rerun (new kernels, same files) skips compressing.
"""
from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # tests.runtime.contract_files: the test's cases, not a copy
import results  # noqa: E402  (bench/results.py)
from tests.runtime.contract_files import ALL, TINY, Sources  # noqa: E402

COLUMNS = ("model", "generation", "recipe", "mean_kl", "max_kl", "top1", "top1_decided", "decided", "tokens", "holds")


def chosen(only: list[str], skip: list[str]) -> list[tuple[str, str, str]]:
    """The cases whose MODEL:GENERATION:RECIPE matches an --only pattern (all without one) and no --skip one."""
    name = lambda case: ":".join(case)  # noqa: E731
    return [c for c in ALL if (not only or any(fnmatch.fnmatch(name(c), p) for p in only))
            and not any(fnmatch.fnmatch(name(c), p) for p in skip)]


def shared_in(folder: str):
    def shared(*parts) -> str:
        path = os.path.join(folder, *parts)
        if not os.path.exists(path):
            raise SystemExit(f"{path}: not found (--shared names the shared data folder)")
        return path

    return shared


def measure(sources: Sources, case: tuple[str, str, str], threads: int) -> dict:
    model, version, recipe = case
    a = sources.measure(model, version, recipe, threads)
    if a.fast_is_exact:
        raise SystemExit("the fast runtime ran exact (RWKVLITE_EXACT=1, or no C kernels): nothing to compare")
    name = TINY[version] if model == "tiny" else "random 0.1B-shaped, 2 layers"
    row = {"model": name, "generation": version, "recipe": recipe, **a.row(), "holds": a.holds}
    del row["fast_is_exact"]  # refused above
    return row


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table of COLUMNS."""
    def cell(row, key):
        v = row[key]
        return f"{v:.2e}" if key.endswith("kl") else f"{v:.4f}" if key.startswith("top1") else str(v)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(cell(r, k) for k in COLUMNS) + " |" for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", default=[], metavar="PATTERN")
    ap.add_argument("--skip", nargs="*", default=[], metavar="PATTERN")
    ap.add_argument("--work", default=None, help="folder for the models and compressed files (default a temporary one)")
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(HERE), "..", "shared"))
    ap.add_argument("--threads", type=int, default=1, help="the C kernels' threads in both runtimes")
    results.add_argument(ap, "fast-contract")
    args = ap.parse_args()
    cases = chosen(args.only, args.skip)
    left = [":".join(c) for c in ALL if c not in cases]
    if left:
        print(f"not measured ({len(left)} of {len(ALL)} cases, by --only/--skip): {', '.join(left)}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        sources = Sources(args.work or tmp, shared_in(args.shared))
        rows = []
        for case in cases:
            rows.append(measure(sources, case, args.threads))
            r = rows[-1]
            print(f"{':'.join(case)}: mean KL {r['mean_kl']:.2e}, max {r['max_kl']:.2e}, top-1 {r['top1']:.4f} "
                  f"({r['top1_decided']:.4f} of {r['decided']} decided), holds {r['holds']}", flush=True)
    print(table(rows))
    results.write(args, rows)


if __name__ == "__main__":
    main()
