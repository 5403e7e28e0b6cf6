"""Memory accounting per component of a (compressed) model: bytes stored in the file,
weight bytes resident in RAM during generation, and weight bytes read per token.

Stored bytes come from the file (each tensor's encoded size). Resident and read bytes
follow from what a runtime that memory-maps the file must touch, using what the modules
touched while the model ran on real text, recorded by forward hooks (`recording`):
  embedding    with ln0 folded (embedding cache): `cache_rows` rows resident, one row read
               per token; otherwise the whole table is resident
  head         clustered: rows of every cluster chosen at least once are resident, the
               chosen clusters' rows are read per position; otherwise all of it, every token
  ffn rows     channel-mix key rows and value rows: with predictors, neurons ever predicted
               active are resident; key rows computed and value rows read (neurons whose
               key output > 0, for a value matrix stored transposed) per token
  predictors, cluster scorer, everything else in the blocks: resident and read in full
Bytes read per token come from the runtime's own model of them (runtime/reads.py).

>>> with recording(model) as seen:          # doctest: +SKIP
...     model(tokens)
>>> accounting(path, model, seen)["total"]  # doctest: +SKIP
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .. import format as compressed
from ..model.structure import ClusteredHead, PredictedKey
from ..runtime.cache import EmbeddingCache
from ..runtime.reads import ReadCounts, bytes_read

COMPONENTS = ("embedding", "head", "cluster_scorer", "ffn_rows", "predictors", "blocks")
PREDICTOR = re.compile(r"\.ffn\.key\.(mlp1|mlp2|qsign|qscale|threshold|keep)")
FFN_ROWS = re.compile(r"\.ffn\.(key|value)\.weight$")


@dataclass
class RowAccess:
    """One module's row accesses: `uses` (tokens or positions) it ran for, rows computed over
    them, value rows read (a channel-mix key: neurons whose output came out > 0) and which
    rows (or clusters) were touched at least once."""

    uses: int = 0
    computed: float = 0.0
    values: int = 0
    touched: torch.Tensor | None = None

    def touch(self, seen: torch.Tensor) -> None:
        seen = seen.cpu()
        self.touched = seen if self.touched is None else self.touched | seen


@dataclass
class Accesses:
    """What a model touched while `recording`: tokens embedded, per block its channel-mix key
    (any key module), and the clustered head if there is one."""

    tokens: int = 0
    keys: dict[int, RowAccess] = field(default_factory=dict)
    head: RowAccess | None = None


def _key_hook(rows: RowAccess):
    @torch.no_grad()
    def hook(module, inputs, y):
        x = inputs[0]
        mask = module.active(x) if isinstance(module, PredictedKey) else torch.ones_like(y, dtype=torch.bool)
        rows.uses += mask[..., 0].numel()
        rows.computed += float(mask.sum())
        rows.values += int((y > 0).sum())  # relu(y)^2 > 0: the value rows a transposed W_v is read at
        rows.touch(mask.reshape(-1, mask.shape[-1]).any(0))
    return hook


def _head_hook(rows: RowAccess):
    @torch.no_grad()
    def hook(head, inputs, out):
        h = inputs[0].reshape(-1, inputs[0].shape[-1])
        chosen = head.chosen(head.scores(h))
        rows.uses += h.shape[0]
        rows.computed += float((chosen.float() @ head.cluster_sizes().float()).sum())
        rows.touch(chosen.any(0))
    return hook


@contextmanager
def recording(model):
    """Forward hooks that record what `model`'s modules touch; yields the Accesses they fill
    and removes the hooks on leaving."""
    seen = Accesses()

    def count_tokens(module, inputs):
        seen.tokens += inputs[0].numel()

    handles = [model.emb.register_forward_pre_hook(count_tokens)]
    for i, block in enumerate(model.blocks):
        seen.keys[i] = RowAccess()
        handles.append(block.ffn.key.register_forward_hook(_key_hook(seen.keys[i])))
    if isinstance(model.head, ClusteredHead):
        seen.head = RowAccess()
        handles.append(model.head.register_forward_hook(_head_hook(seen.head)))
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


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


def tensor_entries(path) -> dict[str, dict]:
    """Each tensor's {"bytes", "shape"} as stored (a plain checkpoint counts its tensors' raw bytes)."""
    if compressed.is_compressed(path):
        manifest, _ = compressed.container.read(path, verify=False)
        return manifest["tensors"]
    from ..loaders import load_state_dict

    _, sd, _ = load_state_dict(path)
    return {k: {"bytes": v.numel() * v.element_size(), "shape": list(v.shape)} for k, v in sd.items()}


def stored_bytes_per_tensor(path) -> dict[str, int]:
    """Each tensor's bytes in the file (a plain checkpoint counts its tensors' raw bytes)."""
    return {name: e["bytes"] for name, e in tensor_entries(path).items()}


def read_counts(entries: dict, model, seen: Accesses) -> ReadCounts:
    """The recorded accesses as the runtime counts them (runtime/reads.py)."""
    counts = ReadCounts(tokens=seen.tokens)
    for i in range(len(model.blocks)):
        rows, F = seen.keys.get(i, RowAccess()), entries[f"blocks.{i}.ffn.key.weight"]["shape"][0]
        counts.key_rows.append(round(rows.computed))
        transposed = entries[f"blocks.{i}.ffn.value.weight"].get("transposed", False)
        counts.value_rows.append(rows.values if transposed else F * seen.tokens)
    V = entries["head.weight"]["shape"][0]
    head = seen.head
    counts.head_rows = V * seen.tokens if head is None else round(head.computed / max(1, head.uses) * seen.tokens)
    return counts


def _sparse_parts(model, seen: Accesses, entries: dict, stored: dict, resident: dict, out: dict) -> None:
    """Resident bytes and access figures of a clustered head and of FFN predictors."""
    V = model.config.vocab_size
    if isinstance(model.head, ClusteredHead) and seen.head is not None:
        head, weight = model.head, entries["head.weight"]["bytes"]
        sizes = np.bincount(head.cluster.cpu().numpy(), minlength=head.n_clusters)
        touched = float(sizes[seen.head.touched.numpy()].sum()) if seen.head.touched is not None else 0.0
        resident["head"] = stored["head"] - weight + weight * touched / V
        out["head_rows_computed_fraction"] = seen.head.computed / max(1, seen.head.uses) / V
        out["head_rows_touched_fraction"] = touched / V
    predicted = [i for i, b in enumerate(model.blocks) if isinstance(b.ffn.key, PredictedKey)]
    if predicted:
        keys = [seen.keys.get(i, RowAccess()) for i in predicted]
        F = [model.blocks[i].ffn.key.out_features for i in predicted]
        touched = [float(r.touched.float().mean()) if r.touched is not None else 0.0 for r in keys]
        resident["ffn_rows"] = stored["ffn_rows"] * float(np.mean(touched))
        out["ffn_active_fraction"] = float(np.mean([r.computed / max(1, r.uses) / f for r, f in zip(keys, F)]))
        out["ffn_touched_fraction"] = float(np.mean(touched))


def accounting(path, model, seen: Accesses, tokens_seen: list[int] | None = None, cache_rows: int = 1024) -> dict:
    """Per component {stored, resident, read_per_token} in bytes, after `model` (loaded from
    `path`) ran on text under `recording` (seen); tokens_seen (the token stream) gives the
    embedding cache's hit rate. "bytes_read" is runtime.reads.bytes_read's breakdown."""
    entries = tensor_entries(path)
    stored = {c: 0 for c in COMPONENTS}
    for name, e in entries.items():
        stored[component_of(name)] += e["bytes"]
    resident = dict(stored)
    out = {"file_bytes": os.path.getsize(path)}
    V = model.config.vocab_size
    if not hasattr(model.blocks[0], "ln0") or isinstance(model.blocks[0].ln0, nn.Identity):
        row = entries["emb.weight"]["bytes"] / V
        resident["embedding"] = min(cache_rows, V) * row
        if tokens_seen is not None:
            out["embedding_cache"] = replay(tokens_seen, cache_rows, int(row))
    _sparse_parts(model, seen, entries, stored, resident, out)
    reads = bytes_read(entries, V, read_counts(entries, model, seen))
    read = {**stored, "embedding": reads["embedding"], "ffn_rows": reads["ffn"],
            "head": stored["head"] - entries["head.weight"]["bytes"] + reads["head"]}
    out["bytes_read"] = reads
    out["components"] = {c: {"stored": stored[c], "resident": resident[c], "read_per_token": read[c]}
                         for c in COMPONENTS}
    out["total"] = {k: sum(v[k] for v in out["components"].values()) for k in ("stored", "resident")}
    out["total"]["read_per_token"] = reads["total"]
    return out


def replay(tokens, capacity: int, row_bytes: int) -> dict:
    """Hit rate and resident bytes of the runtime's LRU embedding cache over a token stream (no table needed)."""
    cache = EmbeddingCache(_ZeroRows(row_bytes), capacity)
    for t in tokens:
        cache.row(int(t))
    return cache.stats()


class _ZeroRows:
    """A table of zero rows of row_bytes each: what replay's cache copies."""

    def __init__(self, row_bytes: int):
        self.row_bytes = row_bytes

    def __getitem__(self, i):
        return np.zeros(self.row_bytes, np.uint8)
