"""The lean runtime: generation from a compressed file with numpy and C kernels, no PyTorch.

>>> from rwkvlite.runtime import Runtime
>>> model = Runtime("model.rwkvlite")           # doctest: +SKIP
>>> logits, state = model.step(token_id)        # doctest: +SKIP
"""
from .model import Runtime

__all__ = ["Runtime"]
