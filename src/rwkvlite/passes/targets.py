"""Which tensors a quantisation pass rounds, and which it stores transposed.

The `quantize` pass (GPTQ / GPTVQ / RWKVQuant) takes the time-mix and channel-mix
projections, plus the head and the embedding when asked; the `rtn` pass takes every plain
matrix left. Channel-mix value matrices behind FFN predictors are stored transposed so a
runtime reads the value columns of active neurons as contiguous rows.
"""
from __future__ import annotations

import torch

from ..groups import group_of
from ..model.structure import PredictedKey


def is_target(name: str, quantize_head: bool = False, quantize_embedding: bool = False) -> bool:
    """A projection the `quantize` pass rounds (head and embedding only when asked)."""
    group = group_of(name)
    return group in ("time-mix", "channel-mix") or (group == "head" and quantize_head) or (
        group == "embedding" and quantize_embedding)


def is_plain_matrix(name: str, p: torch.Tensor) -> bool:
    """Weights the `rtn` pass rounds: floating 2-D tensors with both sides >= 16 (every
    projection, LoRA, low-rank factor, predictor, scorer, embedding and head)."""
    return p.is_floating_point() and p.dim() == 2 and min(p.shape) >= 16


def value_columns(model) -> set[str]:
    """Channel-mix value matrices behind FFN predictors: stored transposed, so a runtime reads
    the value columns of active neurons as contiguous rows."""
    return {f"blocks.{i}.ffn.value.weight" for i, b in enumerate(model.blocks)
            if isinstance(b.ffn.key, PredictedKey)}
