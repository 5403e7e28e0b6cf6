"""The lean runtime: one token at a time from a memory-mapped compressed file, in numpy
plus the C kernels, without PyTorch: one C call per block for RWKV-7 (Block, rwkv7.c),
RWKV-6 and 5 (Block6, Block5, rwkv6.c) and RWKV-4 (Block4, rwkv4.c), with each block's step
in numpy as the fallback and the tests' oracle; the equations are those of model/rwkv7.py,
rwkv6.py, rwkv5.py and rwkv4.py in step form.

Weights stay as stored: matrices are multiplied packed (runtime/matrix.py); vectors and
norms (a few KB per layer) are decoded to float32 once. RWKV-Lite structures are used as
such: low-rank factors, FFN predictors (only predicted-active key rows and value columns
are read), the embedding cache (ln0 folded: rows read on demand, LRU-cached) and the
clustered head (only the chosen clusters' rows are read).
"""
from __future__ import annotations

import ctypes
import math

import numpy as np

from .. import format as compressed
from ..errors import RWKVLiteError
from ..format.encodings import decode
from . import native
from .cache import EmbeddingRows
from .matrix import SignBits, matrix

LOG_DECAY_SCALE = math.exp(-0.5)


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


# The embedding, whose rows the runtime reads with os.pread (runtime/cache.py, FileRows): left
# in the page cache after verification, so a row is a system call, not a disk read, and no
# resident memory (the file is not mapped there).
CACHED = ("emb.weight",)


class Weights:
    """Lazy access to a compressed file's tensors: matrices stay packed, vectors decoded."""

    def __init__(self, path, verify: bool = True, kernels: native.Kernels | None = None):
        self.path, self.kernels = path, kernels  # kernels: the C kernels the matrices use (None: numpy)
        self.manifest, self.arrays = compressed.container.read(path, verify=verify, keep_cached=CACHED)
        self.entries = self.manifest["tensors"]

    def __contains__(self, name):
        return name in self.entries

    def parts(self, name):
        e = self.entries[name]
        return e, {role: self.arrays[key] for role, key in e["arrays"].items()}

    def vec(self, name) -> np.ndarray:
        return decode(*self.parts(name)).astype(np.float32).reshape(-1)

    def mat(self, name):
        return matrix(*self.parts(name), self.kernels)


class Linear:
    """y = W x for a plain or low-rank projection (passes/lowrank.py)."""

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

    def native(self):
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


class Unbound(Exception):
    """A matrix without C kernels: its block steps in numpy."""


def _native(m) -> native.Mat:
    n = m.native()
    if n is None:
        raise Unbound(type(m).__name__)
    return n


def _native_linear(lin: Linear) -> native.LinearT:
    if lin.low is None:
        return native.LinearT(W=_native(lin.W))
    return native.LinearT(w1=_native(lin.w1), w2=_native(lin.w2), lowrank=1 if lin.low == "linear" else 2,
                           diag=native.ptr(lin.diag))


def _native_ffn(b) -> native.FfnT:
    """Block b's channel-mix key, value and predictor as the C ffn_t."""
    pred = b.predictor
    f = native.FfnT(fk=_native(b.fk), fv=_native(b.fv), fv_transposed=int(b.fv.transposed),
                     predicted=int(pred is not None))
    if pred is not None:
        sign = isinstance(pred.copy, SignBits)
        f.pred = native.PredictorT(m1=_native(pred.m1), m2=_native(pred.m2), copy=_native(pred.copy),
                                    b1=native.ptr(pred.b1), cut=native.ptr(pred.cut),
                                    scale=native.ptr(pred.copy.scale) if sign else None, keep=pred.keep)
    return f


