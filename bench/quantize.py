"""RWKVQuant against its baselines at matched bits per weight, and quantisation cost at 0.1B.

Quality (default): for each model, fp16 and RTN / GPTQ / GPTVQ / RWKVQuant (hybrid) at 3 and
4 bits, each written to a compressed file and evaluated from that file:
  bits/weight of the quantised matrices (from the file's bytes), whole-file MB,
  WikiText-2 raw test (bits/byte and token ppl, first --text-bytes bytes, state carried),
  LAMBADA accuracy and ppl (first --lambada items), KL(original || quantised) and top-1
  agreement on the same WikiText text.
Mix vectors stay 16-bit in the matched rows (the comparison is about the matrices);
"rwkvquant+mix" adds RWKVQuant's E[dx^2]-weighted codebooks for them at --mix-bits.
VQ gets the smallest codebook group (most codebooks) whose metadata does not exceed SQ's,
so VQ's bits per weight are at most SQ's at the same code bits.

Timing (--timing): quantise a randomly initialised RWKV-7 with 0.1B shapes (12 x 768, World
vocab) by RWKVQuant at 3 bits in a fresh process; print wall time and peak RSS (VmHWM).

usage: python bench/quantize.py [--models PATH ...] [--bits 3 4] [--json out.json] [--save [NAME]]
       python bench/quantize.py --timing [--save [NAME]]
--save writes the table to bench/results/NAME.json (bench/results.py).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

from rwkvlite import eval as ev
from rwkvlite.compress import quantize
from rwkvlite.loaders import load_model, save_model
from rwkvlite.passes.quantize import QuantConfig
from rwkvlite.tokenizer import tokenizer_for
from rwkvlite.utils.paths import shared_path

import results  # bench/results.py

DEFAULT_MODELS = [shared_path("models", "rwkvcpp-tiny", "tiny-rwkv-5v2-730K-FP32.bin")] + [
    p for p in ("runs/ref-world-v7/model.safetensors", "runs/ref-world-v5/model.safetensors") if os.path.exists(p)]
CALIBRATION = shared_path("data", "wikitext-2", "valid.txt")


def vq_group_matching_sq(rows: int, bits: int, group_size: int, dim: int = 2) -> int:
    """Smallest power-of-two VQ group whose codebook bits per weight stay within SQ's metadata."""
    sq_meta = (16 + bits) / group_size
    g = 2 * dim
    while (2 ** (bits * dim) * dim + 2) * 8 / (rows * g) > sq_meta:
        g *= 2
    return g


def evaluate(path, original, tok, text, lambada_items) -> dict:
    model = load_model(path)
    ppl = ev.perplexity(model, tok, text, ctx=512, progress=False)
    lam = ev.lambada(model, tok, lambada_items, progress=False)
    fid = ev.fidelity(original, model, tok, text, ctx=512, progress=False)
    return {"bits_per_byte": ppl["bits_per_byte"], "ppl": ppl["ppl"], "lambada_acc": lam["accuracy"],
            "lambada_ppl": lam["ppl"], "kl": fid["kl_mean"], "top1": fid["top1_agreement"]}


def quality(args) -> list[dict]:
    text = ev.read_text(shared_path("data", "wikitext-2-raw", "wiki.test.raw"))[:args.text_bytes]
    lambada_items = ev.read_lambada(shared_path("data", "lambada_test.jsonl"))[:args.lambada]
    rows = []
    for model_path in args.models:
        original = load_model(model_path)
        tok = tokenizer_for(original.config)
        name = os.path.basename(os.path.dirname(model_path)) if model_path.endswith("model.safetensors") \
            else os.path.basename(model_path)
        with tempfile.TemporaryDirectory() as tmp:
            fp16 = os.path.join(tmp, "fp16.safetensors")
            save_model(original.half(), fp16)
            original = load_model(model_path)
            rows.append({"model": name, "method": "fp16", "bits": 16, "matrix_bpw": 16.0,
                         "file_mb": os.path.getsize(fp16) / 1e6, **evaluate(fp16, original, tok, text, lambada_items)})
            print(_line(rows[-1]), flush=True)
            for bits in args.bits:
                vq_group = vq_group_matching_sq(original.config.n_embd, bits, args.group_size)
                for method, mix_bits in (("rtn", 0), ("gptq", 0), ("gptvq", 0), ("rwkvquant", 0),
                                         ("rwkvquant", args.mix_bits)):
                    cfg = QuantConfig(method=method, bits=bits, group_size=args.group_size, vq_group=vq_group,
                                      mix_bits=mix_bits, sq_share=args.sq_share)
                    out = os.path.join(tmp, f"{method}-{bits}.rwkvlite")
                    start = time.perf_counter()
                    report = quantize(model_path, out, cfg, calibration=CALIBRATION, n_seq=args.calib_seqs,
                                      seq_len=args.calib_len, progress=False)
                    rows.append({"model": name, "method": method + ("+mix" if mix_bits else ""), "bits": bits,
                                 "matrix_bpw": report["quantized_bits_per_weight"], "sq_share": report["sq_share"],
                                 "vq_group": vq_group, "quantize_s": time.perf_counter() - start,
                                 "file_mb": report["file"]["file_bytes"] / 1e6,
                                 **evaluate(out, original, tok, text, lambada_items)})
                    print(_line(rows[-1]), flush=True)
    return rows


