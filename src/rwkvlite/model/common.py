"""Pieces shared by every generation."""
from __future__ import annotations

import torch


def token_shift(x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
    """x_{t-1} for every t: [B, T, C] -> [B, T, C], with `prev` [B, C] as x_{-1}."""
    return torch.cat([prev.unsqueeze(1), x[:, :-1]], dim=1)


def heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """[B, T, H*N] -> [B, T, H, N] in float32 (WKV math is always float32)."""
    B, T, C = x.shape
    return x.float().view(B, T, n_head, C // n_head)


def group_norm(ln_x: torch.nn.GroupNorm, y: torch.Tensor, dtype) -> torch.Tensor:
    """Per-head normalisation of the WKV output y [B, T, H, N] -> [B, T, H*N]."""
    B, T, H, N = y.shape
    return ln_x(y.reshape(B * T, H * N).to(dtype)).view(B, T, H * N)
