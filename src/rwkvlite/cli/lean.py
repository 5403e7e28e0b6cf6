"""`rwkvlite run`, `chat`, `bench`, `inspect` and `demo`: compressed files through the lean
runtime and the format's manifest, no PyTorch imported (the runtime-only install runs them).
`bench` and `inspect` hand a checkpoint to the PyTorch path (models.py)."""
from __future__ import annotations

import json
import os
import sys

from ..errors import CheckpointError, RWKVLiteError
from ..utils.files import regular_file
from .models import _fmt_bytes, _stream, inspect_checkpoint, print_summary

# The bundled demo: a small byte-level RWKV-7 (`rwkvlite train --config configs/demo.json`),
# compressed by scripts/make_demo.py from its checkpoint (assets/demo.safetensors in the repository,
# not in the wheel).
DEMO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "demo.rwkvlite")


def default_model() -> str:
    """The compressed file `rwkvlite demo` runs without arguments: the bundled demo model."""
    if not os.path.exists(DEMO):
        raise RWKVLiteError(f"{DEMO}: the bundled demo model is missing; make it with scripts/make_demo.py "
                            "or reinstall rwkvlite")
    return DEMO


def _lean(args, path):
    """The lean runtime on a compressed file, and its tokenizer (no PyTorch imported)."""
    from types import SimpleNamespace

    from ..runtime import Runtime
    from ..tokenizer import tokenizer_for

    rt = Runtime(path, threads=args.threads, exact=args.exact)
    hint = args.tokenizer or rt.w.manifest.get("tokenizer")
    return rt, tokenizer_for(SimpleNamespace(vocab_size=rt.vocab_size), hint)


def print_makeup(s: dict) -> None:
    """A compressed file's summary (format.summary) and its own accounting (format.size_report)."""
    print_summary(s)
    f = s["file"]
    print(f"compressed file: {_fmt_bytes(f['file_bytes'])}, {f['bits_per_weight']:.3f} bits/weight; structure: "
          f"{', '.join(s['structure']) or 'plain'}")
    for enc, slot in f["by_encoding"].items():
        print(f"  {enc:<14} {slot['tensors']:>4} tensors {slot['weights']:>12,} weights "
              f"{_fmt_bytes(slot['bytes']):>12} {slot['bits_per_weight']:>7.3f} bits/weight")


def _makeup(path) -> dict:
    from ..format import container, size_report, summary

    read = container.read(path)  # once, for both
    s = summary(path, read)
    s["file"] = size_report(path, read)  # the decoded model's bytes are not the file's: report both
    s["structure"] = sorted(s["source"].get("structure", {}))
    return s


def cmd_inspect(args) -> None:
    """A compressed file from its manifest, without PyTorch; a checkpoint by the PyTorch path."""
    from ..format import is_compressed

    if not is_compressed(regular_file(args.model, CheckpointError)):
        inspect_checkpoint(args)
    elif args.json:
        json.dump(_makeup(args.model), sys.stdout, indent=1)
        print()
    else:
        print_makeup(_makeup(args.model))


def cmd_demo(args) -> None:
    path = default_model()
    print(f"model: {path}")
    print_makeup(_makeup(path))
    print(f"\n--- generation (temperature {args.temperature:g}, top-p {args.top_p:g}, seed {args.seed}) ---")
    _stream(*_lean(args, path), args, ", lean runtime")


def cmd_run(args) -> None:
    _stream(*_lean(args, args.model), args, ", lean runtime")


def cmd_chat(args) -> None:
    """A line-by-line chat: 'User: ...' / 'Assistant:' turns, the state carried between them."""
    from ..generate import generate
    from ..sampling import seeded

    rt, tok = _lean(args, args.model)
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="replace")  # input bytes that are not UTF-8 become U+FFFD, as --prompt's
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
    importlib.import_module("rwkvlite.runtime")
    from ..format import is_compressed

    sizes = {"prompt_tokens": args.prompt_tokens, "gen_tokens": args.gen_tokens}
    if is_compressed(args.model):  # the lean runtime, in this torch-free process
        from ..runtime.bench import bench_file

        f = bench_file(args.model, **sizes, threads=args.threads, exact=args.exact)
    else:
        from ..eval.speed import bench

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
        from ..eval.results import record, write_json

        write_json([record(args.model, "bench", f, sizes)], args.json)
    elif args.json:  # no PyTorch in this process: the record without its environment
        from ..utils.io import atomic_path

        with atomic_path(args.json) as tmp, open(tmp, "w") as out:
            json.dump([{"task": "bench-lean", "model": args.model, "figures": f, "settings": sizes}], out, indent=1)
