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
from dataclasses import dataclass

from torch import nn

from ..model.structure import LOWRANK_VARIANTS, LowRankLinear, replace_module
from .base import Context, PassConfig, PassResult, register

TARGETS = re.compile(r"^blocks\.\d+\.(att\.(receptance|key|value|gate)|ffn\.receptance)$")


def targets(model) -> dict[str, nn.Linear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and TARGETS.match(n)}


@dataclass(frozen=True)
class LowRankConfig(PassConfig):
    """factor: rank = in_features / factor; variant: "linear" or "relu" (see the module docstring)."""

    factor: int = 8
    variant: str = "linear"

    def __post_init__(self):
        super().__post_init__()
        self.require(self.factor >= 1, f"factor must be at least 1, not {self.factor}")
        self.require(self.variant in LOWRANK_VARIANTS,
                     f"variant must be one of {', '.join(LOWRANK_VARIANTS)}, not {self.variant!r}")


@register("lowrank", LowRankConfig)
def lowrank(model, cfg: LowRankConfig, ctx: Context | None = None) -> PassResult:
    """Replace every target projection by its rank in/factor SVD factors, in place.
    The report gives per layer rank, parameters before/after and the relative Frobenius
    error of W2 W1 (the weight-space error the recovery training starts from).

    >>> lowrank(model, LowRankConfig(factor=8)).structure  # doctest: +SKIP
    {'blocks.0.att.key': {'rank': 8, 'variant': 'linear'}, ...}"""
    layers = []
    for name, linear in targets(model).items():
        rank = max(1, linear.in_features // cfg.factor)
        m = LowRankLinear.from_linear(linear, rank, cfg.variant)
        W = linear.weight.detach().double()
        err = float((W - m.w2.detach().double() @ m.w1.detach().double()).norm() / W.norm())
        layers.append({"name": name, "shape": list(W.shape), "rank": rank, "params_before": W.numel(),
                       "params_after": sum(p.numel() for p in m.parameters()), "weight_error": err})
        replace_module(model, name, m)
    report = {"pass": "lowrank", "factor": cfg.factor, "variant": cfg.variant, "layers": layers,
              "params_before": sum(r["params_before"] for r in layers),
              "params_after": sum(r["params_after"] for r in layers)}
    return PassResult(report, {r["name"]: {"rank": r["rank"], "variant": cfg.variant} for r in layers})


# recovery trains the factors (and diagonals) and ln_out; everything else stays frozen
RECOVERY_TRAINABLE = (r"\.(receptance|key|value|gate)\.(w1|w2|diag)$", r"^ln_out\.")
