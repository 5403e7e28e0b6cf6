"""Embedding cache (RWKV-Lite, arXiv 2412.10856, section 3.3).

Block 0's ln0 acts on each embedding row alone, so it folds into the table exactly:
E'[v] = LayerNorm0(E[v]). The folded table stays on disk (memory-mapped) and only rows in
use live in RAM, in a least-recently-used cache of `capacity` rows.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..runtime.cache import EmbeddingCache


def fold_ln0(model) -> dict:
    """E <- LayerNorm0(E) row by row and ln0 removed: the model computes the same function."""
    block0 = model.blocks[0]
    if not hasattr(block0, "ln0") or isinstance(block0.ln0, nn.Identity):
        return {"pass": "fold_ln0", "folded": False}
    with torch.no_grad():
        model.emb.weight.copy_(block0.ln0(model.emb.weight))
    block0.ln0 = nn.Identity()
    return {"pass": "fold_ln0", "folded": True, "structure": {"blocks.0.ln0": "identity"}}


def restructure(model, structure: dict) -> None:
    for name in structure:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, nn.Identity())


def replay(tokens, capacity: int, row_bytes: int) -> dict:
    """Hit rate and resident bytes of an LRU cache over a token stream (no table needed)."""
    cache = EmbeddingCache(_Rows(row_bytes), capacity)
    for t in tokens:
        cache.row(int(t))
    return cache.stats()


class _Rows:
    def __init__(self, row_bytes: int):
        self.row_bytes = row_bytes

    def __getitem__(self, i):
        return np.zeros(self.row_bytes, np.uint8)
