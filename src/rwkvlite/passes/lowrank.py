"""Low-rank projections (RWKV-Lite, Choe et al. 2024, arXiv 2412.10856, section 3.1).

A projection W [out, in] becomes two factors of its truncated SVD,
    W = U S V^T  ~  W2 W1,   W2 = U_r sqrt(S_r)  [out, r],   W1 = sqrt(S_r) V_r^T  [r, in],
with rank r = in / factor (the singular values split evenly between the factors).
Variant "relu": y = W2 relu(W1 x)^2 + d * x, a nonlinearity between the factors plus a
learned diagonal d (square matrices only), started from the same SVD factors with d = 0
and left to recovery training (distillation against the original model).
Targets: time-mix receptance, key, value, gate and channel-mix receptance; RWKV-7's r, k
and v (its w/a/v/g LoRAs are already low-rank; its channel-mix has no receptance).
"""
from __future__ import annotations

import re

import torch
from torch import nn

TARGETS = re.compile(r"^blocks\.\d+\.(att\.(receptance|key|value|gate)|ffn\.receptance)$")
VARIANTS = ("linear", "relu")


class LowRankLinear(nn.Module):
    """y = W2 W1 x  ("linear")  or  y = W2 relu(W1 x)^2 + d * x  ("relu")."""

    def __init__(self, in_features: int, out_features: int, rank: int, variant: str = "linear"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"low-rank variant must be one of {VARIANTS}, not {variant!r}")
        self.in_features, self.out_features, self.rank, self.variant = in_features, out_features, rank, variant
        self.w1 = nn.Parameter(torch.zeros(rank, in_features))
        self.w2 = nn.Parameter(torch.zeros(out_features, rank))
        if variant == "relu" and in_features == out_features:
            self.diag = nn.Parameter(torch.zeros(in_features))

    def forward(self, x):
        h = x @ self.w1.T
        if self.variant == "relu":
            h = torch.relu(h) ** 2
        y = h @ self.w2.T
        return y + x * self.diag if hasattr(self, "diag") else y

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int, variant: str = "linear") -> "LowRankLinear":
        W = linear.weight.detach()
        U, S, Vh = torch.linalg.svd(W.double(), full_matrices=False)
        root = S[:rank].sqrt()
        m = cls(W.shape[1], W.shape[0], rank, variant).to(device=W.device, dtype=W.dtype)
        with torch.no_grad():
            m.w1.copy_(root[:, None] * Vh[:rank])
            m.w2.copy_(U[:, :rank] * root)
        return m


def targets(model) -> dict[str, nn.Linear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and TARGETS.match(n)}


def _set(model, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)


def lowrank(model, factor: int = 8, variant: str = "linear") -> dict:
    """Replace every target projection by its rank in/factor SVD factors, in place.
    Returns the report: per layer rank, parameters before/after and the relative Frobenius
    error of W2 W1 (the weight-space error the recovery training starts from)."""
    if factor < 1:
        raise ValueError(f"low-rank factor must be at least 1, not {factor}")
    layers = []
    for name, linear in targets(model).items():
        rank = max(1, linear.in_features // factor)
        m = LowRankLinear.from_linear(linear, rank, variant)
        W = linear.weight.detach().double()
        err = float((W - m.w2.detach().double() @ m.w1.detach().double()).norm() / W.norm())
        layers.append({"name": name, "shape": list(W.shape), "rank": rank, "params_before": W.numel(),
                       "params_after": sum(p.numel() for p in m.parameters()), "weight_error": err})
        _set(model, name, m)
    return {"pass": "lowrank", "factor": factor, "variant": variant, "layers": layers,
            "structure": {r["name"]: {"rank": r["rank"], "variant": variant} for r in layers},
            "params_before": sum(r["params_before"] for r in layers),
            "params_after": sum(r["params_after"] for r in layers)}


def restructure(model, structure: dict) -> None:
    """Give a freshly built model the low-rank modules a saved file describes (weights come after)."""
    for name, spec in structure.items():
        linear = model.get_submodule(name)
        _set(model, name, LowRankLinear(linear.in_features, linear.out_features, spec["rank"], spec["variant"]))


# recovery trains the factors (and diagonals) and ln_out; everything else stays frozen
RECOVERY_TRAINABLE = (r"\.(receptance|key|value|gate)\.(w1|w2|diag)$", r"^ln_out\.")
