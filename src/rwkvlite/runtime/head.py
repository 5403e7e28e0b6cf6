"""The head: logits [V] from the last hidden state. Full, or the clustered head
(passes/cluster_head.py), which scores clusters first and reads the chosen clusters' rows
only: a token of an unchosen cluster gets log(s_k / n_k), its cluster's share spread evenly."""
from __future__ import annotations

import numpy as np

from ..format.encodings import decode
from . import native
from .weights import Weights


class Head:
    """rows_total counts the head rows read (bytes_read_per_token)."""

    def __init__(self, w: Weights, spec: dict | None, kernels: native.Kernels):
        self.W = w.mat("head.weight")
        self.spec = spec
        self.rows_total = 0
        if spec:
            self.cluster = decode(*w.parts("head.cluster")).astype(np.int32)
            self.sW, self.sb = w.mat("head.scorer.weight"), w.vec("head.scorer.bias")
            sizes = np.bincount(self.cluster, minlength=spec["clusters"])
            self.log_sizes = np.log(sizes.astype(np.float64))
            self._rows = np.empty(len(self.cluster), np.int32)
            self._c = None if kernels.lib is None else (kernels.fn("head_rows"), kernels.fn("head_logprobs"))

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
        if self._c is not None:  # the same in C: rows in file order (a forward scan), then one pass over the vocabulary
            head_rows, head_logprobs = self._c
            ptr, out = native.ptr, np.empty(len(self.cluster), np.float32)
            n = head_rows(ptr(picked), ptr(self.cluster), len(self.cluster), ptr(self._rows))
            logits = self.W.mv(h, self._rows[:n])
            head_logprobs(ptr(logits), n, ptr(picked), ptr(self.cluster), ptr(base), len(self.cluster), log_mass,
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
