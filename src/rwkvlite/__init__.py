"""rwkvlite: compress RWKV language models for small devices, and measure what it costs.

>>> import rwkvlite
>>> model = rwkvlite.load_model("model.pth")           # doctest: +SKIP
>>> logits, state = model(torch.tensor([[1, 2, 3]]))   # doctest: +SKIP

PyTorch is imported only when a name that needs it is first used, so the lean runtime
(rwkvlite.runtime) runs without it.
"""
from .errors import CheckpointError, DataError, RWKVLiteError, TokenizerError, UnknownArchitectureError
from .tokenizer import load_tokenizer

__version__ = "0.1.0"

_LAZY = {"load_model": "loaders", "load_state_dict": "loaders", "save_model": "loaders",
         "RWKV": "model", "RWKVConfig": "model", "State": "model"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'rwkvlite' has no attribute {name!r}")


__all__ = ["RWKV", "RWKVConfig", "State", "load_model", "load_state_dict", "save_model", "load_tokenizer",
           "RWKVLiteError", "CheckpointError", "UnknownArchitectureError", "TokenizerError", "DataError"]