class OneCall:
    """What the blocks stepped in one C call share: binding their struct, a workspace, and the
    call itself with the state arrays it reads and writes. Subclasses set `kernel` (the C
    function) and build their struct in _native; c is None where the block steps in numpy."""

    kernel = ""
    c = None

    def bind(self, kernels: native.Kernels | None) -> None:
        """self.c: the C step, or None (no compiler, or a matrix without a C kernel)."""
        self.kernels = kernels if kernels is not None and kernels.lib is not None else None
        try:
            self.c = self._native() if self.kernels is not None else None
        except Unbound:
            self.c = None

    def _bound(self, struct):
        """Keep the struct alive, take its address and workspace size; the C function."""
        self._ref, self._args = struct, ctypes.addressof(struct)
        self.work_floats = self.kernels.fn(f"{self.kernel}_floats")(self._args)
        self._bufs = None  # use_workspace, or a workspace of its own on the first call
        return self.kernels.fn(self.kernel)

    def use_workspace(self, work: np.ndarray, rows: np.ndarray) -> None:
        """Step in these buffers (at least work_floats floats and F ints), which blocks stepped
        one after another may share."""
        self._work, self._rows = work, rows
        self._bufs = (native.ptr(work), native.ptr(rows))

    def step_c(self, x, st, inplace: bool, *extra) -> np.ndarray:
        """x after the C step (extra: pointers the kernel takes after the state's); st gets the
        new state, in new arrays, or written over the old ones if inplace."""
        ptr = native.ptr
        if self._bufs is None:
            self.use_workspace(np.empty(self.work_floats, np.float32), np.empty(self.fk.rows, np.int32))
        x = np.array(x, np.float32)  # updated in place
        if inplace:
            att, ffn, wkv = st["att"], st["ffn"], st["wkv"]
        else:
            att, ffn, wkv = np.empty_like(st["att"]), np.empty_like(st["ffn"]), np.empty_like(st["wkv"])
        n = self.c(self._args, ptr(x), ptr(st["att"]), ptr(att), ptr(st["ffn"]), ptr(ffn), ptr(st["wkv"]), ptr(wkv),
                   *extra, *self._bufs)
        st["att"], st["ffn"], st["wkv"] = att, ffn, wkv
        self.count(n)
        return x

    def __call__(self, x, st, v_first, inplace: bool = False):
        """x after this block (v_first passed through: RWKV-7's Block overrides this); st gets
        the new state, in new arrays, or written over the old ones if inplace."""
        if self.c is None:
            return self.step_numpy(x, st, v_first)
        return self.step_c(x, st, inplace), v_first

    def channel_mix_weights(self, w: Weights, p: str, structure: dict) -> None:
        """Block p's FFN key and value, its predictor if any, and the counters of the rows read."""
        self.fk, self.fv = w.mat(f"{p}.ffn.key.weight"), w.mat(f"{p}.ffn.value.weight")
        spec = structure.get("ffn_predictor", {}).get(f"{p}.ffn.key")
        self.predictor = Predictor(w, f"{p}.ffn.key", spec) if spec else None
        self.active_total = self.values_total = 0  # FFN key rows computed, value rows read

    def zero_wkv(self) -> np.ndarray:
        """This block's WKV state before any token, [H][N][N] (Block4 has its own)."""
        return np.zeros((self.H, self.N, self.N), np.float32)

    def count(self, counts: int) -> None:
        """Add a C step's FFN_COUNTS (runtime/c/internal.h): key rows computed, and value rows read in the
        high 32 bits."""
        self.active_total += counts & 0xFFFFFFFF
        self.values_total += counts >> 32


class Block(OneCall):
    """One RWKV-7 block, stepped by rwkv7.c in one call (step_numpy: the same in numpy, the
    fallback where a matrix has no C kernel, and the tests' oracle)."""

    kernel = "rwkv7_block"

    def __init__(self, w: Weights, i: int, cfg: dict, structure: dict):
        p = f"blocks.{i}"
        low = structure.get("lowrank", {})
        self.i, self.H, self.N = i, cfg["n_embd"] // cfg["head_size"], cfg["head_size"]
        self.eps = cfg.get("ln_x_eps", 64e-5)
        vec = w.vec
        self.ln1 = (vec(f"{p}.ln1.weight"), vec(f"{p}.ln1.bias"))
        self.ln2 = (vec(f"{p}.ln2.weight"), vec(f"{p}.ln2.bias"))
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
        self.lnx = (vec(f"{p}.att.ln_x.weight"), vec(f"{p}.att.ln_x.bias"))
        # addresses of k_k, k_a, r_k and ln_x for the C time mix (these arrays live as long as the block)
        self.fixed_ptrs = tuple(native.ptr(t) for t in (self.k_k, self.k_a, self.r_k, *self.lnx))
        self.x_k = vec(f"{p}.ffn.x_k")
        self.channel_mix_weights(w, p, structure)
        self.C = cfg["n_embd"]
        self.bind(w.kernels)

    def _native(self):
        """This block as rwkv7.c's block7_t (native.Rwkv7Args)."""
        loras = [self.w1, self.w2, self.a1, self.a2, self.g1, self.g2] + ([self.v1, self.v2] if self.i else [])
        lows = [lin.w1.rows for lin in (self.r, self.k, self.v, self.o) if lin.low is not None]
        b = native.Rwkv7Args(C=self.C, H=self.H, N=self.N, first=int(self.i == 0), eps=self.eps,
                           hidden=max([l.A.cols for l in loras] + lows), ffn=_native_ffn(self))
        vectors = {"ln1w": self.ln1[0], "ln1b": self.ln1[1], "ln2w": self.ln2[0], "ln2b": self.ln2[1], "mix": self.mix,
                   "w0": self.w0, "a0": self.a0, "k_k": self.k_k, "k_a": self.k_a, "r_k": self.r_k,
                   "lnxw": self.lnx[0], "lnxb": self.lnx[1], "x_k": self.x_k, "v0": getattr(self, "v0", None)}
        for name, v in vectors.items():
            setattr(b, name, native.ptr(v))
        for name in "rkvo":
            setattr(b, name, _native_linear(getattr(self, name)))
        for name, lora in zip(("w1", "w2", "a1", "a2", "g1", "g2", "v1", "v2"), loras):
            setattr(b, name, _native(lora.A))
        return self._bound(b)

    def __call__(self, x, st, v_first, inplace: bool = False):
        """x after this block and v_first; st (att, ffn, wkv) is given the block's new state,
        in new arrays, or written over the old ones if inplace."""
        if self.c is None:
            return self.step_numpy(x, st, v_first)
        if self.i == 0:
            v_first = np.empty(self.C, np.float32)
        elif v_first is None:
            raise ValueError("blocks after the first need v_first")
        return self.step_c(x, st, inplace, native.ptr(v_first)), v_first

    def step_numpy(self, x, st, v_first):
        xa = layer_norm(x, *self.ln1)
        dx = st["att"] - xa
        st["att"] = xa
        xr, xw, xk, xv, xA, xg = xa + dx * self.mix  # token shift, six mixes at once
        r, k, v = self.r(xr), self.k(xk), self.v(xv)
        w_raw = self.w0 + self.w2(np.tanh(self.w1(xw)))
        a_raw = self.a0 + self.a2(self.a1(xA))
        g = self.g2(sigmoid(self.g1(xg)))
        if self.i == 0:
            v_first = v = v.copy()  # mv's buffer is the matrix's own
        else:
            v = v + (v_first - v) * sigmoid(self.v0 + self.v2(self.v1(xv)))
        st["wkv"], y = time_mix(self, st["wkv"], r, w_raw, k, v, a_raw, g)
        x = x + self.o(y)
        xf = layer_norm(x, *self.ln2)
        dx = st["ffn"] - xf
        st["ffn"] = xf
        xk = (xf + dx * self.x_k).astype(np.float32)
        return (x + sparse_ffn(self, xk)).astype(np.float32), v_first


