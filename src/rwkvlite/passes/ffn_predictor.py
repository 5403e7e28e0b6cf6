"""FFN sparsity predictors (RWKV-Lite, arXiv 2412.10856, section 3.2).

The channel-mix computes k = relu(W_k x')^2, so a neuron j with W_k[j] . x' <= 0 contributes
nothing: its key row and value column need not be read. Two cheap predictors guess the
active set before W_k is touched, and a neuron counts as active if either says so:
  (a) an MLP  x' -> 64 -> F (sigmoid), trained with positive-weighted BCE on the labels
      "W_k x' > 0" from calibration text; active where its output exceeds `threshold`;
  (b) a 1-bit copy of W_k: sign(W_k) times one mean |w| per row (or an n-bit RTN copy);
      the top (1 - p) of its scores count as active, with p per layer chosen as the
      largest value whose union with (a) keeps `target_recall` on the calibration data.
PredictedKey (model/structure.py) replaces ffn.key: it returns W_k x' where predicted active and 0 elsewhere
(relu(0)^2 = 0), the masked dense form used for evaluation; a runtime gathers only the
active rows of W_k and columns of W_v.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..model.structure import PredictedKey
from .base import Context, PassConfig, PassResult, register
from .calibrate import fit_samples, run_observed


def quantized_copy(W: torch.Tensor, bits: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(integer codes int8, per-row scale): sign x mean|w| for 1 bit, symmetric RTN otherwise."""
    if bits == 1:
        return torch.where(W >= 0, 1, -1).to(torch.int8), W.abs().mean(1, keepdim=True)
    qmax = 2 ** (bits - 1) - 1
    scale = W.abs().amax(1, keepdim=True).clamp_min(1e-12) / qmax
    return torch.round(W / scale).clamp(-qmax, qmax).to(torch.int8), scale


def layer_stats(active_true: torch.Tensor, predicted: torch.Tensor) -> dict:
    """Sparsity and recall of predicted-active neurons; both [N, F] booleans."""
    t, p = active_true.bool(), predicted.bool()
    return {"true_sparsity": 1 - float(t.float().mean()),
            "recall": float((t & p).sum()) / max(1, int(t.sum())),
            "predicted_active": float(p.float().mean())}


def train_mlp(key: PredictedKey, x: torch.Tensor, labels: torch.Tensor, steps: int = 400, lr: float = 3e-3,
              batch: int = 512, seed: int = 0) -> list[float]:
    """Positive-weighted BCE (pos_weight = inactive/active, so both classes count alike)."""
    pos = labels.float().mean().clamp(1e-3, 1 - 1e-3)
    pos_weight = ((1 - pos) / pos).expand(labels.shape[1])

    def loss_of(idx):
        logits = key.mlp2(torch.relu(key.mlp1(x[idx])))
        return F.binary_cross_entropy_with_logits(logits, labels[idx].float(), pos_weight=pos_weight)

    params = list(key.mlp1.parameters()) + list(key.mlp2.parameters())
    return fit_samples(params, len(x), loss_of, steps, lr, batch, seed)


@torch.no_grad()
def choose_keep(key: PredictedKey, x: torch.Tensor, labels: torch.Tensor, target_recall: float) -> float:
    """Smallest share (1 - p) for the quantised copy whose union with the MLP reaches target_recall."""
    mlp = key.mlp_says(x)
    lo, hi = 0.0, 1.0
    for _ in range(12):  # bisection on the share
        mid = (lo + hi) / 2
        if layer_stats(labels, mlp | key.quant_says(x, mid))["recall"] >= target_recall:
            hi = mid
        else:
            lo = mid
    return hi


@torch.no_grad()
def collect_key_inputs(model, tokens: torch.Tensor, batch: int = 8) -> dict[int, torch.Tensor]:
    """x' (the input of every channel-mix key) per layer, [N*T, C], on calibration tokens."""
    inputs: dict[int, list] = {i: [] for i in range(len(model.blocks))}
    run_observed(model, tokens, [(b.ffn.key, lambda m, inp, i=i: inputs[i].append(inp[0].reshape(-1, inp[0].shape[-1])),
                                  "pre") for i, b in enumerate(model.blocks)], batch)
    return {i: torch.cat(v).float() for i, v in inputs.items()}


