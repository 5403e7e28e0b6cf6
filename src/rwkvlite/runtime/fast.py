"""The fast mode's arithmetic, as numpy, for tests and the evaluation path to reproduce.

Where the kernels have the int8 tier (native.Kernels.int8_x), a matrix of 5-7-bit scalar codes
(rounds_x) multiplies x rounded in blocks of 32 columns,
x_b ~ s_b round(x_b / s_b), s_b = max|x_b| / LEVELS, ties to even; the kernel splits the
integers into two int8 planes for its byte dot products. The product is exact for that rounded
x (integer dot products, then float scales), so W @ round_x(x) is what the kernel computes, up
to float32 summation order. Elsewhere the fast mode rounds x to int16 per group (relative error
2^-15), close enough to the exact product that nothing reproduces it.
"""
from __future__ import annotations

import numpy as np

BLOCK = 32  # columns per scale: llama.cpp's Q8_0 block; one scale per half of a 64-code chunk
LEVELS = 127 * 256  # the largest |integer|: its high byte stays an int8 (runtime/c/q8.c)


def round_x(x: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """x (last axis) rounded per block of `block` columns to integers of at most LEVELS and
    scaled back, as float32."""
    x = np.asarray(x, np.float32)
    cols = x.shape[-1]
    pad = -cols % block
    blocks = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)]).reshape(*x.shape[:-1], -1, block)
    top = np.abs(blocks).max(-1, keepdims=True)
    inv = np.divide(np.float32(LEVELS), top, out=np.zeros_like(top), where=top > 0)
    q = np.clip(np.rint(blocks * inv), -LEVELS, LEVELS)
    out = q * (top / np.float32(LEVELS))
    return out.reshape(*x.shape[:-1], -1)[..., :cols].astype(np.float32)


BITS = range(5, 8)  # the code widths the int8 tier takes (runtime/c/q8.c: Q8_MIN_BITS, Q8_MAX_BITS)


def rounds_x(entry: dict) -> bool:
    """Whether a fast-mode product with this matrix rounds x as round_x (on a build with the
    int8 tier): 5-7-bit scalar codes in rows of over 128 columns, groups of 32 or multiples of 64."""
    group, shape = entry.get("group_size", 0), entry.get("shape") or [0]
    return (entry.get("enc") == "sq" and entry.get("bits") in BITS and shape[-1] > 128
            and (group == 32 or group % 64 == 0))
