"""The weight bytes a token reads: the one model of it, used by the runtime (Runtime.bytes_read_per_token,
bench) and by the evaluation path's memory accounting (eval/memory.py).

A token reads every tensor whole except:
  emb.weight                  one row
  blocks.i.ffn.key.weight     the key rows computed (all F without a predictor)
  blocks.i.ffn.value.weight   the value rows read (all F when stored [C, F]; with a transposed value
                              matrix only the neurons whose key product came out > 0)
  head.weight                 the rows of the chosen clusters (all V without a clustered head)
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ReadCounts:
    """Rows read over `tokens` tokens: per block, FFN key rows computed and value rows read; head rows."""

    tokens: int = 0
    key_rows: list[int] = field(default_factory=list)
    value_rows: list[int] = field(default_factory=list)
    head_rows: int = 0


def bytes_read(entries: dict[str, dict], vocab_size: int, counts: ReadCounts) -> dict[str, float]:
    """Mean weight bytes per token: {"total", "ffn", "head", "embedding", "rest"}.
    entries: tensor name -> {"bytes": stored bytes, "shape": [rows, ...]} (a manifest's "tensors")."""
    t = max(1, counts.tokens)
    total = sum(e["bytes"] for e in entries.values())
    ffn = ffn_stored = 0.0
    for i, (keys, values) in enumerate(zip(counts.key_rows, counts.value_rows)):
        k, v = entries[f"blocks.{i}.ffn.key.weight"], entries[f"blocks.{i}.ffn.value.weight"]
        F = k["shape"][0]
        ffn += (k["bytes"] * keys + v["bytes"] * values) / t / F
        ffn_stored += k["bytes"] + v["bytes"]
    head = entries["head.weight"]
    head_read = head["bytes"] * counts.head_rows / t / head["shape"][0]
    emb = entries["emb.weight"]["bytes"]
    rest = total - emb - head["bytes"] - ffn_stored
    return {"total": rest + ffn + head_read + emb / vocab_size, "ffn": ffn, "head": head_read,
            "embedding": emb / vocab_size, "rest": rest}
