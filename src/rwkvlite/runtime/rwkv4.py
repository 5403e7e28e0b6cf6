"""RWKV-4's block in step form (model/rwkv4.py, one token), stepped by rwkv4.c in one call;
step_numpy is the same in numpy between the packed-matrix kernels (the fallback and the
tests' oracle):

    x'_* = x mix_* + x_{t-1} (1 - mix_*) = x + (x_{t-1} - x) shift_*
    p = max(pp, u + k):  wkv = (e^(pp-p) aa + e^(u+k-p) v) / (e^(pp-p) bb + e^(u+k-p))
    q = max(pp + w, k):  aa, bb, pp <- e^(pp+w-q) aa + e^(k-q) v,  e^(pp+w-q) bb + e^(k-q),  q
    out = W_o (sigmoid(W_r x'_r) * wkv)
with w = -exp(time_decay) and u = time_first per channel (the wkv state: rows aa, bb, pp), and
the channel mix sigmoid(W_r x'_r) * W_v relu(W_k x'_k)^2.
"""
from __future__ import annotations

import numpy as np

from . import bind, native
from .bind import NativeStep
from .layers import Linear, SparseFfn, layer_norm, norm, sigmoid
from .weights import Weights


class Rwkv4Block(NativeStep):
    kernel = "rwkv4_block"

    def __init__(self, w: Weights, i: int, cfg: dict, structure: dict, kernels: native.Kernels):
        p, low, vec = f"blocks.{i}", structure.get("lowrank", {}), w.vec
        self.i = i
        self.ln1, self.ln2 = norm(w, f"{p}.ln1"), norm(w, f"{p}.ln2")
        self.shift = (1 - np.stack([vec(f"{p}.att.time_mix_{n}") for n in "rkv"])).astype(np.float32)
        self.w, self.u = -np.exp(vec(f"{p}.att.time_decay")).astype(np.float32), vec(f"{p}.att.time_first")
        self.r, self.k, self.v, self.o = (Linear(w, f"{p}.att.{n}", low.get(f"{p}.att.{n}"))
                                          for n in ("receptance", "key", "value", "output"))
        self.ffn_shift = (1 - np.stack([vec(f"{p}.ffn.time_mix_{n}") for n in "kr"])).astype(np.float32)
        self.fr = Linear(w, f"{p}.ffn.receptance", low.get(f"{p}.ffn.receptance"))
        self.ffn = SparseFfn(w, p, structure)
        self.bind(kernels)

    def zero_wkv(self) -> np.ndarray:
        """Rows aa, bb, pp [3, A]: two empty sums and their log-scale, -1e38."""
        S = np.zeros((3, len(self.u)), np.float32)
        S[2] = -1e38
        return S

    def arguments(self) -> native.Rwkv4Args:
        """This block as rwkv4.c's block4_t."""
        lows = [lin.w1.rows for lin in (self.r, self.k, self.v, self.o, self.fr) if lin.low is not None]
        b = native.Rwkv4Args(C=self.shift.shape[1], A=len(self.u), hidden=max(lows + [1]), ffn=bind.ffn(self.ffn))
        bind.pointers(b, {"ln1w": self.ln1[0], "ln1b": self.ln1[1], "ln2w": self.ln2[0], "ln2b": self.ln2[1],
                          "shift": self.shift, "ffn_shift": self.ffn_shift, "w": self.w, "u": self.u})
        for name in ("r", "k", "v", "o", "fr"):
            setattr(b, name, bind.linear(getattr(self, name)))
        return b

    def step_numpy(self, x, st, v_first):
        xa = layer_norm(x, *self.ln1)
        xr, xk, xv = xa + (st.att - xa) * self.shift
        r, k, v = sigmoid(self.r(xr)), self.k(xk), self.v(xv)
        aa, bb, pp = st.wkv
        ww = self.u + k
        p = np.maximum(pp, ww)
        e1, e2 = np.exp(pp - p), np.exp(ww - p)
        y = (e1 * aa + e2 * v) / (e1 * bb + e2)
        ww = pp + self.w
        q = np.maximum(ww, k)
        e1, e2 = np.exp(ww - q), np.exp(k - q)
        x = x + self.o((r * y).astype(np.float32))
        xf = layer_norm(x, *self.ln2)
        xk, xr = (xf + (st.ffn - xf) * self.ffn_shift).astype(np.float32)
        out = sigmoid(self.fr(xr)) * self.ffn(xk)
        st.att, st.ffn = xa, xf
        st.wkv = np.stack([e1 * aa + e2 * v, e1 * bb + e2, q]).astype(np.float32)
        return (x + out).astype(np.float32), v_first
