"""The Python API behind `rwkvlite quantize`: a checkpoint in, one compressed file out
(a one-pass recipe, see rwkvlite.recipes).

>>> report = quantize("model.pth", "model-3bit.rwkvlite", QuantConfig(method="rwkvquant", bits=3),
...                   calibration="{shared}/data/wikitext-2/valid.txt")  # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import asdict

from .passes.quantize import QuantConfig
from .recipes import calibration_set, check_config, compress

__all__ = ["quantize", "check_config", "calibration_set", "QuantConfig"]


def quantize(model_path, out, cfg: QuantConfig | None = None, calibration: str = "self", n_seq: int = 32,
             seq_len: int = 256, tokenizer: str | None = None, device=None, progress: bool = True) -> dict:
    """Quantise a checkpoint and write one compressed file; returns the quantisation report
    with the calibration used and the file's own size accounting under 'file'."""
    cfg = cfg or QuantConfig()
    summary = compress(model_path, out, [{"quantize": asdict(cfg)}], calibration=calibration, n_seq=n_seq,
                       seq_len=seq_len, tokenizer=tokenizer, device=device, progress=progress)
    return {**summary["passes"][0], "calibration": summary["calibration"], "source": summary["source"],
            "file": summary["file"]}
