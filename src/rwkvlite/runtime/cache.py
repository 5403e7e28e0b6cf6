"""Embedding rows on demand (RWKV-Lite's embedding cache), numpy only.

The table stays in the memory-mapped file; rows in use are kept in a least-recently-used
cache of `capacity` rows, so only they occupy RAM.
"""
from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np

from .native import ptr
from .matrix import SHARED, matrix


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


class FileRows:
    """table[token] -> the row as float32, for any stored matrix (runtime/matrix.py), read from
    the file with os.pread into buffers of one row, never through the memory map: no page of
    the table enters the process's resident memory, and a row in the page cache costs a few
    system calls (a cache miss during generation: 71 us, against 263 us for a read through the
    map and an unmap of its fault-around block; bench/embedding.py). The row is multiplied out
    by a one-row matrix over those buffers (1 x W[token]: one kernel call); arrays shared by
    all rows (codebooks, act-order permutation) stay mapped."""

    def __init__(self, m, path, offsets: dict[str, int]):
        self.fd = os.open(path, os.O_RDONLY)
        self.reads, arrays = [], dict(m.arrays)  # (bytes of a row buffer, the array's offset, its row stride)
        for role, key in m.entry["arrays"].items():
            if role not in SHARED:
                a = arrays[role] = np.empty((1,) + m.arrays[role].shape[1:], m.arrays[role].dtype)
                self.reads.append((memoryview(a).cast("B"), offsets[key], m.arrays[role].strides[0]))
        self.one_row = matrix({**m.entry, "shape": [1, *m.entry["shape"][1:]]}, arrays, m.kernels)
        self.one = np.ones(1, np.float32)
        self.call = None  # the kernel called directly where there is one: Matrix.rmv's checks cost more than the product
        if self.one_row._bound():
            self.out = np.empty(self.one_row.cols, np.float32)
            self.call = (self.one_row._axpy, *self.one_row._pre, ptr(self.one), ptr(self.out), None, 1)

    def __getitem__(self, token):
        for view, offset, stride in self.reads:
            if os.preadv(self.fd, [view], offset + token * stride) != len(view):
                raise OSError(f"short read of embedding row {token}")
        if self.call is None:
            return self.one_row.rmv(self.one).copy()
        self.out.fill(0)
        self.call[0](*self.call[1:])
        return self.out.copy()

    def __del__(self):
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)
            self.fd = None


class EmbeddingRows:
    """The runtime's embedding: cached rows (capacity > 0) or a fresh read each time."""

    def __init__(self, table, path, offsets: dict[str, int], capacity: int):
        self.source = FileRows(table, path, offsets)
        self.cache = EmbeddingCache(self.source, capacity) if capacity else None

    def __call__(self, token: int) -> np.ndarray:
        return self.cache.row(token) if self.cache else self.source[token]
