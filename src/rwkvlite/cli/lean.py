"""`rwkvlite run`, `chat` and `bench`: compressed files through the lean runtime, no PyTorch imported."""
from __future__ import annotations

import json
import sys

from .models import _stream


def _lean(args):
    """The lean runtime on a compressed file, and its tokenizer (no PyTorch imported)."""
    from types import SimpleNamespace

    from ..runtime import Runtime
    from ..tokenizer import tokenizer_for

    rt = Runtime(args.model, threads=args.threads, exact=args.exact)
    hint = args.tokenizer or rt.w.manifest.get("tokenizer")
    return rt, tokenizer_for(SimpleNamespace(vocab_size=rt.vocab_size), hint)


def cmd_run(args) -> None:
    _stream(*_lean(args), args, ", lean runtime")


def cmd_chat(args) -> None:
    """A line-by-line chat: 'User: ...' / 'Assistant:' turns, the state carried between them."""
    from ..generate import generate
    from ..sampling import seeded

    rt, tok = _lean(args)
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
