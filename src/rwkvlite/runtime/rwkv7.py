"""RWKV-7's block in step form (model/rwkv7.py, one token), stepped by rwkv7.c in one call;
step_numpy is the same in numpy between the packed-matrix kernels: the fallback where a
matrix has no C kernel, and the tests' oracle.

    x'_* = x + (x_{t-1} - x) x_*                                   token shift, * in r w k v a g
    w = exp(-e^-0.5 sigmoid(w0 + tanh(x'_w w1) w2))                 decay
    a = sigmoid(a0 + x'_a a1 a2)                                   in-context learning rate
    v <- v + (v_first - v) sigmoid(v0 + x'_v v1 v2)                 (blocks after the first)
    kk = normalize(k k_k),  k <- k (1 + (a - 1) k_a)
    S <- S diag(w) - S kk^T (kk a) + v^T k,   y = S r               (S: [N (value)][N (key)])
    out = W_o ((group_norm(y) + (r k r_k) v) g),  g = sigmoid(x'_g g1) g2
and the channel mix W_v relu(W_k x'_k)^2.
"""
from __future__ import annotations

import math

import numpy as np

from . import bind, native
from .bind import NativeStep
from .layers import Linear, Lora, SparseFfn, head_norm, layer_norm, norm, sigmoid
from .weights import Weights

LOG_DECAY_SCALE = math.exp(-0.5)


class Rwkv7Block(NativeStep):
    kernel = "rwkv7_block"
    ARGS = bind.ARGS[:8] + ("v_first",) + bind.ARGS[8:]
    PER_TOKEN = ("x", "v_first")

    def __init__(self, w: Weights, i: int, cfg: dict, structure: dict, kernels: native.Kernels):
        p, low, vec = f"blocks.{i}", structure.get("lowrank", {}), w.vec
        self.i, self.C, self.H, self.N = i, cfg["n_embd"], cfg["n_embd"] // cfg["head_size"], cfg["head_size"]
        self.eps = cfg.get("ln_x_eps", 64e-5)
        self.ln1, self.ln2 = norm(w, f"{p}.ln1"), norm(w, f"{p}.ln2")
        self.mix = np.stack([vec(f"{p}.att.x_{n}") for n in "rwkvag"])
        self.w0, self.a0, self.k_k, self.k_a = (vec(f"{p}.att.{n}") for n in ("w0", "a0", "k_k", "k_a"))
        self.r_k = vec(f"{p}.att.r_k")
        self.w1, self.w2, self.a1, self.a2, self.g1, self.g2 = (Lora(w, f"{p}.att.{n}") for n in
                                                                ("w1", "w2", "a1", "a2", "g1", "g2"))
        if i > 0:
            self.v0, self.v1, self.v2 = vec(f"{p}.att.v0"), Lora(w, f"{p}.att.v1"), Lora(w, f"{p}.att.v2")
        self.r, self.k, self.v = (Linear(w, f"{p}.att.{n}", low.get(f"{p}.att.{n}"))
                                  for n in ("receptance", "key", "value"))
        self.o = Linear(w, f"{p}.att.output", None)
        self.lnx = norm(w, f"{p}.att.ln_x")
        # addresses of k_k, k_a, r_k and ln_x for the C time mix (these arrays live as long as the block)
        self.fixed_ptrs = tuple(native.ptr(t) for t in (self.k_k, self.k_a, self.r_k, *self.lnx))
        self.x_k = vec(f"{p}.ffn.x_k")
        self.ffn = SparseFfn(w, p, structure)
        self.bind(kernels)

    def arguments(self) -> native.Rwkv7Args:
        """This block as rwkv7.c's block7_t."""
        loras = [self.w1, self.w2, self.a1, self.a2, self.g1, self.g2] + ([self.v1, self.v2] if self.i else [])
        lows = [lin.w1.rows for lin in (self.r, self.k, self.v, self.o) if lin.low is not None]
        b = native.Rwkv7Args(C=self.C, H=self.H, N=self.N, first=int(self.i == 0), eps=self.eps,
                             hidden=max([lora.A.cols for lora in loras] + lows), ffn=bind.ffn(self.ffn))
        bind.pointers(b, {"ln1w": self.ln1[0], "ln1b": self.ln1[1], "ln2w": self.ln2[0], "ln2b": self.ln2[1],
                          "mix": self.mix, "w0": self.w0, "a0": self.a0, "k_k": self.k_k, "k_a": self.k_a,
                          "r_k": self.r_k, "lnxw": self.lnx[0], "lnxb": self.lnx[1], "x_k": self.x_k,
                          "v0": getattr(self, "v0", None)})
        for name in "rkvo":
            setattr(b, name, bind.linear(getattr(self, name)))
        for name, lora in zip(("w1", "w2", "a1", "a2", "g1", "g2", "v1", "v2"), loras):
            setattr(b, name, bind.mat(lora.A))
        return b

    def __call__(self, x, st, v_first, inplace: bool = False):
        """x after this block and v_first; st (a LayerState) is given the block's new state, in
        new arrays, or written over the old ones if inplace."""
        if self.c is None:
            return self.step_numpy(x, st, v_first)
        if self.i == 0:
            v_first = np.empty(self.C, np.float32)
        elif v_first is None:
            raise ValueError("blocks after the first need v_first")
        return self.step_c(x, st, inplace, v_first=native.ptr(v_first)), v_first

    def step_numpy(self, x, st, v_first):
        xa = layer_norm(x, *self.ln1)
        dx = st.att - xa
        st.att = xa
        xr, xw, xk, xv, xA, xg = xa + dx * self.mix  # token shift, six mixes at once
        r, k, v = self.r(xr), self.k(xk), self.v(xv)
        w_raw = self.w0 + self.w2(np.tanh(self.w1(xw)))
        a_raw = self.a0 + self.a2(self.a1(xA))
        g = self.g2(sigmoid(self.g1(xg)))
        if self.i == 0:
            v_first = v = v.copy()  # mv's buffer is the matrix's own
        else:
            v = v + (v_first - v) * sigmoid(self.v0 + self.v2(self.v1(xv)))
        st.wkv, y = time_mix(self, st.wkv, r, w_raw, k, v, a_raw, g, self.kernels)
        x = x + self.o(y)
        xf = layer_norm(x, *self.ln2)
        dx = st.ffn - xf
        st.ffn = xf
        xk = (xf + dx * self.x_k).astype(np.float32)
        return (x + self.ffn(xk)).astype(np.float32), v_first