def _line(r) -> str:
    return (f"{r['model']:<34} {r['method']:<14} {r['bits']:>4} {r['matrix_bpw']:>7.3f} {r['file_mb']:>8.2f} "
            f"{r['bits_per_byte']:>8.4f} {r['ppl']:>9.3f} {r['lambada_acc']:>7.4f} {r['lambada_ppl']:>10.2f} "
            f"{r.get('kl', 0):>7.4f} {r.get('top1', 1):>6.3f}")


HEADER = (f"{'model':<34} {'method':<14} {'bits':>4} {'mat bpw':>7} {'file MB':>8} {'bits/B':>8} {'tok ppl':>9} "
          f"{'LAMB acc':>7} {'LAMB ppl':>10} {'KL':>7} {'top-1':>6}")

TIMING_CHILD = r"""
import json, sys, time
from rwkvlite.compress import quantize
from rwkvlite.passes.quantize import QuantConfig
start = time.perf_counter()
report = quantize(sys.argv[1], sys.argv[2], QuantConfig(method="rwkvquant", bits=3), calibration="self",
                  n_seq=int(sys.argv[3]), seq_len=int(sys.argv[4]))
seconds = time.perf_counter() - start
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"seconds": seconds, "peak_rss_mib": int(hwm) / 1024, "sq_share": report["sq_share"],
                  "matrix_bpw": report["quantized_bits_per_weight"], "file_mb": report["file"]["file_bytes"] / 1e6}))
"""


def timing(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "rwkv7-0.1b.pth")
        subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "make_random_model.py"), "-o", src],
                       check=True)
        r = subprocess.run([sys.executable, "-c", TIMING_CHILD, src, os.path.join(tmp, "q.rwkvlite"),
                            str(args.calib_seqs), str(args.calib_len)], capture_output=True, text=True)
        if r.returncode:
            sys.exit(r.stderr)
        figures = json.loads(r.stdout.strip().splitlines()[-1])
    figures.update({"calibration": f"self-generated, {args.calib_seqs} x {args.calib_len} tokens",
                    "threads": torch.get_num_threads()})
    print(f"RWKV-7 0.1B shapes, RWKVQuant 3-bit: {figures['seconds']:.0f} s, peak RSS {figures['peak_rss_mib']:.0f} MiB, "
          f"{figures['matrix_bpw']:.3f} bits/weight in matrices ({figures['sq_share']:.0%} SQ), file "
          f"{figures['file_mb']:.1f} MB  (target: under 600 s)")
    return figures


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--bits", nargs="+", type=int, default=[3, 4])
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--sq-share", type=float, default=0.9)
    ap.add_argument("--mix-bits", type=int, default=4)
    ap.add_argument("--calib-seqs", type=int, default=32)
    ap.add_argument("--calib-len", type=int, default=256)
    ap.add_argument("--text-bytes", type=int, default=100_000)
    ap.add_argument("--lambada", type=int, default=500)
    ap.add_argument("--timing", action="store_true")
    ap.add_argument("--json", default=None)
    results.add_argument(ap, "quantize")
    args = ap.parse_args()
    if args.timing:
        result = timing(args)
    else:
        print(HEADER, flush=True)
        result = quality(args)
    # the quality table's rows without their build times, which a busy machine makes noise
    results.write(args, result, [result] if args.timing else
                  [{k: v for k, v in r.items() if k != "quantize_s"} for r in result])


if __name__ == "__main__":
    main()
