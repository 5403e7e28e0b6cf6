"""The lean runtime's recurrent state: what one token leaves for the next, per layer.

>>> state = model.zero_state()                  # doctest: +SKIP
>>> logits, state = model.step(5, state)         # a new State; the old one is kept
>>> logits, state = model.step(7, state, inplace=True)  # the same State, written over
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass
class LayerState:
    """One block's state, float32 and C-contiguous (the C steps read and write it in place):
      att  [C]  the time mix's last input (after ln1), for the token shift
      ffn  [C]  the channel mix's last input (after ln2), for its token shift
      wkv  [H, N, N] for RWKV-5, 6 and 7 (per head: key x value), or RWKV-4's [3, A]
           (rows aa, bb, pp: the two running sums and their log-scale)"""

    att: np.ndarray
    ffn: np.ndarray
    wkv: np.ndarray

    def copy(self) -> LayerState:
        return LayerState(self.att.copy(), self.ffn.copy(), self.wkv.copy())

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.att, self.ffn, self.wkv


@dataclass
class State:
    """The state after a prompt: one LayerState per block. Indexing and iteration go over
    the layers (state[i].wkv)."""

    layers: list[LayerState]

    @classmethod
    def zero(cls, width: int, wkv: Iterable[np.ndarray]) -> State:
        """The state before any token: att and ffn zero [width]; wkv: each block's initial WKV
        state (the blocks' zero_wkv(): zeros, but RWKV-4's pp row starts at -1e38)."""
        return cls([LayerState(np.zeros(width, np.float32), np.zeros(width, np.float32), w) for w in wkv])

    def copy(self) -> State:
        return State([layer.copy() for layer in self.layers])

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> LayerState:
        return self.layers[i]

    def __iter__(self) -> Iterator[LayerState]:
        return iter(self.layers)
