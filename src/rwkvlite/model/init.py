"""Random but plausible weights, for tests and benchmarks that need a model of a given shape.

Not a training initialisation: every parameter gets values in the range a trained
model has (decays spread over fast and slow channels, mix ratios in [0, 1], matrices
scaled by 1/sqrt(fan_in)), so numerical comparisons exercise every code path.
"""
from __future__ import annotations

import torch

from .model import RWKV


def _value(name: str, shape, g: torch.Generator) -> torch.Tensor:
    """A plausible random value for the parameter `name` (BlinkDL naming)."""
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(shape, generator=g)  # noqa: E731
    n = lambda s: s * torch.randn(shape, generator=g)  # noqa: E731
    *_, parent, leaf = ("." + name).split(".")
    if parent.startswith("ln"):  # ln0..ln2, ln_out, ln_x
        return 1 + n(0.1) if leaf == "weight" else n(0.1)
    if parent == "emb":
        return n(1.0)
    if leaf.startswith(("time_mix", "x_")) or (leaf.startswith("time_maa_") and len(shape) == 3 and shape[0] == 1):
        return u(0.0, 1.0)
    if leaf in ("time_decay", "w0"):
        return u(-4.0, 1.0)  # per-step decay exp(-exp(w)) from 0.98 down to 0.07
    if leaf in ("time_first", "time_faaaa", "a0", "v0"):
        return n(0.5)
    if leaf in ("k_k", "k_a"):
        return (0.85 if leaf == "k_k" else 1.0) + n(0.1)
    if leaf == "r_k":
        return n(0.3)
    fan_in = shape[-1] if leaf == "weight" else shape[-2]  # nn.Linear is [out, in]; raw LoRA [in, out]
    return n(fan_in ** -0.5)


def random_init(model: RWKV, seed: int = 0) -> RWKV:
    """Fill `model` in place with seeded random weights (see module docstring); returns it."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(_value(name, tuple(p.shape), g).to(p.dtype))
    return model


def random_model(config, seed: int = 0, dtype=torch.float32) -> RWKV:
    return random_init(RWKV(config), seed).to(dtype)
