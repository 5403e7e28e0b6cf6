"""BlinkDL's initialisation for training from scratch (RWKV-LM's v5.2, v6 and v7 code).

Per layer l of L, with r0 = l / (L - 1) and r1 = 1 - l / L, and d = i / C per channel:
  token-shift mixes   1 - d^(c r1) (v6/v7: how much of x_{t-1} enters) or d^(c r1) (v5)
  decay               from about -6 (slow) to -1 (fast) across channels, steeper in deep layers
  bonus u             r0 (1 - n/(C-1)) + ((n + 1) % 3 - 1) 0.1   (v5.2, v6)
  matrices            orthogonal, gain 1 (receptance, value, ffn key), 0.1 (att key, gate),
                      0 (att output, ffn value, ffn receptance); LoRA second factors
                      orthogonal 0.1 (v7) or uniform +-1e-4 (v6), first factors 0
  embedding           uniform +-1e-4;  head orthogonal, gain 0.5 sqrt(V / C)
  ln_x weight         ((l + 1) / L)^0.7 (v7)
"""
from __future__ import annotations

import math

import torch
from torch import nn

ZERO = (".att.output.", ".ffn.value.", ".ffn.receptance.")
SMALL = (".att.key.", ".att.gate.")


def _orthogonal(t: torch.Tensor, gain: float, g: torch.Generator, stretch: bool = False) -> torch.Tensor:
    """Orthogonal rows or columns (QR of a seeded Gaussian) times gain, as nn.init.orthogonal_;
    stretch adds sqrt(rows / cols) for tall matrices (BlinkDL's ortho_init of the LoRA factors)."""
    rows, cols = t.shape[-2:]
    a = torch.randn(*t.shape[:-2], max(rows, cols), min(rows, cols), generator=g, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    q = q if rows >= cols else q.transpose(-1, -2)
    scale = math.sqrt(rows / cols) if stretch and rows > cols else 1.0
    return (gain * scale * q).to(t.dtype)


def _vectors(cfg, layer: int, C: int, N: int) -> dict[str, torch.Tensor]:
    """The per-channel initial values of one layer's small parameters, by BlinkDL name."""
    L = cfg.n_layer
    r0, r1 = layer / max(1, L - 1), 1.0 - layer / L
    d = torch.arange(C, dtype=torch.float64) / C
    n = torch.arange(C, dtype=torch.float64)
    linear = n / (C - 1) - 0.5
    zigzag = ((n % N) - (N - 1) / 2) / ((N - 1) / 2)
    zigzag = zigzag * zigzag.abs()
    decay = -6 + 5 * (n / (C - 1)) ** (0.7 + 1.3 * r0)
    bonus = r0 * (1 - n / (C - 1)) + ((n + 1) % 3 - 1) * 0.1
    if cfg.version == "7":
        mix = {k: 1 - d ** (p * r1) for k, p in (("x_r", 0.2), ("x_w", 0.9), ("x_k", 0.7), ("x_v", 0.7),
                                                  ("x_a", 0.9), ("x_g", 0.2))}
        www = -6 + 6 * (n / (C - 1)) ** (1 + r0 ** 0.3)
        return {**{f"att.{k}": v for k, v in mix.items()}, "att.w0": www + 0.5 + zigzag * 2.5,
                "att.a0": -0.19 + zigzag * 0.3 + linear * 0.4, "att.v0": 0.73 - linear * 0.4,
                "att.k_k": 0.71 - linear * 0.1, "att.k_a": torch.full((C,), 1.02, dtype=torch.float64),
                "att.r_k": torch.full((C,), -0.04, dtype=torch.float64), "ffn.x_k": 1 - d ** (r1 ** 4)}
    if cfg.version == "6":
        return {"att.time_maa_x": 1 - d ** r1, "att.time_maa_w": 1 - d ** r1, "att.time_maa_k": 1 - d ** r1,
                "att.time_maa_v": 1 - (d ** r1 + 0.3 * r0), "att.time_maa_r": 1 - d ** (0.5 * r1),
                "att.time_maa_g": 1 - d ** (0.5 * r1), "att.time_decay": decay, "att.time_faaaa": bonus,
                "ffn.time_maa_k": 1 - d ** r1, "ffn.time_maa_r": 1 - d ** r1}
    if cfg.version == "5.2":
        return {"att.time_mix_k": d ** r1, "att.time_mix_v": d ** r1 + 0.3 * r0, "att.time_mix_r": d ** (0.5 * r1),
                "att.time_mix_g": d ** (0.5 * r1), "att.time_decay": decay, "att.time_faaaa": bonus,
                "ffn.time_mix_k": d ** r1, "ffn.time_mix_r": d ** r1}
    raise ValueError(f"training from scratch supports RWKV-5.2, 6 and 7, not {cfg.version}")


@torch.no_grad()
def reference_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Initialise `model` in place as BlinkDL's trainer does (see the module docstring)."""
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    C, N, V = cfg.n_embd, cfg.head_size, cfg.vocab_size
    tables = [_vectors(cfg, layer, C, N) for layer in range(cfg.n_layer)]
    for name, p in model.named_parameters():
        parts = name.split(".")
        layer = int(parts[1]) if parts[0] == "blocks" else -1
        local = ".".join(parts[2:]) if layer >= 0 else name
        table = tables[layer] if layer >= 0 else {}
        if local in table:
            p.copy_(table[local].reshape(p.shape))
        elif name == "emb.weight":
            p.copy_(torch.rand(p.shape, generator=g) * 2e-4 - 1e-4)
        elif name == "head.weight":
            p.copy_(_orthogonal(p, 0.5 * math.sqrt(V / C) if V > C else 0.5, g))
        elif local == "att.ln_x.weight" and cfg.version == "7":
            p.fill_(((1 + layer) / cfg.n_layer) ** 0.7)
        elif ".ln" in "." + local or local.startswith("ln"):
            p.fill_(1.0 if name.endswith("weight") else 0.0)
        elif local in ("att.w1", "att.a1", "att.v1", "att.g1", "att.time_maa_w1", "att.time_decay_w1"):
            p.zero_() if cfg.version == "7" else p.copy_(torch.rand(p.shape, generator=g) * 2e-4 - 1e-4)
        elif local in ("att.w2", "att.a2", "att.v2", "att.g2"):
            p.copy_(_orthogonal(p, 0.1, g, stretch=True))
        elif local in ("att.time_maa_w2", "att.time_decay_w2"):
            p.copy_(torch.rand(p.shape, generator=g) * 2e-4 - 1e-4)
        elif name.endswith(".weight"):
            gain = 0.0 if any(z in "." + local for z in ZERO) else 0.1 if any(s in "." + local for s in SMALL) else 1.0
            p.copy_(_orthogonal(p, gain, g) if gain else torch.zeros_like(p))
        else:
            raise ValueError(f"no initialisation rule for {name}")
    return model