def sparse_ffn(b, xk) -> np.ndarray:
    """W_v relu(W_k xk)^2 of block b's channel mix; with a predictor, over the neurons it
    predicts active only. A value matrix stored transposed (rwkvlite's files) is read only at
    the neurons whose key product came out > 0. b.active_total counts the key rows computed
    and b.values_total the value rows read (all F for a value matrix stored [C, F]), as
    blocks.c's channel_mix counts them."""
    F = b.fk.rows
    rows = None if b.predictor is None else b.predictor.active(xk)
    b.active_total += F if rows is None else len(rows)
    h = np.maximum(b.fk.mv(xk, rows), 0) ** 2
    if b.fv.transposed:
        used = np.flatnonzero(h > 0).astype(np.int32)
        b.values_total += len(used)
        return b.fv.rmv(h[used], used if rows is None else rows[used])
    b.values_total += F  # a value matrix stored [C, F]: read whole, inactive neurons weigh 0
    if rows is None:
        return b.fv.mv(h)
    full = np.zeros(b.fv.cols, np.float32)
    full[rows] = h
    return b.fv.mv(full)


def time_mix(b: Block, S, r, w_raw, k, v, a_raw, g) -> tuple[np.ndarray, np.ndarray]:
    """RWKV-7's time mix after the projections (model/rwkv7.py): decay, in-context learning
    rate, state update, read-out, group norm, bonus and gate. (S', y [C]); the old S is kept."""
    H, N = b.H, b.N
    if b.kernels is not None:
        T, out = np.empty_like(S), np.empty(H * N, np.float32)
        ptr = native.ptr
        r, w_raw, k, v, a_raw, g = (np.ascontiguousarray(t, np.float32) for t in (r, w_raw, k, v, a_raw, g))
        b.kernels.fn("rwkv7_time_mix")(ptr(S), ptr(T), ptr(r), ptr(w_raw), ptr(k), ptr(v), ptr(a_raw), *b.fixed_ptrs, ptr(g), H, N,
                           b.eps, ptr(out))
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