def time_mix(b, S, r, w_raw, k, v, a_raw, g, kernels: native.Kernels | None = None) -> tuple[np.ndarray, np.ndarray]:
    """RWKV-7's time mix after the projections: decay, in-context learning rate, state update,
    read-out, group norm, bonus and gate. (S', y [C]); the old S is kept. b: the block's
    H, N, eps, k_k, k_a, r_k, lnx and fixed_ptrs; kernels: the C kernel (default: as built)."""
    kernels = kernels or native.Kernels()
    H, N = b.H, b.N
    if kernels.lib is not None:
        T, out = np.empty_like(S), np.empty(H * N, np.float32)
        ptr = native.ptr
        r, w_raw, k, v, a_raw, g = (np.ascontiguousarray(t, np.float32) for t in (r, w_raw, k, v, a_raw, g))
        kernels.fn("rwkv7_time_mix")(ptr(S), ptr(T), ptr(r), ptr(w_raw), ptr(k), ptr(v), ptr(a_raw), *b.fixed_ptrs,
                                     ptr(g), H, N, b.eps, ptr(out))
        return T, out
    w = np.exp(-LOG_DECAY_SCALE * sigmoid(w_raw))
    a = sigmoid(a_raw)
    kk = (k * b.k_k).reshape(H, N)
    kk = kk / np.maximum(np.linalg.norm(kk, axis=-1, keepdims=True), 1e-12)
    k = k * (1 + (a - 1) * b.k_a)
    r, w, k, v, a = (t.reshape(H, N) for t in (r, w, k, v, a))
    S = S * w[:, None, :] + (S @ -kk[:, :, None]) * (kk * a)[:, None, :] + v[:, :, None] * k[:, None, :]
    y = head_norm((S @ r[:, :, None])[:, :, 0], b.eps)
    y = y * b.lnx[0].reshape(H, N) + b.lnx[1].reshape(H, N) + (r * k * b.r_k.reshape(H, N)).sum(-1, keepdims=True) * v
    return S, (y.reshape(-1) * g).astype(np.float32)
