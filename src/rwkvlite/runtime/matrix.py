"""Weight matrices as the file stores them, multiplied without unpacking them whole.

Each class wraps one tensor's encoding entry and its memory-mapped arrays (and the C kernels
it is multiplied by: a native.Kernels, or None for numpy only) and offers
  mv(x, rows=None)       W[rows] @ x                 (rows: int32 indices, None = all)
  axpy(a, y, rows=None)  y += a @ W[rows]            (rows of a stored-transposed matrix)
  dense_rows(rows)       the rows dequantised (embedding lookups, numpy fallback)
A matrix stored transposed (entry "transposed") is the stored W^T: its rows are W's columns.
Only the rows asked for are read, so an unread row's pages never enter RAM.

With the C kernels, mv writes into a buffer the matrix owns and returns it (a view for a row
subset): the result is valid until the matrix's next mv. The weights' addresses are taken
once, so a call costs a copy of x and one foreign call (~2 us), not a dozen address lookups.
"""
from __future__ import annotations

import numpy as np

from ..format import bits as bitpack
from ..format.container import readable
from ..format.encodings import decode
from . import native
from .native import ptr


SHARED = ("codebook", "codebook_scale", "perm")  # arrays of a whole matrix, not one per row


def _check_coefficients(a, rows, n_rows: int) -> None:
    """One coefficient per row used: len(a) == len(rows), or == the matrix's rows."""
    if len(a) != (n_rows if rows is None else len(rows)):
        raise ValueError(f"{len(a)} coefficients for {n_rows if rows is None else len(rows)} rows")


def _rows32(rows):
    return None if rows is None else np.ascontiguousarray(rows, dtype=np.int32)


class Matrix:
    kernel = None  # the C kernels' suffix: mv_<kernel>, axpy_<kernel>

    def __init__(self, entry: dict, arrays: dict, kernels: native.Kernels | None = None):
        # transposed: the arrays hold W^T, and this object is that stored matrix (use axpy)
        self.transposed = bool(entry.get("transposed"))
        entry = {k: v for k, v in entry.items() if k != "transposed"}
        self.entry, self.arrays = entry, arrays
        shape = entry["shape"]
        self.rows, self.cols = (shape[0], int(np.prod(shape[1:]))) if len(shape) > 1 else (1, shape[0])
        self.nbytes = sum(a.nbytes for a in arrays.values())
        self.perm = None  # act-order: x is permuted before the product
        self.kernels = kernels if kernels is not None and kernels.lib is not None else None

    def dense_rows(self, rows) -> np.ndarray:
        rows = np.asarray(rows)
        sub = {k: (v if k in SHARED else v[rows]) for k, v in self.arrays.items()}
        entry = {**self.entry, "shape": [len(rows), self.cols]}
        return decode(entry, sub).reshape(len(rows), self.cols)

    def weights_args(self) -> tuple | None:
        """The kernel's leading arguments (addresses and layout), or None: numpy path."""
        return None

    def _bound(self) -> bool:
        """Whether the C kernels multiply this matrix; binds them (and the buffers) on first use."""
        if not hasattr(self, "_mv"):
            k = self.kernels
            self._pre = self.weights_args() if k else None
            if self._pre is None:
                self._mv = self._axpy = None
            else:
                self._mv, self._axpy = k.fn(f"mv_{self.kernel}"), k.fn(f"axpy_{self.kernel}")
        return self._mv is not None

    def _buffers(self) -> None:
        """mv's and rmv's buffers, made by the first product called from Python (the runtime's
        C block path passes its own, so most matrices never need them)."""
        if not hasattr(self, "_x"):
            self._x, self._y = np.empty(self.cols, np.float32), np.empty(self.rows, np.float32)
            self._a, self._out = np.empty(self.rows, np.float32), np.empty(self.cols, np.float32)
            self._xp, self._yp, self._ap, self._outp = (ptr(t) for t in (self._x, self._y, self._a, self._out))

    def native(self):
        """This matrix as the C blocks' mat_t (native.Mat), or None where only numpy multiplies it."""
        if not self._bound():
            return None
        m = native.Mat(kind=native.MAT_KINDS[self.kernel], rows=self.rows,
                       **dict(zip(native.MAT_ARGS[self.kernel], self._pre)))
        if self.perm is not None:  # kept alive by this matrix
            self._perm32, self._tmp = np.ascontiguousarray(self.perm, np.int32), np.empty(self.cols, np.float32)
            m.perm, m.tmp = ptr(self._perm32), ptr(self._tmp)
        return m

    def mv(self, x, rows=None) -> np.ndarray:
        if not self._bound():
            r = np.arange(self.rows) if rows is None else rows
            return (self.dense_rows(r) @ x).astype(np.float32)
        self._buffers()
        np.copyto(self._x, x[self.perm] if self.perm is not None else x, casting="unsafe")
        if rows is None:
            self._mv(*self._pre, self._xp, self._yp, None, self.rows)
            return self._y
        rows = _rows32(rows)
        if len(rows) > len(self._y):  # a row list with repeats
            self._y = np.empty(len(rows), np.float32)
            self._yp = ptr(self._y)
        self._mv(*self._pre, self._xp, self._yp, ptr(rows), len(rows))
        return self._y[:len(rows)]

    def rmv(self, a, rows=None) -> np.ndarray:
        """a @ W[rows] (rows of a transposed matrix, LoRA factors stored [in, r]), into a buffer
        the matrix owns, like mv."""
        _check_coefficients(a, rows, self.rows)
        if not self._bound() or self.perm is not None:
            return (np.asarray(a, np.float32) @ self.dense_rows(np.arange(self.rows) if rows is None else rows)
                    ).astype(np.float32)
        self._buffers()
        n = len(a)
        if n > len(self._a):  # a row list with repeats
            self._a = np.empty(n, np.float32)
            self._ap = ptr(self._a)
        self._a[:n] = a
        self._out.fill(0)
        self._axpy(*self._pre, self._ap, self._outp, None if rows is None else ptr(_rows32(rows)), n)
        return self._out

    def axpy(self, a, y, rows=None) -> None:
        """y += a @ W[rows]."""
        y += self.rmv(a, rows)


