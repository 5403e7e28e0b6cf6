"""Sequence-mode throughput against its matrix-multiplication floor, and step-mode latency.

Model: randomly initialised RWKV-7 with World 0.1B shapes (12 layers, width 768, vocab 65536).
Floor: the same model's matrix multiplications alone (every nn.Linear and LoRA-like matrix,
and the head), on activations of the same shape, timed in the same run. The ratio
sequence-time / floor-time says how much the rest (WKV, norms, element-wise) costs; target <= 2.

usage: python bench/forward.py [--tokens 512] [--layers 12] [--width 768] [--vocab 65536] [--repeat 3] [--save [NAME]]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
from rwkvlite.model import RWKVConfig  # noqa: E402
from rwkvlite.model.init import random_model  # noqa: E402

import results  # noqa: E402  bench/results.py


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matrices(model):
    """Every weight the forward pass multiplies by, as (weight [in, out]) ready for x @ w."""
    out = []
    for name, p in model.named_parameters():
        if name == "emb.weight" or p.dim() != 2 or name.endswith("r_k"):
            continue
        out.append(p.t() if name.endswith(".weight") else p)  # nn.Linear stores [out, in]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=65536)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--json", default=None)
    results.add_argument(ap, "forward")
    args = ap.parse_args()
    torch.manual_seed(0)
    config = RWKVConfig("7", n_layer=args.layers, n_embd=args.width, vocab_size=args.vocab)
    model = random_model(config).eval()
    tokens = torch.randint(0, args.vocab, (1, args.tokens))
    weights = [w.contiguous() for w in matrices(model)]
    x = {w.shape[0]: torch.randn(args.tokens, w.shape[0]) for w in weights}

    with torch.no_grad():
        model(tokens[:, :64])  # warm up
        seq = best_of(lambda: model(tokens), args.repeat)
        floor = best_of(lambda: [x[w.shape[0]] @ w for w in weights], args.repeat)

        def steps():
            _, state = model(tokens[:, :1])
            for t in range(1, args.steps + 1):
                _, state = model(tokens[:, t:t + 1], state)
        step = best_of(steps, args.repeat) / (args.steps + 1)

    result = {
        "model": f"RWKV-7 random, L{args.layers} D{args.width} V{args.vocab}",
        "threads": torch.get_num_threads(), "tokens": args.tokens,
        "sequence_s": round(seq, 4), "sequence_tokens_per_s": round(args.tokens / seq, 1),
        "matmul_floor_s": round(floor, 4), "ratio_to_floor": round(seq / floor, 2),
        "step_ms_per_token": round(step * 1e3, 2),
    }
    print(f"{result['model']}, {result['threads']} threads, T={args.tokens}")
    print(f"  sequence mode : {seq:.3f} s  ({result['sequence_tokens_per_s']} tokens/s)")
    print(f"  matmul floor  : {floor:.3f} s  -> ratio {result['ratio_to_floor']} (target <= 2)")
    print(f"  step mode     : {result['step_ms_per_token']} ms/token")
    results.write(args, result, [result])


if __name__ == "__main__":
    main()
