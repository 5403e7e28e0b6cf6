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
forward returns log P (a valid logit vector). This module computes the masked dense
form (for evaluation); a runtime reads only the chosen clusters' rows.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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


class ClusteredHead(nn.Module):
    def __init__(self, n_embd: int, vocab_size: int, n_clusters: int, p: float = 0.95, min_clusters: int = 3,
                 max_clusters: int = 100):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(vocab_size, n_embd))  # the original head, unchanged
        self.scorer = nn.Linear(n_embd, n_clusters)
        self.register_buffer("cluster", torch.zeros(vocab_size, dtype=torch.long))
        self.p, self.min_clusters, self.max_clusters = p, min_clusters, max_clusters
        self.reset_stats()

    def reset_stats(self):
        """Counters for memory accounting: positions, head rows computed, clusters ever chosen."""
        self.stats = {"positions": 0, "rows_computed": 0.0}
        self.touched = None  # made on first use (a model may be built on the meta device)

    @property
    def n_clusters(self) -> int:
        return self.scorer.out_features

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
        s = torch.softmax(self.scorer(h).float(), -1)  # [N, K]
        chosen = self.chosen(s)
        sizes = torch.bincount(self.cluster, minlength=self.n_clusters).to(s)
        self.stats["positions"] += h.shape[0]
        self.stats["rows_computed"] += float((chosen.to(s) @ sizes).sum())
        seen = chosen.any(0).cpu()
        self.touched = seen if self.touched is None else self.touched | seen
        if bool(chosen.all()):
            out = torch.log_softmax((h @ self.weight.T).float(), -1)
        else:
            in_s = chosen[:, self.cluster]  # [N, V]: token's cluster is chosen
            logits = (h @ self.weight.T).float().masked_fill(~in_s, float("-inf"))
            s_chosen = (s * chosen).sum(-1, keepdim=True)
            shared = torch.log(s / sizes) [:, self.cluster]  # log(s_k / n_k) per token
            out = torch.where(in_s, torch.log_softmax(logits, -1) + torch.log(s_chosen), shared)
        return out.reshape(*shape, -1)


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


def cluster_head(model, tokens: torch.Tensor, k: int = 200, p: float = 0.95, min_clusters: int = 3,
                 max_clusters: int = 100, pca_dim: int = 64, steps: int = 300, holdout: float = 0.2) -> dict:
    """Cluster the vocabulary, train the scorer on calibration tokens, install a ClusteredHead.
    Reports the scorer's held-out KL, the mass it covers and the share of logits computed."""
    W = model.head.weight.detach()
    feats = head_features(model, tokens)
    n_fit = int(len(feats) * (1 - holdout))
    cluster = cluster_vocabulary(W, k, pca_dim)
    n = int(cluster.max()) + 1
    head = ClusteredHead(W.shape[1], W.shape[0], n, p, min_clusters, min(max_clusters, n)).to(W.device)
    with torch.no_grad():
        head.weight.copy_(W)
        head.cluster.copy_(cluster)
    losses = train_scorer(head, feats[:n_fit], steps=steps)
    with torch.no_grad():
        held = feats[n_fit:]
        q = cluster_mass(held @ head.weight.T, cluster, n)
        s = torch.softmax(head.scorer(held), -1)
        chosen = head.chosen(s)
        kl = float(F.kl_div(torch.log(s), q, reduction="batchmean"))
        true_mass = float((q * chosen).sum(-1).mean())
        fraction = float((chosen.float() @ torch.bincount(cluster, minlength=n).float()).mean() / W.shape[0])
    model.head = head.to(W.dtype)
    return {"pass": "cluster_head", "clusters": n, "p": p, "min_clusters": min_clusters, "max_clusters": head.max_clusters,
            "scorer_kl_start": losses[0], "scorer_kl_end": losses[-1], "heldout_kl": kl,
            "heldout_true_mass_covered": true_mass, "heldout_vocab_fraction_computed": fraction,
            "cluster_sizes": {"min": int(torch.bincount(cluster).min()), "max": int(torch.bincount(cluster).max())},
            "structure": {"head": {"clusters": n, "p": p, "min_clusters": min_clusters,
                                   "max_clusters": head.max_clusters}}}


def restructure(model, structure: dict) -> None:
    for name, spec in structure.items():
        old = model.get_submodule(name)
        setattr(model, name, ClusteredHead(old.in_features, old.out_features, spec["clusters"], spec["p"],
                                           spec["min_clusters"], spec["max_clusters"]))
