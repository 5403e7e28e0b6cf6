"""Recipes: which compression passes run, in which order, with which options.

A recipe is a list of {pass name: options}; the named presets below, or a JSON file
{"passes": [...]} for a custom stack. `compress` runs one on a checkpoint and writes one
compressed file (see rwkvlite.format) whose manifest holds the recipe, every pass's
report and the structure specs that rebuild the model.

  lowrank        SVD factors of r/k/v/g projections (passes/lowrank.py)
  recover        distil the model towards the original, training the factors and ln_out
  ffn_predictor  MLP + quantised-key sparsity predictors (passes/ffn_predictor.py)
  cluster_head   clustered output head (passes/cluster_head.py)
  fold_ln0       fold ln0 into the embedding, for the row cache (passes/embedding_cache.py)
  int            RTN INT8/INT4 of every remaining matrix (passes/quantize.round_to_nearest)
  quantize       GPTQ / GPTVQ / RWKVQuant of the projections (passes/quantize.quantize_model)
"""
from __future__ import annotations

import copy
import inspect
import json
import os
import sys
import time

import torch
from tqdm import tqdm

from . import format as compressed
from .errors import DataError, RWKVLiteError
from .eval.data import read_text_or_windows
from .loaders import load_model
from .passes import cluster_head, embedding_cache, ffn_predictor, lowrank
from .passes.calibrate import calibration_tokens, self_generated_tokens, window_tokens
from .passes.quantize import QuantConfig, quantize_model, round_to_nearest
from .tokenizer import tokenizer_for
from .utils.paths import expand

LITE = [{"lowrank": {"factor": 8}}, {"recover": {"steps": 150}}, {"ffn_predictor": {}},
        {"cluster_head": {}}, {"fold_ln0": {}}]
PRESETS = {
    "int8": [{"int": {"bits": 8}}],
    "int4": [{"int": {"bits": 4, "group_size": 64}}],
    "rwkvquant": [{"quantize": {"method": "rwkvquant", "bits": 3}}],
    "lite": LITE,
    "lite-int8": LITE + [{"int": {"bits": 8}}],
    "lite-int4": LITE + [{"int": {"bits": 4, "group_size": 64}}],
}


WHOLE_TEXT = 16 << 20  # bytes: a calibration text up to this size is read whole, a larger one in windows


def calibration_text(path: str, n_seq: int, seq_len: int) -> str | list[str]:
    """What calibration reads of a text file: all of it, or from a file over WHOLE_TEXT bytes
    (a corpus) n_seq evenly spread windows of 16 bytes a token, not the whole file."""
    return read_text_or_windows(path, WHOLE_TEXT, n_seq, 16 * seq_len + 64)


def calibration_set(model, calibration: str, n_seq: int, seq_len: int, tokenizer=None, seed: int = 0,
                    text: str | list[str] | None = None) -> torch.Tensor:
    """Calibration tokens [n_seq, seq_len]: 'self' (text the model writes itself) or a text
    file (`text`: what calibration_text read of it, if already read): n_seq windows evenly
    spread over the text."""
    if calibration == "self":
        return self_generated_tokens(model, n_seq, seq_len, seed=seed)
    path = expand(calibration)
    tok = tokenizer or tokenizer_for(model.config)
    text = text if text is not None else calibration_text(path, n_seq, seq_len)
    try:
        return window_tokens(tok, text, seq_len) if isinstance(text, list) else calibration_tokens(tok, text, n_seq,
                                                                                                   seq_len)
    except ValueError as e:
        raise DataError(f"{path}: {e}") from None


def check_config(**options) -> QuantConfig:
    """QuantConfig from user options, with a one-line error for a bad value."""
    try:
        return QuantConfig(**options)
    except (TypeError, ValueError) as e:
        raise RWKVLiteError(f"quantize: {e}") from None


def check_int(bits: int = 8, group_size: int = 128) -> None:
    """The int pass's options, checked (one-line errors)."""
    if not 2 <= bits <= 8:
        raise RWKVLiteError(f"int pass: bits must be 2 to 8, not {bits}")
    if group_size < 1:
        raise RWKVLiteError(f"int pass: group_size must be at least 1, not {group_size}")


