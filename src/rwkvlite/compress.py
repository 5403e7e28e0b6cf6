"""Compress a checkpoint into one rwkvlite file: the Python API behind `rwkvlite compress`
and `rwkvlite quantize`.

`compress` runs a recipe (rwkvlite.recipes: a preset, a JSON file or a list of
{pass name: options}) and writes one compressed file (rwkvlite.format) whose manifest holds
the recipe, every pass's report and the structure specs that rebuild the model. `quantize`
is the one-pass recipe [{"quantize": QuantConfig}]. Progress bars are drawn here, not by
the passes.

>>> summary = compress("model.pth", "model-lite.rwkvlite", "lite-int8",
...                    calibration="{shared}/data/kjv/kjv.txt")  # doctest: +SKIP
>>> report = quantize("model.pth", "model-3bit.rwkvlite", QuantConfig(method="rwkvquant", bits=3),
...                   calibration="{shared}/data/wikitext-2/valid.txt")  # doctest: +SKIP
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import asdict

from tqdm import tqdm

from . import format as compressed
from .errors import RWKVLiteError
from .loaders import load_model
from .passes import Context, QuantConfig, compress_model, config_for
from .passes.calibrate import calibration_set, calibration_text
from .passes.targets import value_columns
from .recipes import parse, to_json
from .tokenizer import tokenizer_for
from .utils.files import output_file
from .utils.paths import expand

__all__ = ["compress", "quantize", "check_config", "calibration_set", "calibration_text", "QuantConfig"]


def check_config(**options) -> QuantConfig:
    """QuantConfig from user options, with a one-line error for an unknown option or a bad value."""
    return config_for("quantize", options)


def _bars(enabled: bool):
    """The driver's progress display for a pass: (description, total) -> a context giving tick(i, n)."""
    @contextmanager
    def bar(description: str, total: int):
        with tqdm(total=total, desc=description, unit="block", file=sys.stderr, disable=not enabled,
                  leave=False) as b:
            yield lambda i, n: b.update(1)
    return bar


def _context(model, model_path, calibration, n_seq, seq_len, tokenizer, device, progress) -> Context:
    tok = tokenizer_for(model.config, tokenizer) if tokenizer or calibration != "self" else None
    # read now, so that a bad file fails before any pass runs
    text = calibration_text(expand(calibration), n_seq, seq_len) if calibration != "self" else None
    made = {}

    def tokens():  # calibration tokens, from the model as it is when a pass first needs them
        if "tokens" not in made:
            made["tokens"] = calibration_set(model, calibration, n_seq, seq_len, tok, text=text).to(
                model.emb.weight.device)
        return made["tokens"]

    return Context(tokens=tokens, calibration=calibration,
                   tokenizer=lambda: tok or tokenizer_for(model.config, tokenizer),
                   original=lambda: load_model(model_path, device=device), bars=_bars(progress),
                   show_training=progress)


def compress(model_path, out, recipe="lite", calibration: str = "self", n_seq: int = 32, seq_len: int = 256,
             tokenizer: str | None = None, device=None, progress: bool = True) -> dict:
    """Run a recipe on a checkpoint and write one compressed file; returns the manifest's
    report: {"source", "recipe", "passes": [one report per step], "calibration", "file"}."""
    output_file(out, RWKVLiteError)  # a folder is refused before any work, not after it
    steps = parse(recipe)  # every step checked before the model loads
    model = load_model(model_path, device=device)
    ctx = _context(model, model_path, calibration, n_seq, seq_len, tokenizer, device, progress)
    bar = tqdm(steps, desc="compress", unit="pass", file=sys.stderr, disable=not progress)
    done = compress_model(model, bar, ctx, structure=model.source.get("structure"), before_each=bar.set_postfix_str)
    tensors = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    written = to_json(steps)
    summary = {"source": str(model_path), "recipe": written, "passes": done.reports,
               "calibration": {"source": calibration, "sequences": n_seq, "tokens_each": seq_len}}
    compressed.save(out, model.config.to_dict(), tensors, done.encoded, tokenizer=tokenizer,
                    recipe={"passes": written}, report=summary, structure=done.structure,
                    transpose=value_columns(model))
    summary["file"] = compressed.size_report(out)
    return summary


def quantize(model_path, out, cfg: QuantConfig | None = None, calibration: str = "self", n_seq: int = 32,
             seq_len: int = 256, tokenizer: str | None = None, device=None, progress: bool = True) -> dict:
    """Quantise a checkpoint and write one compressed file; returns the quantisation report
    with the calibration used and the file's own size accounting under 'file'."""
    cfg = cfg or QuantConfig()
    summary = compress(model_path, out, [{"quantize": asdict(cfg)}], calibration=calibration, n_seq=n_seq,
                       seq_len=seq_len, tokenizer=tokenizer, device=device, progress=progress)
    return {**summary["passes"][0], "calibration": summary["calibration"], "source": summary["source"],
            "file": summary["file"]}
