"""Sampling and streamed generation."""
from __future__ import annotations

from collections.abc import Iterator

import torch

from .tokenizer import Utf8Pieces


def sample(logits: torch.Tensor, temperature: float = 1.0, top_p: float = 0.85,
           generator: torch.Generator | None = None) -> int:
    """One token id from logits [V]: greedy at temperature 0, else nucleus (top-p) sampling."""
    if not (temperature == temperature and top_p == top_p):  # NaN
        raise ValueError("temperature and top_p must be numbers")
    if temperature <= 0 or top_p <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    sorted_p, order = probs.sort(descending=True)
    keep = sorted_p.cumsum(0) - sorted_p < top_p  # tokens needed to reach mass top_p (at least one)
    sorted_p = sorted_p * keep
    choice = torch.multinomial(sorted_p / sorted_p.sum(), 1, generator=generator)
    return int(order[choice])


@torch.no_grad()
def generate(model, tokenizer, prompt: str, max_tokens: int = 100, temperature: float = 1.0,
             top_p: float = 0.85, seed: int | None = None) -> Iterator[str]:
    """Yield text pieces as they are generated; a piece is emitted once its bytes are valid UTF-8."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    ids = tokenizer.encode(prompt) or [0]
    logits, state = model(torch.tensor([ids], device=device), last_only=True)
    pieces = Utf8Pieces()
    for _ in range(max_tokens):
        token = sample(logits[0, -1, :tokenizer.vocab_size].cpu(), temperature, top_p, generator)  # padded vocab
        text = pieces.feed(tokenizer.decode_bytes([token]))
        if text is not None:
            yield text
        logits, state = model(torch.tensor([[token]], device=device), state)
    text = pieces.flush()
    if text is not None:
        yield text