def load_recipe(recipe: str | list) -> list[dict]:
    """A preset name, a JSON file path, or an already parsed list -> list of {pass: options}."""
    if isinstance(recipe, list):
        passes = recipe
    elif recipe in PRESETS:
        passes = PRESETS[recipe]
    elif os.path.isfile(recipe):
        try:
            with open(recipe) as f:
                passes = json.load(f)["passes"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise RWKVLiteError(f"{recipe}: not a recipe file ({{\"passes\": [...]}}): {e}") from None
    else:
        raise RWKVLiteError(f"unknown recipe {recipe!r}: use a preset ({', '.join(PRESETS)}) or a JSON file")
    for step in passes:  # every step checked before any model is loaded or any pass runs
        if not isinstance(step, dict) or len(step) != 1 or next(iter(step)) not in PASSES:
            raise RWKVLiteError(f"recipe step {step!r}: expected one of {{{', '.join(PASSES)}: options}}")
        (name, options), = step.items()
        if not isinstance(options, dict):
            raise RWKVLiteError(f"{name} pass: options must be an object, not {options!r}")
        try:
            _options(name).bind(**options)
            if name in ("quantize", "int"):  # their values too
                (check_config if name == "quantize" else check_int)(**options)
        except TypeError as e:
            raise RWKVLiteError(f"{name} pass: {e}") from None
    return copy.deepcopy(passes)


def _recover(model, ctx, steps: int = 150, lr: float = 1e-3, ctx_len: int = 256, batch_size: int = 4, files=None):
    from .train import TrainConfig
    from .train.data import TokenData
    from .train.trainer import distill

    files = files or ([ctx["calibration"]] if ctx["calibration"] != "self" else None)
    if not files:
        raise DataError("the recover pass trains on text: give --calibration FILE or recover.files in the recipe")
    cfg = TrainConfig(train_files=tuple(files), out_dir="", ctx_len=ctx_len, batch_size=batch_size, max_steps=steps,
                      lr=lr, lr_final=lr / 10, warmup_steps=min(20, steps // 5 + 1), eval_interval=steps,
                      eval_tokens=8192, weight_decay=0.0)
    # a large corpus is read as windows: at least 16 MiB, 64 bytes for each token the steps see
    data = TokenData([expand(f) for f in files], ctx["tokenizer"](), cfg.val_fraction,
                     max_bytes=max(WHOLE_TEXT, 64 * steps * batch_size * ctx_len))
    teacher = ctx["original"]()
    history = distill(model, teacher, data, lowrank.RECOVERY_TRAINABLE, cfg, progress=ctx["progress"])
    return {"pass": "recover", "steps": steps, "lr": lr, "files": list(files), "kl_start": history["train_loss"][0],
            "kl_end_train": history["train_loss"][-1], "kl_val": history["val_loss"][-1]}


def _quantize(model, ctx, **options):
    cfg = check_config(**options)
    tokens = ctx["tokens"]()
    bar = tqdm(total=model.config.n_layer, desc=f"{cfg.method} {cfg.bits}-bit", unit="block", file=sys.stderr,
               disable=not ctx["progress"], leave=False)
    report, encoded = quantize_model(model, tokens, cfg, progress=lambda i, n: bar.update(1))
    bar.close()
    ctx["encoded"].update(encoded)
    return {"pass": "quantize", **report}


def _int(model, ctx, bits: int = 8, group_size: int = 128):
    report, encoded = round_to_nearest(model, bits, group_size, transpose=value_columns(model))
    ctx["encoded"].update(encoded)
    return report


def value_columns(model) -> set[str]:
    """Channel-mix value matrices behind FFN predictors: stored transposed, so a runtime reads
    the value columns of active neurons as contiguous rows."""
    return {f"blocks.{i}.ffn.value.weight" for i, b in enumerate(model.blocks)
            if isinstance(b.ffn.key, ffn_predictor.PredictedKey)}


# each pass: its function, and what it takes before its options (its remaining parameters)
PASSES = {
    "lowrank": (lowrank.lowrank, "model"),
    "recover": (_recover, "ctx"),
    "ffn_predictor": (ffn_predictor.ffn_predictors, "tokens"),
    "cluster_head": (cluster_head.cluster_head, "tokens"),
    "fold_ln0": (embedding_cache.fold_ln0, "model"),
    "int": (_int, "ctx"),
    "quantize": (_quantize, "ctx"),
}


def _options(name: str) -> inspect.Signature:
    """The parameters a recipe step may set for pass `name`."""
    fn, takes = PASSES[name]
    if fn is _quantize:  # its options go on whole to QuantConfig
        return inspect.signature(QuantConfig)
    return inspect.Signature(list(inspect.signature(fn).parameters.values())[1 if takes == "model" else 2:])


def _run(name: str, model, ctx: dict, options: dict) -> dict:
    fn, takes = PASSES[name]
    return fn(model, *{"model": (), "tokens": (ctx["tokens"](),), "ctx": (ctx,)}[takes], **options)


def compress(model_path, out, recipe="lite", calibration: str = "self", n_seq: int = 32, seq_len: int = 256,
             tokenizer: str | None = None, device=None, progress: bool = True) -> dict:
    """Run a recipe on a checkpoint and write one compressed file; returns the manifest's report."""
    passes = load_recipe(recipe)
    model = load_model(model_path, device=device)
    tok = tokenizer_for(model.config, tokenizer) if tokenizer or calibration != "self" else None
    # read now, so that a bad file fails before any pass runs
    text = calibration_text(expand(calibration), n_seq, seq_len) if calibration != "self" else None
    cache = {}

    def tokens():  # calibration tokens, from the model as it is when a pass first needs them
        if "tokens" not in cache:
            cache["tokens"] = calibration_set(model, calibration, n_seq, seq_len, tok, text=text).to(
                model.emb.weight.device)
        return cache["tokens"]

    ctx = {"tokens": tokens, "calibration": calibration, "tokenizer": lambda: tok or tokenizer_for(model.config, tokenizer),
           "original": lambda: load_model(model_path, device=device), "encoded": {}, "progress": progress}
    reports = []
    structure = dict(model.source.get("structure", {}))  # a compressed source keeps its rebuilt modules
    bar = tqdm(passes, desc="compress", unit="pass", file=sys.stderr, disable=not progress)
    for step in bar:
        (name, options), = step.items()
        bar.set_postfix_str(name)
        start = time.perf_counter()
        try:
            report = _run(name, model, ctx, options)
        except TypeError as e:
            raise RWKVLiteError(f"{name} pass: {e}") from None
        report["seconds"] = time.perf_counter() - start
        if "structure" in report:
            structure[name] = {**structure.get(name, {}), **report.pop("structure")}
        reports.append(report)
    tensors = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    summary = {"source": str(model_path), "recipe": passes, "passes": reports,
               "calibration": {"source": calibration, "sequences": n_seq, "tokens_each": seq_len}}
    compressed.save(out, model.config.to_dict(), tensors, ctx["encoded"], tokenizer=tokenizer,
                    recipe={"passes": passes}, report=summary, structure=structure, transpose=value_columns(model))
    summary["file"] = compressed.size_report(out)
    return summary
