"""Compression passes: each transforms a model in place and returns a report of what it did.

Passes that change the model's modules also return a "structure" spec; a saved file keeps
it, and `restructure` rebuilds those modules in a fresh model before its weights load.
"""
from __future__ import annotations

from . import cluster_head, embedding_cache, ffn_predictor, lowrank

RESTRUCTURE = {"lowrank": lowrank.restructure, "ffn_predictor": ffn_predictor.restructure,
               "fold_ln0": embedding_cache.restructure, "cluster_head": cluster_head.restructure}


def restructure(model, structure: dict) -> None:
    """Apply saved structure specs ({pass name: spec}) to a freshly built model."""
    for name, spec in structure.items():
        if name not in RESTRUCTURE:
            raise ValueError(f"unknown model structure {name!r} (written by a newer rwkvlite?)")
        RESTRUCTURE[name](model, spec)
