"""Fold ln0 into the embedding, for the embedding cache (RWKV-Lite, arXiv 2412.10856, section 3.3).

Block 0's ln0 acts on each embedding row alone, so it folds into the table exactly:
E'[v] = LayerNorm0(E[v]). With the table final, a runtime keeps it on disk (memory-mapped)
and only rows in use in RAM, in a least-recently-used cache (runtime/cache.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import Context, PassConfig, PassResult, register


@dataclass(frozen=True)
class FoldLn0Config(PassConfig):
    """No options: the fold is exact."""


@register("fold_ln0", FoldLn0Config)
def fold_ln0(model, cfg: FoldLn0Config | None = None, ctx: Context | None = None) -> PassResult:
    """E <- LayerNorm0(E) row by row and ln0 removed: the model computes the same function.

    >>> fold_ln0(model).structure  # doctest: +SKIP
    {'blocks.0.ln0': 'identity'}"""
    block0 = model.blocks[0]
    if not hasattr(block0, "ln0") or isinstance(block0.ln0, nn.Identity):
        return PassResult({"pass": "fold_ln0", "folded": False})
    with torch.no_grad():
        model.emb.weight.copy_(block0.ln0(model.emb.weight))
    block0.ln0 = nn.Identity()
    return PassResult({"pass": "fold_ln0", "folded": True}, {"blocks.0.ln0": "identity"})
