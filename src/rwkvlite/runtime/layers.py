"""The numpy layers every RWKV generation's step shares: norms, projections (plain or
low-rank), LoRA-like factors, and the channel mix's sparse FFN with its predictor.
Matrices are multiplied as stored (runtime/matrix.py); only the rows a token needs are read."""
from __future__ import annotations

import numpy as np

from ..format.encodings import decode
from . import native
from .matrix import SignBits
from .weights import Weights


def layer_norm(x, w, b, eps=1e-5):
    d = x - np.add.reduce(x) / x.size
    return d * (w / np.sqrt(np.dot(d, d) / x.size + eps)) + b


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def silu(x):
    return x * sigmoid(x)


def head_norm(y, eps):
    """[H, N] normalised per head (GroupNorm before its weight and bias)."""
    d = y - y.mean(-1, keepdims=True)
    return d / np.sqrt((d * d).mean(-1, keepdims=True) + eps)


def norm(w: Weights, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A LayerNorm's (weight, bias)."""
    return w.vec(f"{name}.weight"), w.vec(f"{name}.bias")


class Linear:
    """y = W x for a plain or low-rank projection (passes/lowrank.py: W ~ w2 f(w1 x) + diag x)."""

    def __init__(self, w: Weights, name: str, spec: dict | None):
        if spec is None:
            self.W = w.mat(f"{name}.weight")
            self.low = None
        else:
            self.w1, self.w2 = w.mat(f"{name}.w1"), w.mat(f"{name}.w2")
            self.low = spec["variant"]
            self.diag = w.vec(f"{name}.diag") if f"{name}.diag" in w else None

    def __call__(self, x):
        if self.low is None:
            return self.W.mv(x)
        h = self.w1.mv(x)
        if self.low == "relu":
            h = np.maximum(h, 0) ** 2
        y = self.w2.mv(h)
        return y + x * self.diag if self.diag is not None else y


class Lora:
    """x @ A for a LoRA-like factor stored [in, r]."""

    def __init__(self, w: Weights, name: str):
        self.A = w.mat(name)

    def __call__(self, x):
        return self.A.rmv(x)


class DenseCopy:
    """An n-bit predictor copy decoded once (small models only): W x."""

    def __init__(self, W: np.ndarray):
        self.W = W

    def mv(self, x):
        return self.W @ x

    def native(self) -> native.Mat:
        return native.Mat(kind=native.MAT_KINDS["f32"], rows=self.W.shape[0], cols=self.W.shape[1],
                          q=native.ptr(self.W))


class Predictor:
    """Which FFN neurons to compute (passes/ffn_predictor.py): MLP OR top share of a 1-bit key."""

    def __init__(self, w: Weights, name: str, spec: dict):
        self.m1, self.m2 = w.mat(f"{name}.mlp1.weight"), w.mat(f"{name}.mlp2.weight")
        self.b1, self.b2 = w.vec(f"{name}.mlp1.bias"), w.vec(f"{name}.mlp2.bias")
        self.keep = float(w.vec(f"{name}.keep")[0])
        t = min(max(float(w.vec(f"{name}.threshold")[0]), 1e-7), 1 - 1e-7)
        self.cut = (np.log(t / (1 - t)) - self.b2).astype(np.float32)  # sigmoid(z + b2) > t  <=>  z > cut
        scale = w.vec(f"{name}.qscale")
        entry, arrays = w.parts(f"{name}.qsign")
        if spec["quant_bits"] == 1 and entry.get("step") == 2 and entry["shape"][1] % 8 == 0:
            self.copy = SignBits(entry, arrays, scale, w.kernels)
        else:  # n-bit copies: decoded once (small models only)
            self.copy = DenseCopy(decode(entry, arrays).astype(np.float32) * scale[:, None])
        self.n = entry["shape"][0]

    def active(self, x) -> np.ndarray:
        mask = self.m2.mv(np.maximum(self.m1.mv(x) + self.b1, 0)) > self.cut
        s = self.copy.mv(x)
        n = max(1, round(self.keep * self.n))
        cutoff = np.partition(s, self.n - n)[self.n - n]
        return np.flatnonzero(mask | (s >= cutoff)).astype(np.int32)


class SparseFfn:
    """The channel mix's W_v relu(W_k x_k)^2 (blocks p.ffn.key / p.ffn.value), with a
    predictor over the neurons it predicts active only. A value matrix stored transposed
    (rwkvlite's files) is read only at the neurons whose key product came out > 0.
    key_rows counts the key rows computed and value_rows the value rows read (all F for a
    value matrix stored [C, F]), as the C kernels count them (count)."""

    def __init__(self, w: Weights, p: str, structure: dict):
        self.key, self.value = w.mat(f"{p}.ffn.key.weight"), w.mat(f"{p}.ffn.value.weight")
        spec = structure.get("ffn_predictor", {}).get(f"{p}.ffn.key")
        self.predictor = Predictor(w, f"{p}.ffn.key", spec) if spec else None
        self.key_rows = self.value_rows = 0

    def count(self, counts: int) -> None:
        """Add a C step's FFN_COUNTS (kernels.h): key rows computed, and value rows read in the
        high 32 bits."""
        self.key_rows += counts & 0xFFFFFFFF
        self.value_rows += counts >> 32

    def __call__(self, xk) -> np.ndarray:
        F = self.key.rows
        rows = None if self.predictor is None else self.predictor.active(xk)
        self.key_rows += F if rows is None else len(rows)
        h = np.maximum(self.key.mv(xk, rows), 0) ** 2
        if self.value.transposed:
            used = np.flatnonzero(h > 0).astype(np.int32)
            self.value_rows += len(used)
            return self.value.rmv(h[used], used if rows is None else rows[used])
        self.value_rows += F  # a value matrix stored [C, F]: read whole, inactive neurons weigh 0
        if rows is None:
            return self.value.mv(h)
        full = np.zeros(self.value.cols, np.float32)
        full[rows] = h
        return self.value.mv(full)
