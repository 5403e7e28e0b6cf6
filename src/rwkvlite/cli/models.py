"""`rwkvlite generate`, `eval`, `report`, `train` and `inspect` of a checkpoint: the PyTorch path,
imported by each command when it runs (this module imports no PyTorch)."""
from __future__ import annotations

import json
import sys
import time

from ..errors import RWKVLiteError
from ..utils.paths import shared_path


def _fmt_bytes(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def print_summary(s: dict, out=sys.stdout) -> None:
    c = s["config"]
    print(f"RWKV-{c['version']}  layers {c['n_layer']}  width {c['n_embd']}  heads {s['n_head']} x "
          f"{c['head_size']}  ffn {c['dim_ffn']}  vocab {c['vocab_size']}  dtype {s['dtype']}", file=out)
    print(f"{'group':<12} {'params':>12} {'bytes':>12} {'share':>7}", file=out)
    for name, g in s["groups"].items():
        share = g["params"] / max(1, s["total"]["params"])
        print(f"{name:<12} {g['params']:>12,} {_fmt_bytes(g['bytes']):>12} {share:>7.1%}", file=out)
    print(f"{'total':<12} {s['total']['params']:>12,} {_fmt_bytes(s['total']['bytes']):>12}", file=out)


def inspect_checkpoint(args) -> None:
    """`rwkvlite inspect` of a checkpoint: loaded as a PyTorch model, bytes as stored."""
    from ..loaders import load_model
    from ..model.inspect import summary

    model = load_model(args.model, dtype=None)
    s = summary(model)
    s["source"] = model.source
    if args.json:
        json.dump(s, sys.stdout, indent=1)
        print()
    else:
        print_summary(s)


def _stream(model, tok, args, label: str = "") -> None:
    """Stream a generation to stdout (rwkvlite/generate.py: one loop for either path)."""
    from ..generate import generate

    sys.stdout.write(args.prompt)
    start, n = time.perf_counter(), 0
    for piece in generate(model, tok, args.prompt, max_tokens=args.max_tokens, temperature=args.temperature,
                          top_p=args.top_p, seed=args.seed):
        sys.stdout.write(piece)
        sys.stdout.flush()
        n += 1
    print(f"\n[{n} pieces in {time.perf_counter() - start:.2f} s{label}]", file=sys.stderr)


def _torch(model, args):
    """The PyTorch model as generate() sees a model (model/stepper.py), and its tokenizer."""
    from ..model.stepper import Stepper
    from ..tokenizer import tokenizer_for

    return Stepper(model), tokenizer_for(model.config, args.tokenizer)


def cmd_generate(args) -> None:
    from ..loaders import load_model

    _stream(*_torch(load_model(args.model, device=args.device), args), args)


TASKS = ("wikitext", "lambada", "piqa", "fidelity")


def cmd_eval(args) -> None:
    from .. import eval as ev
    from ..eval.results import record, write_json
    from ..loaders import load_model
    from ..tokenizer import tokenizer_for

    if args.fast:
        from ..format import is_compressed

        if not is_compressed(args.model):  # (before a model is loaded for nothing)
            raise RWKVLiteError(f"{args.model}: --fast reproduces the lean runtime, which runs compressed files only")
    model = load_model(args.model, device=args.device)
    if args.fast:
        from ..eval import fast_mode

        fast_mode.emulate(model, args.model)
    tok = tokenizer_for(model.config, args.tokenizer)
    records = []
    for task in args.tasks:
        if task == "wikitext":
            path = args.text or shared_path("data", "wikitext-2-raw", "wiki.test.raw")
            figures = ev.perplexity(model, tok, ev.read_text(path), ctx=args.ctx, stateful=not args.windows,
                                    limit=args.limit)
        elif task == "lambada":
            path = args.lambada or shared_path("data", "lambada_test.jsonl")
            figures = ev.lambada(model, tok, ev.read_lambada(path, verify=not args.no_verify), limit=args.limit)
        elif task == "fidelity":
            if not args.reference:
                raise RWKVLiteError("the fidelity task needs --reference MODEL (the original to compare with)")
            path = args.text or shared_path("data", "wikitext-2-raw", "wiki.test.raw")
            reference = load_model(args.reference, device=args.device)
            figures = ev.fidelity(reference, model, tok, ev.read_text(path), ctx=args.ctx, limit=args.limit)
        elif task == "piqa":
            path = args.piqa or shared_path("data", "piqa", "valid.jsonl")
            figures = ev.piqa(model, tok, ev.read_piqa(path), limit=args.limit)
        else:
            raise RWKVLiteError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
        settings = {"data": path, "limit": args.limit, "ctx": args.ctx, "reference": args.reference}
        records.append(record(args.model, task, figures, settings))
        print(f"{task:<9} " + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in figures.items()))
    if args.json:
        write_json(records, args.json)


def cmd_report(args) -> None:
    from ..eval.report import write_report

    out = write_report(args.results, args.out)
    print(f"wrote {out['markdown']}" + (f" and {out['plot']}" if out["plot"] else " (no quality figure to plot)"))


def cmd_train(args) -> None:
    from ..train import TrainConfig, train

    cfg = TrainConfig.from_json(args.config, out_dir=args.out_dir, max_steps=args.max_steps, device=args.device)
    log = train(cfg, resume=not args.no_resume)
    print(f"trained {log['parameters']:,} parameters for {cfg.max_steps} steps in {log['train_seconds']:.0f} s; "
          f"validation loss {log['final_val_loss']:.4f} nats/token "
          f"(unigram entropy {log['unigram_entropy']:.3f}); model in {cfg.out_dir}/model.safetensors")
