"""The `rwkvlite` command. Thin: each flag is the Python API's parameter of the same name.

Any RWKVLiteError becomes one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from .errors import RWKVLiteError
from .utils.paths import shared_path

SHARED_DEMO = os.path.join("models", "rwkvcpp-tiny", "tiny-rwkv-5v2-730K-FP32.bin")


def default_model() -> str:
    """The model `rwkvlite demo` runs without arguments: the bundled demo model, or until
    there is one, rwkv.cpp's tiny RWKV-5.2 from the shared data folder."""
    bundled = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "demo.safetensors")
    if os.path.exists(bundled):
        return bundled
    path = shared_path(SHARED_DEMO)
    if not os.path.exists(path):
        raise RWKVLiteError(f"no default model: put the shared data folder at ../shared or set RWKVLITE_SHARED "
                            f"(it must hold {SHARED_DEMO})")
    return path


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


def cmd_inspect(args) -> None:
    from .loaders import load_model
    from .model.inspect import summary

    model = load_model(args.model, dtype=None)  # bytes as stored
    s = summary(model)
    s["source"] = model.source
    from .format import is_compressed, size_report

    if is_compressed(args.model):  # the decoded model's bytes are not the file's: report both
        s["file"] = size_report(args.model)
        s["structure"] = sorted(model.source.get("structure", {}))
        if not args.json:
            print_summary(s)
            f = s["file"]
            print(f"compressed file: {_fmt_bytes(f['file_bytes'])}, {f['bits_per_weight']:.3f} bits/weight; structure: "
                  f"{', '.join(s['structure']) or 'plain'}")
            for enc, slot in f["by_encoding"].items():
                print(f"  {enc:<14} {slot['tensors']:>4} tensors {slot['weights']:>12,} weights "
                      f"{_fmt_bytes(slot['bytes']):>12} {slot['bits_per_weight']:>7.3f} bits/weight")
            return
    if args.json:
        json.dump(s, sys.stdout, indent=1)
        print()
    else:
        print_summary(s)


def _stream(model, tok, args, label: str = "") -> None:
    """Stream a generation to stdout (rwkvlite/generate.py: one loop for either path)."""
    from .generate import generate

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
    from .model.stepper import Stepper
    from .tokenizer import tokenizer_for

    return Stepper(model), tokenizer_for(model.config, args.tokenizer)


def cmd_generate(args) -> None:
    from .loaders import load_model

    _stream(*_torch(load_model(args.model, device=args.device), args), args)


def cmd_demo(args) -> None:
    from .loaders import load_model
    from .model.inspect import summary

    path = default_model()
    print(f"model: {path}")
    model = load_model(path)
    print_summary(summary(model))
    print("\n--- generation (temperature 1.0, top-p 0.85, seed 0) ---")
    _stream(*_torch(model, args), args)


TASKS = ("wikitext", "lambada", "piqa", "fidelity")


def cmd_eval(args) -> None:
    from . import eval as ev
    from .eval.results import record, write_json
    from .loaders import load_model
    from .tokenizer import tokenizer_for

    model = load_model(args.model, device=args.device)
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


def _lean(args):
    """The lean runtime on a compressed file, and its tokenizer (no PyTorch imported)."""
    from types import SimpleNamespace

    from .runtime import Runtime
    from .tokenizer import tokenizer_for

    rt = Runtime(args.model, threads=args.threads, exact=args.exact)
    hint = args.tokenizer or rt.w.manifest.get("tokenizer")
    return rt, tokenizer_for(SimpleNamespace(vocab_size=rt.vocab_size), hint)


def cmd_run(args) -> None:
    _stream(*_lean(args), args, ", lean runtime")


