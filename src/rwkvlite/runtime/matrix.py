"""Weight matrices as the file stores them, multiplied without unpacking them whole.

Each class wraps one tensor's encoding entry and its memory-mapped arrays and offers
  mv(x, rows=None)       W[rows] @ x                 (rows: int32 indices, None = all)
  axpy(a, y, rows=None)  y += a @ W[rows]            (rows of a stored-transposed matrix)
  dense_rows(rows)       the rows dequantised (embedding lookups, numpy fallback)
A matrix stored transposed (entry "transposed") is the stored W^T: its rows are W's columns.
Only the rows asked for are read, so an unread row's pages never enter RAM.
"""
from __future__ import annotations

import numpy as np

from ..format import bits as bitpack
from ..format.encodings import decode
from .kernels import lib, ptr


def _rows32(rows):
    return None if rows is None else np.ascontiguousarray(rows, dtype=np.int32)


class Matrix:
    def __init__(self, entry: dict, arrays: dict):
        # transposed: the arrays hold W^T, and this object is that stored matrix (use axpy)
        self.transposed = bool(entry.get("transposed"))
        entry = {k: v for k, v in entry.items() if k != "transposed"}
        self.entry, self.arrays = entry, arrays
        shape = entry["shape"]
        self.rows, self.cols = (shape[0], int(np.prod(shape[1:]))) if len(shape) > 1 else (1, shape[0])
        self.nbytes = sum(a.nbytes for a in arrays.values())

    def dense_rows(self, rows) -> np.ndarray:
        rows = np.asarray(rows)
        sub = {k: (v if k in ("codebook", "codebook_scale", "perm") else v[rows]) for k, v in self.arrays.items()}
        entry = {**self.entry, "shape": [len(rows), self.cols]}
        return decode(entry, sub).reshape(len(rows), self.cols)

    def _count(self, rows):
        return self.rows if rows is None else len(rows)

    def mv(self, x, rows=None) -> np.ndarray:
        r = np.arange(self.rows) if rows is None else rows
        return self.dense_rows(r) @ x

    def axpy(self, a, y, rows=None) -> None:
        r = np.arange(self.rows) if rows is None else rows
        y += a @ self.dense_rows(r)


class Dense(Matrix):
    def __init__(self, entry, arrays):
        super().__init__(entry, arrays)
        v = arrays["values"]
        self.W = v.reshape(self.rows, self.cols) if v.ndim != 2 else v
        self.f16 = entry["dtype"] == "float16"

    def dense_rows(self, rows):
        if self.entry["dtype"] == "float32":
            return np.asarray(self.W[rows])
        return super().dense_rows(rows)

    def mv(self, x, rows=None):
        k = lib()
        if self.entry["dtype"] == "float32":
            W = self.W if rows is None else self.W[rows]
            return W @ x
        if not (k and self.f16):
            return super().mv(x, rows)
        rows = _rows32(rows)
        x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.empty(self._count(rows), np.float32)
        k.mv_f16(ptr(self.W), self.cols, ptr(x), ptr(y), ptr(rows), len(y))
        return y

    def axpy(self, a, y, rows=None):
        k = lib()
        if not (k and self.f16):
            return super().axpy(a, y, rows)
        rows = _rows32(rows)
        a = np.ascontiguousarray(a, dtype=np.float32)
        k.axpy_f16(ptr(self.W), self.cols, ptr(a), ptr(y), ptr(rows), len(a))