class Block5(OneCall):
    """One RWKV-5 block (model/rwkv5.py in step form), stepped by rwkv6.c in one call
    (step_numpy: the same in numpy between the packed-matrix kernels, the fallback and the
    tests' oracle):
      x'_* = x mix_* + x_{t-1} (1 - mix_*)
      y = r (S + diag(u) k^T v),  S <- diag(w) S + k^T v               (S: [N (key)][N (value)])
      out = W_o (group_norm(y) * silu(W_g x'_g))                        (no gate in 5.0)
    with w = exp(-exp(time_decay)) and u per channel (5.2) or per head (5.0, 5.1: u = e^time_first),
    and the channel mix sigmoid(W_r x'_r) * W_v relu(W_k x'_k)^2. RWKV-6 (Block6) makes the
    mixes and the decay depend on the input."""

    kernel = "rwkv6_block"

    def __init__(self, w: Weights, i: int, cfg: dict, structure: dict):
        p, low, vec = f"blocks.{i}", structure.get("lowrank", {}), w.vec
        self.i, self.N = i, cfg["head_size"]
        self.H = (cfg.get("dim_att") or cfg["n_embd"]) // self.N
        self.eps = cfg.get("ln_x_eps", 64e-5)
        self.ln1 = (vec(f"{p}.ln1.weight"), vec(f"{p}.ln1.bias"))
        self.ln2 = (vec(f"{p}.ln2.weight"), vec(f"{p}.ln2.bias"))
        self.r, self.k, self.v, self.o = (Linear(w, f"{p}.att.{n}", low.get(f"{p}.att.{n}"))
                                          for n in ("receptance", "key", "value", "output"))
        gated = f"{p}.att.gate.weight" in w or f"{p}.att.gate.w1" in w  # (low-rank: w1, w2); none in 5.0
        self.g = Linear(w, f"{p}.att.gate", low.get(f"{p}.att.gate")) if gated else None
        self.ungated = None if gated else np.ones(self.H * self.N, np.float32)  # 5.0: the output as it is
        self.lnx = (vec(f"{p}.att.ln_x.weight"), vec(f"{p}.att.ln_x.bias"))
        self.fr = Linear(w, f"{p}.ffn.receptance", low.get(f"{p}.ffn.receptance"))
        self.channel_mix_weights(w, p, structure)
        self.mixes(w, p)
        self.bind(w.kernels)

    def mixes(self, w: Weights, p: str) -> None:
        """The token-shift mixes and the decay and bonus; for rwkv6.c, the shifts written as
        x + dx shift (dx = x_{t-1} - x): [5, C] for w k v r g (w and a missing g: 0) and
        [2, C] for the channel mix's k r, and w as the decay."""
        H, N, vec = self.H, self.N, w.vec
        self.mix = np.stack([vec(f"{p}.att.time_mix_{n}") for n in ("rkvg" if self.g else "rkv")])
        self.ffn_mix = np.stack([vec(f"{p}.ffn.time_mix_{n}") for n in "kr"])
        if f"{p}.att.time_faaaa" in w:  # 5.2: per channel
            self.w, self.u = np.exp(-np.exp(vec(f"{p}.att.time_decay"))), vec(f"{p}.att.time_faaaa")
        else:  # 5.0, 5.1: per head, u stored as log u
            self.w = np.repeat(np.exp(-np.exp(vec(f"{p}.att.time_decay"))), N)
            self.u = np.repeat(np.exp(vec(f"{p}.att.time_first")), N)
        self.w, self.u = self.w.reshape(H, N).astype(np.float32), self.u.reshape(H, N).astype(np.float32)
        none = np.zeros_like(self.mix[0])
        self.shift = np.stack([none, *(1 - self.mix[[1, 2, 0]]), 1 - self.mix[3] if self.g else none])
        self.ffn_shift, self.decay = 1 - self.ffn_mix, self.w

    def _native(self):
        """This block as rwkv6.c's block6_t (native.Rwkv6Args)."""
        dynamic = isinstance(self, Block6)
        C, A = self.shift.shape[1], self.H * self.N
        lows = [lin.w1.rows for lin in (self.r, self.k, self.v, self.o, self.g, self.fr) if lin and lin.low is not None]
        b = native.Rwkv6Args(C=C, A=A, H=self.H, N=self.N, D=len(self.up_rows) // 5 if dynamic else 0,
                           hidden=max(lows + ([self.decay_w1.A.cols] if dynamic else []) + [1]), dynamic=int(dynamic),
                           gated=int(self.g is not None), eps=self.eps, ffn=_native_ffn(self))
        vectors = {"ln1w": self.ln1[0], "ln1b": self.ln1[1], "ln2w": self.ln2[0], "ln2b": self.ln2[1],
                   "shift": self.shift, "decay": self.decay, "u": self.u, "lnxw": self.lnx[0], "lnxb": self.lnx[1],
                   "ffn_shift": self.ffn_shift}
        if dynamic:
            vectors.update(maa_x=self.maa[0])
            b.up_rows = native.ptr(self.up_rows)
            b.maa_w1, b.maa_w2, b.decay_w1, b.decay_w2 = (_native(m) for m in (self.maa_w1.A, self.maa_up,
                                                                               self.decay_w1.A, self.decay_w2.A))
        for name, v in vectors.items():
            assert v.dtype == np.float32 and v.flags.c_contiguous, name
            setattr(b, name, native.ptr(v))
        for name in ("r", "k", "v", "g", "o", "fr"):
            if getattr(self, name) is not None:
                setattr(b, name, _native_linear(getattr(self, name)))
        return self._bound(b)

    def time_inputs(self, xa, prev):
        """(x'_r, x'_k, x'_v, x'_g or None, w [H, N])"""
        xs = xa * self.mix + prev * (1 - self.mix)
        return xs[0], xs[1], xs[2], xs[3] if self.g else None, self.w

    def ffn_inputs(self, xf, prev):
        """(x'_k, x'_r)"""
        return xf * self.ffn_mix + prev * (1 - self.ffn_mix)

    def step_numpy(self, x, st, v_first):
        H, N = self.H, self.N
        xa = layer_norm(x, *self.ln1)
        xr, xk, xv, xg, w = self.time_inputs(xa, st["att"])
        r, k, v = (t.reshape(H, N) for t in (self.r(xr), self.k(xk), self.v(xv)))
        g = self.ungated if self.g is None else silu(self.g(xg))
        S, y = time_mix6(self, st["wkv"], r, k, v, w, g)
        x = x + self.o(y)
        xf = layer_norm(x, *self.ln2)
        xk, xr = self.ffn_inputs(xf, st["ffn"]).astype(np.float32)
        out = sigmoid(self.fr(xr)) * sparse_ffn(self, xk)
        st["att"], st["ffn"], st["wkv"] = xa, xf, S
        return (x + out).astype(np.float32), v_first


