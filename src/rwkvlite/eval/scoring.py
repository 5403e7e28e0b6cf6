"""The one place evaluation runs a model: log-probabilities of given tokens.

A "model" is anything with `model(tokens [B, T], state) -> (logits [B, T, V], state)`.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch


def kl_divergence(ref_logp: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """KL(reference || candidate) per position from log-probabilities [..., V]."""
    return (ref_logp.exp() * (ref_logp - logp)).sum(-1)


@torch.no_grad()
def chunk_logprobs(model, tokens: list[int], ctx: int = 512, stateful: bool = True,
                   device=None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """For tokens[1:], yield (log-softmax [n, V], targets [n]) chunk by chunk.

    stateful: carry the recurrent state across chunks (RWKV's natural way);
    otherwise every chunk of `ctx` tokens starts from an empty state (fixed windows).
    """
    state = None
    for start in range(0, len(tokens) - 1, ctx):
        inputs = torch.tensor([tokens[start:start + ctx]], device=device)
        targets = torch.tensor(tokens[start + 1:start + ctx + 1], device=device)
        logits, new_state = model(inputs[:, : len(targets)], state if stateful else None)
        state = new_state
        yield torch.log_softmax(logits[0].float(), dim=-1), targets


@torch.no_grad()
def continuation(model, context: list[int], target: list[int], device=None) -> tuple[float, bool]:
    """Sum of log p(target | context) and whether every target token is the greedy choice."""
    tokens = torch.tensor([context + target[:-1]], device=device)
    logits, _ = model(tokens)
    logp = torch.log_softmax(logits[0, len(context) - 1:].float(), dim=-1)  # predicts target[0..]
    want = torch.tensor(target, device=logp.device)
    total = logp.gather(1, want[:, None]).sum().item()
    return total, bool((logp.argmax(-1) == want).all())
