"""The stored form of a quantised matrix (codes and grid parameters as the file keeps them,
see format/encodings.py) and the report line every quantising pass writes for it."""
from __future__ import annotations

import torch

from ..format.encodings import encode_sq, encode_vq, stored_bytes
from .gptq import GPTQResult


def encode(result: GPTQResult, kind: str, bits: int, shape: list[int], group_size: int = 128,
           vq_group: int = 256) -> tuple[dict, dict]:
    """(entry, arrays) of a GPTQ/RTN result: kind "sq" (b-bit codes, per row and group of
    group_size inputs an fp16 scale and b-bit zero) or "vq" (indices into per-group int8
    codebooks of vq_group columns, an fp16 scale each)."""
    codes = result.codes.long().cpu().numpy()
    if kind == "sq":
        scale = torch.cat([p.scale for p in result.params], 1).cpu().numpy()
        zero = torch.cat([p.zero for p in result.params], 1).long().cpu().numpy()
        perm = None if result.perm is None else result.perm.cpu().numpy()
        if perm is not None:  # gptq returns codes in the original column order; groups follow act-order
            codes = codes[:, perm]
        return encode_sq(codes, scale, zero, bits, group_size, shape, perm)
    dim = result.params[0].codes.shape[1]
    k = 2 ** (bits * dim)
    book = torch.zeros(len(result.params), k, dim, dtype=torch.int8)
    for g, p in enumerate(result.params):
        book[g, :p.codes.shape[0]] = p.codes
    scales = torch.tensor([p.scale for p in result.params])
    return encode_vq(codes, book.numpy(), scales.numpy(), bits * dim, dim, vq_group, shape)


def relative_output_error(W, Q, H) -> float:
    """sqrt(tr((W-Q) H (W-Q)^T) / tr(W H W^T)): the layer's output error on the calibration inputs."""
    D = (W - Q).double()
    W = W.double()
    return float(torch.sqrt(torch.einsum("ij,jk,ik->", D, H, D) / torch.einsum("ij,jk,ik->", W, H, W)))


def relative_weight_error(W, Q) -> float:
    """||W - Q|| / ||W|| (a matrix without calibration inputs: looked-up rows, the rtn pass)."""
    return float((W.double() - Q.double()).norm() / W.double().norm().clamp_min(1e-30))


def report_line(name: str, kind: str, shape, arrays: dict, output_error: float, **extra) -> dict:
    """One matrix in a pass report: bits per weight counted from the stored bytes."""
    numel = int(torch.tensor(shape).prod())
    return {"name": name, "kind": kind, "shape": list(shape), **extra,
            "bits_per_weight": 8 * stored_bytes(arrays) / numel, "output_error": output_error}


def summary(layers: list[dict]) -> dict:
    """Weights quantised and their mean bits per weight, over report lines of 2-D matrices."""
    numel = [r["shape"][0] * r["shape"][1] for r in layers]
    n = sum(numel)
    return {"quantized_weights": n,
            "quantized_bits_per_weight": sum(r["bits_per_weight"] * k for r, k in zip(layers, numel)) / max(n, 1)}