class Block6(Block5):
    """One RWKV-6 block (model/rwkv6.py in step form): RWKV-5.2's with the mixes and the decay
    made from the input,
      m_* = LoRA_mix(x + dx maa_x),  x'_* = x + dx (maa_* + m_*)       (dx = x_{t-1} - x)
      w = exp(-exp(time_decay + tanh(x'_w W_d1) W_d2))
    and the channel mix's x'_* = x + dx maa_*."""

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


class Block4(OneCall):
    """One RWKV-4 block (model/rwkv4.py in step form), stepped by rwkv4.c in one call (step_numpy:
    the same in numpy between the packed-matrix kernels, the fallback and the tests' oracle):
      x'_* = x mix_* + x_{t-1} (1 - mix_*) = x + (x_{t-1} - x) shift_*
      p = max(pp, u + k):  wkv = (e^(pp-p) aa + e^(u+k-p) v) / (e^(pp-p) bb + e^(u+k-p))
      q = max(pp + w, k):  aa, bb, pp <- e^(pp+w-q) aa + e^(k-q) v,  e^(pp+w-q) bb + e^(k-q),  q
      out = W_o (sigmoid(W_r x'_r) * wkv)
    with w = -exp(time_decay) and u = time_first per channel (the wkv state: rows aa, bb, pp), and
    the channel mix of RWKV-5, sigmoid(W_r x'_r) * W_v relu(W_k x'_k)^2."""

    kernel = "rwkv4_block"

    def __init__(self, w: Weights, i: int, cfg: dict, structure: dict):
        p, low, vec = f"blocks.{i}", structure.get("lowrank", {}), w.vec
        self.i = i
        self.ln1 = (vec(f"{p}.ln1.weight"), vec(f"{p}.ln1.bias"))
        self.ln2 = (vec(f"{p}.ln2.weight"), vec(f"{p}.ln2.bias"))
        self.shift = (1 - np.stack([vec(f"{p}.att.time_mix_{n}") for n in "rkv"])).astype(np.float32)
        self.w, self.u = -np.exp(vec(f"{p}.att.time_decay")).astype(np.float32), vec(f"{p}.att.time_first")
        self.r, self.k, self.v, self.o = (Linear(w, f"{p}.att.{n}", low.get(f"{p}.att.{n}"))
                                          for n in ("receptance", "key", "value", "output"))
        self.ffn_shift = (1 - np.stack([vec(f"{p}.ffn.time_mix_{n}") for n in "kr"])).astype(np.float32)
        self.fr = Linear(w, f"{p}.ffn.receptance", low.get(f"{p}.ffn.receptance"))
        self.channel_mix_weights(w, p, structure)
        self.bind(w.kernels)

    def zero_wkv(self) -> np.ndarray:
        """Rows aa, bb, pp: two empty sums and their log-scale, -1e38."""
        S = np.zeros((3, len(self.u)), np.float32)
        S[2] = -1e38
        return S

    def _native(self):
        """This block as rwkv4.c's block4_t (native.Rwkv4Args)."""
        lows = [lin.w1.rows for lin in (self.r, self.k, self.v, self.o, self.fr) if lin.low is not None]
        b = native.Rwkv4Args(C=self.shift.shape[1], A=len(self.u), hidden=max(lows + [1]), ffn=_native_ffn(self))
        vectors = {"ln1w": self.ln1[0], "ln1b": self.ln1[1], "ln2w": self.ln2[0], "ln2b": self.ln2[1],
                   "shift": self.shift, "ffn_shift": self.ffn_shift, "w": self.w, "u": self.u}
        for name, v in vectors.items():
            assert v.dtype == np.float32 and v.flags.c_contiguous, name
            setattr(b, name, native.ptr(v))
        for name in ("r", "k", "v", "o", "fr"):
            setattr(b, name, _native_linear(getattr(self, name)))
        return self._bound(b)

    def step_numpy(self, x, st, v_first):
        xa = layer_norm(x, *self.ln1)
        xr, xk, xv = xa + (st["att"] - xa) * self.shift
        r, k, v = sigmoid(self.r(xr)), self.k(xk), self.v(xv)
        aa, bb, pp = st["wkv"]
        ww = self.u + k
        p = np.maximum(pp, ww)
        e1, e2 = np.exp(pp - p), np.exp(ww - p)
        y = (e1 * aa + e2 * v) / (e1 * bb + e2)
        ww = pp + self.w
        q = np.maximum(ww, k)
        e1, e2 = np.exp(ww - q), np.exp(k - q)
        x = x + self.o((r * y).astype(np.float32))
        xf = layer_norm(x, *self.ln2)
        xk, xr = (xf + (st["ffn"] - xf) * self.ffn_shift).astype(np.float32)
        out = sigmoid(self.fr(xr)) * sparse_ffn(self, xk)
        st["att"], st["ffn"] = xa, xf
        st["wkv"] = np.stack([e1 * aa + e2 * v, e1 * bb + e2, q]).astype(np.float32)
        return (x + out).astype(np.float32), v_first