class Dense(Matrix):
    kernel = "f16"

    def __init__(self, entry, arrays, kernels=None):
        super().__init__(entry, arrays, kernels)
        v = arrays["values"]
        self.W = v.reshape(self.rows, self.cols) if v.ndim != 2 else v

    def dense_rows(self, rows):
        if self.entry["dtype"] == "float32":
            return np.asarray(self.W[rows])
        return super().dense_rows(rows)

    def weights_args(self):
        return (ptr(self.W), self.cols) if self.entry["dtype"] == "float16" else None

    def native(self):
        if self.entry["dtype"] == "float32" and self.kernels is not None and self.W.flags.c_contiguous:
            return native.Mat(kind=native.MAT_KINDS["f32"], rows=self.rows, cols=self.cols, q=ptr(self.W))
        return super().native()

    def mv(self, x, rows=None):
        if self.entry["dtype"] == "float32":
            W = self.W if rows is None else self.W[rows]
            return W @ x
        return super().mv(x, rows)


class Scalar(Matrix):
    """sq: codes, fp16 scale and b-bit zero per row and group (act-order permutes x)."""
    kernel = "sq"

    def __init__(self, entry, arrays, kernels=None):
        super().__init__(entry, arrays, kernels)
        self.bits, self.group = entry["bits"], entry["group_size"]
        self.perm = arrays.get("perm")

    def weights_args(self):
        q, s, z = self.arrays["q"], self.arrays["scale"], self.arrays["zero"]
        return ptr(q), q.shape[1], readable(q), ptr(s), ptr(z), z.shape[1], self.bits, self.group, self.cols


class Vector(Matrix):
    """vq: b-bit indices into int8 codebooks (one per group of columns) with fp16 scales."""
    kernel = "vq"

    def __init__(self, entry, arrays, kernels=None):
        super().__init__(entry, arrays, kernels)
        self.bits, self.dim, self.group = entry["bits"], entry["dim"], entry["group_size"]

    def weights_args(self):
        q, b, s = self.arrays["q"], self.arrays["codebook"], self.arrays["codebook_scale"]
        return ptr(q), q.shape[1], readable(q), ptr(b), ptr(s), self.bits, self.dim, self.group, self.cols


class SignBits(Matrix):
    """A 1-bit sign matrix (int encoding, step 2, offset 1: v = 2 bit - 1) times a row scale:
    W x = scale * (2 (bits . x) - sum x), bits . x by the mv_bits kernel. As an sq matrix of
    scale 1 and zero 0 it stays valid for the inherited products and gives the C blocks their mat_t."""
    kernel = "sq"

    def __init__(self, entry, arrays, scale: np.ndarray, kernels: native.Kernels | None = None):
        super().__init__(entry, arrays, kernels)
        self.scale = np.asarray(scale, np.float32).reshape(-1)
        packed = arrays["q"].reshape(-1)
        if self.cols % 8:
            raise ValueError("sign rows must be whole bytes")
        self.q = packed[: self.rows * self.cols // 8].reshape(self.rows, self.cols // 8)
        self.ones = np.ones((self.rows, 1), np.float16)
        self.zero = np.zeros((self.rows, 1), np.uint8)

    def weights_args(self):
        return (ptr(self.q), self.q.shape[1], readable(self.q), ptr(self.ones), ptr(self.zero), 1, 1, self.cols,
                self.cols)

    def dense_rows(self, rows):
        return bitpack.unpack(self.q[np.asarray(rows)], 1, self.cols).astype(np.float32)

    def mv(self, x, rows=None):
        if rows is not None:
            raise ValueError("a predictor copy is multiplied whole")
        if self.kernels is None:
            return self.scale * (2 * super().mv(x) - x.sum())
        x = np.ascontiguousarray(x, np.float32)
        y = np.empty(self.rows, np.float32)
        self.kernels.fn("mv_bits")(ptr(self.q), self.q.shape[1], self.cols, ptr(x), ptr(y), self.rows)  # bits . x
        return self.scale * (2 * y - x.sum())


KINDS = {"dense": Dense, "sq": Scalar, "vq": Vector}


def matrix(entry: dict, arrays: dict, kernels: native.Kernels | None = None) -> Matrix:
    """The stored matrix `entry` over its arrays, multiplied by `kernels` (None: numpy only)."""
    return KINDS[entry["enc"]](entry, arrays, kernels)
