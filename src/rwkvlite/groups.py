"""Which parameters belong to which part of an RWKV model, with counts and bytes: one tally for
a PyTorch model's state dict (model/inspect.py) and for a compressed file's manifest
(format.summary), so that `rwkvlite inspect` and `demo` read compressed files without PyTorch.

>>> tally([("emb.weight", (256, 64), 4), ("blocks.0.ffn.key.weight", (256, 64), 2)])["total"]
{'params': 32768, 'bytes': 98304}
"""
from __future__ import annotations

import re
from collections.abc import Iterable

GROUPS = ("embedding", "head", "time-mix", "channel-mix", "lora-like", "other")

# Small low-rank matrices inside the time-mix: v6's token-shift and decay LoRAs, v7's w/a/v/g.
LORA_LIKE = re.compile(r"\.att\.(time_maa_w[12]|time_decay_w[12]|[wavg][12])$")
# .weight, or the factors / diagonal of a low-rank projection (passes/lowrank.py)
TIME_MIX_MATRIX = re.compile(r"\.att\.(receptance|key|value|gate|output)\.(weight|w1|w2|diag)$")
CHANNEL_MIX_MATRIX = re.compile(r"\.ffn\.(receptance|key|value)\.(weight|w1|w2|diag)$")


def group_of(name: str) -> str:
    """The group a canonical parameter name belongs to.

    >>> group_of("blocks.3.att.w1"), group_of("blocks.0.ffn.key.weight")
    ('lora-like', 'channel-mix')
    """
    if name == "emb.weight":
        return "embedding"
    if name == "head.weight":
        return "head"
    if LORA_LIKE.search(name):
        return "lora-like"
    if TIME_MIX_MATRIX.search(name):
        return "time-mix"
    if CHANNEL_MIX_MATRIX.search(name):
        return "channel-mix"
    return "other"  # norms, token-shift mixes, decay and bonus vectors


def tally(tensors: Iterable[tuple[str, tuple, int]]) -> dict:
    """Per-group and total parameter and byte counts, and every tensor's shape, from
    (canonical name, shape, bytes per element) triples."""
    groups = {g: {"params": 0, "bytes": 0} for g in GROUPS}
    shapes = {}
    for name, shape, itemsize in tensors:
        numel = 1
        for n in shape:
            numel *= n
        g = groups[group_of(name)]
        g["params"] += numel
        g["bytes"] += numel * itemsize
        shapes[name] = list(shape)
    total = {"params": sum(g["params"] for g in groups.values()),
             "bytes": sum(g["bytes"] for g in groups.values())}
    return {"groups": groups, "total": total, "shapes": shapes}
