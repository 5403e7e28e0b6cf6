"""The one sampler, for the PyTorch path and the lean runtime alike (numpy logits, no torch):
greedy at temperature 0, else nucleus (top-p) sampling, so that one seed draws the same
tokens from the same logits whichever path made them.

>>> import random
>>> logits = np.log(np.array([0.5, 0.3, 0.2]))
>>> sample(logits, temperature=0.0), sample(logits, 1.0, 0.85, random.Random(0))
(0, 2)

Random numbers come from Python's `random`, not numpy.random: importing numpy.random loads
OpenSSL (through `secrets` and `hashlib`), megabytes of resident memory in a runtime meant
to stay small."""
from __future__ import annotations

import random

import numpy as np

from .errors import RWKVLiteError


def sample(logits: np.ndarray, temperature: float = 1.0, top_p: float = 0.85, rng: random.Random | None = None) -> int:
    """One token id from logits [V]: the tokens needed to reach probability mass top_p, in
    order of probability (ties by id), drawn in proportion to their probability."""
    if not (temperature == temperature and top_p == top_p):  # NaN
        raise ValueError("temperature and top_p must be numbers")
    if temperature <= 0 or top_p <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    if not np.isfinite(z.max()):  # a NaN, an infinity, or nothing but -inf
        raise RWKVLiteError("the logits are not finite numbers (NaN or infinite): nothing to sample from")
    p = np.exp(z - z.max())
    p /= p.sum()
    order = _most_likely(p, top_p)
    sorted_p = p[order]
    keep = np.cumsum(sorted_p) - sorted_p < top_p  # tokens needed to reach mass top_p
    cdf = np.cumsum(sorted_p * keep)
    u = (rng or random.Random()).random() * cdf[-1]  # below cdf[-1]: a kept token (probability > 0)
    return int(order[int(np.searchsorted(cdf, u, side="right"))])


def _most_likely(p: np.ndarray, top_p: float, k: int = 256) -> np.ndarray:
    """Token ids in order of probability, ties by id, as far as the nucleus needs: the tokens
    at least as likely as the k-th likeliest, k growing until their mass passes top_p (then
    no later token is kept), else all of them. The same prefix as a sort of the whole
    vocabulary, which would cost more than a lean model's token."""
    while k < len(p):
        ids = np.flatnonzero(p >= np.partition(p, len(p) - k)[len(p) - k])  # ascending ids
        ids = ids[_descending(p[ids])]
        # past top_p by more than the rounding of the full sort's test (cumsum - p < top_p) on
        # the next token, which may come out an ulp or two below the mass before it
        if np.cumsum(p[ids])[-1] > top_p + 4 * np.spacing(max(top_p, 1.0)):
            return ids
        k *= 16
    return _descending(p)


def _descending(v: np.ndarray) -> np.ndarray:
    """argsort(-v, kind="stable"): numpy sorts floats stably by merge sort (7 ms for 65536);
    its default (vectorised) sort, then the runs of equal values put in index order, give the
    same order in about 2 ms."""
    order = np.argsort(-v)
    sv = v[order]
    same = sv[1:] == sv[:-1]
    tied = np.flatnonzero(np.r_[same, False] | np.r_[False, same])  # positions in runs of equal values
    if len(tied):
        run, ids = np.cumsum(np.r_[True, ~same])[tied], order[tied]  # run numbers ascend with the position
        order[tied] = ids[np.argsort(run * len(v) + ids)]  # by run, then by index: distinct keys
    return order


def seeded(seed: int | None) -> random.Random:
    """The random stream of a seed (None: from the system's entropy)."""
    if seed is not None and seed < 0:
        raise RWKVLiteError(f"the seed must be 0 or more, not {seed}")
    return random.Random(seed)
