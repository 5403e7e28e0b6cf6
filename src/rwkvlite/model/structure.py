"""The modules compression passes put into a model, and how a saved file's structure specs
rebuild them in a fresh model before its weights load.

The passes (rwkvlite/passes) make these modules from a trained model; a loader only needs
their skeletons, so they live here, below both. A file's manifest records one spec per
pass that changed modules, {pass name: {module name: spec}}; the names are those of
version-1 files and stay as they are:
  lowrank        LowRankLinear in place of a projection   {"rank", "variant"}
  ffn_predictor  PredictedKey in place of ffn.key          {"hidden", "quant_bits"}
  cluster_head   ClusteredHead in place of head            {"clusters", "p", "min_clusters", "max_clusters"}
  fold_ln0       nn.Identity in place of blocks.0.ln0      "identity"

>>> restructure(model, {"lowrank": {"blocks.0.att.key": {"rank": 8, "variant": "linear"}}})  # doctest: +SKIP
"""
from __future__ import annotations

import torch
from torch import nn

LOWRANK_VARIANTS = ("linear", "relu")


class LowRankLinear(nn.Module):
    """y = W2 W1 x  ("linear")  or  y = W2 relu(W1 x)^2 + d * x  ("relu"); W1 [rank, in], W2 [out, rank]
    (passes/lowrank.py)."""

    def __init__(self, in_features: int, out_features: int, rank: int, variant: str = "linear"):
        super().__init__()
        if variant not in LOWRANK_VARIANTS:
            raise ValueError(f"low-rank variant must be one of {LOWRANK_VARIANTS}, not {variant!r}")
        self.in_features, self.out_features, self.rank, self.variant = in_features, out_features, rank, variant
        self.w1 = nn.Parameter(torch.zeros(rank, in_features))
        self.w2 = nn.Parameter(torch.zeros(out_features, rank))
        if variant == "relu" and in_features == out_features:
            self.diag = nn.Parameter(torch.zeros(in_features))
        # what each factor multiplies, as it multiplies it (eval/fast_mode.py attaches the lean runtime's rounding here)
        self.w1_input, self.w2_input = nn.Identity(), nn.Identity()

    def forward(self, x):
        h = self.w1_input(x) @ self.w1.T
        if self.variant == "relu":
            h = torch.relu(h) ** 2
        y = self.w2_input(h) @ self.w2.T
        return y + x * self.diag if hasattr(self, "diag") else y

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int, variant: str = "linear") -> "LowRankLinear":
        """The rank-`rank` truncated SVD of linear.weight, the singular values split evenly between the factors."""
        W = linear.weight.detach()
        U, S, Vh = torch.linalg.svd(W.double(), full_matrices=False)
        root = S[:rank].sqrt()
        m = cls(W.shape[1], W.shape[0], rank, variant).to(device=W.device, dtype=W.dtype)
        with torch.no_grad():
            m.w1.copy_(root[:, None] * Vh[:rank])
            m.w2.copy_(U[:, :rank] * root)
        return m


class PredictedKey(nn.Module):
    """The channel-mix key W_k x', kept only where the sparsity predictors say the neuron is
    active (passes/ffn_predictor.py): an MLP x' -> hidden -> F above `threshold`, or the top
    `keep` share of a quant_bits copy of W_k (sign * scale for 1 bit)."""

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
        self.enabled = True  # False: the dense key (every neuron computed)
        self.weight_input = nn.Identity()  # x as W_k multiplies it (as LowRankLinear's)

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
        """Boolean [..., F]: the neurons computed for input x [..., C]."""
        if not self.enabled:
            return torch.ones(*x.shape[:-1], self.out_features, dtype=torch.bool, device=x.device)
        return self.mlp_says(x) | self.quant_says(x, keep)

    def forward(self, x):
        y = self.weight_input(x) @ self.weight.T
        return y * self.active(x) if self.enabled else y