BLOCKS = {"7": Block, "6": Block6, "5.2": Block5, "5.1": Block5, "5.0": Block5, "4": Block4}


def time_mix6(b: Block5, S, r, k, v, w, g) -> tuple[np.ndarray, np.ndarray]:
    """RWKV-5/6's WKV (bonus u), group norm and gate (model/rwkv5.py, rwkv6.py): (S', y [A]);
    the old S is kept. r, k, v, w (the per-step decay): [H, N]."""
    if b.kernels is not None:
        S = np.ascontiguousarray(S, np.float32)
        T, out = np.empty_like(S), np.empty(S.shape[0] * S.shape[1], np.float32)
        r, k, v, w, g = (np.ascontiguousarray(t, np.float32) for t in (r, k, v, w, g))
        ptr = native.ptr
        b.kernels.fn("rwkv6_time_mix")(ptr(S), ptr(T), ptr(r), ptr(k), ptr(v), ptr(w), ptr(b.u), ptr(b.lnx[0]), ptr(b.lnx[1]),
                           ptr(g), b.H, b.N, b.eps, ptr(out))
        return T, out
    kv = k[:, :, None] * v[:, None, :]
    y = (r[:, None, :] @ (S + b.u[:, :, None] * kv))[:, 0]
    S = (w[:, :, None] * S + kv).astype(np.float32)
    return S, ((head_norm(y, b.eps).reshape(-1) * b.lnx[0] + b.lnx[1]) * g).astype(np.float32)


class Head:
    """Full head, or the clustered head (passes/cluster_head.py) reading chosen clusters only."""

    def __init__(self, w: Weights, spec: dict | None):
        self.W = w.mat("head.weight")
        self.spec, self.kernels = spec, w.kernels
        self.rows_total = 0
        if spec:
            self.cluster = decode(*w.parts("head.cluster")).astype(np.int32)
            self.sW, self.sb = w.mat("head.scorer.weight"), w.vec("head.scorer.bias")
            sizes = np.bincount(self.cluster, minlength=spec["clusters"])
            self.log_sizes = np.log(sizes.astype(np.float64))
            self._rows = np.empty(len(self.cluster), np.int32)

    def __call__(self, h) -> np.ndarray:
        if not self.spec:
            self.rows_total += self.W.rows
            return self.W.mv(h).copy()  # mv's buffer is the matrix's own
        z = self.sW.mv(h) + self.sb
        s = np.exp(z - z.max())
        s = s / s.sum()
        order = np.argsort(-s, kind="stable")
        mass_before = np.cumsum(s[order]) - s[order]
        rank = np.arange(len(s))
        take = ((mass_before < self.spec["p"]) | (rank < self.spec["min_clusters"])) & (rank < self.spec["max_clusters"])
        chosen = order[take]
        picked = np.zeros(len(s), np.int32)
        picked[chosen] = 1
        base = (np.log(s) - self.log_sizes).astype(np.float32)  # a token of an unchosen cluster: log(s_k / n_k)
        log_mass = float(np.log(s[chosen].sum()))
        if self.kernels is not None and self.kernels.lib is not None:  # the same in C: rows in file order (a forward scan), then one pass over the vocabulary
            ptr, out = native.ptr, np.empty(len(self.cluster), np.float32)
            n = self.kernels.fn("head_rows")(ptr(picked), ptr(self.cluster), len(self.cluster), ptr(self._rows))
            logits = self.W.mv(h, self._rows[:n])
            self.kernels.fn("head_logprobs")(ptr(logits), n, ptr(picked), ptr(self.cluster), ptr(base), len(self.cluster), log_mass,
                              ptr(out))
            self.rows_total += n
            return out
        rows = np.flatnonzero(picked[self.cluster]).astype(np.int32)
        self.rows_total += len(rows)
        logits = self.W.mv(h, rows).astype(np.float64)
        out = base[self.cluster]
        m = logits.max()
        out[rows] = logits - m - np.log(np.exp(logits - m).sum()) + log_mass
        return out


