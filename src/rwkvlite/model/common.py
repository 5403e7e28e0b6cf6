"""Pieces shared by every generation."""
from __future__ import annotations

import torch


def token_shift(x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
    """x_{t-1} for every t: [B, T, C] -> [B, T, C], with `prev` [B, C] as x_{-1}."""
    return torch.cat([prev.unsqueeze(1), x[:, :-1]], dim=1)


def wide(x: torch.Tensor) -> torch.Tensor:
    """At least float32: half precision is raised, float64 (used by gradient checks) is kept."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """[B, T, H*N] -> [B, T, H, N], at least float32 (WKV math never runs in half precision)."""
    B, T, C = x.shape
    return wide(x).view(B, T, n_head, C // n_head)


def group_norm(ln_x: torch.nn.GroupNorm, y: torch.Tensor, dtype) -> torch.Tensor:
    """Per-head normalisation of the WKV output y [B, T, H, N] -> [B, T, H*N]."""
    B, T, H, N = y.shape
    return ln_x(y.reshape(B * T, H * N).to(dtype)).view(B, T, H * N)
