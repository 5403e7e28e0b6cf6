"""Write a randomly initialised checkpoint of given shapes (BlinkDL .pth), for benchmarks.

usage: python bench/make_random_model.py -o rwkv7-0.1b.pth [--version 7] [--layers 12] [--width 768]
       [--vocab 65536] [--head-size 64] [--dtype float16]
Default: RWKV-7 with World 0.1B shapes.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
from rwkvlite.model import RWKVConfig  # noqa: E402
from rwkvlite.model.init import random_model  # noqa: E402
from rwkvlite.utils.io import atomic_path  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("-o", "--out", required=True)
ap.add_argument("--version", default="7")
ap.add_argument("--layers", type=int, default=12)
ap.add_argument("--width", type=int, default=768)
ap.add_argument("--vocab", type=int, default=65536)
ap.add_argument("--head-size", type=int, default=64)
ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
config = RWKVConfig(a.version, n_layer=a.layers, n_embd=a.width, vocab_size=a.vocab, head_size=a.head_size)
model = random_model(config, a.seed, dtype=getattr(torch, a.dtype))
with atomic_path(a.out) as tmp:
    torch.save(model.state_dict(), tmp)
print(f"wrote {a.out}: RWKV-{a.version} L{a.layers} D{a.width} V{a.vocab}, "
      f"{sum(p.numel() for p in model.parameters()):,} parameters, {a.dtype}")
