"""The fast mode's arithmetic, as numpy, for tests and the evaluation path to reproduce.

Where the kernels have the int8 tier (native.Kernels.int8_x), a scalar-coded matrix in groups
of 32 columns or of multiples of 64 multiplies x rounded to int8 in blocks of 32 columns:
x_b ~ s_b round(x_b / s_b), s_b = max|x_b| / 127, ties to even. The product is exact for that
rounded x (integer dot products, then float scales), so W @ round_x(x) is what the kernel
computes, up to float32 summation order. Elsewhere the fast mode rounds x to int16 per group
(relative error 2^-15), close enough to the exact product that nothing reproduces it.
"""
from __future__ import annotations

import numpy as np

BLOCK = 32  # columns per int8 scale: llama.cpp's Q8_0 block; one scale per half of a 64-code chunk


def round_x(x: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """x (last axis) rounded to int8 per block of `block` columns and scaled back, as float32."""
    x = np.asarray(x, np.float32)
    cols = x.shape[-1]
    pad = -cols % block
    blocks = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)]).reshape(*x.shape[:-1], -1, block)
    top = np.abs(blocks).max(-1, keepdims=True)
    inv = np.divide(np.float32(127), top, out=np.zeros_like(top), where=top > 0)
    q = np.clip(np.rint(blocks * inv), -127, 127)
    out = q * (top / np.float32(127))
    return out.reshape(*x.shape[:-1], -1)[..., :cols].astype(np.float32)


def rounds_x(entry: dict) -> bool:
    """Whether a fast-mode product with this matrix rounds x to int8 (on a build with the tier)."""
    group = entry.get("group_size", 0)
    return entry.get("enc") == "sq" and 1 <= entry.get("bits", 0) <= 8 and (group == 32 or group % 64 == 0)