def _trim_heap() -> None:
    """Give the C heap's free memory back to the system (glibc's malloc_trim; elsewhere nothing)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Runtime:
    """model = Runtime("m.rwkvlite"); logits, state = model.step(token, state).
    threads: the C kernels' threads (default one per core, or RWKVLITE_THREADS), this
    runtime's own: another Runtime in the process may use another number. exact: float32
    activations in every kernel (or RWKVLITE_EXACT=1). kernels: a native.Kernels to use
    instead of one made from threads and exact (tests, bench/runtime_ab.py)."""

    CHUNK = 64  # prompt tokens that go through a block together (feed)

    def __init__(self, path, verify: bool = True, cache_rows: int = 1024, threads: int | None = None,
                 exact: bool = False, kernels: native.Kernels | None = None):
        self.kernels = kernels or native.Kernels(native.Settings(threads, exact))
        self.threads = self.kernels.threads
        self.w = Weights(path, verify, self.kernels)
        cfg = self.w.manifest["config"]
        block = BLOCKS.get(str(cfg["version"]))
        if block is None:
            raise RWKVLiteError(f"{path}: the lean runtime runs RWKV-4, 5, 6 and 7 files; this is "
                                f"RWKV-{cfg['version']} (use the PyTorch path: rwkvlite generate)")
        self.config = cfg
        structure = self.w.manifest.get("structure") or {}
        self.blocks = [block(self.w, i, cfg, structure) for i in range(cfg["n_layer"])]
        in_c = [b for b in self.blocks if b.c is not None]
        if in_c:  # blocks step one after another: one workspace for all
            work = np.empty(max(b.work_floats for b in in_c), np.float32)
            rows = np.empty(max(b.fk.rows for b in in_c), np.int32)
            for b in in_c:
                b.use_workspace(work, rows)
        # in-place steps with every block in C: x and v_first in buffers of the runtime's own, a row
        # per token of a chunk, and the calls' arguments made once per state (_calls), not per block
        # and token (~20 us each)
        self._X, self._V = (np.empty((self.CHUNK, cfg["n_embd"]), np.float32) for _ in range(2))  # pages touched as used
        self._calls = (None, None)
        folded = "fold_ln0" in structure
        self.ln0 = None if folded else (self.w.vec("blocks.0.ln0.weight"), self.w.vec("blocks.0.ln0.bias"))
        self.emb = EmbeddingRows(self.w.mat("emb.weight"), path, compressed.container.array_offsets(path),
                                 cache_rows if folded else 0)
        self.ln_out = (self.w.vec("ln_out.weight"), self.w.vec("ln_out.bias"))
        self.head = Head(self.w, structure.get("cluster_head", {}).get("head"))
        if self.head.spec:  # the chosen clusters' rows, read here and there: page by page, not in read-ahead blocks
            compressed.container.advise_random(self.w.parts("head.weight")[1].values())
        self.tokens = 0
        _trim_heap()  # what loading freed (the manifest's text, the verification's buffers)

    def zero_state(self) -> list[dict]:
        C = self.config["n_embd"]
        return [{"att": np.zeros(C, np.float32), "ffn": np.zeros(C, np.float32), "wkv": b.zero_wkv()} for b in self.blocks]

    def step(self, token: int, state: list[dict] | None = None, inplace: bool = False) -> tuple[np.ndarray, list[dict]]:
        """Logits [V] (float32) after `token`, and the new state. The old state is not modified,
        unless inplace: then it is updated and returned (no new state allocated per token)."""
        return self.feed([token], state, inplace)

    def feed(self, tokens, state: list[dict] | None = None, inplace: bool = False) -> tuple[np.ndarray, list[dict]]:
        """Logits after the last of `tokens` and the state after all of them (a prompt): the
        same as stepping them one by one, bit for bit, in less time. The head runs for the last
        token only (a prompt's other logits are not used), and with every block in C up to
        CHUNK tokens go through one block before the next block starts, so that a block's
        weights are read from memory once per chunk rather than once per token
        (bench/prefill.py)."""
        tokens = list(tokens)
        if not tokens:
            raise ValueError("feed needs at least one token")
        if state is None:
            state = self.zero_state()
        elif not inplace:
            state = [{k: v.copy() for k, v in s.items()} for s in state]
        if all(b.c is not None for b in self.blocks):
            chunk = min(self.CHUNK, len(self._X))  # the buffers' rows, made for the class's CHUNK
            for i in range(0, len(tokens), chunk):
                x = self._blocks_in_place(tokens[i:i + chunk], state)
        else:
            for token in tokens:
                x = self._blocks(self._embed(token), state, True)
        self.tokens += len(tokens)
        return self.head(layer_norm(x, *self.ln_out).astype(np.float32)), state

    def _embed(self, token: int) -> np.ndarray:
        x = self.emb(token)
        return x if self.ln0 is None else layer_norm(x, *self.ln0)

    def _blocks(self, x, state: list[dict], inplace: bool) -> np.ndarray:
        """x through the blocks one call each (numpy or C), state given the new state."""
        v_first = None
        for block, st in zip(self.blocks, state):
            x, v_first = block(x, st, v_first, inplace)
        return x

    def _blocks_in_place(self, tokens: list[int], state: list[dict]) -> np.ndarray:
        """The same for up to CHUNK tokens with every block in C and the state stepped in
        place, block by block: each block steps every token (its state in token order) before
        the next block starts. Rows of self._X hold the tokens' x, of self._V their v_first
        (RWKV-7); the first token's calls are made once (_calls_for), the others' point further
        into those buffers. Returns the last token's x."""
        X = self._X
        for t, token in enumerate(tokens):
            X[t] = self._embed(token)
        row = X.strides[0]
        for block, (args, moving) in zip(self.blocks, self._calls_for(state)):
            block.count(block.c(*args))
            for t in range(1, len(tokens)):
                a = list(args)
                for i in moving:
                    a[i] += t * row
                block.count(block.c(*a))
        return X[len(tokens) - 1]

    def _calls_for(self, state: list[dict]) -> list[tuple]:
        """Each C block's arguments for stepping `state` in place (a chunk's first token), and the
        positions among them of the pointers into self._X and self._V, which move a row per
        token; made again only when one of the state's arrays, or a block's workspace, is not the
        one they were made for (an in-place step keeps them)."""
        arrays = [st[k] for st in state for k in ("att", "ffn", "wkv")] + [b._bufs for b in self.blocks]
        made_for, calls = self._calls
        if made_for is None or len(made_for) != len(arrays) or any(a is not b for a, b in zip(arrays, made_for)):
            for a in arrays[:3 * len(state)]:
                if a.dtype != np.float32 or not a.flags.c_contiguous:
                    raise ValueError("state arrays must be C-contiguous float32 (Runtime.zero_state, step)")
            ptr = native.ptr
            xp, vp = ptr(self._X), ptr(self._V)
            calls = []
            for b, st in zip(self.blocks, state):
                att, ffn, wkv = ptr(st["att"]), ptr(st["ffn"]), ptr(st["wkv"])
                extra = (vp,) if isinstance(b, Block) else ()  # RWKV-7's v_first, after the state
                calls.append(((b._args, xp, att, att, ffn, ffn, wkv, wkv, *extra, *b._bufs), (1, 8)[:1 + len(extra)]))
            self._calls = (arrays, calls)  # the arrays kept alive while their addresses are used
        return calls

    def reset_counters(self) -> None:
        """Start counting tokens, active FFN neurons and head rows afresh (bytes_read_per_token)."""
        self.tokens = self.head.rows_total = 0
        for b in self.blocks:
            b.active_total = b.values_total = 0

    def bytes_read_per_token(self) -> dict:
        """Weight bytes read per token so far (mean): what the bandwidth bound is computed from.
        Counted as for tokens stepped one by one; a prompt fed in chunks reads a block's
        weights once per chunk, so count decoding only (reset_counters after the prompt)."""
        t = max(1, self.tokens)
        total = sum(e["bytes"] for e in self.w.entries.values())
        ffn = head = 0.0
        for b in self.blocks:  # the rows counted (count, sparse_ffn): key rows computed, value rows read
            ffn += (b.fk.nbytes * b.active_total + b.fv.nbytes * b.values_total) / t / b.fk.rows
        head_bytes = self.head.W.nbytes
        head = head_bytes * self.head.rows_total / t / self.head.W.rows
        emb = self.w.entries["emb.weight"]["bytes"]
        rest = total - emb - head_bytes - sum(b.fk.nbytes + b.fv.nbytes for b in self.blocks)
        return {"total": rest + ffn + head + emb / self.config["vocab_size"], "ffn": ffn, "head": head,
                "embedding": emb / self.config["vocab_size"], "rest": rest}
