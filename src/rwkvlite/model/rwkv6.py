"""RWKV-6 ("Finch"): data-dependent token shift and data-dependent decay.

  m_* = LoRA_mix(x + (x_{t-1} - x) * maa_x)           (five small LoRAs, one per input)
  x'_* = x + (x_{t-1} - x) * (maa_* + m_*)
  w_t = time_decay + tanh(x'_w W_d1) W_d2;  per-step decay exp(-exp(w_t))
  then the RWKV-5.2 WKV with u = time_faaaa, GroupNorm and a silu gate.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import group_norm, heads, token_shift, wide
from .rwkv5 import wkv5


class TimeMix(nn.Module):
    def __init__(self, cfg, layer_id: int):
        super().__init__()
        C, A, H, N = cfg.n_embd, cfg.dim_att, cfg.n_head, cfg.head_size
        self.n_head = H
        self.time_maa_x = nn.Parameter(torch.zeros(1, 1, C))
        self.time_maa_w = nn.Parameter(torch.zeros(1, 1, C))
        self.time_maa_k = nn.Parameter(torch.zeros(1, 1, C))
        self.time_maa_v = nn.Parameter(torch.zeros(1, 1, C))
        self.time_maa_r = nn.Parameter(torch.zeros(1, 1, C))
        self.time_maa_g = nn.Parameter(torch.zeros(1, 1, C))
        self.time_maa_w1 = nn.Parameter(torch.zeros(C, 5 * cfg.lora_mix))
        self.time_maa_w2 = nn.Parameter(torch.zeros(5, cfg.lora_mix, C))
        self.time_decay = nn.Parameter(torch.zeros(1, 1, A))
        self.time_decay_w1 = nn.Parameter(torch.zeros(C, cfg.lora_decay))
        self.time_decay_w2 = nn.Parameter(torch.zeros(cfg.lora_decay, A))
        self.time_faaaa = nn.Parameter(torch.zeros(H, N))  # u
        self.receptance = nn.Linear(C, A, bias=False)
        self.key = nn.Linear(C, A, bias=False)
        self.value = nn.Linear(C, A, bias=False)
        self.gate = nn.Linear(C, A, bias=False)
        self.output = nn.Linear(A, C, bias=False)
        self.ln_x = nn.GroupNorm(H, A, eps=cfg.ln_x_eps)

    def forward(self, x, shift, wkv, v_first=None):
        B, T, C = x.shape
        dx = token_shift(x, shift) - x
        lora = torch.tanh((x + dx * self.time_maa_x) @ self.time_maa_w1)  # [B, T, 5*D]
        lora = lora.view(B * T, 5, -1).transpose(0, 1)  # [5, B*T, D]
        m_w, m_k, m_v, m_r, m_g = torch.bmm(lora, self.time_maa_w2).view(5, B, T, C).unbind(0)
        xw = x + dx * (self.time_maa_w + m_w)
        xk = x + dx * (self.time_maa_k + m_k)
        xv = x + dx * (self.time_maa_v + m_v)
        xr = x + dx * (self.time_maa_r + m_r)
        xg = x + dx * (self.time_maa_g + m_g)
        H = self.n_head
        r, k, v = heads(self.receptance(xr), H), heads(self.key(xk), H), heads(self.value(xv), H)
        w = self.time_decay + torch.tanh(xw @ self.time_decay_w1) @ self.time_decay_w2
        logw = -torch.exp(heads(w, H))
        y, wkv = wkv5(r, k, v, logw, wide(self.time_faaaa), wkv)
        y = group_norm(self.ln_x, y, x.dtype) * F.silu(self.gate(xg))
        return self.output(y), x[:, -1], wkv, v_first


class ChannelMix(nn.Module):
    """out = sigmoid(W_r x'_r) * W_v relu(W_k x'_k)^2 with x' = x + (x_{t-1} - x) * maa."""

    def __init__(self, cfg, layer_id: int):
        super().__init__()
        C, F_ = cfg.n_embd, cfg.dim_ffn
        self.time_maa_k = nn.Parameter(torch.zeros(1, 1, C))
        self.time_maa_r = nn.Parameter(torch.zeros(1, 1, C))
        self.key = nn.Linear(C, F_, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(F_, C, bias=False)

    def forward(self, x, shift):
        dx = token_shift(x, shift) - x
        k = torch.relu(self.key(x + dx * self.time_maa_k)) ** 2
        r = torch.sigmoid(self.receptance(x + dx * self.time_maa_r))
        return r * self.value(k), x[:, -1]
