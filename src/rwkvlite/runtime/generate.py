"""Sampling and streamed generation for the lean runtime (numpy; same rules as
rwkvlite.generate: greedy at temperature 0, else nucleus sampling).

Random numbers come from Python's `random`, not numpy.random: importing numpy.random loads
OpenSSL (through `secrets` and `hashlib`), 3-4 MiB of resident memory in a runtime meant to
stay small."""
from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np

from ..tokenizer import Utf8Pieces


def sample(logits: np.ndarray, temperature: float = 1.0, top_p: float = 0.85, rng=None) -> int:
    if not (temperature == temperature and top_p == top_p):  # NaN
        raise ValueError("temperature and top_p must be numbers")
    if temperature <= 0 or top_p <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")
    sorted_p = p[order]
    keep = np.cumsum(sorted_p) - sorted_p < top_p  # tokens needed to reach mass top_p
    cdf = np.cumsum(sorted_p * keep)
    u = (rng or random.Random()).random() * cdf[-1]
    return int(order[min(int(np.searchsorted(cdf, u, side="right")), len(order) - 1)])


def generate(runtime, tokenizer, prompt: str, max_tokens: int = 100, temperature: float = 1.0, top_p: float = 0.85,
             seed: int | None = None, state=None) -> Iterator[str]:
    """Yield text pieces as they are generated; runtime.state holds the state afterwards."""
    rng = random.Random(seed)
    logits, own = None, False
    for t in tokenizer.encode(prompt) or [0]:
        logits, state = runtime.step(t, state, inplace=own)  # the caller's state is copied once
        own = True
    pieces = Utf8Pieces()
    for _ in range(max_tokens):
        token = sample(logits[:tokenizer.vocab_size], temperature, top_p, rng)  # padded vocabularies
        text = pieces.feed(tokenizer.decode_bytes([token]))
        if text is not None:
            yield text
        logits, state = runtime.step(token, state, inplace=True)
    runtime.state = state
    text = pieces.flush()
    if text is not None:
        yield text
