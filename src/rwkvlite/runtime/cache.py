"""Embedding rows on demand (RWKV-Lite's embedding cache), numpy only.

The table stays in the memory-mapped file; rows in use are kept in a least-recently-used
cache of `capacity` rows, so only they occupy RAM.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np


class EmbeddingCache:
    """rows(ids) from a [V, C] array-like (e.g. a numpy memmap), LRU-cached in RAM."""

    def __init__(self, table, capacity: int):
        if capacity < 1:
            raise ValueError(f"embedding cache capacity must be at least 1, not {capacity}")
        self.table, self.capacity = table, capacity
        self.rows: OrderedDict[int, np.ndarray] = OrderedDict()
        self.hits = self.misses = 0

    def row(self, token: int) -> np.ndarray:
        if token in self.rows:
            self.rows.move_to_end(token)
            self.hits += 1
            return self.rows[token]
        self.misses += 1
        value = np.array(self.table[token])  # a copy: the only bytes of the table in RAM
        self.rows[token] = value
        if len(self.rows) > self.capacity:
            self.rows.popitem(last=False)  # least recently used
        return value

    def __call__(self, tokens) -> np.ndarray:
        return np.stack([self.row(int(t)) for t in tokens])

    @property
    def resident_bytes(self) -> int:
        return sum(r.nbytes for r in self.rows.values())

    def stats(self) -> dict:
        total = self.hits + self.misses
        return {"capacity": self.capacity, "lookups": total, "hit_rate": self.hits / total if total else 0.0,
                "resident_rows": len(self.rows), "resident_bytes": self.resident_bytes}


class _Dequantised:
    """table[token] -> the row as float32, for any stored matrix (runtime/matrix.py). The row's
    pages of the memory map are released once it is copied out, so only the cache holds
    embedding rows in RAM."""

    def __init__(self, m):
        self.m = m
        self.one = np.ones(1, np.float32)

    def __getitem__(self, token):
        row = self.m.rmv(self.one, np.array([token], np.int32)).copy()  # 1 x W[token]: one kernel call
        self.m.release_rows([token])
        return row


class EmbeddingRows:
    """The runtime's embedding: cached rows (capacity > 0) or a fresh read each time."""

    def __init__(self, matrix, capacity: int):
        self.source = _Dequantised(matrix)
        self.cache = EmbeddingCache(self.source, capacity) if capacity else None

    def __call__(self, token: int) -> np.ndarray:
        return self.cache.row(token) if self.cache else self.source[token]
