"""Binding a block to its C step (rwkv7.c, rwkv6.c, rwkv4.c) through native.Kernels.

Every block kernel takes the same arguments, by name:
    args  x  att_in att_out  ffn_in ffn_out  wkv_in wkv_out  [v_first]  work rows
(args: the block's struct; x: [C], updated in place; the state's three arrays, read then
written, the same array twice for an in-place step; v_first: RWKV-7's only; work, rows: a
workspace the blocks stepped one after another share). It returns FFN_COUNTS (kernels.h).
A block lists its own names in ARGS; those in PER_TOKEN point into the runtime's per-token
rows, and a prepared Call moves them one row per token of a chunk.
"""
from __future__ import annotations

import ctypes

import numpy as np

from . import native
from .layers import Linear, SparseFfn
from .matrix import SignBits

ARGS = ("args", "x", "att_in", "att_out", "ffn_in", "ffn_out", "wkv_in", "wkv_out", "work", "rows")


class Unbound(Exception):
    """A matrix without C kernels: its block steps in numpy."""


def mat(m) -> native.Mat:
    n = m.native()
    if n is None:
        raise Unbound(type(m).__name__)
    return n


def linear(lin: Linear) -> native.LinearT:
    if lin.low is None:
        return native.LinearT(W=mat(lin.W))
    return native.LinearT(w1=mat(lin.w1), w2=mat(lin.w2), lowrank=1 if lin.low == "linear" else 2,
                          diag=native.ptr(lin.diag))


def ffn(f: SparseFfn) -> native.FfnT:
    """A channel mix's key, value and predictor as kernels.h's ffn_t."""
    pred = f.predictor
    t = native.FfnT(fk=mat(f.key), fv=mat(f.value), fv_transposed=int(f.value.transposed),
                    predicted=int(pred is not None))
    if pred is not None:
        sign = isinstance(pred.copy, SignBits)
        t.pred = native.PredictorT(m1=mat(pred.m1), m2=mat(pred.m2), copy=mat(pred.copy), b1=native.ptr(pred.b1),
                                   cut=native.ptr(pred.cut), scale=native.ptr(pred.copy.scale) if sign else None,
                                   keep=pred.keep)
    return t


def pointers(struct, vectors: dict[str, np.ndarray | None]) -> None:
    """Set the struct's pointer fields to these float32 arrays (which must outlive it)."""
    for name, v in vectors.items():
        if v is not None and not (v.dtype == np.float32 and v.flags.c_contiguous):
            raise ValueError(f"{name}: the C step needs a C-contiguous float32 array")
        setattr(struct, name, native.ptr(v))


class Call:
    """One block's C step prepared for a chunk's tokens, the state stepped in place: the first
    token's arguments, and the positions of those that move one row per token."""

    __slots__ = ("fn", "args", "moving", "count")

    def __init__(self, fn, named: dict[str, int | None], per_token: tuple[str, ...], count):
        self.fn, self.count = fn, count
        self.args = tuple(named.values())
        self.moving = tuple(i for i, name in enumerate(named) if name in per_token)

    def at(self, t: int, row: int) -> list:
        """The arguments for token t of the chunk (rows `row` bytes apart)."""
        a = list(self.args)
        for i in self.moving:
            a[i] += t * row
        return a


class NativeStep:
    """What the blocks stepped in one C call share. A block sets `kernel` (the C function),
    ARGS/PER_TOKEN, `ffn` (SparseFfn) and arguments() (its struct); c is None where the
    block steps in numpy (no compiler, or a matrix without a C kernel)."""

    kernel = ""
    ARGS = ARGS
    PER_TOKEN = ("x",)
    c = None

    def bind(self, kernels: native.Kernels) -> None:
        self.kernels = kernels
        if kernels.lib is None:
            return
        try:
            struct = self.arguments()
        except Unbound:
            return
        self._ref, self._args = struct, ctypes.addressof(struct)
        self.work_floats = kernels.fn(f"{self.kernel}_floats")(self._args)
        self._bufs = None  # use_workspace, or a workspace of its own on the first call
        self.c = kernels.fn(self.kernel)

    def use_workspace(self, work: np.ndarray, rows: np.ndarray) -> None:
        """Step in these buffers (at least work_floats floats and F ints), which blocks stepped
        one after another may share."""
        self._work, self._rows = work, rows
        self._bufs = (native.ptr(work), native.ptr(rows))

    def _arguments(self, st_in, st_out, per_token: dict[str, int]) -> dict[str, int | None]:
        """The kernel's arguments by name, in ARGS order: state read from st_in, written to st_out."""
        ptr = native.ptr
        values = {"args": self._args, "att_in": ptr(st_in.att), "att_out": ptr(st_out.att), "ffn_in": ptr(st_in.ffn),
                  "ffn_out": ptr(st_out.ffn), "wkv_in": ptr(st_in.wkv), "wkv_out": ptr(st_out.wkv),
                  "work": self._bufs[0], "rows": self._bufs[1], **per_token}
        return {name: values[name] for name in self.ARGS}

    def prepare(self, st, per_token: dict[str, int]) -> Call:
        """The in-place C step of layer state st, x (and v_first) at the addresses given."""
        return Call(self.c, self._arguments(st, st, per_token), self.PER_TOKEN, self.ffn.count)

    def step_c(self, x, st, inplace: bool, **per_token) -> np.ndarray:
        """x after the C step; st gets the new state, in new arrays, or written over the old
        ones if inplace. per_token: pointers beyond x (RWKV-7's v_first)."""
        if self._bufs is None:
            self.use_workspace(np.empty(self.work_floats, np.float32), np.empty(self.ffn.key.rows, np.int32))
        x = np.array(x, np.float32)  # updated in place
        new = st if inplace else type(st)(*(np.empty_like(a) for a in (st.att, st.ffn, st.wkv)))
        self.ffn.count(self.c(*self._arguments(st, new, {"x": native.ptr(x), **per_token}).values()))
        st.att, st.ffn, st.wkv = new.att, new.ffn, new.wkv
        return x

    def __call__(self, x, st, v_first, inplace: bool = False):
        """x after this block (v_first passed through: RWKV-7's block overrides this); st gets
        the new state, in new arrays, or written over the old ones if inplace."""
        if self.c is None:
            return self.step_numpy(x, st, v_first)
        return self.step_c(x, st, inplace), v_first

    def zero_wkv(self) -> np.ndarray:
        """This block's WKV state before any token, [H, N, N] (RWKV-4 has its own)."""
        return np.zeros((self.H, self.N, self.N), np.float32)
