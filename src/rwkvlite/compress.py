"""The Python API behind `rwkvlite quantize`: a checkpoint in, one compressed file out.

>>> report = quantize("model.pth", "model-3bit.rwkvlite", QuantConfig(method="rwkvquant", bits=3),
...                   calibration="{shared}/data/wikitext-2/valid.txt")  # doctest: +SKIP
"""
from __future__ import annotations

import sys

import torch
from tqdm import tqdm

from . import format as compressed
from .errors import DataError, RWKVLiteError
from .eval.data import read_text
from .loaders import load_model
from .passes.calibrate import calibration_tokens, self_generated_tokens
from .passes.quantize import QuantConfig, quantize_model
from .tokenizer import tokenizer_for
from .utils.paths import expand


def calibration_set(model, calibration: str, n_seq: int, seq_len: int, tokenizer=None, seed: int = 0) -> torch.Tensor:
    """Calibration tokens [n_seq, seq_len]: 'self' (text the model writes itself) or a text file."""
    if calibration == "self":
        return self_generated_tokens(model, n_seq, seq_len, seed=seed)
    path = expand(calibration)
    tok = tokenizer or tokenizer_for(model.config)
    try:
        return calibration_tokens(tok, read_text(path), n_seq, seq_len)
    except ValueError as e:
        raise DataError(f"{path}: {e}") from None


def quantize(model_path, out, cfg: QuantConfig | None = None, calibration: str = "self", n_seq: int = 32,
             seq_len: int = 256, tokenizer: str | None = None, device=None, progress: bool = True) -> dict:
    """Quantise a checkpoint and write one compressed file; returns the report (with the
    file's own size accounting under 'file')."""
    cfg = cfg or QuantConfig()
    model = load_model(model_path, device=device)
    tok = tokenizer_for(model.config, tokenizer) if tokenizer or calibration != "self" else None
    tokens = calibration_set(model, calibration, n_seq, seq_len, tok).to(model.emb.weight.device)
    bar = tqdm(total=model.config.n_layer, desc=f"{cfg.method} {cfg.bits}-bit", unit="block", file=sys.stderr,
               disable=not progress)
    report, encoded = quantize_model(model, tokens, cfg, progress=lambda i, n: bar.update(1))
    bar.close()
    report["calibration"] = {"source": calibration, "sequences": int(tokens.shape[0]), "tokens_each": int(tokens.shape[1])}
    report["source"] = str(model_path)
    tensors = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    compressed.save(out, model.config.to_dict(), tensors, encoded, tokenizer=tokenizer,
                    recipe={"passes": [{"quantize": report["config"]}]}, report=report)
    report["file"] = compressed.size_report(out)
    return report


def check_config(**kwargs) -> QuantConfig:
    """QuantConfig from user options, with a one-line error for a bad value."""
    try:
        return QuantConfig(**kwargs)
    except ValueError as e:
        raise RWKVLiteError(f"quantize: {e}") from None
