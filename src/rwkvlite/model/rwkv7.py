"""RWKV-7 ("Goose"): the generalised delta rule with vector-valued decay and learning rate.

  x'_* = x + (x_{t-1} - x) * x_*                      (* in r, w, k, v, a, g)
  w   = exp(-e^{-1/2} sigmoid(w0 + tanh(x'_w w1) w2))  decay, in [0.545, 1]
  a   = sigmoid(a0 + x'_a a1 a2)                        in-context learning rate
  kk  = normalize(k * k_k)                              removal key (unit norm per head)
  k   = k * (1 + (a - 1) * k_a)
  v   = v + (v_first - v) * sigmoid(v0 + x'_v v1 v2)    value residual (layers > 0)
  S_t = S_{t-1} (diag(w) - kk^T (kk * a)) + v^T k;  y = S_t r
  out = W_o ((GroupNorm(y) + (r . (k * r_k)) v) * (sigmoid(x'_g g1) g2))
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .common import group_norm, heads, token_shift
from .wkv import wkv7_sequence, wkv7_step

LOG_DECAY_SCALE = math.exp(-0.5)  # BlinkDL writes it 0.606531


class TimeMix(nn.Module):
    def __init__(self, cfg, layer_id: int):
        super().__init__()
        C, H, N = cfg.n_embd, cfg.n_head, cfg.head_size
        self.layer_id, self.n_head = layer_id, H
        for name in ("x_r", "x_w", "x_k", "x_v", "x_a", "x_g", "w0", "a0"):
            setattr(self, name, nn.Parameter(torch.zeros(1, 1, C)))
        self.w1 = nn.Parameter(torch.zeros(C, cfg.lora_decay))
        self.w2 = nn.Parameter(torch.zeros(cfg.lora_decay, C))
        self.a1 = nn.Parameter(torch.zeros(C, cfg.lora_a))
        self.a2 = nn.Parameter(torch.zeros(cfg.lora_a, C))
        if layer_id > 0:  # layer 0 defines v_first and has no value residual
            self.v0 = nn.Parameter(torch.zeros(1, 1, C))
            self.v1 = nn.Parameter(torch.zeros(C, cfg.lora_v))
            self.v2 = nn.Parameter(torch.zeros(cfg.lora_v, C))
        self.g1 = nn.Parameter(torch.zeros(C, cfg.lora_gate))
        self.g2 = nn.Parameter(torch.zeros(cfg.lora_gate, C))
        self.k_k = nn.Parameter(torch.zeros(1, 1, C))
        self.k_a = nn.Parameter(torch.zeros(1, 1, C))
        self.r_k = nn.Parameter(torch.zeros(H, N))
        self.receptance = nn.Linear(C, C, bias=False)
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        self.ln_x = nn.GroupNorm(H, C, eps=cfg.ln_x_eps)

    def forward(self, x, shift, wkv, v_first):
        dx = token_shift(x, shift) - x
        xr, xw, xk, xv, xa, xg = (x + dx * m for m in (self.x_r, self.x_w, self.x_k, self.x_v, self.x_a, self.x_g))
        H = self.n_head
        r = self.receptance(xr)
        logw = -LOG_DECAY_SCALE * torch.sigmoid(self.w0 + torch.tanh(xw @ self.w1) @ self.w2)
        k = self.key(xk)
        v = self.value(xv)
        a = torch.sigmoid(self.a0 + (xa @ self.a1) @ self.a2)
        g = torch.sigmoid(xg @ self.g1) @ self.g2
        kk = F.normalize(heads(k * self.k_k, H), dim=-1)
        k = k * (1 + (a - 1) * self.k_a)
        if self.layer_id == 0:
            v_first = v
        else:
            v = v + (v_first - v) * torch.sigmoid(self.v0 + (xv @ self.v1) @ self.v2)
        r, k, v, a = heads(r, H), heads(k, H), heads(v, H), heads(a, H)
        y, wkv = wkv7(r, heads(logw, H), k, v, -kk, kk * a, wkv)
        y = group_norm(self.ln_x, y, x.dtype)
        bonus = (r * k * self.r_k).sum(-1, keepdim=True) * v  # [B, T, H, N]
        y = y + bonus.flatten(2).to(x.dtype)
        return self.output(y * g), x[:, -1], wkv, v_first


def wkv7(r, logw, k, v, z, b, wkv):
    """Dispatch [B, T, H, N] inputs to the step kernel (T = 1) or the chunked one."""
    if r.shape[1] > 1:
        return wkv7_sequence(r, logw, k, v, z, b, wkv)
    y, wkv = wkv7_step(*(t[:, 0] for t in (r, logw, k, v, z, b)), wkv)
    return y.unsqueeze(1), wkv


class ChannelMix(nn.Module):
    """out = W_v relu(W_k x')^2 with x' = x + (x_{t-1} - x) * x_k (no receptance gate in v7)."""

    def __init__(self, cfg, layer_id: int):
        super().__init__()
        C, F_ = cfg.n_embd, cfg.dim_ffn
        self.x_k = nn.Parameter(torch.zeros(1, 1, C))
        self.key = nn.Linear(C, F_, bias=False)
        self.value = nn.Linear(F_, C, bias=False)

    def forward(self, x, shift):
        dx = token_shift(x, shift) - x
        k = torch.relu(self.key(x + dx * self.x_k)) ** 2
        return self.value(k), x[:, -1]
