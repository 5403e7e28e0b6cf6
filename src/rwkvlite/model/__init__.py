from .config import RWKVConfig
from .model import RWKV
from .state import State

__all__ = ["RWKV", "RWKVConfig", "State"]
