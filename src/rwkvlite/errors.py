"""Named errors. Each message says what is wrong, with which item, and how to fix it.

The CLI turns any `RWKVLiteError` into one line on stderr and exit status 2.
"""


class RWKVLiteError(Exception):
    """Base class of every error rwkvlite raises on purpose."""


class CheckpointError(RWKVLiteError):
    """A checkpoint file is missing, truncated, corrupt or unsafe."""


class UnknownArchitectureError(RWKVLiteError):
    """A state dict whose tensor names match no RWKV generation we know."""


class TokenizerError(RWKVLiteError):
    """A tokenizer name or file that cannot be used."""


class DataError(RWKVLiteError):
    """An evaluation or calibration data file that is missing or malformed."""
