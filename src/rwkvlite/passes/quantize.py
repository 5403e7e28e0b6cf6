"""Post-training quantisation: RTN, GPTQ, GPTVQ, or RWKVQuant's hybrid (the proxy picks
GPTQ or GPTVQ per matrix, Xu et al., arXiv 2505.03803), plus RWKVQuant's codebooks for the
element-wise mix vectors (mix_codebook.py).

The pass writes the dequantised values back into the model ("fake quantisation"), so every
evaluation runs on exactly the numbers the file holds, and returns, per tensor, the stored
encoding (packed codes, scales/zeros or int8 codebooks, stored.py) and a report line:
method, proxies, bits per weight counted from the stored bytes, and the relative output
error ||X (W - Q)^T|| / ||X W^T|| on the calibration Hessian.
By default embedding, head, norms, decay/bonus vectors and LoRA-like matrices stay 16-bit
(targets.py).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from ..groups import group_of
from .base import Context, PassConfig, PassResult, register
from .calibrate import quantize_blockwise
from .gptq import gptq, rtn
from .grids import ScalarGrid, VectorGrid
from .mix_codebook import quantize_mixes, shift_energy
from .proxy import PROXY_DTYPE, choose, coarse_proxy, fine_proxy, thresholds_for_share
from .stored import encode, relative_output_error, relative_weight_error, report_line, summary
from .targets import is_target

METHODS = ("rtn", "gptq", "gptvq", "rwkvquant")


@dataclass(frozen=True)
class QuantConfig(PassConfig):
    """bits: bits per weight of the codes (SQ: b-bit codes; VQ: bits * vq_dim-bit indices per
    vq_dim weights). SQ metadata per row and group of group_size inputs: fp16 scale + b-bit zero.
    VQ metadata per group of vq_group columns: 2^(bits*vq_dim) int8 centroids x vq_dim + fp16 scale.
    mix_bits: 1-D codebook bits for the mix vectors (0 keeps them 16-bit)."""

    method: str = "rwkvquant"
    bits: int = 3
    group_size: int = 128
    vq_dim: int = 2
    vq_group: int = 256
    sq_share: float = 0.9
    act_order: bool = False
    percdamp: float = 0.01
    mix_bits: int = 4
    quantize_head: bool = False
    quantize_embedding: bool = False

    def __post_init__(self):
        super().__post_init__()
        self.require(self.method in METHODS, f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        self.require(2 <= self.bits <= 8, f"bits must be 2 to 8, not {self.bits}")
        self.require(self.vq_dim in (1, 2), f"vq_dim must be 1 or 2, not {self.vq_dim}")
        self.require(not self.mix_bits or 2 <= self.mix_bits <= 8,
                     f"mix_bits must be 0 (keep 16-bit) or 2 to 8, not {self.mix_bits}")
        self.require(self.group_size >= 1 and self.vq_group >= self.vq_dim and self.vq_group % self.vq_dim == 0,
                     "group_size must be >= 1 and vq_group a positive multiple of vq_dim")
        self.require(0 <= self.sq_share <= 1, f"sq_share must be in [0, 1], not {self.sq_share}")
        self.require(self.percdamp >= 0, f"percdamp must be at least 0, not {self.percdamp}")


def quantize_matrix(W, H, kind: str, cfg: QuantConfig):
    """One matrix W [out, in] on its Hessian H: RTN, GPTQ (kind "sq") or GPTVQ (kind "vq")."""
    if kind == "sq" and cfg.method == "rtn":
        return rtn(W, ScalarGrid(cfg.bits), cfg.group_size)
    if kind == "sq":
        return gptq(W, H, ScalarGrid(cfg.bits), group_size=cfg.group_size, percdamp=cfg.percdamp,
                    act_order=cfg.act_order)
    return gptq(W, H, VectorGrid(cfg.bits * cfg.vq_dim, cfg.vq_dim), block_size=128, group_size=cfg.vq_group,
                percdamp=cfg.percdamp)


def quantize_embedding(model, cfg: QuantConfig, encoded: dict) -> dict:
    """Embedding rows are looked up, not multiplied: plain round-to-nearest, in place."""
    W = model.emb.weight
    result = rtn(W.detach(), ScalarGrid(cfg.bits), cfg.group_size)
    encoded["emb.weight"] = encode(result, "sq", cfg.bits, list(W.shape), cfg.group_size)
    line = report_line("emb.weight", "sq", W.shape, encoded["emb.weight"][1], relative_weight_error(W, result.Q))
    W.copy_(result.Q.to(W.dtype))
    return line


def quantize_model(model, tokens: torch.Tensor, cfg: QuantConfig, progress=None) -> tuple[dict, dict]:
    """Quantise `model` in place on calibration `tokens` [N, T]; progress(i, n) after each block.

    Returns (report, encoded) with encoded[name] = (entry, arrays) for every quantised tensor."""
    start = time.perf_counter()
    targets = {n: p for n, p in model.named_parameters()
               if is_target(n, cfg.quantize_head, cfg.quantize_embedding) and group_of(n) != "embedding"}
    proxies = {n: (coarse_proxy(p), fine_proxy(p)) for n, p in targets.items()}
    tau = thresholds_for_share(list(proxies.values()), cfg.sq_share) if cfg.method == "rwkvquant" else None
    encoded: dict[str, tuple[dict, dict]] = {}

    def quantize_layer(name, linear, H):
        W = linear.weight.detach().clone()  # the original, before the quantised values overwrite it
        kind = {"rtn": "sq", "gptq": "sq", "gptvq": "vq"}.get(cfg.method) or choose(*proxies[name], *tau)
        result = quantize_matrix(W, H, kind, cfg)
        linear.weight.copy_(result.Q.to(W.dtype))
        encoded[name] = encode(result, kind, cfg.bits, list(W.shape), cfg.group_size, cfg.vq_group)
        return report_line(name, kind, W.shape, encoded[name][1], relative_output_error(W, result.Q, H),
                           coarse_proxy=proxies[name][0], fine_proxy=proxies[name][1])

    with torch.no_grad():
        energy = shift_energy(model, tokens) if cfg.mix_bits else {}
        layers = quantize_blockwise(model, tokens, quantize_layer, lambda n: n in targets, progress=progress)
        if cfg.quantize_embedding:
            layers.append(quantize_embedding(model, cfg, encoded))
        mixes, mix_encoded = quantize_mixes(model, energy, cfg.mix_bits) if cfg.mix_bits else ([], {})
        encoded.update(mix_encoded)
    kept = {n: p.numel() for n, p in model.named_parameters() if n not in encoded}
    return {"config": asdict(cfg), "proxy_dtype": str(PROXY_DTYPE).replace("torch.", ""), "thresholds": tau,
            "layers": layers, "mix_vectors": mixes, **summary(layers),
            "kept_16bit": {"params": sum(kept.values()), "groups": sorted({group_of(n) for n in kept})},
            "sq_share": sum(r["kind"] == "sq" for r in layers) / len(layers),
            "seconds": time.perf_counter() - start}, encoded


@register("quantize", QuantConfig)
def quantize(model, cfg: QuantConfig, ctx: Context) -> PassResult:
    """GPTQ / GPTVQ / RWKVQuant of the projections on calibration tokens (ctx.tokens()).

    >>> quantize(model, QuantConfig(method="gptq", bits=4), Context(tokens=lambda: tokens))  # doctest: +SKIP"""
    tokens = ctx.tokens()
    with ctx.progress(f"{cfg.method} {cfg.bits}-bit", model.config.n_layer) as tick:
        report, encoded = quantize_model(model, tokens, cfg, progress=tick)
    return PassResult({"pass": "quantize", **report}, encoded=encoded)
