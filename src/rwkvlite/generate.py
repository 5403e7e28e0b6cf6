"""Streamed generation: the one loop, for the PyTorch model and the lean runtime alike.

>>> from rwkvlite.runtime import Runtime
>>> model = Runtime("model.rwkvlite")            # or model.stepper.Stepper(load_model(path))
>>> for piece in generate(model, tokenizer, "Hello", seed=0):   # doctest: +SKIP
...     print(piece, end="")

A model here is anything with feed(tokens, state) -> (logits, state) and
step(token, state, inplace=True) -> (logits, state), logits a numpy array [V]: the same
logits and seed then draw the same text (rwkvlite/sampling.py). No PyTorch is imported here.
"""
from __future__ import annotations

import random
from collections.abc import Iterator

from .sampling import sample, seeded
from .tokenizer import Utf8Pieces


def generate(model, tokenizer, prompt: str, max_tokens: int = 100, temperature: float = 1.0, top_p: float = 0.85,
             seed: int | None = None, state=None, rng: random.Random | None = None) -> Iterator[str]:
    """Yield text pieces as they are generated (a piece once its bytes are valid UTF-8);
    model.state holds the state afterwards, also when the caller stops early (it then holds
    every token fed so far). state: to continue from (it is copied, not changed); rng: a
    generator to draw from (a chat's turns share one), else one seeded with seed."""
    rng = rng or seeded(seed)
    logits, state = model.feed(tokenizer.encode(prompt) or [0], state)
    model.state = state
    pieces = Utf8Pieces()
    for _ in range(max_tokens):
        token = sample(logits[:tokenizer.vocab_size], temperature, top_p, rng)  # padded vocabularies
        text = pieces.feed(tokenizer.decode_bytes([token]))
        if text is not None:
            yield text
        logits, state = model.step(token, state, inplace=True)
        model.state = state
    text = pieces.flush()
    if text is not None:
        yield text
