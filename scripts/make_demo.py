"""Make the bundled demo's compressed file, src/rwkvlite/assets/demo.rwkvlite, from the checkpoint
beside it (demo.safetensors, trained by `rwkvlite train --config configs/demo.json`), so that
`rwkvlite demo` runs on the runtime-only install (no PyTorch). Needs `pip install ".[compress]"`.

The recipe is int8 (round-to-nearest, 8-bit codes, a scale per 128 weights): about a quarter of
the checkpoint's bytes, and the demo writes as the checkpoint does (tests/test_install.py). The
manifest names the checkpoint by its path in the repository and the tokenizer ('bytes'); the
file is written atomically (format/container.py). Its bytes differ between runs only in the
passes' timings in the report.

usage: python scripts/make_demo.py [-o OUT]
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join("src", "rwkvlite", "assets")  # relative to ROOT: the manifest names no machine's folders
CHECKPOINT = os.path.join(ASSETS, "demo.safetensors")
RECIPE = "int8"
TOKENIZER = "bytes"


def make(out: str) -> dict:
    """Compress the demo checkpoint into `out`; returns compress()'s report."""
    sys.path.insert(0, os.path.join(ROOT, "src"))
    from rwkvlite.compress import compress

    out = os.path.abspath(out)
    os.chdir(ROOT)
    return compress(CHECKPOINT, out, RECIPE, tokenizer=TOKENIZER, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--out", default=os.path.join(ROOT, ASSETS, "demo.rwkvlite"))
    args = parser.parse_args()
    f = make(args.out)["file"]
    print(f"wrote {args.out}: {f['file_bytes']:,} bytes, {f['bits_per_weight']:.3f} bits/weight")


if __name__ == "__main__":
    main()
