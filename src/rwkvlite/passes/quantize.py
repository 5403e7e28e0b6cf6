"""Post-training quantisation of the time-mix and channel-mix matrices: RTN, GPTQ, GPTVQ,
or RWKVQuant's hybrid (the proxy picks GPTQ or GPTVQ per matrix).

This pass writes the dequantised values back into the model ("fake quantisation"), so
every evaluation runs on exactly the numbers a packed file would hold, and reports per
matrix: method, proxies, bits per weight including grid metadata, and the relative output
error ||X (W - Q)^T|| / ||X W^T|| measured on the calibration Hessian.
Defaults keep embedding, head, norms, decay/bonus vectors and the small LoRA-like
matrices in 16 bits (the report lists what was left alone).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from ..model.inspect import group_of
from .calibrate import quantize_blockwise
from .gptq import gptq, rtn
from .grids import ScalarGrid, VectorGrid
from .proxy import PROXY_DTYPE, choose, coarse_proxy, fine_proxy, thresholds_for_share

METHODS = ("rtn", "gptq", "gptvq", "rwkvquant")


@dataclass(frozen=True)
class QuantConfig:
    """bits: scalar bits (SQ) and index bits per weight (VQ: vq_bits_per_index / vq_dim).
    SQ metadata per group of group_size inputs and row: fp16 scale + `bits`-bit zero.
    VQ metadata per group of vq_group columns (all rows): 2^(bits*vq_dim) centroids x vq_dim x 8 bits."""

    method: str = "rwkvquant"
    bits: int = 3
    group_size: int = 128
    vq_dim: int = 2
    vq_group: int = 256
    sq_share: float = 0.9
    act_order: bool = False
    percdamp: float = 0.01

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {METHODS}")
        if not 2 <= self.bits <= 8:
            raise ValueError(f"bits must be 2 to 8, not {self.bits}")


def sq_bits(cfg: QuantConfig, cols: int) -> float:
    g = min(cfg.group_size, cols)
    return cfg.bits + (16 + cfg.bits) / g


def vq_bits(cfg: QuantConfig, rows: int, cols: int) -> float:
    k = 2 ** (cfg.bits * cfg.vq_dim)
    g = min(cfg.vq_group, cols)
    return cfg.bits + k * cfg.vq_dim * 8 / (rows * g)


def relative_output_error(W, Q, H) -> float:
    """sqrt(tr((W-Q) H (W-Q)^T) / tr(W H W^T)): the layer's output error on the calibration inputs."""
    D = (W - Q).double()
    return float(torch.sqrt(torch.einsum("ij,jk,ik->", D, H, D) / torch.einsum("ij,jk,ik->", W.double(), H, W.double())))


def is_target(name: str) -> bool:
    return group_of(name) in ("time-mix", "channel-mix")


def quantize_model(model, tokens: torch.Tensor, cfg: QuantConfig, progress=None) -> dict:
    """Quantise `model` in place on calibration `tokens` [N, T]; returns the report."""
    start = time.perf_counter()
    targets = {n: p for n, p in model.named_parameters() if is_target(n)}
    proxies = {n: (coarse_proxy(p), fine_proxy(p)) for n, p in targets.items()}
    tau = thresholds_for_share(list(proxies.values()), cfg.sq_share) if cfg.method == "rwkvquant" else None

    def quantize_layer(name, linear, H):
        W = linear.weight.detach()
        kind = {"rtn": "sq", "gptq": "sq", "gptvq": "vq"}.get(cfg.method) or choose(*proxies[name], *tau)
        if kind == "sq" and cfg.method == "rtn":
            result = rtn(W, ScalarGrid(cfg.bits), cfg.group_size)
        elif kind == "sq":
            result = gptq(W, H, ScalarGrid(cfg.bits), group_size=cfg.group_size, percdamp=cfg.percdamp,
                          act_order=cfg.act_order)
        else:
            result = gptq(W, H, VectorGrid(cfg.bits * cfg.vq_dim, cfg.vq_dim), block_size=128,
                          group_size=cfg.vq_group, percdamp=cfg.percdamp)
        linear.weight.copy_(result.Q.to(W.dtype))
        rows, cols = W.shape
        return {"name": name, "kind": kind, "shape": [rows, cols], "coarse_proxy": proxies[name][0],
                "fine_proxy": proxies[name][1], "bits_per_weight": sq_bits(cfg, cols) if kind == "sq" else vq_bits(cfg, rows, cols),
                "output_error": relative_output_error(W, result.Q, H)}

    layers = quantize_blockwise(model, tokens, quantize_layer, is_target, progress=progress)
    quantized = sum(r["shape"][0] * r["shape"][1] for r in layers)
    kept = {n: p.numel() for n, p in model.named_parameters() if not is_target(n)}
    return {"config": asdict(cfg), "proxy_dtype": str(PROXY_DTYPE).replace("torch.", ""), "thresholds": tau,
            "layers": layers, "quantized_weights": quantized,
            "quantized_bits_per_weight": sum(r["bits_per_weight"] * r["shape"][0] * r["shape"][1] for r in layers) / quantized,
            "kept_16bit": {"params": sum(kept.values()), "groups": sorted({group_of(n) for n in kept})},
            "sq_share": sum(r["kind"] == "sq" for r in layers) / len(layers), "seconds": time.perf_counter() - start}
