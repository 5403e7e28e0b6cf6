"""GPTQ (Frantar et al., 2022, arXiv 2210.17323): quantise a linear layer column by column,
pushing each column's rounding error onto the columns not yet quantised.

Paper -> code: W (weights [rows, cols]), H = 2 X^T X (input Hessian, `Hessian`), Hinv the
upper Cholesky factor of H^-1, Q the quantised weights, Err the scaled errors of a block.
With H = I there is nothing to push (Hinv = I) and the result is round-to-nearest.

  for each block of B columns:
      for column i in the block:
          q_i   = grid(w_i)                    (grid refitted at each group boundary)
          err_i = (w_i - q_i) / Hinv[i, i]
          w_j  -= err_i Hinv[i, j]   for j > i in the block
      W[:, after block] -= Err Hinv[block, after block]
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


class Hessian:
    """Running H = 2/n sum x x^T of a layer's inputs x [*, cols]: each batch's X^T X in float32
    (as the reference GPTQ; float64 would cost 2-4x for a 3072-wide input), summed in float64."""

    def __init__(self, cols: int, device=None):
        self.H = torch.zeros(cols, cols, dtype=torch.float64, device=device)
        self.n = 0

    def add_batch(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1])
        x = x.float() if x.dtype != torch.float64 else x
        total = self.n + x.shape[0]
        self.H *= self.n / total
        self.H += (2 / total) * (x.T @ x).double()
        self.n = total


@dataclass
class GPTQResult:
    Q: torch.Tensor  # dequantised weights [rows, cols], original column order
    codes: torch.Tensor  # integer codes [rows, cols / d] (d = 1 for scalar grids), quantisation order
    params: list  # grid parameters per group, in quantisation order
    perm: torch.Tensor | None  # act-order permutation (None if natural order)
    loss: float  # sum over columns of ((w - q) / Hinv[i, i])^2 / 2, GPTQ's own error proxy


def gptq(W: torch.Tensor, H: torch.Tensor, grid, block_size: int = 128, group_size: int | None = None,
         percdamp: float = 0.01, act_order: bool = False) -> GPTQResult:
    """Quantise W [rows, cols] onto `grid` using the input Hessian H [cols, cols]."""
    W = W.detach().double().clone()
    H = H.detach().double().clone()
    rows, cols = W.shape
    group_size = group_size or cols
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    perm = torch.argsort(torch.diag(H), descending=True) if act_order else None
    if perm is not None:
        W, H = W[:, perm], H[perm][:, perm]
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(cols, dtype=H.dtype, device=H.device)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    d = getattr(grid, "dim", 1)  # columns quantised together (vector grids)
    if block_size % d or group_size % d:
        raise ValueError(f"block size {block_size} and group size {group_size} must be multiples of {d}")
    Q, codes, params, loss = torch.zeros_like(W), torch.zeros(rows, cols // d, dtype=W.dtype), [], 0.0
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1, Err1, Hinv1 = W[:, i1:i2].clone(), torch.zeros(rows, i2 - i1, dtype=W.dtype, device=W.device), Hinv[i1:i2, i1:i2]
        for i in range(0, i2 - i1, d):
            col = i1 + i
            if col % group_size == 0:  # fit on the current (error-updated) weights of the group
                group = torch.cat([W1[:, i:], W[:, i2:]], dim=1)[:, :group_size]
                params.append(grid.fit(group, importance=torch.diag(H)[col:col + group.shape[1]]))
            w = W1[:, i:i + d]
            code, q = grid.round(w, params[-1])
            Q[:, col:col + d], codes[:, col // d] = q.reshape(rows, d), code.reshape(rows, -1)[:, 0]
            # (w - q) = err U with U the d x d block of Hinv, so err = (w - q) U^-1; d = 1 gives GPTQ's rule
            err = torch.linalg.solve_triangular(Hinv1[i:i + d, i:i + d], (w - q.reshape(rows, d)), upper=True,
                                                left=False)
            loss += float((err**2).sum()) / 2
            W1[:, i + d:] -= err @ Hinv1[i:i + d, i + d:]
            Err1[:, i:i + d] = err
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    if perm is not None:
        inverse = torch.argsort(perm)
        Q = Q[:, inverse]
        codes = codes[:, inverse] if codes.shape[1] == cols else codes
    return GPTQResult(Q, codes, params, perm, loss)


def rtn(W: torch.Tensor, grid, group_size: int | None = None) -> GPTQResult:
    """Round-to-nearest: GPTQ with an identity Hessian (no error feedback). Scalar grids round
    a whole group at once (the same numbers the column loop gives, much faster); vector grids
    go through the loop."""
    if getattr(grid, "dim", 1) != 1 or not hasattr(grid, "maxq"):
        return gptq(W, torch.eye(W.shape[1], dtype=torch.float64, device=W.device), grid,
                    group_size=group_size, percdamp=0.0)
    W = W.detach().double()
    group_size = group_size or W.shape[1]
    Q, codes, params = torch.empty_like(W), torch.empty_like(W), []
    for g in range(0, W.shape[1], group_size):
        block = W[:, g:g + group_size]
        params.append(grid.fit(block))
        codes[:, g:g + group_size], Q[:, g:g + group_size] = grid.round(block, params[-1])
    return GPTQResult(Q, codes, params, None, 0.0)
