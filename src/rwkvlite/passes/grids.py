"""Quantisation grids: what a weight may become. The GPTQ loop only asks a grid to
`fit` a group of columns and to `round` one column onto it.

Scalar grid (b bits, per row and group of input columns), as in the reference GPTQ:
  asymmetric  scale = (max - min) / (2^b - 1), zero = round(-min / scale)
  symmetric   scale = 2 max|w| / (2^b - 1),    zero = (2^b - 1 + 1) / 2  (= 2^(b-1))
  q = clamp(round(w / scale) + zero, 0, 2^b - 1);  w' = scale (q - zero)
The scale is rounded to float16 and the zero is a b-bit integer: what the file stores.
Worked example, 2 bits asymmetric, row [-1, 0, 0.4, 2]: scale = 3/3 = 1, zero = 1,
q = [0, 1, 1, 3], w' = [-1, 0, 0, 2].

Vector grid (GPTVQ, van Baalen et al. 2024, arXiv 2402.15319): d consecutive input
columns of a row form a vector; one codebook of 2^b centroids (each d values) per group
of columns, fitted by k-means weighted by the Hessian diagonal (columns with more input
energy count more); a vector becomes the index of its nearest centroid, b/d bits per weight.
Centroids are stored as int8 times one float16 scale per codebook, and rounding uses
exactly those stored values.
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

    def fit(self, w: torch.Tensor, importance: torch.Tensor | None = None) -> ScalarParams:
        """Grid parameters for the columns w [rows, g] (min/max over each row; importance unused)."""
        lo = w.min(dim=1, keepdim=True).values.clamp(max=0)
        hi = w.max(dim=1, keepdim=True).values.clamp(min=0)
        if self.sym:
            hi = torch.maximum(-lo, hi)
            lo = -hi
        empty = (hi - lo) == 0
        lo, hi = torch.where(empty, -torch.ones_like(lo), lo), torch.where(empty, torch.ones_like(hi), hi)
        scale = ((hi - lo) / self.maxq).to(torch.float16).clamp_min(torch.finfo(torch.float16).tiny).to(w.dtype)
        zero = torch.full_like(scale, (self.maxq + 1) / 2) if self.sym else torch.round(-lo / scale)
        return ScalarParams(scale, zero.clamp(0, self.maxq))

    def round(self, w: torch.Tensor, p: ScalarParams) -> tuple[torch.Tensor, torch.Tensor]:
        """One column w [rows] (or several [rows, k]) -> (integer codes, dequantised values)."""
        scale, zero = (p.scale, p.zero) if w.dim() == 2 else (p.scale[:, 0], p.zero[:, 0])
        q = torch.clamp(torch.round(w / scale) + zero, 0, self.maxq)
        return q, scale * (q - zero)


@dataclass
class Codebook:
    centroids: torch.Tensor  # [K, d], = codes * scale exactly
    codes: torch.Tensor  # int8 [K, d]
    scale: float  # a float16 value


def int8_codebook(c: torch.Tensor) -> Codebook:
    """Round centroids to int8 x one float16 scale (the stored form)."""
    scale = float(torch.tensor(float(c.abs().max()) / 127 or 1.0).half().clamp_min(torch.finfo(torch.float16).tiny))
    codes = torch.round(c / scale).clamp(-127, 127)
    return Codebook(codes * scale, codes.to(torch.int8), scale)


class VectorGrid:
    """b-bit indices into a k-means codebook of d-dimensional vectors (d = 1 or 2)."""

    def __init__(self, bits: int, dim: int = 1, iters: int = 25):
        if dim not in (1, 2) or not 1 <= bits <= 12:
            raise ValueError(f"vector grid: dim must be 1 or 2 and bits 1..12, got dim={dim}, bits={bits}")
        self.bits, self.dim, self.iters = bits, dim, iters  # k-means starts from quantiles: deterministic

    def fit(self, w: torch.Tensor, importance: torch.Tensor | None = None) -> Codebook:
        """k-means over the vectors of w [rows, g] (g a multiple of d), weighted by importance [g]."""
        rows, g = w.shape
        x = w.reshape(rows, g // self.dim, self.dim).reshape(-1, self.dim)
        imp = torch.ones(g, dtype=w.dtype, device=w.device) if importance is None else importance
        weight = imp.reshape(g // self.dim, self.dim).mean(1).repeat(rows)  # one weight per vector
        k = min(2**self.bits, x.shape[0])
        quantiles = torch.linspace(0, 1, k, dtype=w.dtype, device=w.device)
        order = torch.argsort(x[:, 0])
        c = x[order[(quantiles * (x.shape[0] - 1)).long()]].clone()  # spread over the range
        for _ in range(self.iters):
            assign = torch.cdist(x, c).argmin(1)
            total = torch.zeros_like(c).index_add_(0, assign, x * weight[:, None])
            mass = torch.zeros(k, dtype=w.dtype, device=w.device).index_add_(0, assign, weight)
            c = torch.where(mass[:, None] > 0, total / mass.clamp_min(1e-30)[:, None], c)
        return int8_codebook(c)

    def round(self, w: torch.Tensor, book: Codebook) -> tuple[torch.Tensor, torch.Tensor]:
        """w [rows, d] -> (indices [rows], dequantised [rows, d])."""
        idx = torch.cdist(w.reshape(-1, self.dim), book.centroids).argmin(1)
        return idx, book.centroids[idx]
