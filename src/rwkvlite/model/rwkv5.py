"""RWKV-5 ("Eagle"): multi-head matrix-valued state.

  S_t = diag(w) S_{t-1} + k_t^T v_t           (per head, S is N x N)
  y_t = r_t (S_{t-1} + diag(u) k_t^T v_t)
  out = W_o (GroupNorm(y) * silu(W_g x'_g))     (the gate from 5.1 on)
Versions: 5.0 and 5.1 have one decay and one bonus per head, stored as w and
log u (`time_first`); 5.2 has them per channel, u stored as is (`time_faaaa`).
Decay per step: exp(-exp(w)).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import group_norm, heads, token_shift, wide
from .rwkv4 import ChannelMix, mix  # noqa: F401  (v5 keeps v4's channel-mix)
from .wkv import wkv5_sequence, wkv5_step


class TimeMix(nn.Module):
    def __init__(self, cfg, layer_id: int):
        super().__init__()
        C, A, H, N = cfg.n_embd, cfg.dim_att, cfg.n_head, cfg.head_size
        self.n_head = H
        self.per_channel = cfg.version == "5.2"
        self.gated = cfg.version in ("5.1", "5.2")
        if self.per_channel:
            self.time_decay = nn.Parameter(torch.zeros(H, N))
            self.time_faaaa = nn.Parameter(torch.zeros(H, N))  # u
        else:
            self.time_decay = nn.Parameter(torch.zeros(H))
            self.time_first = nn.Parameter(torch.zeros(H))  # log u
        self.time_mix_k = nn.Parameter(torch.zeros(1, 1, C))
        self.time_mix_v = nn.Parameter(torch.zeros(1, 1, C))
        self.time_mix_r = nn.Parameter(torch.zeros(1, 1, C))
        self.receptance = nn.Linear(C, A, bias=False)
        self.key = nn.Linear(C, A, bias=False)
        self.value = nn.Linear(C, A, bias=False)
        if self.gated:
            self.time_mix_g = nn.Parameter(torch.zeros(1, 1, C))
            self.gate = nn.Linear(C, A, bias=False)
        self.output = nn.Linear(A, C, bias=False)
        self.ln_x = nn.GroupNorm(H, A, eps=cfg.ln_x_eps)

    def decay_and_bonus(self, N):
        """log w [H, N] and u [H, N] in float32."""
        if self.per_channel:
            return -torch.exp(wide(self.time_decay)), wide(self.time_faaaa)
        H = self.n_head
        logw = -torch.exp(wide(self.time_decay)).view(H, 1).expand(H, N)
        return logw, torch.exp(wide(self.time_first)).view(H, 1).expand(H, N)

    def forward(self, x, shift, wkv, v_first=None):
        prev = token_shift(x, shift)
        H = self.n_head
        r = heads(self.receptance(mix(x, prev, self.time_mix_r)), H)
        k = heads(self.key(mix(x, prev, self.time_mix_k)), H)
        v = heads(self.value(mix(x, prev, self.time_mix_v)), H)
        logw, u = self.decay_and_bonus(r.shape[-1])
        y, wkv = wkv5(r, k, v, logw, u, wkv)
        y = group_norm(self.ln_x, y, x.dtype)
        if self.gated:
            y = y * F.silu(self.gate(mix(x, prev, self.time_mix_g)))
        return self.output(y), x[:, -1], wkv, v_first


def wkv5(r, k, v, logw, u, wkv):
    """Dispatch [B, T, H, N] inputs to the step kernel (T = 1) or the chunked one."""
    if r.shape[1] > 1:
        return wkv5_sequence(r, k, v, logw, u, wkv)
    logw = logw.expand_as(r)[:, 0]
    y, wkv = wkv5_step(r[:, 0], k[:, 0], v[:, 0], logw, u, wkv)
    return y.unsqueeze(1), wkv