class ClusteredHead(nn.Module):
    """The output head over clusters of the vocabulary (passes/cluster_head.py): a scorer
    s = softmax(A h + b) picks clusters until their mass reaches p (at least min_clusters, at
    most max_clusters); exact logits for the chosen clusters' tokens, s_k / n_k for the rest.
    forward returns log P over the whole vocabulary; with every cluster chosen it is
    log_softmax(W h) exactly."""

    def __init__(self, n_embd: int, vocab_size: int, n_clusters: int, p: float = 0.95, min_clusters: int = 3,
                 max_clusters: int = 100):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(vocab_size, n_embd))  # the original head, unchanged
        self.scorer = nn.Linear(n_embd, n_clusters)
        self.register_buffer("cluster", torch.zeros(vocab_size, dtype=torch.long))
        self.p, self.min_clusters, self.max_clusters = p, min_clusters, max_clusters
        self.weight_input = nn.Identity()  # h as the head multiplies it (as LowRankLinear's)

    @property
    def n_clusters(self) -> int:
        return self.scorer.out_features

    def cluster_sizes(self) -> torch.Tensor:
        """n_k [K]: tokens per cluster."""
        return torch.bincount(self.cluster, minlength=self.n_clusters)

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """s [N, K] for h [N, C]."""
        return torch.softmax(self.scorer(h).float(), -1)

    def chosen(self, s: torch.Tensor) -> torch.Tensor:
        """Boolean [N, K]: clusters taken in order of probability until their mass reaches p."""
        order = s.argsort(-1, descending=True)
        mass_before = torch.cumsum(s.gather(-1, order), -1) - s.gather(-1, order)
        rank = torch.arange(s.shape[-1], device=s.device)
        take = (mass_before < self.p) | (rank < self.min_clusters)
        take &= rank < self.max_clusters
        return torch.zeros_like(take).scatter(-1, order, take)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        shape = h.shape[:-1]
        h = h.reshape(-1, h.shape[-1])
        s = self.scores(h)  # [N, K]
        chosen = self.chosen(s)
        sizes = self.cluster_sizes().to(s)
        if bool(chosen.all()):
            out = torch.log_softmax((self.weight_input(h) @ self.weight.T).float(), -1)
        else:
            in_s = chosen[:, self.cluster]  # [N, V]: token's cluster is chosen
            logits = (self.weight_input(h) @ self.weight.T).float().masked_fill(~in_s, float("-inf"))
            s_chosen = (s * chosen).sum(-1, keepdim=True)
            shared = torch.log(s / sizes)[:, self.cluster]  # log(s_k / n_k) per token
            out = torch.where(in_s, torch.log_softmax(logits, -1) + torch.log(s_chosen), shared)
        return out.reshape(*shape, -1)


def replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put `module` at dotted path `name` of model."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _lowrank(model, name, spec):
    old = model.get_submodule(name)
    return LowRankLinear(old.in_features, old.out_features, spec["rank"], spec["variant"])


def _predicted_key(model, name, spec):
    old = model.get_submodule(name)
    return PredictedKey(old.in_features, old.out_features, spec["hidden"], spec["quant_bits"])


def _clustered_head(model, name, spec):
    old = model.get_submodule(name)
    return ClusteredHead(old.in_features, old.out_features, spec["clusters"], spec["p"], spec["min_clusters"],
                         spec["max_clusters"])


def _identity(model, name, spec):
    return nn.Identity()


# a manifest's structure key -> the module skeleton one of its specs describes
REBUILD = {"lowrank": _lowrank, "ffn_predictor": _predicted_key, "cluster_head": _clustered_head,
           "fold_ln0": _identity}


def restructure(model: nn.Module, structure: dict) -> None:
    """Apply saved structure specs ({pass name: {module name: spec}}) to a freshly built model
    (weights are loaded after). An unknown pass name is a ValueError."""
    for kind, specs in structure.items():
        if kind not in REBUILD:
            raise ValueError(f"unknown model structure {kind!r} (written by a newer rwkvlite?)")
        for name, spec in specs.items():
            replace_module(model, name, REBUILD[kind](model, name, spec))
