"""Memory accounting per component of a (compressed) model: bytes stored in the file,
weight bytes resident in RAM during generation, and weight bytes read per token.

Stored bytes come from the file (each tensor's encoded size). Resident and read bytes
follow from what a runtime that memory-maps the file must touch, using access counts
measured while the model ran on real text:
  embedding    with ln0 folded (embedding cache): `cache_rows` rows resident, one row read
               per token; otherwise the whole table is resident
  head         clustered: rows of every cluster chosen at least once are resident, the
               chosen clusters' rows are read per token; otherwise all of it, every token
  ffn rows     channel-mix key rows and value columns: with predictors, neurons ever
               predicted active are resident, the predicted-active ones read per token
  predictors, cluster scorer, everything else in the blocks: resident and read in full
"""
from __future__ import annotations

import os
import re

import numpy as np

from .. import format as compressed
from ..passes.cluster_head import ClusteredHead
from ..passes.ffn_predictor import PredictedKey

COMPONENTS = ("embedding", "head", "cluster_scorer", "ffn_rows", "predictors", "blocks")
PREDICTOR = re.compile(r"\.ffn\.key\.(mlp1|mlp2|qsign|qscale|threshold|keep)")
FFN_ROWS = re.compile(r"\.ffn\.(key|value)\.weight$")


def component_of(name: str) -> str:
    if name.startswith("emb."):
        return "embedding"
    if name.startswith("head.scorer."):
        return "cluster_scorer"
    if name.startswith("head."):
        return "head"
    if PREDICTOR.search(name):
        return "predictors"
    if FFN_ROWS.search(name):
        return "ffn_rows"
    return "blocks"


def stored_bytes_per_tensor(path) -> dict[str, int]:
    """Each tensor's bytes in the file (a plain checkpoint counts its tensors' raw bytes)."""
    if compressed.is_compressed(path):
        manifest, _ = compressed.container.read(path, verify=False)
        return {name: e["bytes"] for name, e in manifest["tensors"].items()}
    from ..loaders import load_state_dict

    _, sd, _ = load_state_dict(path)
    return {k: v.numel() * v.element_size() for k, v in sd.items()}


def accounting(path, model, tokens_seen: list[int] | None = None, cache_rows: int = 1024) -> dict:
    """Per component {stored, resident, read_per_token} in bytes, after `model` (loaded from
    `path`) ran on text; tokens_seen (the token stream) gives the embedding cache's hit rate."""
    sizes = stored_bytes_per_tensor(path)
    stored = {c: 0 for c in COMPONENTS}
    for name, n in sizes.items():
        stored[component_of(name)] += n
    resident, read = dict(stored), dict(stored)
    out = {"file_bytes": os.path.getsize(path)}
    V = model.config.vocab_size
    row = sizes["emb.weight"] / V
    read["embedding"] = row
    if not hasattr(model.blocks[0], "ln0") or type(model.blocks[0].ln0).__name__ == "Identity":
        resident["embedding"] = min(cache_rows, V) * row
        if tokens_seen is not None:
            from ..passes.embedding_cache import replay

            out["embedding_cache"] = replay(tokens_seen, cache_rows, int(row))
    if isinstance(model.head, ClusteredHead):
        head = model.head
        weight = sizes["head.weight"]
        sizes_k = np.bincount(head.cluster.cpu().numpy(), minlength=head.n_clusters)
        touched_rows = float(sizes_k[head.touched.numpy()].sum()) if head.touched is not None else 0.0
        computed = head.stats["rows_computed"] / max(1, head.stats["positions"])
        resident["head"] = stored["head"] - weight + weight * touched_rows / V
        read["head"] = stored["head"] - weight + weight * computed / V
        out["head_rows_computed_fraction"] = computed / V
        out["head_rows_touched_fraction"] = touched_rows / V
    keys = [b.ffn.key for b in model.blocks if isinstance(b.ffn.key, PredictedKey)]
    if keys:
        active = np.mean([k.stats["predicted_active"] / max(1, k.stats["tokens"]) / k.out_features for k in keys])
        touched = np.mean([float(k.touched.float().mean()) if k.touched is not None else 0.0 for k in keys])
        resident["ffn_rows"] = stored["ffn_rows"] * touched
        read["ffn_rows"] = stored["ffn_rows"] * active
        out["ffn_active_fraction"] = float(active)
        out["ffn_touched_fraction"] = float(touched)
    out["components"] = {c: {"stored": stored[c], "resident": resident[c], "read_per_token": read[c]}
                         for c in COMPONENTS}
    out["total"] = {k: sum(v[k] for v in out["components"].values()) for k in ("stored", "resident", "read_per_token")}
    return out


def reset_access_stats(model) -> None:
    for m in model.modules():
        if isinstance(m, (PredictedKey, ClusteredHead)):
            m.reset_stats()
