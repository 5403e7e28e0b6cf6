"""Token streams for training: each file tokenised, its last fraction held out for validation.

Batches are a pure function of (seed, step, micro-step), so a resumed run draws exactly
the batches the uninterrupted run would have drawn.
"""
from __future__ import annotations

import torch

from ..eval.data import read_text, read_text_or_windows
from ..tokenizer import DOC_SEPARATOR as SEPARATOR
from ..utils.paths import expand


WINDOWS = 256  # pieces a file over max_bytes is read as


class TokenData:
    """max_bytes: a file larger than this is not read whole but as WINDOWS evenly spread pieces
    of max_bytes in all (a short run over a large corpus, e.g. the recover pass); None: whole."""

    def __init__(self, files, tokenizer, val_fraction: float, max_bytes: int | None = None):
        train, val = [], []
        for path in files:
            ids = _tokens(tokenizer, expand(path), max_bytes)
            cut = int(len(ids) * (1 - val_fraction))
            train += [SEPARATOR] + ids[:cut]
            val += [SEPARATOR] + ids[cut:]
        self.train = torch.tensor(train, dtype=torch.long)
        self.val = torch.tensor(val, dtype=torch.long)

    def batch(self, seed: int, step: int, micro: int, batch_size: int, ctx_len: int):
        """inputs, targets [batch_size, ctx_len] from random windows of the training tokens."""
        g = torch.Generator().manual_seed(seed * 1_000_003 + step * 1_009 + micro)
        starts = torch.randint(0, len(self.train) - ctx_len - 1, (batch_size,), generator=g)
        windows = torch.stack([self.train[s:s + ctx_len + 1] for s in starts.tolist()])
        return windows[:, :-1], windows[:, 1:]

    def val_batches(self, ctx_len: int, max_tokens: int, batch_size: int):
        """Consecutive windows over the start of the held-out tokens, in fixed batches."""
        n = min(max(1, max_tokens // ctx_len), (len(self.val) - 1) // ctx_len)
        windows = torch.stack([self.val[i * ctx_len:(i + 1) * ctx_len + 1] for i in range(n)])
        for i in range(0, n, batch_size):
            w = windows[i:i + batch_size]
            yield w[:, :-1], w[:, 1:]

    def unigram_entropy(self) -> float:
        """Entropy (nats) of the training tokens' frequencies: the loss of a model with no context."""
        counts = torch.bincount(self.train).double()
        p = counts[counts > 0] / counts.sum()
        return float(-(p * p.log()).sum())


def _tokens(tokenizer, path: str, max_bytes: int | None) -> list[int]:
    """A file's tokens: all of it, or over max_bytes its windows, each without its first token
    (the end of a word cut in two) and after a separator."""
    text = read_text_or_windows(path, max_bytes, WINDOWS, max_bytes // WINDOWS) if max_bytes else read_text(path)
    if isinstance(text, str):
        return tokenizer.encode(text)
    ids = []
    for piece in text:
        ids += [SEPARATOR] + tokenizer.encode(piece)[1:]
    return ids[1:]
