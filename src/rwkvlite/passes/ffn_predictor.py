"""FFN sparsity predictors (RWKV-Lite, arXiv 2412.10856, section 3.2).

The channel-mix computes k = relu(W_k x')^2, so a neuron j with W_k[j] . x' <= 0 contributes
nothing: its key row and value column need not be read. Two cheap predictors guess the
active set before W_k is touched, and a neuron counts as active if either says so:
  (a) an MLP  x' -> 64 -> F (sigmoid), trained with positive-weighted BCE on the labels
      "W_k x' > 0" from calibration text; active where its output exceeds `threshold`;
  (b) a 1-bit copy of W_k: sign(W_k) times one mean |w| per row (or an n-bit RTN copy);
      the top (1 - p) of its scores count as active, with p per layer chosen as the
      largest value whose union with (a) keeps `target_recall` on the calibration data.
PredictedKey replaces ffn.key: it returns W_k x' where predicted active and 0 elsewhere
(relu(0)^2 = 0), the masked dense form used for evaluation; a runtime gathers only the
active rows of W_k and columns of W_v.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .calibrate import fit_samples, run_observed


class PredictedKey(nn.Module):
    def __init__(self, in_features: int, out_features: int, hidden: int = 64, quant_bits: int = 1):
        super().__init__()
        self.in_features, self.out_features, self.quant_bits = in_features, out_features, quant_bits
        self.weight = nn.Parameter(torch.zeros(out_features, in_features))  # W_k, unchanged
        self.mlp1 = nn.Linear(in_features, hidden)
        self.mlp2 = nn.Linear(hidden, out_features)
        self.register_buffer("qsign", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("qscale", torch.zeros(out_features, 1))
        self.register_buffer("threshold", torch.tensor(0.7))
        self.register_buffer("keep", torch.tensor(1.0))  # 1 - p: share the quantised copy marks active
        self.enabled = True
        self.reset_stats()

    def reset_stats(self):
        """Counters for memory accounting: tokens seen, active neurons summed, neurons ever active."""
        self.stats = {"tokens": 0, "predicted_active": 0.0}
        self.touched = None  # made on first use (a model may be built on the meta device)

    def mlp_says(self, x):
        return torch.sigmoid(self.mlp2(torch.relu(self.mlp1(x)))) > self.threshold

    def quant_scores(self, x):
        return x @ (self.qsign.to(x.dtype) * self.qscale.to(x.dtype)).T

    def quant_says(self, x, keep=None):
        keep = float(self.keep if keep is None else keep)
        s = self.quant_scores(x)
        n = max(1, round(keep * self.out_features))
        cutoff = s.topk(n, dim=-1).values[..., -1:]
        return s >= cutoff

    def active(self, x, keep=None):
        return self.mlp_says(x) | self.quant_says(x, keep)

    def forward(self, x):
        y = x @ self.weight.T
        if not self.enabled:
            return y
        mask = self.active(x)
        self.stats["tokens"] += mask[..., 0].numel()
        self.stats["predicted_active"] += float(mask.float().sum(-1).sum())
        seen = mask.reshape(-1, self.out_features).any(0).cpu()
        self.touched = seen if self.touched is None else self.touched | seen
        return y * mask


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


def ffn_predictors(model, tokens: torch.Tensor, hidden: int = 64, quant_bits: int = 1, threshold: float = 0.7,
                   target_recall: float = 0.95, steps: int = 400, holdout: float = 0.2) -> dict:
    """Train both predictors per layer on calibration tokens and install PredictedKey modules.
    Statistics are measured on the held-out last `holdout` share of the calibration positions."""
    xs = collect_key_inputs(model, tokens)
    layers, structure = [], {}
    for i, block in enumerate(model.blocks):
        linear = block.ffn.key
        W = linear.weight.detach()
        x = xs[i]
        labels = (x @ W.float().T) > 0
        n_fit = int(len(x) * (1 - holdout))
        key = PredictedKey(W.shape[1], W.shape[0], hidden, quant_bits).to(W.device)
        with torch.no_grad():
            key.weight.copy_(W)
            key.qsign, scale = quantized_copy(W.float(), quant_bits)
            key.qscale.copy_(scale)
            key.threshold.fill_(threshold)
        train_mlp(key, x[:n_fit], labels[:n_fit], steps=steps)
        key.keep.fill_(choose_keep(key, x[:n_fit], labels[:n_fit], target_recall))
        with torch.no_grad():
            held_x, held = x[n_fit:], labels[n_fit:]
            mlp, quant = key.mlp_says(held_x), key.quant_says(held_x)
            stats = layer_stats(held, mlp | quant)
        stats.update({"layer": i, "mlp_recall": layer_stats(held, mlp)["recall"],
                      "quant_recall": layer_stats(held, quant)["recall"], "quant_keep": float(key.keep)})
        layers.append(stats)
        block.ffn.key = key.to(W.dtype)
        structure[f"blocks.{i}.ffn.key"] = {"hidden": hidden, "quant_bits": quant_bits}
    return {"pass": "ffn_predictor", "hidden": hidden, "quant_bits": quant_bits, "threshold": threshold,
            "target_recall": target_recall, "layers": layers, "structure": structure}


def restructure(model, structure: dict) -> None:
    for name, spec in structure.items():
        linear = model.get_submodule(name)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child,
                PredictedKey(linear.in_features, linear.out_features, spec["hidden"], spec["quant_bits"]))
