"""Clustered output head (RWKV-Lite, arXiv 2412.10856, section 3.4).

Offline: cluster the vocabulary by its head rows (PCA to `pca_dim` dimensions, then
k-means into K clusters), and train a small cluster scorer s = softmax(A h + b), h the
ln_out output, to match the original head's probability mass per cluster,
    q_k = sum_{v in cluster k} softmax(W h)_v,     loss = KL(q || s),
with everything else frozen (h and q are computed once on calibration text).

Inference, per position: take clusters in order of s_k until their mass reaches p (at
least min_clusters, at most max_clusters); compute exact logits l_v = W_v h only for the
tokens of the chosen set S. The output distribution is
    P(v) = s_S softmax_S(l)_v        for v in S          (s_S = sum of s_k over S)
    P(v) = s_k / n_k                 for v in an unchosen cluster k of n_k tokens,
normalised over the whole vocabulary; with every cluster chosen it is softmax(W h) exactly.
ClusteredHead (model/structure.py) returns log P (a valid logit vector) in the masked dense
form (for evaluation); a runtime reads only the chosen clusters' rows.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..model.structure import ClusteredHead
from .base import Context, PassConfig, PassResult, register
from .calibrate import fit_samples, run_observed


def kmeans(x: torch.Tensor, k: int, iters: int = 30, seed: int = 0) -> torch.Tensor:
    """Plain k-means (k-means++ seeding, deterministic under seed); returns labels [N]."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    centres = [x[torch.randint(len(x), (1,), generator=g)].squeeze(0)]
    d2 = torch.full((len(x),), float("inf"), dtype=x.dtype)
    for _ in range(1, k):
        d2 = torch.minimum(d2, ((x - centres[-1]) ** 2).sum(1))
        centres.append(x[torch.multinomial(d2 / d2.sum(), 1, generator=g)].squeeze(0))
    c = torch.stack(centres)
    for _ in range(iters):
        labels = torch.cdist(x, c).argmin(1)
        sums = torch.zeros_like(c).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        c = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], c)
    return torch.cdist(x, c).argmin(1)


def cluster_vocabulary(head_weight: torch.Tensor, k: int = 200, pca_dim: int = 64, seed: int = 0) -> torch.Tensor:
    """Cluster id per token [V], from PCA of the head rows then k-means; empty clusters are dropped."""
    W = head_weight.detach().float()
    W = W - W.mean(0)
    _, _, V = torch.pca_lowrank(W, q=min(pca_dim, W.shape[1]), center=False)
    labels = kmeans(W @ V, k, seed=seed)
    return torch.unique(labels, return_inverse=True)[1]  # ids 0..K'-1, no empty cluster


def cluster_mass(logits: torch.Tensor, cluster: torch.Tensor, k: int) -> torch.Tensor:
    """q [N, K]: the softmax mass of each cluster."""
    p = torch.softmax(logits.float(), -1)
    return torch.zeros(p.shape[0], k, dtype=p.dtype, device=p.device).index_add_(1, cluster, p)


def train_scorer(head: ClusteredHead, features: torch.Tensor, steps: int = 300, lr: float = 3e-3,
                 batch: int = 1024, seed: int = 0) -> list[float]:
    """Fit the scorer by KL(q || s) on features h [N, C] (ln_out outputs); returns the loss curve."""
    with torch.no_grad():
        q = cluster_mass(features @ head.weight.T, head.cluster, head.n_clusters)

    def loss_of(idx):
        return F.kl_div(torch.log_softmax(head.scorer(features[idx]).float(), -1), q[idx], reduction="batchmean")

    return fit_samples(head.scorer.parameters(), len(features), loss_of, steps, lr, batch, seed)


@torch.no_grad()
def head_features(model, tokens: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """ln_out outputs [N*T, C] on calibration tokens (the head's inputs)."""
    feats = []
    run_observed(model, tokens, [(model.head, lambda m, inp: feats.append(inp[0].reshape(-1, inp[0].shape[-1])),
                                  "pre")], batch)
    return torch.cat(feats).float()


@dataclass(frozen=True)
class ClusterHeadConfig(PassConfig):
    """k: clusters asked of k-means (empty ones are dropped); p, min_clusters, max_clusters: the
    inference rule above; pca_dim: dimensions of the head rows k-means sees; steps: scorer
    training steps; holdout: the last share of calibration positions kept out of training."""

    k: int = 200
    p: float = 0.95
    min_clusters: int = 3
    max_clusters: int = 100
    pca_dim: int = 64
    steps: int = 300
    holdout: float = 0.2

    def __post_init__(self):
        super().__post_init__()
        self.require(self.k >= 1, f"k must be at least 1, not {self.k}")
        self.require(0 <= self.p <= 1, f"p must be in [0, 1], not {self.p}")
        self.require(self.min_clusters >= 0, f"min_clusters must be at least 0, not {self.min_clusters}")
        self.require(self.max_clusters >= 1, f"max_clusters must be at least 1, not {self.max_clusters}")
        self.require(self.pca_dim >= 1, f"pca_dim must be at least 1, not {self.pca_dim}")
        self.require(self.steps >= 1, f"steps must be at least 1, not {self.steps}")
        self.require(0 <= self.holdout < 1, f"holdout must be in [0, 1), not {self.holdout}")


@torch.no_grad()
def heldout_figures(head: ClusteredHead, held: torch.Tensor) -> dict:
    """The scorer's KL(q || s), the true mass of the chosen clusters and the share of logits
    computed, on held-out features [N, C]."""
    q = cluster_mass(held @ head.weight.T, head.cluster, head.n_clusters)
    s = torch.softmax(head.scorer(held), -1)
    chosen = head.chosen(s)
    sizes = head.cluster_sizes().float()
    return {"heldout_kl": float(F.kl_div(torch.log(s), q, reduction="batchmean")),
            "heldout_true_mass_covered": float((q * chosen).sum(-1).mean()),
            "heldout_vocab_fraction_computed": float((chosen.float() @ sizes).mean() / len(head.cluster))}


@register("cluster_head", ClusterHeadConfig)
def cluster_head(model, cfg: ClusterHeadConfig, ctx: Context) -> PassResult:
    """Cluster the vocabulary, train the scorer on calibration tokens (ctx.tokens()), install
    a ClusteredHead. Reports the scorer's held-out KL, the mass it covers and the share of
    logits computed.

    >>> cluster_head(model, ClusterHeadConfig(k=20), Context(tokens=lambda: tokens))  # doctest: +SKIP"""
    W = model.head.weight.detach()
    feats = head_features(model, ctx.tokens())
    n_fit = int(len(feats) * (1 - cfg.holdout))
    cluster = cluster_vocabulary(W, cfg.k, cfg.pca_dim)
    n = int(cluster.max()) + 1
    head = ClusteredHead(W.shape[1], W.shape[0], n, cfg.p, cfg.min_clusters, min(cfg.max_clusters, n)).to(W.device)
    with torch.no_grad():
        head.weight.copy_(W)
        head.cluster.copy_(cluster)
    losses = train_scorer(head, feats[:n_fit], steps=cfg.steps)
    figures = heldout_figures(head, feats[n_fit:])
    model.head = head.to(W.dtype)
    sizes = torch.bincount(cluster)
    spec = {"clusters": n, "p": cfg.p, "min_clusters": cfg.min_clusters, "max_clusters": head.max_clusters}
    report = {"pass": "cluster_head", **spec, "scorer_kl_start": losses[0], "scorer_kl_end": losses[-1], **figures,
              "cluster_sizes": {"min": int(sizes.min()), "max": int(sizes.max())}}
    return PassResult(report, {"head": spec})