def cmd_chat(args) -> None:
    """A line-by-line chat: 'User: ...' / 'Assistant:' turns, the state carried between them."""
    from .generate import generate
    from .sampling import seeded

    rt, tok = _lean(args)
    state, rng = None, seeded(args.seed)  # one random stream for the whole chat
    print("chat: type a message, an empty line or Ctrl-D to stop", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        reply = ""
        for piece in generate(rt, tok, f"User: {line.strip()}\n\nAssistant:", max_tokens=args.max_tokens,
                              temperature=args.temperature, top_p=args.top_p, state=state, rng=rng):
            reply += piece
            if "\n\n" in reply:
                break
            sys.stdout.write(piece)
            sys.stdout.flush()
        state = rt.state
        print()


def cmd_bench(args) -> None:
    import importlib

    # the lean runtime before numpy (which .format imports): numpy's BLAS held to one thread, for the
    # PyTorch path too, which does not use numpy's BLAS
    importlib.import_module(".runtime", __package__)
    from .format import is_compressed

    sizes = vars_of(args, "prompt_tokens", "gen_tokens")
    if is_compressed(args.model):  # the lean runtime, in this torch-free process
        from .runtime.bench import bench_file

        f = bench_file(args.model, **sizes, threads=args.threads, exact=args.exact)
    else:
        from .eval.speed import bench

        f = bench(args.model, **sizes, device=args.device)
    reads = "" if f["bytes_read_per_token"] is None else f"   reads {f['bytes_read_per_token'] / 1e6:.2f} MB/token"
    engine = {"c": "lean runtime, C kernels", "numpy": "lean runtime, numpy", "torch": "PyTorch"}[f["kernels"]]
    print(f"{engine} ({f['threads']} threads): load {f['load_s']:.2f} s   prefill {f['prefill_ms_per_token']:.2f} "
          f"ms/token (first touch of the file included)   decode {f['decode_ms_per_token']:.2f} ms/token, median "
          f"{f['decode_ms_per_token_median']:.2f} ({f['decode_tokens_per_s']:.1f} tok/s){reads}")
    print(f"peak RSS: before load {f['rss_before_load_mib']:.0f} MiB, loading {f['peak_rss_load_mib']:.0f} MiB, "
          f"generating {f['peak_rss_generate_mib']:.0f} MiB" + ("" if f["peak_per_phase"] else
                                                                " (whole-process peaks: no per-phase reset here)"))
    if f["rss_end_anon_mib"] is not None:
        print(f"RSS at the end: {f['rss_end_anon_mib']:.0f} MiB anonymous + {f['rss_end_file_mib']:.0f} MiB of "
              "memory-mapped file pages (clean, droppable under memory pressure)")
    if args.json and f["kernels"] == "torch":
        from .eval.results import record, write_json

        write_json([record(args.model, "bench", f, sizes)], args.json)
    elif args.json:  # no PyTorch in this process: the record without its environment
        from .utils.io import atomic_path

        with atomic_path(args.json) as tmp, open(tmp, "w") as out:
            json.dump([{"task": "bench-lean", "model": args.model, "figures": f, "settings": sizes}], out, indent=1)


def cmd_report(args) -> None:
    from .eval.report import write_report

    out = write_report(args.results, args.out)
    print(f"wrote {out['markdown']}" + (f" and {out['plot']}" if out["plot"] else " (no quality figure to plot)"))


def cmd_train(args) -> None:
    from .train import TrainConfig, train

    cfg = TrainConfig.from_json(args.config, out_dir=args.out_dir, max_steps=args.max_steps, device=args.device)
    log = train(cfg, resume=not args.no_resume)
    print(f"trained {log['parameters']:,} parameters for {cfg.max_steps} steps in {log['train_seconds']:.0f} s; "
          f"validation loss {log['final_val_loss']:.4f} nats/token "
          f"(unigram entropy {log['unigram_entropy']:.3f}); model in {cfg.out_dir}/model.safetensors")


def print_quant_report(report: dict, out=sys.stdout) -> None:
    """The per-matrix report as a table, then the file's own accounting."""
    print(f"{'tensor':<32} {'shape':>12} {'kind':>11} {'P_coarse':>9} {'P_fine':>10} {'bits/w':>7} {'out err':>8}",
          file=out)
    for r in report["layers"] + report["mix_vectors"]:
        shape = "x".join(map(str, r["shape"]))
        pc, pf = (f"{r['coarse_proxy']:.4f}", f"{r['fine_proxy']:.4g}") if "coarse_proxy" in r else ("-", "-")
        print(f"{r['name']:<32} {shape:>12} {r['kind']:>11} {pc:>9} {pf:>10} {r['bits_per_weight']:>7.3f} "
              f"{r['output_error']:>8.4f}", file=out)
    f = report["file"]
    print(f"matrices: {len(report['layers'])} ({report['sq_share']:.0%} SQ), {report['quantized_bits_per_weight']:.3f} "
          f"bits/weight counting codes, scales, zeros and codebooks; thresholds {report['thresholds']}", file=out)
    kept = report["kept_16bit"]
    print(f"kept 16-bit: {kept['params']:,} params ({', '.join(kept['groups'])}); file {_fmt_bytes(f['file_bytes'])}, "
          f"{f['bits_per_weight']:.3f} bits/weight over all {f['weights']:,} weights; {report['seconds']:.1f} s",
          file=out)


def cmd_quantize(args) -> None:
    from .compress import check_config, quantize
    from .eval.results import write_json

    cfg = check_config(method=args.method, bits=args.bits, group_size=args.group_size, vq_dim=args.vq_dim,
                       vq_group=args.vq_group, sq_share=args.sq_share, act_order=args.act_order,
                       mix_bits=args.mix_bits, quantize_head=args.quantize_head,
                       quantize_embedding=args.quantize_embedding)
    report = quantize(args.model, args.out, cfg, calibration=args.calibration, n_seq=args.calib_seqs,
                      seq_len=args.calib_len, tokenizer=args.tokenizer, device=args.device)
    print_quant_report(report)
    print(f"wrote {args.out}")
    if args.report:
        write_json(report, args.report)


def cmd_compress(args) -> None:
    from .compress import compress
    from .eval.results import write_json

    report = compress(args.model, args.out, args.recipe, calibration=args.calibration, n_seq=args.calib_seqs,
                      seq_len=args.calib_len, tokenizer=args.tokenizer, device=args.device)
    for r in report["passes"]:
        figures = {k: v for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        print(f"{r['pass']:<14} " + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in figures.items()))
    f = report["file"]
    print(f"wrote {args.out}: {_fmt_bytes(f['file_bytes'])}, {f['bits_per_weight']:.3f} bits/weight over "
          f"{f['weights']:,} weights")
    if args.report:
        write_json(report, args.report)


def vars_of(args, *names) -> dict:
    return {n: getattr(args, n) for n in names}


def _int_at_least(low: int):
    """An argparse type: an integer of at least `low` (below it, argparse's one-line error)."""
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value

    parse.__name__ = "int"  # argparse's message for text that is no integer: "invalid int value"
    return parse


_positive_int = _int_at_least(1)


def _add_threads(p) -> None:
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="threads of the lean runtime's kernels (default: one per core; 1 on a busy machine)")
    p.add_argument("--exact", action="store_true", help="float32 activations in every kernel (default: fast mode)")


