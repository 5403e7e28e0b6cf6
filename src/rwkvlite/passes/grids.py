"""Quantisation grids: what a weight may become. The GPTQ loop only asks a grid to
`fit` a group of columns and to `round` one column onto it.

Scalar grid (b bits, per row and group of input columns), as in the reference GPTQ:
  asymmetric  scale = (max - min) / (2^b - 1), zero = round(-min / scale)
  symmetric   scale = 2 max|w| / (2^b - 1),    zero = (2^b - 1 + 1) / 2  (= 2^(b-1))
  q = clamp(round(w / scale) + zero, 0, 2^b - 1);  w' = scale (q - zero)
Worked example, 2 bits asymmetric, row [-1, 0, 0.4, 2]: scale = 3/3 = 1, zero = 1,
q = [0, 1, 1, 3], w' = [-1, 0, 0, 2].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ScalarParams:
    scale: torch.Tensor  # [rows, 1]
    zero: torch.Tensor  # [rows, 1], integer-valued


class ScalarGrid:
    def __init__(self, bits: int, sym: bool = False):
        if not 2 <= bits <= 8:
            raise ValueError(f"scalar quantisation supports 2 to 8 bits, not {bits}")
        self.bits, self.sym, self.maxq = bits, sym, 2**bits - 1

    def fit(self, w: torch.Tensor) -> ScalarParams:
        """Grid parameters for the columns w [rows, g] (min/max over each row)."""
        lo = w.min(dim=1, keepdim=True).values.clamp(max=0)
        hi = w.max(dim=1, keepdim=True).values.clamp(min=0)
        if self.sym:
            hi = torch.maximum(-lo, hi)
            lo = -hi
        empty = (hi - lo) == 0
        lo, hi = torch.where(empty, -torch.ones_like(lo), lo), torch.where(empty, torch.ones_like(hi), hi)
        scale = (hi - lo) / self.maxq
        zero = torch.full_like(scale, (self.maxq + 1) / 2) if self.sym else torch.round(-lo / scale)
        return ScalarParams(scale, zero)

    def round(self, w: torch.Tensor, p: ScalarParams) -> tuple[torch.Tensor, torch.Tensor]:
        """One column w [rows] (or several [rows, k]) -> (integer codes, dequantised values)."""
        scale, zero = (p.scale, p.zero) if w.dim() == 2 else (p.scale[:, 0], p.zero[:, 0])
        q = torch.clamp(torch.round(w / scale) + zero, 0, self.maxq)
        return q, scale * (q - zero)
