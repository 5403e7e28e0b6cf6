"""The fast mode's statistical contract: how far its next-token distributions are from the
exact mode's on the same file and the same text.

Two runtimes of one file, exact (float32 activations in every kernel) and fast (activations
rounded on the integer paths), step the same tokens side by side. After each token t, with P
the exact distribution and Q the fast one (softmax of each runtime's output in float64),

    KL_t  = sum_v P(v) (log P(v) - log Q(v))        nats; 0 when Q == P
    top-1 = share of t with argmax Q == argmax P

The contract (issue #23): mean KL_t <= 1e-4 and top-1 >= 0.99 over 512 tokens of real text.

A token whose two most likely exact tokens are closer than `margin` nats is a tie: either is
the model's choice, so argmax may flip on any rounding without the fast mode being worse.
top1_decided counts only the other tokens (`decided` of them); with margin 0 it is top1.

>>> a = agreement("m.rwkvlite", tokenizer.encode(text)[:512])  # doctest: +SKIP
>>> a.mean_kl <= 1e-4 and a.top1 >= 0.99                        # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .engine import Runtime

MEAN_KL = 1e-4  # the contract's bound on the mean KL(exact || fast) per token, nats
TOP1 = 0.99  # its floor on the share of tokens whose most likely next token agrees


@dataclass(frozen=True)
class Agreement:
    """The fast mode against the exact mode over `tokens` steps (see the module docstring).
    fast_is_exact: the "fast" runtime ran exact (RWKVLITE_EXACT=1, or numpy kernels), so the
    figures say nothing about the fast mode."""

    tokens: int
    mean_kl: float
    max_kl: float
    top1: float
    top1_decided: float
    decided: int
    margin: float
    fast_is_exact: bool

    @property
    def holds(self) -> bool:
        """Whether the contract holds: mean KL <= MEAN_KL and top1_decided >= TOP1."""
        return self.mean_kl <= MEAN_KL and self.top1_decided >= TOP1

    def row(self) -> dict:
        """The figures as one flat dict (a bench table's row)."""
        return asdict(self)


def log_softmax(z: np.ndarray) -> np.ndarray:
    """log softmax in float64 (a runtime's logits, or its clustered head's log-probabilities)."""
    z = np.asarray(z, np.float64)
    z = z - z.max()
    return z - np.log(np.exp(z).sum())


def agreement(path, tokens, margin: float = 0.0, threads: int | None = None) -> Agreement:
    """Step `tokens` through the exact and the fast runtime of the compressed file `path`;
    KL(P_exact || Q_fast) per token, its mean and max, and top-1 agreement (all tokens, and
    the tokens whose exact top-two gap is at least `margin` nats).

    >>> agreement("m.rwkvlite", [72, 101, 108, 108, 111]).mean_kl  # doctest: +SKIP
    3.1e-09
    """
    tokens = list(tokens)
    if not tokens:
        raise ValueError("agreement needs at least one token")
    exact, fast = Runtime(path, threads=threads, exact=True), Runtime(path, threads=threads, exact=False)
    kl, same, gap = (np.empty(len(tokens)) for _ in range(3))
    p_state, q_state = exact.zero_state(), fast.zero_state()
    for t, token in enumerate(tokens):
        p, p_state = exact.step(token, p_state, inplace=True)
        q, q_state = fast.step(token, q_state, inplace=True)
        logp, logq = log_softmax(p), log_softmax(q)
        kl[t] = float(np.exp(logp) @ (logp - logq))
        top2 = np.partition(logp, -2)[-2:]
        gap[t] = top2[1] - top2[0]
        same[t] = logp.argmax() == logq.argmax()
    decided = gap >= margin
    return Agreement(tokens=len(tokens), mean_kl=float(kl.mean()), max_kl=float(kl.max()), top1=float(same.mean()),
                     top1_decided=float(same[decided].mean()) if decided.any() else 1.0, decided=int(decided.sum()),
                     margin=margin, fast_is_exact=fast.engine == "numpy" or fast.kernels.settings.exact)
