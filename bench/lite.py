"""RWKV-Lite techniques one by one and stacked: memory per component against quality.

For each model (the ref-world models when trained, else rwkv.cpp's tiny 5v2), files are
built with `rwkvlite.compress.compress` and evaluated from the file:
  fp16           the original, 16-bit
  lowrank        SVD factors (rank width/8) of r/k/v(/g) + recovery distillation
  ffn_predictor  MLP + 1-bit key predictors, masked channel-mix
  cluster_head   clustered head (K=200, p=0.95)
  emb_cache      ln0 folded into the embedding, LRU cache of --cache-rows rows
  lite           all four;  lite-int8 / lite-int4: then RTN of every matrix
Columns: stored MB and weight MB resident while generating (eval/memory.py: measured access
counts on the evaluation text), each as a ratio to fp16; MB read per token; WikiText-2
token ppl and bits/byte; LAMBADA accuracy; KL(original || compressed) and top-1 agreement.

usage: python bench/lite.py [--models PATH ...] [--only VARIANT ...] [--keep DIR [--reuse]] [--json out.json]
                           [--save [NAME]]   (bench/results/NAME.json: the table, bench/results.py)
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from rwkvlite import eval as ev
from rwkvlite.errors import RWKVLiteError
from rwkvlite.compress import compress
from rwkvlite.eval.memory import accounting, recording
from rwkvlite.format.container import read as read_file
from rwkvlite.loaders import load_model
from rwkvlite.tokenizer import tokenizer_for
from rwkvlite.utils.paths import shared_path

import results  # bench/results.py

REF = [p for p in ("runs/ref-world-v7/model.safetensors", "runs/ref-world-v5/model.safetensors") if os.path.exists(p)]
DEFAULT_MODELS = REF or [shared_path("models", "rwkvcpp-tiny", "tiny-rwkv-5v2-730K-FP32.bin")]
TRAIN_TEXT = [shared_path("data", "kjv", "kjv.txt"), shared_path("data", "tinyshakespeare", "input.txt")]


def variants(recover_steps: int) -> list[tuple[str, str | None, list]]:
    """(name, built on, recipe): the stack reuses the recovered low-rank model."""
    recover = {"recover": {"steps": recover_steps, "files": TRAIN_TEXT}}
    return [("fp16", None, []),
            ("lowrank", None, [{"lowrank": {"factor": 8}}, recover]),
            ("ffn_predictor", None, [{"ffn_predictor": {}}]),
            ("cluster_head", None, [{"cluster_head": {}}]),
            ("emb_cache", None, [{"fold_ln0": {}}]),
            ("lite", "lowrank", [{"ffn_predictor": {}}, {"cluster_head": {}}, {"fold_ln0": {}}]),
            ("lite-int8", "lite", [{"rtn": {"bits": 8}}]),
            ("lite-int4", "lite", [{"rtn": {"bits": 4, "group_size": 64}}])]


def _manifest(path) -> dict | None:
    """The file's manifest if it reads back valid, else None (rebuild it)."""
    try:
        return read_file(path)[0]
    except RWKVLiteError:
        return None


