"""The PyTorch model as the generation loop and the bench see a runtime (rwkvlite/generate.py,
runtime/bench.py): feed and step returning numpy logits [V], so that the same sampler draws
from either path.

>>> model = Stepper(load_model("model.pth"))     # doctest: +SKIP
>>> logits, state = model.feed([1, 2, 3])         # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
import torch


class Stepper:
    """A model (model/model.py RWKV) with the lean runtime's feed/step interface."""

    engine = "torch"

    def __init__(self, model):
        self.model = model
        self.device = next(model.parameters()).device
        self.vocab_size = model.config.vocab_size

    @property
    def threads(self) -> int:
        return torch.get_num_threads()

    @torch.no_grad()
    def feed(self, tokens, state=None, inplace: bool = False) -> tuple[np.ndarray, object]:
        """Logits [V] (float32) after the last of `tokens`, and the state after all of them;
        the model returns a new state, so `inplace` changes nothing."""
        logits, state = self.model(torch.tensor([list(tokens)], device=self.device), state, last_only=True)
        return logits[0, -1].float().cpu().numpy(), state

    def step(self, token: int, state=None, inplace: bool = False) -> tuple[np.ndarray, object]:
        return self.feed([token], state, inplace)

    def reset_counters(self) -> None:
        """Nothing is counted here (bytes_read_per_token is the lean runtime's)."""

    def bytes_read_per_token(self) -> None:
        return None
