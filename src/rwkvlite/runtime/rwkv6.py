"""RWKV-5 (5.0, 5.1, 5.2) and RWKV-6 blocks in step form (model/rwkv5.py, rwkv6.py, one
token), both stepped by rwkv6.c in one call; step_numpy is the same in numpy between the
packed-matrix kernels (the fallback and the tests' oracle). The two share the block
(HeadsBlock) and differ only in how the token-shift mixes and the decay are made:

    x'_* = x mix_* + x_{t-1} (1 - mix_*)                             RWKV-5 (Rwkv5Block)
    x'_* = x + dx (maa_* + LoRA_mix(x + dx maa_x)_*), dx = x_{t-1} - x  RWKV-6 (Rwkv6Block)
    w = exp(-exp(time_decay))            (RWKV-6: + tanh(x'_w W_d1) W_d2 inside)
    y = r (S + diag(u) k^T v),  S <- diag(w) S + k^T v                (S: [N (key)][N (value)])
    out = W_o (group_norm(y) * silu(W_g x'_g))                        (no gate in 5.0)
with u per channel (5.2, 6) or per head (5.0, 5.1: u = e^time_first), and the channel mix
sigmoid(W_r x'_r) * W_v relu(W_k x'_k)^2.
"""
from __future__ import annotations

import numpy as np

from ..errors import RWKVLiteError
from . import bind, native
from .bind import NativeStep
from .layers import Linear, Lora, SparseFfn, head_norm, layer_norm, norm, sigmoid, silu
from .matrix import matrix
from .weights import Weights


class HeadsBlock(NativeStep):
    """What RWKV-5 and 6 share. A generation sets mixes() (its weights, and for rwkv6.c the
    shifts written as x + dx shift: `shift` [5, C] for w k v r g, `ffn_shift` [2, C] for k r,
    `decay`), time_inputs, ffn_inputs and dynamic_arguments (its part of block6_t)."""

    kernel = "rwkv6_block"

    def __init__(self, w: Weights, i: int, cfg: dict, structure: dict, kernels: native.Kernels):
        p, low = f"blocks.{i}", structure.get("lowrank", {})
        self.i, self.N = i, cfg["head_size"]
        self.H = (cfg.get("dim_att") or cfg["n_embd"]) // self.N
        self.eps = cfg.get("ln_x_eps", 64e-5)
        self.ln1, self.ln2 = norm(w, f"{p}.ln1"), norm(w, f"{p}.ln2")
        self.r, self.k, self.v, self.o = (Linear(w, f"{p}.att.{n}", low.get(f"{p}.att.{n}"))
                                          for n in ("receptance", "key", "value", "output"))
        gated = f"{p}.att.gate.weight" in w or f"{p}.att.gate.w1" in w  # (low-rank: w1, w2); none in 5.0
        self.g = Linear(w, f"{p}.att.gate", low.get(f"{p}.att.gate")) if gated else None
        self.ungated = None if gated else np.ones(self.H * self.N, np.float32)  # 5.0: the output as it is
        self.lnx = norm(w, f"{p}.att.ln_x")
        self.fr = Linear(w, f"{p}.ffn.receptance", low.get(f"{p}.ffn.receptance"))
        self.ffn = SparseFfn(w, p, structure)
        self.mixes(w, p)
        self.bind(kernels)

    def arguments(self) -> native.Rwkv6Args:
        """This block as rwkv6.c's block6_t."""
        lows = [lin.w1.rows for lin in (self.r, self.k, self.v, self.o, self.g, self.fr) if lin and lin.low is not None]
        b = native.Rwkv6Args(C=self.shift.shape[1], A=self.H * self.N, H=self.H, N=self.N, hidden=max(lows + [1]),
                             gated=int(self.g is not None), eps=self.eps, ffn=bind.ffn(self.ffn))
        bind.pointers(b, {"ln1w": self.ln1[0], "ln1b": self.ln1[1], "ln2w": self.ln2[0], "ln2b": self.ln2[1],
                          "shift": self.shift, "decay": self.decay, "u": self.u, "lnxw": self.lnx[0],
                          "lnxb": self.lnx[1], "ffn_shift": self.ffn_shift})
        for name in ("r", "k", "v", "g", "o", "fr"):
            if getattr(self, name) is not None:
                setattr(b, name, bind.linear(getattr(self, name)))
        self.dynamic_arguments(b)
        return b

    def step_numpy(self, x, st, v_first):
        H, N = self.H, self.N
        xa = layer_norm(x, *self.ln1)
        xr, xk, xv, xg, w = self.time_inputs(xa, st.att)
        r, k, v = (t.reshape(H, N) for t in (self.r(xr), self.k(xk), self.v(xv)))
        g = self.ungated if self.g is None else silu(self.g(xg))
        S, y = time_mix(self, st.wkv, r, k, v, w, g)
        x = x + self.o(y)
        xf = layer_norm(x, *self.ln2)
        xk, xr = self.ffn_inputs(xf, st.ffn).astype(np.float32)
        out = sigmoid(self.fr(xr)) * self.ffn(xk)
        st.att, st.ffn, st.wkv = xa, xf, S
        return (x + out).astype(np.float32), v_first


