"""RWKV-4 ("Dove"): per-channel WKV with a learned decay w and a bonus u for the current token.

  x'_t   = mu * x_t + (1 - mu) * x_{t-1}               (token shift, one mu per input)
  r, k, v = W_r x'_r, W_k x'_k, W_v x'_v
  wkv_t  = (sum_{i<t} e^{-(t-1-i)e^w + k_i} v_i + e^{u+k_t} v_t) / (same without v)
  out    = W_o (sigmoid(r) * wkv)
"""
from __future__ import annotations

import torch
from torch import nn

from .common import token_shift, wide
from .wkv import wkv4_sequence, wkv4_step


def mix(x, prev, mu):
    return x * mu + prev * (1 - mu)


class TimeMix(nn.Module):
    def __init__(self, cfg, layer_id: int):
        super().__init__()
        C, A = cfg.n_embd, cfg.dim_att
        self.time_decay = nn.Parameter(torch.zeros(A))  # w: per-step decay is exp(-exp(w))
        self.time_first = nn.Parameter(torch.zeros(A))  # u: bonus for the current token
        self.time_mix_k = nn.Parameter(torch.zeros(1, 1, C))
        self.time_mix_v = nn.Parameter(torch.zeros(1, 1, C))
        self.time_mix_r = nn.Parameter(torch.zeros(1, 1, C))
        self.key = nn.Linear(C, A, bias=False)
        self.value = nn.Linear(C, A, bias=False)
        self.receptance = nn.Linear(C, A, bias=False)
        self.output = nn.Linear(A, C, bias=False)

    def forward(self, x, shift, wkv, v_first=None):
        prev = token_shift(x, shift)
        r = torch.sigmoid(self.receptance(mix(x, prev, self.time_mix_r)))
        k = wide(self.key(mix(x, prev, self.time_mix_k)))
        v = wide(self.value(mix(x, prev, self.time_mix_v)))
        w = -torch.exp(wide(self.time_decay))
        if x.shape[1] == 1:
            y, wkv = wkv4_step(k[:, 0], v[:, 0], w, wide(self.time_first), wkv)
            y = y.unsqueeze(1)
        else:
            y, wkv = wkv4_sequence(k, v, w, wide(self.time_first), wkv)
        return self.output(r * y.to(x.dtype)), x[:, -1], wkv, v_first


class ChannelMix(nn.Module):
    """out = sigmoid(W_r x'_r) * W_v relu(W_k x'_k)^2  (v4 and v5)."""

    def __init__(self, cfg, layer_id: int):
        super().__init__()
        C, F = cfg.n_embd, cfg.dim_ffn
        self.time_mix_k = nn.Parameter(torch.zeros(1, 1, C))
        self.time_mix_r = nn.Parameter(torch.zeros(1, 1, C))
        self.key = nn.Linear(C, F, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(F, C, bias=False)

    def forward(self, x, shift):
        prev = token_shift(x, shift)
        k = torch.relu(self.key(mix(x, prev, self.time_mix_k))) ** 2
        r = torch.sigmoid(self.receptance(mix(x, prev, self.time_mix_r)))
        return r * self.value(k), x[:, -1]
