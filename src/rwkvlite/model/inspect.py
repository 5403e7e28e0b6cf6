"""Which parameters belong to which part of a PyTorch model, with counts and bytes (groups.py)."""
from __future__ import annotations

from ..groups import tally
from .model import RWKV


def summary(model: RWKV) -> dict:
    """Config, per-group parameter and byte counts, and every tensor's shape."""
    counts = tally((name, tuple(p.shape), p.element_size()) for name, p in model.state_dict().items())
    return {"config": model.config.to_dict(), "n_head": model.config.n_head,
            "dtype": str(model.emb.weight.dtype).replace("torch.", ""), **counts}
