"""The `rwkvlite` command. Thin: each flag is the Python API's parameter of the same name.

Any RWKVLiteError becomes one line on stderr and exit status 2; so does a bad option (argparse).
The commands live by path: models.py (PyTorch path), lean.py (lean runtime), compressing.py.
A command that needs what the runtime-only install lacks (PyTorch) says so in one line, with the
install that brings it, exit status 2 (_missing below).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys

from ..errors import RWKVLiteError
from ..utils.files import output_file
from .compressing import cmd_compress, cmd_quantize
from .lean import cmd_bench, cmd_chat, cmd_demo, cmd_inspect, cmd_run
from .models import TASKS, cmd_eval, cmd_generate, cmd_report, cmd_train


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in one line (the usage is one --help away), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


def _number(low: float, high: float):
    """An argparse type: a finite number in [low, high] (NaN and infinities refused in one line)."""
    def parse(text: str) -> float:
        value = float(text)
        if not low <= value <= high:  # NaN fails both comparisons
            raise argparse.ArgumentTypeError(f"must be a number from {low} to {high}, not {text}")
        return value

    parse.__name__ = "number"
    return parse


def _seed(text: str) -> int:
    """A seed: an integer from 0 to 2^64 - 1."""
    value = int(text)
    if not 0 <= value < 1 << 64:
        raise argparse.ArgumentTypeError(f"must be from 0 to 2^64 - 1, not {text}")
    return value


_seed.__name__ = "int"


def _prompt(text: str) -> str:
    """Prompt text as given; bytes that are not UTF-8 (which Python hands over as surrogates)
    become U+FFFD, as a tokenizer could not encode them."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _output(text: str) -> str:
    """An output file's path, refused by the parser if it names a folder (utils/files.py)."""
    return output_file(text, argparse.ArgumentTypeError)


def _add_threads(p) -> None:
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="threads of the lean runtime's kernels (default: one per core; 1 on a busy machine)")
    p.add_argument("--exact", action="store_true", help="float32 activations in every kernel (default: fast mode)")


def _add_sampling(p) -> None:
    p.add_argument("--max-tokens", dest="max_tokens", type=_int_at_least(0), default=100)
    p.add_argument("--temperature", type=_number(0, 1e6), default=1.0, help="0: greedy")
    p.add_argument("--top-p", dest="top_p", type=_number(0, 1), default=0.85)
    p.add_argument("--seed", type=_seed, default=None)
    p.add_argument("--tokenizer", default=None, help="'bytes', 'world', or a vocab/tokenizer file")


def _add_calibration(p, what: str) -> None:
    """quantize's and compress's shared options: calibration data, tokenizer, report, device."""
    p.add_argument("--calibration", default="self", help=what)
    p.add_argument("--calib-seqs", dest="calib_seqs", type=_positive_int, default=32)
    p.add_argument("--calib-len", dest="calib_len", type=_positive_int, default=256)
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--report", default=None, type=_output, help="write the report as JSON here")
    p.add_argument("--device", default=None)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rwkvlite", description="Compress, run and measure RWKV models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("inspect", help="version, shapes, parameter and byte counts per group")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("generate", help="stream text from a prompt")
    p.add_argument("model")
    p.add_argument("--prompt", required=True, type=_prompt, help="bytes that are not UTF-8 become U+FFFD")
    p.add_argument("--device", default=None)
    _add_sampling(p)
    p.set_defaults(func=cmd_generate)
    p = sub.add_parser("eval", help="perplexity / bits per byte, LAMBADA, PIQA")
    p.add_argument("model")
    p.add_argument("--tasks", nargs="+", default=["wikitext", "lambada"], help=f"any of {', '.join(TASKS)}")
    p.add_argument("--limit", type=_positive_int, default=None, help="first N tokens (wikitext) or items")
    p.add_argument("--json", default=None, type=_output, help="write results here")
    p.add_argument("--ctx", type=_positive_int, default=512, help="tokens per forward pass")
    p.add_argument("--windows", action="store_true", help="fixed windows without carried state")
    p.add_argument("--text", default=None, help="text file for perplexity (default WikiText-2 raw test)")
    p.add_argument("--lambada", default=None)
    p.add_argument("--piqa", default=None)
    p.add_argument("--reference", default=None, help="original model for the fidelity task")
    p.add_argument("--no-verify", dest="no_verify", action="store_true", help="skip the LAMBADA checksum")
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--fast", action="store_true",
                   help="a compressed file as the lean runtime's fast mode computes it (x rounded where it rounds it)")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("bench", help="load time, peak RSS per phase and speed (compressed files: lean runtime)")
    p.add_argument("model")
    p.add_argument("--prompt-tokens", dest="prompt_tokens", type=_positive_int, default=64,
                   help="tokens fed before timing")
    p.add_argument("--gen-tokens", dest="gen_tokens", type=_positive_int, default=128)
    p.add_argument("--json", default=None, type=_output)
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
    p.add_argument("-o", "--out", required=True, type=_output, help="the compressed file to write")
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
    _add_calibration(p, "a text file, or 'self' (the model writes its own)")
    p.set_defaults(func=cmd_quantize)
    p = sub.add_parser("compress", help="run a compression recipe (preset or JSON file) into one file")
    p.add_argument("model")
    p.add_argument("-o", "--out", required=True, type=_output)
    p.add_argument("--recipe", default="lite", help="int8, int4, rwkvquant, lite, lite-int8, lite-int4, or a JSON file")
    _add_calibration(p, "a text file (needed by 'recover'), or 'self'")
    p.set_defaults(func=cmd_compress)
    p = sub.add_parser("run", help="generate from a compressed file with the lean runtime (no PyTorch)")
    p.add_argument("model")
    p.add_argument("--prompt", required=True, type=_prompt, help="bytes that are not UTF-8 become U+FFFD")
    _add_sampling(p)
    _add_threads(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("chat", help="chat with a compressed file (lean runtime, streaming)")
    p.add_argument("model")
    _add_sampling(p)
    _add_threads(p)
    p.set_defaults(func=cmd_chat)
    p = sub.add_parser("demo", help="inspect and run the bundled demo model (no arguments needed)")
    p.add_argument("--prompt", default="\nROMEO:", type=_prompt)
    _add_sampling(p)
    _add_threads(p)
    p.set_defaults(func=cmd_demo, seed=0)
    return parser


# Modules the runtime-only install (`pip install rwkvlite`) lacks, and the install that brings
# each (pyproject.toml's extras). PyTorch comes first: a command that needs any of the
# "compress" extra needs it, whichever of them it happened to import first.
EXTRAS = {"torch": "rwkvlite[compress]", "safetensors": "rwkvlite[compress]", "tqdm": "rwkvlite[compress]",
          "tokenizers": "tokenizers"}


def _missing(command: str, error: ModuleNotFoundError) -> str | None:
    """The one line for a command that imported a module this install lacks; None for a module
    that no install of rwkvlite leaves out (a real fault, left to its traceback).

    >>> _missing("eval", ModuleNotFoundError(name="tqdm.auto"))  # doctest: +SKIP
    'rwkvlite eval needs PyTorch: pip install "rwkvlite[compress]"'
    """
    module = (error.name or "").partition(".")[0]
    if module not in EXTRAS:
        return None
    if EXTRAS[module] == EXTRAS["torch"] and importlib.util.find_spec("torch") is None:
        module = "torch"
    what = "PyTorch" if module == "torch" else module
    return f'rwkvlite {command} needs {what}: pip install "{EXTRAS[module]}"'


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except RWKVLiteError as e:
        print(f"rwkvlite: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        line = _missing(args.command, e)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nrwkvlite: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return 0
