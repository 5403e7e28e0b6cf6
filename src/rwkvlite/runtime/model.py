"""The names of the lean runtime's former single module, for code that imports them from
here: the runtime now lives in engine.py (Runtime), rwkv7.py, rwkv6.py and rwkv4.py (the
blocks), layers.py, weights.py, head.py and state.py."""
from .engine import BLOCKS, Runtime  # noqa: F401
from .rwkv7 import time_mix  # noqa: F401
