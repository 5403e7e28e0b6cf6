"""rwkvlite: compress RWKV language models for small devices, and measure what it costs.

>>> import rwkvlite
>>> model = rwkvlite.load_model("model.pth")           # doctest: +SKIP
>>> logits, state = model(torch.tensor([[1, 2, 3]]))   # doctest: +SKIP
"""
from .errors import CheckpointError, DataError, RWKVLiteError, TokenizerError, UnknownArchitectureError
from .loaders import load_model, load_state_dict, save_model
from .model import RWKV, RWKVConfig, State
from .tokenizer import load_tokenizer

__version__ = "0.1.0"

__all__ = ["RWKV", "RWKVConfig", "State", "load_model", "load_state_dict", "save_model", "load_tokenizer",
           "RWKVLiteError", "CheckpointError", "UnknownArchitectureError", "TokenizerError", "DataError"]
