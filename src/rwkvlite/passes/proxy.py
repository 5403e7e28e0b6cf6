"""RWKVQuant's coarse-to-fine proxy (Xu et al., ICML 2025, arXiv 2505.03803): should a
weight matrix get scalar (SQ) or vector (VQ) quantisation?

Let the sorted distinct values of the matrix be v_0 < ... < v_n, with gaps g_i = v_i - v_{i-1}
and p_i = g_i / sum g (n gaps). Uniform grids suit evenly spread values, so:
  coarse  P_c = log n - H(p) = KL(p || uniform): 0 when every gap is equal
  fine    P_f = sum_{k=2..K} n^k / (k (k-1)) |M_k|, M_k the k-th central moment of p
          (the terms of KL's expansion in n p - 1; large gaps, i.e. outliers, dominate)
SQ where P_c < tau_c and P_f < tau_f, otherwise VQ. The set of distinct values depends
on the dtype the weights are stored in, so the proxy casts to a fixed dtype first.
Example: values [0, 1, 2, 3] -> gaps [1, 1, 1] -> P_c = 0, P_f = 0; [0, 1, 2, 30] gives
p = [1/30, 1/30, 28/30] and P_c = log 3 - H(p) ~ 0.78.
"""
from __future__ import annotations

import math

import torch

PROXY_DTYPE = torch.float16  # the storage dtype the proxy sees, recorded in reports


def gap_distribution(w: torch.Tensor, dtype=PROXY_DTYPE) -> torch.Tensor:
    values = torch.unique(w.detach().to(dtype).double().flatten())  # sorted
    gaps = values[1:] - values[:-1]
    return gaps / gaps.sum() if len(gaps) else gaps


def coarse_proxy(w: torch.Tensor, dtype=PROXY_DTYPE) -> float:
    p = gap_distribution(w, dtype)
    n = len(p)
    if n < 2:
        return 0.0
    entropy = -(p * torch.log(p)).sum().item()
    return max(0.0, math.log(n) - entropy)


def fine_proxy(w: torch.Tensor, K: int = 8, dtype=PROXY_DTYPE) -> float:
    p = gap_distribution(w, dtype)
    n = len(p)
    if n < 2:
        return 0.0
    centred = n * p - 1  # n (p - mean p): moments scaled by n^k
    return sum(centred.pow(k).mean().abs().item() / (k * (k - 1)) for k in range(2, K + 1))


def choose(coarse: float, fine: float, tau_c: float, tau_f: float) -> str:
    return "sq" if coarse < tau_c and fine < tau_f else "vq"


def thresholds_for_share(proxies: list[tuple[float, float]], sq_share: float = 0.9) -> tuple[float, float]:
    """Thresholds that send about `sq_share` of the matrices to SQ: the sq_share-quantile of
    each proxy (a matrix must pass both, so the share can be a little lower)."""
    if not proxies:
        raise ValueError("no matrices to set thresholds from")
    coarse = torch.tensor([c for c, _ in proxies], dtype=torch.float64)
    fine = torch.tensor([f for _, f in proxies], dtype=torch.float64)
    q = min(1.0, sq_share ** 0.5)  # both tests pass for ~q^2 of the matrices if independent
    return (torch.quantile(coarse, q).item() + 1e-12, torch.quantile(fine, q).item() + 1e-12)