def _add_sampling(p) -> None:
    p.add_argument("--max-tokens", dest="max_tokens", type=_int_at_least(0), default=100)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", dest="top_p", type=float, default=0.85)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--tokenizer", default=None, help="'bytes', 'world', or a vocab/tokenizer file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rwkvlite", description="Compress, run and measure RWKV models.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="version, shapes, parameter and byte counts per group")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("generate", help="stream text from a prompt")
    p.add_argument("model")
    p.add_argument("--prompt", required=True)
    p.add_argument("--device", default=None)
    _add_sampling(p)
    p.set_defaults(func=cmd_generate)
    p = sub.add_parser("eval", help="perplexity / bits per byte, LAMBADA, PIQA")
    p.add_argument("model")
    p.add_argument("--tasks", nargs="+", default=["wikitext", "lambada"], help=f"any of {', '.join(TASKS)}")
    p.add_argument("--limit", type=_positive_int, default=None, help="first N tokens (wikitext) or items")
    p.add_argument("--json", default=None, help="write results here")
    p.add_argument("--ctx", type=_positive_int, default=512, help="tokens per forward pass")
    p.add_argument("--windows", action="store_true", help="fixed windows without carried state")
    p.add_argument("--text", default=None, help="text file for perplexity (default WikiText-2 raw test)")
    p.add_argument("--lambada", default=None)
    p.add_argument("--piqa", default=None)
    p.add_argument("--reference", default=None, help="original model for the fidelity task")
    p.add_argument("--no-verify", dest="no_verify", action="store_true", help="skip the LAMBADA checksum")
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("bench", help="load time, peak RSS per phase and speed (compressed files: lean runtime)")
    p.add_argument("model")
    p.add_argument("--prompt-tokens", dest="prompt_tokens", type=_positive_int, default=64,
                   help="tokens fed before timing")
    p.add_argument("--gen-tokens", dest="gen_tokens", type=_positive_int, default=128)
    p.add_argument("--json", default=None)
    p.add_argument("--device", default=None)
    _add_threads(p)
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("report", help="markdown table and PNG plot from result JSON files")
    p.add_argument("results", nargs="+")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("train", help="train or continue a model from a JSON config")
    p.add_argument("--config", required=True)
    p.add_argument("--out-dir", dest="out_dir", default=None, help="override the config's out_dir")
    p.add_argument("--max-steps", dest="max_steps", type=_positive_int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--no-resume", dest="no_resume", action="store_true", help="ignore an existing checkpoint")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("quantize", help="post-training quantisation to one compressed file")
    p.add_argument("model")
    p.add_argument("-o", "--out", required=True, help="the compressed file to write")
    p.add_argument("--method", default="rwkvquant", help="rtn, gptq, gptvq or rwkvquant (the proxy-guided hybrid)")
    p.add_argument("--bits", type=int, default=3, help="bits per weight of the codes, 2 to 8")
    p.add_argument("--group-size", dest="group_size", type=_positive_int, default=128, help="SQ: input columns per scale")
    p.add_argument("--vq-dim", dest="vq_dim", type=int, default=2, help="VQ: weights per codebook vector (1 or 2)")
    p.add_argument("--vq-group", dest="vq_group", type=_positive_int, default=256, help="VQ: input columns per codebook")
    p.add_argument("--sq-share", dest="sq_share", type=float, default=0.9, help="rwkvquant: target share of SQ")
    p.add_argument("--act-order", dest="act_order", action="store_true", help="GPTQ: columns by Hessian diagonal")
    p.add_argument("--mix-bits", dest="mix_bits", type=int, default=4, help="mix-vector codebook bits, 0 keeps 16-bit")
    p.add_argument("--quantize-head", dest="quantize_head", action="store_true")
    p.add_argument("--quantize-embedding", dest="quantize_embedding", action="store_true")
    p.add_argument("--calibration", default="self", help="a text file, or 'self' (the model writes its own)")
    p.add_argument("--calib-seqs", dest="calib_seqs", type=_positive_int, default=32)
    p.add_argument("--calib-len", dest="calib_len", type=_positive_int, default=256)
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--report", default=None, help="write the report as JSON here")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_quantize)
    p = sub.add_parser("compress", help="run a compression recipe (preset or JSON file) into one file")
    p.add_argument("model")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--recipe", default="lite", help="int8, int4, rwkvquant, lite, lite-int8, lite-int4, or a JSON file")
    p.add_argument("--calibration", default="self", help="a text file (needed by 'recover'), or 'self'")
    p.add_argument("--calib-seqs", dest="calib_seqs", type=_positive_int, default=32)
    p.add_argument("--calib-len", dest="calib_len", type=_positive_int, default=256)
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--report", default=None, help="write the report as JSON here")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_compress)
    p = sub.add_parser("run", help="generate from a compressed file with the lean runtime (no PyTorch)")
    p.add_argument("model")
    p.add_argument("--prompt", required=True)
    _add_sampling(p)
    _add_threads(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("chat", help="chat with a compressed file (lean runtime, streaming)")
    p.add_argument("model")
    _add_sampling(p)
    _add_threads(p)
    p.set_defaults(func=cmd_chat)
    p = sub.add_parser("demo", help="inspect and run the default model (no arguments needed)")
    p.add_argument("--prompt", default="\nROMEO:")
    _add_sampling(p)
    p.set_defaults(func=cmd_demo, seed=0)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except RWKVLiteError as e:
        print(f"rwkvlite: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nrwkvlite: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