class Rwkv5Block(HeadsBlock):
    """RWKV-5.x: fixed mixes and decay."""

    def mixes(self, w: Weights, p: str) -> None:
        H, N, vec = self.H, self.N, w.vec
        self.mix = np.stack([vec(f"{p}.att.time_mix_{n}") for n in ("rkvg" if self.g else "rkv")])
        self.ffn_mix = np.stack([vec(f"{p}.ffn.time_mix_{n}") for n in "kr"])
        if f"{p}.att.time_faaaa" in w:  # 5.2: per channel
            self.w, self.u = np.exp(-np.exp(vec(f"{p}.att.time_decay"))), vec(f"{p}.att.time_faaaa")
        else:  # 5.0, 5.1: per head, u stored as log u
            self.w = np.repeat(np.exp(-np.exp(vec(f"{p}.att.time_decay"))), N)
            self.u = np.repeat(np.exp(vec(f"{p}.att.time_first")), N)
        self.w, self.u = self.w.reshape(H, N).astype(np.float32), self.u.reshape(H, N).astype(np.float32)
        none = np.zeros_like(self.mix[0])  # w has no mix, nor g without a gate
        self.shift = np.stack([none, *(1 - self.mix[[1, 2, 0]]), 1 - self.mix[3] if self.g else none])
        self.ffn_shift, self.decay = 1 - self.ffn_mix, self.w

    def dynamic_arguments(self, b: native.Rwkv6Args) -> None:
        b.dynamic = 0

    def time_inputs(self, xa, prev):
        """(x'_r, x'_k, x'_v, x'_g or None, w [H, N])"""
        xs = xa * self.mix + prev * (1 - self.mix)
        return xs[0], xs[1], xs[2], xs[3] if self.g else None, self.w

    def ffn_inputs(self, xf, prev):
        """(x'_k, x'_r)"""
        return xf * self.ffn_mix + prev * (1 - self.ffn_mix)


class Rwkv6Block(HeadsBlock):
    """RWKV-6: the mixes and the decay made from the input."""

    def mixes(self, w: Weights, p: str) -> None:
        vec = w.vec
        self.maa = np.stack([vec(f"{p}.att.time_maa_{n}") for n in "xwkvrg"])
        self.maa_w1 = Lora(w, f"{p}.att.time_maa_w1")
        # time_maa_w2 [5, D, C], five small up-projections, multiplied as stored: one [5D, C] matrix
        # (mix i: rows iD..iD+D). The passes keep 3-D tensors dense.
        entry, arrays = w.parts(f"{p}.att.time_maa_w2")
        if entry["enc"] != "dense":
            raise RWKVLiteError(f"{p}.att.time_maa_w2 is stored as {entry['enc']}; the lean runtime reads it dense")
        five, D, C = entry["shape"]
        self.maa_up = matrix({**entry, "shape": [five * D, C]}, {"values": arrays["values"].reshape(five * D, C)},
                             w.kernels)
        self.up_rows = np.arange(five * D, dtype=np.int32)
        self.decay = vec(f"{p}.att.time_decay")
        self.decay_w1, self.decay_w2 = Lora(w, f"{p}.att.time_decay_w1"), Lora(w, f"{p}.att.time_decay_w2")
        self.u = vec(f"{p}.att.time_faaaa").reshape(self.H, self.N)
        self.ffn_maa = np.stack([vec(f"{p}.ffn.time_maa_{n}") for n in "kr"])
        self.shift, self.ffn_shift = self.maa[1:], self.ffn_maa

    def dynamic_arguments(self, b: native.Rwkv6Args) -> None:
        b.dynamic, b.D = 1, len(self.up_rows) // 5
        b.hidden = max(b.hidden, self.decay_w1.A.cols)
        bind.pointers(b, {"maa_x": self.maa[0]})
        b.up_rows = native.ptr(self.up_rows)
        b.maa_w1, b.maa_w2, b.decay_w1, b.decay_w2 = (bind.mat(m) for m in (self.maa_w1.A, self.maa_up,
                                                                           self.decay_w1.A, self.decay_w2.A))

    def time_inputs(self, xa, prev):
        dx = prev - xa
        mix = np.tanh(self.maa_w1(xa + dx * self.maa[0])).reshape(5, -1)
        rows = self.up_rows.reshape(5, -1)
        up = np.stack([self.maa_up.rmv(mix[i], rows[i]).copy() for i in range(5)])  # rmv's buffer is the matrix's
        xw, xk, xv, xr, xg = xa + dx * (self.maa[1:] + up)
        w = np.exp(-np.exp(self.decay + self.decay_w2(np.tanh(self.decay_w1(xw)))))
        return xr, xk, xv, xg, w.reshape(self.H, self.N)

    def ffn_inputs(self, xf, prev):
        return xf + (prev - xf) * self.ffn_maa


def time_mix(b: HeadsBlock, S, r, k, v, w, g) -> tuple[np.ndarray, np.ndarray]:
    """RWKV-5/6's WKV (bonus u), group norm and gate: (S', y [A]); the old S is kept.
    r, k, v, w (the per-step decay): [H, N]."""
    if b.kernels.lib is not None:
        S = np.ascontiguousarray(S, np.float32)
        T, out = np.empty_like(S), np.empty(S.shape[0] * S.shape[1], np.float32)
        r, k, v, w, g = (np.ascontiguousarray(t, np.float32) for t in (r, k, v, w, g))
        ptr = native.ptr
        b.kernels.fn("rwkv6_time_mix")(ptr(S), ptr(T), ptr(r), ptr(k), ptr(v), ptr(w), ptr(b.u), ptr(b.lnx[0]),
                                       ptr(b.lnx[1]), ptr(g), b.H, b.N, b.eps, ptr(out))
        return T, out
    kv = k[:, :, None] * v[:, None, :]
    y = (r[:, None, :] @ (S + b.u[:, :, None] * kv))[:, 0]
    S = (w[:, :, None] * S + kv).astype(np.float32)
    return S, ((head_norm(y, b.eps).reshape(-1) * b.lnx[0] + b.lnx[1]) * g).astype(np.float32)