class Scalar(Matrix):
    """sq: codes, fp16 scale and b-bit zero per row and group (act-order permutes x)."""

    def __init__(self, entry, arrays):
        super().__init__(entry, arrays)
        self.bits, self.group = entry["bits"], entry["group_size"]
        self.perm = arrays.get("perm")
        self.xsum = np.empty(entry["groups"], np.float32)

    def mv(self, x, rows=None):
        k = lib()
        if not k:
            return super().mv(x, rows)
        rows = _rows32(rows)
        x = np.ascontiguousarray(x if self.perm is None else x[self.perm], dtype=np.float32)
        y = np.empty(self._count(rows), np.float32)
        q, s, z = self.arrays["q"], self.arrays["scale"], self.arrays["zero"]
        k.mv_sq(ptr(q), q.shape[1], ptr(s), ptr(z), z.shape[1], self.bits, self.group, self.cols, ptr(x),
                ptr(self.xsum), ptr(y), ptr(rows), len(y))
        return y

    def axpy(self, a, y, rows=None):
        k = lib()
        if not k or self.perm is not None:
            return super().axpy(a, y, rows)
        rows = _rows32(rows)
        a = np.ascontiguousarray(a, dtype=np.float32)
        q, s, z = self.arrays["q"], self.arrays["scale"], self.arrays["zero"]
        k.axpy_sq(ptr(q), q.shape[1], ptr(s), ptr(z), z.shape[1], self.bits, self.group, self.cols, ptr(a),
                  ptr(y), ptr(rows), len(a))


class Vector(Matrix):
    """vq: b-bit indices into int8 codebooks (one per group of columns) with fp16 scales."""

    def __init__(self, entry, arrays):
        super().__init__(entry, arrays)
        self.bits, self.dim, self.group = entry["bits"], entry["dim"], entry["group_size"]

    def mv(self, x, rows=None):
        k = lib()
        if not k:
            return super().mv(x, rows)
        rows = _rows32(rows)
        x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.empty(self._count(rows), np.float32)
        q, b, s = self.arrays["q"], self.arrays["codebook"], self.arrays["codebook_scale"]
        k.mv_vq(ptr(q), q.shape[1], ptr(b), ptr(s), self.bits, self.dim, self.group, self.cols, ptr(x), ptr(y),
                ptr(rows), len(y))
        return y

    def axpy(self, a, y, rows=None):
        k = lib()
        if not k:
            return super().axpy(a, y, rows)
        rows = _rows32(rows)
        a = np.ascontiguousarray(a, dtype=np.float32)
        q, b, s = self.arrays["q"], self.arrays["codebook"], self.arrays["codebook_scale"]
        k.axpy_vq(ptr(q), q.shape[1], ptr(b), ptr(s), self.bits, self.dim, self.group, self.cols, ptr(a), ptr(y),
                  ptr(rows), len(a))


class SignBits(Matrix):
    """A 1-bit sign matrix (int encoding, step 2, offset 1: v = 2 bit - 1) times a row scale:
    W x = scale * (2 (bits . x) - sum x), using the sq kernel with scale 1 and zero 0."""

    def __init__(self, entry, arrays, scale: np.ndarray):
        super().__init__(entry, arrays)
        self.scale = np.asarray(scale, np.float32).reshape(-1)
        packed = arrays["q"].reshape(-1)
        if self.cols % 8:
            raise ValueError("sign rows must be whole bytes")
        self.q = packed[: self.rows * self.cols // 8].reshape(self.rows, self.cols // 8)
        self.ones = np.ones((self.rows, 1), np.float16)
        self.zero = np.zeros((self.rows, 1), np.uint8)
        self.xsum = np.empty(1, np.float32)

    def mv(self, x, rows=None):
        x = np.ascontiguousarray(x, dtype=np.float32)
        k = lib()
        if k:
            y = np.empty(self.rows, np.float32)
            k.mv_sq(ptr(self.q), self.q.shape[1], ptr(self.ones), ptr(self.zero), 1, 1, self.cols, self.cols,
                    ptr(x), ptr(self.xsum), ptr(y), None, self.rows)
        else:
            y = bitpack.unpack(self.q, 1, self.cols).astype(np.float32) @ x
        return self.scale * (2 * y - x.sum())


KINDS = {"dense": Dense, "sq": Scalar, "vq": Vector}


def matrix(entry: dict, arrays: dict) -> Matrix:
    return KINDS[entry["enc"]](entry, arrays)
