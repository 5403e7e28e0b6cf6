"""Bit packing: b-bit unsigned codes (1 <= b <= 16) as a little-endian bit stream per row.

Code j of a row occupies bits [j*b, (j+1)*b) of that row's bytes, least significant bit
first; each row starts on a byte boundary, so a runtime can read any row on its own.
Example, b = 3: codes [5, 1, 7, 0, 2, 6, 3, 4] (8 codes = 24 bits) -> 3 bytes.
numpy's packbits/unpackbits do the bit shuffling; this module only fixes the layout.
"""
from __future__ import annotations

import numpy as np


def row_bytes(n: int, bits: int) -> int:
    return (n * bits + 7) // 8


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """codes [rows, n] (integers in [0, 2^bits)) -> uint8 [rows, row_bytes(n, bits)]."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"pack expects [rows, n] codes, got shape {codes.shape}")
    if not 1 <= bits <= 16:
        raise ValueError(f"pack supports 1 to 16 bits, not {bits}")
    if codes.size and (codes.min() < 0 or codes.max() >= 1 << bits):
        raise ValueError(f"codes out of range for {bits} bits: [{codes.min()}, {codes.max()}]")
    rows, n = codes.shape
    if bits == 8:
        return codes.astype(np.uint8)
    shifts = np.arange(bits, dtype=np.uint32)
    stream = ((codes.astype(np.uint32)[..., None] >> shifts) & 1).astype(np.uint8).reshape(rows, n * bits)
    return np.packbits(stream, axis=1, bitorder="little")


def unpack(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """Inverse of pack: uint8 [rows, row_bytes(n, bits)] -> int64 codes [rows, n]."""
    packed = np.asarray(packed, dtype=np.uint8)
    rows = packed.shape[0]
    if packed.shape[1] != row_bytes(n, bits):
        raise ValueError(f"{packed.shape[1]} bytes per row cannot hold {n} codes of {bits} bits")
    if bits == 8:
        return packed.astype(np.int64)
    stream = np.unpackbits(packed, axis=1, count=n * bits, bitorder="little").reshape(rows, n, bits)
    return (stream.astype(np.int64) << np.arange(bits, dtype=np.int64)).sum(-1)
