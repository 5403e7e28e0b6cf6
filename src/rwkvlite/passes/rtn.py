"""Round to nearest: RWKV-Lite's final INT8/INT4 step, no calibration.

Every plain matrix left in the model (targets.is_plain_matrix: projections, LoRAs, low-rank
factors, predictors, the cluster scorer, embedding and head) gets per-row, per-group
asymmetric b-bit codes: for a group of group_size inputs of one row,
    scale = (max - min) / (2^b - 1),  zero = round(-min / scale),  q = clamp(round(w / scale) + zero, 0, 2^b - 1),
dequantised as (q - zero) * scale (grids.ScalarGrid, gptq.rtn). Value matrices behind FFN
predictors are rounded and stored as W^T (targets.value_columns): per-row groups of W^T.
Recipe name `rtn`; `int`, its older name, is still read.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..format.encodings import transposed
from . import gptq
from .base import Context, PassConfig, PassResult, register
from .grids import ScalarGrid
from .stored import encode, relative_weight_error, report_line, summary
from .targets import is_plain_matrix, value_columns


@dataclass(frozen=True)
class RTNConfig(PassConfig):
    """bits: 2 to 8; group_size: inputs per scale and zero."""

    bits: int = 8
    group_size: int = 128

    def __post_init__(self):
        super().__post_init__()
        self.require(2 <= self.bits <= 8, f"bits must be 2 to 8, not {self.bits}")
        self.require(self.group_size >= 1, f"group_size must be at least 1, not {self.group_size}")


@torch.no_grad()
def round_matrices(model, bits: int, group_size: int, select=is_plain_matrix, transpose=()) -> tuple[list, dict]:
    """Round every selected matrix of `model` in place; names in `transpose` are rounded and
    stored as W^T. Returns (report lines, encoded)."""
    layers, encoded = [], {}
    for name, p in model.named_parameters():
        if not select(name, p):
            continue
        W = p.detach().double()
        if name in transpose:
            result = gptq.rtn(W.T.contiguous(), ScalarGrid(bits), group_size)
            encoded[name] = transposed(encode(result, "sq", bits, list(W.T.shape), group_size))
            result.Q = result.Q.T
        else:
            result = gptq.rtn(W, ScalarGrid(bits), group_size)
            encoded[name] = encode(result, "sq", bits, list(p.shape), group_size)
        layers.append(report_line(name, "sq", p.shape, encoded[name][1], relative_weight_error(p, result.Q)))
        p.copy_(result.Q.to(p.dtype))
    return layers, encoded


@register("rtn", RTNConfig, aliases=("int",))
def rtn(model, cfg: RTNConfig, ctx: Context | None = None) -> PassResult:
    """Round every plain matrix to cfg.bits, in place.

    >>> rtn(model, RTNConfig(bits=4, group_size=64)).report["quantized_bits_per_weight"]  # doctest: +SKIP
    4.5"""
    layers, encoded = round_matrices(model, cfg.bits, cfg.group_size, transpose=value_columns(model))
    return PassResult({"pass": "rtn", "bits": cfg.bits, "group_size": cfg.group_size, "layers": layers,
                       **summary(layers)}, encoded=encoded)