@dataclass(frozen=True)
class FFNPredictorConfig(PassConfig):
    """hidden: the MLP's width; quant_bits: bits of the quantised key copy (1: signs);
    threshold: the MLP's sigmoid cut; target_recall: what the union must keep on calibration
    data; steps: MLP training steps; holdout: the last share of calibration positions kept
    out of training, where the report's statistics are measured."""

    hidden: int = 64
    quant_bits: int = 1
    threshold: float = 0.7
    target_recall: float = 0.95
    steps: int = 400
    holdout: float = 0.2

    def __post_init__(self):
        super().__post_init__()
        self.require(self.hidden >= 1, f"hidden must be at least 1, not {self.hidden}")
        self.require(1 <= self.quant_bits <= 8, f"quant_bits must be 1 to 8, not {self.quant_bits}")
        self.require(0 <= self.threshold <= 1, f"threshold must be in [0, 1], not {self.threshold}")
        self.require(0 < self.target_recall <= 1, f"target_recall must be in (0, 1], not {self.target_recall}")
        self.require(self.steps >= 1, f"steps must be at least 1, not {self.steps}")
        self.require(0 <= self.holdout < 1, f"holdout must be in [0, 1), not {self.holdout}")


def fit_predictor(W: torch.Tensor, x: torch.Tensor, cfg: FFNPredictorConfig) -> tuple[PredictedKey, dict]:
    """A PredictedKey for key weight W [F, C] fitted on its inputs x [N, C], and its held-out statistics."""
    labels = (x @ W.float().T) > 0
    n_fit = int(len(x) * (1 - cfg.holdout))
    key = PredictedKey(W.shape[1], W.shape[0], cfg.hidden, cfg.quant_bits).to(W.device)
    with torch.no_grad():
        key.weight.copy_(W)
        key.qsign, scale = quantized_copy(W.float(), cfg.quant_bits)
        key.qscale.copy_(scale)
        key.threshold.fill_(cfg.threshold)
    train_mlp(key, x[:n_fit], labels[:n_fit], steps=cfg.steps)
    key.keep.fill_(choose_keep(key, x[:n_fit], labels[:n_fit], cfg.target_recall))
    with torch.no_grad():
        held_x, held = x[n_fit:], labels[n_fit:]
        mlp, quant = key.mlp_says(held_x), key.quant_says(held_x)
        stats = layer_stats(held, mlp | quant)
    stats.update({"mlp_recall": layer_stats(held, mlp)["recall"], "quant_recall": layer_stats(held, quant)["recall"],
                  "quant_keep": float(key.keep)})
    return key, stats


@register("ffn_predictor", FFNPredictorConfig)
def ffn_predictor(model, cfg: FFNPredictorConfig, ctx: Context) -> PassResult:
    """Train both predictors per layer on calibration tokens (ctx.tokens()) and install
    PredictedKey modules in place of every channel-mix key.

    >>> ffn_predictor(model, FFNPredictorConfig(steps=100), Context(tokens=lambda: tokens))  # doctest: +SKIP"""
    xs = collect_key_inputs(model, ctx.tokens())
    layers, structure = [], {}
    for i, block in enumerate(model.blocks):
        W = block.ffn.key.weight.detach()
        key, stats = fit_predictor(W, xs[i], cfg)
        layers.append({"layer": i, **stats})
        block.ffn.key = key.to(W.dtype)
        structure[f"blocks.{i}.ffn.key"] = {"hidden": cfg.hidden, "quant_bits": cfg.quant_bits}
    report = {"pass": "ffn_predictor", "hidden": cfg.hidden, "quant_bits": cfg.quant_bits, "threshold": cfg.threshold,
              "target_recall": cfg.target_recall, "layers": layers}
    return PassResult(report, structure)
