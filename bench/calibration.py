"""Calibration tokens from a large text file: the windows read of a file over
passes.calibrate.WHOLE_TEXT bytes against reading and tokenising all of it, in the same run.

The file is WikiText-2's raw test text (../shared) repeated to --mib MiB in a temporary
folder; --n-seq windows of --seq-len tokens with the World tokenizer, as `rwkvlite compress
--calibration FILE` takes them. Reported: seconds and the process's peak RSS after each
(the whole read last, since peak RSS only grows).

usage: python bench/calibration.py [--mib 64] [--n-seq 32] [--seq-len 256] [--save [NAME]]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from rwkvlite.passes import calibrate
from rwkvlite.tokenizer import load_tokenizer
from rwkvlite.utils.memory import peak_mib
from rwkvlite.utils.paths import shared_path

import results  # bench/results.py


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--n-seq", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=256)
    results.add_argument(ap, "calibration")
    args = ap.parse_args()
    with open(shared_path("data", "wikitext-2-raw", "wiki.test.raw"), encoding="utf-8") as f:
        text = f.read()
    tok = load_tokenizer("world")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "corpus.txt")
        with open(path, "w", encoding="utf-8") as f:
            for _ in range(args.mib * 2**20 // len(text.encode()) + 1):
                f.write(text)
        print(f"{path}: {os.path.getsize(path) / 1e6:.1f} MB; {args.n_seq} x {args.seq_len} tokens")
        table = []
        for name, limit in (("windows", calibrate.WHOLE_TEXT), ("whole file", 1 << 62)):
            calibrate.WHOLE_TEXT = limit
            start = time.perf_counter()
            rows = calibrate.calibration_set(None, path, args.n_seq, args.seq_len, tok)
            seconds = time.perf_counter() - start
            print(f"{name:10s} {seconds:7.2f} s   peak RSS {peak_mib():6.0f} MiB   {tuple(rows.shape)}")
            table.append({"read": name, "file_mb": os.path.getsize(path) / 1e6, "seconds": seconds,
                          "peak_rss_mib": peak_mib()})
    results.write(args, table)


if __name__ == "__main__":
    main()