def evaluate(path, original, tok, text, items, cache_rows) -> dict:
    model = load_model(path)
    with recording(model) as seen:
        ppl = ev.perplexity(model, tok, text, ctx=512, progress=False)
    mem = accounting(path, model, seen, tok.encode(text), cache_rows)
    lam = ev.lambada(model, tok, items, progress=False)
    fid = ev.fidelity(original, model, tok, text, ctx=512, progress=False)
    return {"ppl": ppl["ppl"], "bits_per_byte": ppl["bits_per_byte"], "lambada_acc": lam["accuracy"],
            "kl": fid["kl_mean"], "top1": fid["top1_agreement"], "memory": mem}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--calibration", default=shared_path("data", "kjv", "kjv.txt"))
    ap.add_argument("--calib-seqs", type=int, default=32)
    ap.add_argument("--calib-len", type=int, default=256)
    ap.add_argument("--recover-steps", type=int, default=150)
    ap.add_argument("--cache-rows", type=int, default=1024)
    ap.add_argument("--text-bytes", type=int, default=60_000)
    ap.add_argument("--lambada", type=int, default=300)
    ap.add_argument("--only", nargs="*", default=None, help="variant names to run")
    ap.add_argument("--keep", default=None, help="folder to keep the compressed files in")
    ap.add_argument("--reuse", action="store_true",
                    help="use a file already in --keep when it reads back valid instead of rebuilding it")
    ap.add_argument("--json", default=None)
    results.add_argument(ap, "lite")
    args = ap.parse_args()
    text = ev.read_text(shared_path("data", "wikitext-2-raw", "wiki.test.raw"))[:args.text_bytes]
    items = ev.read_lambada(shared_path("data", "lambada_test.jsonl"))[:args.lambada]
    rows = []
    print(f"{'model':<16} {'variant':<14} {'stored MB':>9} {'x fp16':>6} {'resident MB':>11} {'x fp16':>6} "
          f"{'read MB/tok':>11} {'tok ppl':>9} {'bits/B':>7} {'LAMB':>6} {'KL':>7} {'top-1':>6} {'build s':>7}", flush=True)
    for model_path in args.models:
        name = os.path.basename(os.path.dirname(model_path)) if model_path.endswith("model.safetensors") \
            else os.path.basename(model_path)[:16]
        original = load_model(model_path)
        tok = tokenizer_for(original.config)
        folder = args.keep or tempfile.mkdtemp()
        os.makedirs(folder, exist_ok=True)
        files, base = {}, None
        for variant, built_on, recipe in variants(args.recover_steps):
            if args.only is not None and variant not in args.only and variant != "fp16":
                continue
            out = os.path.join(folder, f"{name}-{variant}.rwkvlite")
            start = time.perf_counter()
            manifest = _manifest(out) if args.reuse and args.keep and os.path.exists(out) else None
            if manifest:
                report = manifest.get("report") or {}
                build_s = None
            else:
                src = files.get(built_on, model_path)
                report = compress(src, out, recipe, calibration=args.calibration, n_seq=args.calib_seqs,
                                  seq_len=args.calib_len, progress=False)
                build_s = time.perf_counter() - start
            files[variant] = out
            r = {"model": name, "variant": variant, "build_s": build_s, "passes": report.get("passes"),
                 **evaluate(out, original, tok, text, items, args.cache_rows)}
            m = r["memory"]["total"]
            base = base if variant != "fp16" else m
            r["stored_ratio"], r["resident_ratio"] = base["stored"] / m["stored"], base["resident"] / m["resident"]
            rows.append(r)
            print(f"{name:<16} {variant:<14} {m['stored'] / 1e6:>9.2f} {r['stored_ratio']:>6.2f} "
                  f"{m['resident'] / 1e6:>11.2f} {r['resident_ratio']:>6.2f} {m['read_per_token'] / 1e6:>11.2f} "
                  f"{r['ppl']:>9.2f} {r['bits_per_byte']:>7.4f} {r['lambada_acc']:>6.4f} {r['kl']:>7.4f} "
                  f"{r['top1']:>6.3f} {'reused' if build_s is None else f'{build_s:.0f}':>7}", flush=True)
    results.write(args, rows, [table_row(r) for r in rows])


def table_row(r: dict) -> dict:
    """The printed table's figures of one variant (no pass reports or build times)."""
    m = r["memory"]["total"]
    return {"model": r["model"], "variant": r["variant"], "stored_mb": m["stored"] / 1e6,
            "stored_ratio": r["stored_ratio"], "resident_mb": m["resident"] / 1e6,
            "resident_ratio": r["resident_ratio"], "read_mb_per_token": m["read_per_token"] / 1e6,
            "ppl": r["ppl"], "bits_per_byte": r["bits_per_byte"], "lambada_acc": r["lambada_acc"],
            "kl": r["kl"], "top1": r["top1"]}


if __name__ == "__main__":
    main()
