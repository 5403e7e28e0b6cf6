"""Post-training quantisation: RTN, GPTQ, GPTVQ, or RWKVQuant's hybrid (the proxy picks
GPTQ or GPTVQ per matrix), plus RWKVQuant's codebooks for the element-wise mix vectors.

The pass writes the dequantised values back into the model ("fake quantisation"), so every
evaluation runs on exactly the numbers the file holds, and returns, per tensor, the stored
encoding (packed codes, scales/zeros or int8 codebooks) and a report line: method,
proxies, bits per weight counted from the stored bytes, and the relative output error
||X (W - Q)^T|| / ||X W^T|| on the calibration Hessian.

Mix vectors (x' = x + dx * mu, with dx = x_{t-1} - x) get a 1-D codebook of 2^mix_bits
values fitted by k-means weighted by E[dx^2] of the channel each multiplies (clipped at
the 99th percentile so one loud channel cannot take every centroid). RWKV-7's k_k, k_a and
r_k multiply other activations and are fitted unweighted.
By default embedding, head, norms, decay/bonus vectors and LoRA-like matrices stay 16-bit.
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass

import torch

from ..format.encodings import encode_sq, encode_vq, stored_bytes, transposed
from ..model.common import token_shift
from ..model.inspect import group_of
from .calibrate import quantize_blockwise, run_observed
from .gptq import GPTQResult, gptq, rtn
from .grids import ScalarGrid, VectorGrid
from .proxy import PROXY_DTYPE, choose, coarse_proxy, fine_proxy, thresholds_for_share

METHODS = ("rtn", "gptq", "gptvq", "rwkvquant")
MIX = re.compile(r"\.(att|ffn)\.(time_mix_[krvg]|time_maa_[xwkvrg]|x_[rwkvag]|k_k|k_a|r_k)$")
TOKEN_SHIFT_MIX = re.compile(r"\.(time_mix_|time_maa_|x_)")


@dataclass(frozen=True)
class QuantConfig:
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
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if not 2 <= self.bits <= 8:
            raise ValueError(f"bits must be 2 to 8, not {self.bits}")
        if self.vq_dim not in (1, 2):
            raise ValueError(f"vq_dim must be 1 or 2, not {self.vq_dim}")
        if self.mix_bits and not 2 <= self.mix_bits <= 8:
            raise ValueError(f"mix_bits must be 0 (keep 16-bit) or 2 to 8, not {self.mix_bits}")
        if self.group_size < 1 or self.vq_group < self.vq_dim or self.vq_group % self.vq_dim:
            raise ValueError("group_size must be >= 1 and vq_group a positive multiple of vq_dim")
        if not 0 <= self.sq_share <= 1:
            raise ValueError(f"sq_share must be in [0, 1], not {self.sq_share}")


def relative_output_error(W, Q, H) -> float:
    """sqrt(tr((W-Q) H (W-Q)^T) / tr(W H W^T)): the layer's output error on the calibration inputs."""
    D = (W - Q).double()
    return float(torch.sqrt(torch.einsum("ij,jk,ik->", D, H, D) / torch.einsum("ij,jk,ik->", W.double(), H, W.double())))


def is_target(name: str, cfg: QuantConfig | None = None) -> bool:
    group = group_of(name)
    return group in ("time-mix", "channel-mix") or (cfg is not None and (
        (group == "head" and cfg.quantize_head) or (group == "embedding" and cfg.quantize_embedding)))


def encode(result: GPTQResult, kind: str, cfg: QuantConfig, shape) -> tuple[dict, dict]:
    """The stored form of a GPTQ result (codes and grid parameters as the file keeps them)."""
    codes = result.codes.long().cpu().numpy()
    if kind == "sq":
        scale = torch.cat([p.scale for p in result.params], 1).cpu().numpy()
        zero = torch.cat([p.zero for p in result.params], 1).long().cpu().numpy()
        perm = None if result.perm is None else result.perm.cpu().numpy()
        if perm is not None:  # gptq returns codes in the original column order; groups follow act-order
            codes = codes[:, perm]
        return encode_sq(codes, scale, zero, cfg.bits, cfg.group_size, shape, perm)
    dim = result.params[0].codes.shape[1]
    k = 2 ** (cfg.bits * dim)
    book = torch.zeros(len(result.params), k, dim, dtype=torch.int8)
    for g, p in enumerate(result.params):
        book[g, :p.codes.shape[0]] = p.codes
    scales = torch.tensor([p.scale for p in result.params])
    return encode_vq(codes, book.numpy(), scales.numpy(), cfg.bits * dim, dim, cfg.vq_group, shape)


@torch.no_grad()
def shift_energy(model, tokens: torch.Tensor, batch: int = 8) -> dict[str, torch.Tensor]:
    """E[dx^2] per channel of the token-shift difference entering each block's time-mix
    (ln1 output) and channel-mix (ln2 output), on the calibration tokens."""
    sums: dict[str, torch.Tensor] = {}

    def observe(key):
        def hook(mod, inp, out):
            dx = token_shift(out, torch.zeros_like(out[:, 0])) - out
            sums[key] = sums.get(key, 0) + dx.double().pow(2).sum((0, 1))
        return hook

    run_observed(model, tokens, [(getattr(block, ln), observe(f"blocks.{i}.{part}"), "post")
                                 for i, block in enumerate(model.blocks)
                                 for ln, part in (("ln1", "att"), ("ln2", "ffn"))], batch)
    return {k: v / tokens.numel() for k, v in sums.items()}


def quantize_mix(name: str, p: torch.nn.Parameter, energy: dict, bits: int) -> tuple[dict, tuple[dict, dict]]:
    """1-D codebook of 2^bits values for one element-wise vector, weighted by E[dx^2]."""
    w = p.detach().double().reshape(1, -1)
    imp = None
    if TOKEN_SHIFT_MIX.search(name):
        e = energy[name.rsplit(".", 1)[0]].to(w)
        imp = e.clamp(max=torch.quantile(e, 0.99)).clamp_min(1e-12)
    result = rtn(w, VectorGrid(bits, 1), group_size=w.shape[1]) if imp is None else _weighted_rtn(w, bits, imp)
    entry, arrays = _mix_encoding(result, bits, p.shape)
    err = (w - result.Q).pow(2)
    weights = imp if imp is not None else torch.ones_like(w[0])
    p.copy_(result.Q.reshape(p.shape).to(p.dtype))
    line = {"name": name, "kind": "codebook-1d", "shape": list(p.shape), "importance": "E[dx^2]" if imp is not None
            else "uniform", "bits_per_weight": 8 * stored_bytes(arrays) / p.numel(),
            "output_error": float(torch.sqrt((err[0] * weights).sum() / (w[0] ** 2 * weights).sum().clamp_min(1e-30)))}
    return line, (entry, arrays)


def _weighted_rtn(w, bits, importance) -> GPTQResult:
    grid = VectorGrid(bits, 1)
    book = grid.fit(w, importance=importance)
    idx, q = grid.round(w.reshape(-1, 1), book)
    return GPTQResult(q.reshape(w.shape), idx.reshape(w.shape).double(), [book], None, 0.0)


def _mix_encoding(result, bits, shape):
    book = result.params[0]
    codebook = torch.zeros(1, 2 ** bits, 1, dtype=torch.int8)
    codebook[0, :book.codes.shape[0]] = book.codes
    return encode_vq(result.codes.long().numpy(), codebook.numpy(), torch.tensor([book.scale]).numpy(), bits, 1,
                     int(torch.tensor(shape).prod()), list(shape))


def quantize_model(model, tokens: torch.Tensor, cfg: QuantConfig, progress=None) -> tuple[dict, dict]:
    """Quantise `model` in place on calibration `tokens` [N, T].

    Returns (report, encoded) with encoded[name] = (entry, arrays) for every quantised tensor."""
    start = time.perf_counter()
    targets = {n: p for n, p in model.named_parameters() if is_target(n, cfg) and group_of(n) != "embedding"}
    proxies = {n: (coarse_proxy(p), fine_proxy(p)) for n, p in targets.items()}
    tau = thresholds_for_share(list(proxies.values()), cfg.sq_share) if cfg.method == "rwkvquant" else None
    encoded: dict[str, tuple[dict, dict]] = {}

    def quantize_layer(name, linear, H):
        W = linear.weight.detach().clone()  # the original, before the quantised values overwrite it
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
        encoded[name] = encode(result, kind, cfg, list(W.shape))
        return {"name": name, "kind": kind, "shape": list(W.shape), "coarse_proxy": proxies[name][0],
                "fine_proxy": proxies[name][1], "bits_per_weight": 8 * stored_bytes(encoded[name][1]) / W.numel(),
                "output_error": relative_output_error(W, result.Q, H)}

    with torch.no_grad():
        energy = shift_energy(model, tokens) if cfg.mix_bits else {}
        layers = quantize_blockwise(model, tokens, quantize_layer, lambda n: n in targets, progress=progress)
        if cfg.quantize_embedding:  # rows are looked up, not multiplied: plain round-to-nearest
            W = model.emb.weight
            result = rtn(W.detach(), ScalarGrid(cfg.bits), cfg.group_size)
            encoded["emb.weight"] = encode(result, "sq", cfg, list(W.shape))
            layers.append({"name": "emb.weight", "kind": "sq", "shape": list(W.shape), "bits_per_weight":
                           8 * stored_bytes(encoded["emb.weight"][1]) / W.numel(),
                           "output_error": float((W - result.Q).norm() / W.norm())})
            W.copy_(result.Q.to(W.dtype))
        mixes = []
        for name, p in model.named_parameters():
            if cfg.mix_bits and MIX.search(name):
                line, encoded[name] = quantize_mix(name, p, energy, cfg.mix_bits)
                mixes.append(line)
    numel = {r["name"]: r["shape"][0] * r["shape"][1] for r in layers}
    kept = {n: p.numel() for n, p in model.named_parameters() if n not in encoded}
    quantized = sum(numel.values())
    return {"config": asdict(cfg), "proxy_dtype": str(PROXY_DTYPE).replace("torch.", ""), "thresholds": tau,
            "layers": layers, "mix_vectors": mixes, "quantized_weights": quantized,
            "quantized_bits_per_weight": sum(r["bits_per_weight"] * numel[r["name"]] for r in layers) / quantized,
            "kept_16bit": {"params": sum(kept.values()), "groups": sorted({group_of(n) for n in kept})},
            "sq_share": sum(r["kind"] == "sq" for r in layers) / len(layers),
            "seconds": time.perf_counter() - start}, encoded


def is_plain_matrix(name: str, p: torch.Tensor) -> bool:
    """Weights the recipes' INT8/INT4 step rounds: floating 2-D tensors with both sides >= 16
    (every projection, LoRA, low-rank factor, predictor, scorer, embedding and head)."""
    return p.is_floating_point() and p.dim() == 2 and min(p.shape) >= 16


@torch.no_grad()
def round_to_nearest(model, bits: int = 8, group_size: int = 128, select=is_plain_matrix,
                     transpose=()) -> tuple[dict, dict]:
    """RWKV-Lite's final INT8/INT4 step: per-row, per-group asymmetric RTN of every selected
    matrix, in place (no calibration); names in `transpose` are quantised and stored as W^T
    (per-row groups of W^T). Returns (report, encoded) like quantize_model."""
    cfg = QuantConfig(method="rtn", bits=bits, group_size=group_size, mix_bits=0)
    layers, encoded = [], {}
    for name, p in model.named_parameters():
        if not select(name, p):
            continue
        W = p.detach().double()
        if name in transpose:
            result = rtn(W.T.contiguous(), ScalarGrid(bits), group_size)
            encoded[name] = transposed(encode(result, "sq", cfg, list(W.T.shape)))
            result.Q = result.Q.T
        else:
            result = rtn(W, ScalarGrid(bits), group_size)
            encoded[name] = encode(result, "sq", cfg, list(p.shape))
        layers.append({"name": name, "kind": "sq", "shape": list(p.shape), "bits_per_weight":
                       8 * stored_bytes(encoded[name][1]) / p.numel(),
                       "output_error": float((p.double() - result.Q).norm() / p.double().norm().clamp_min(1e-30))})
        p.copy_(result.Q.to(p.dtype))
    n = sum(r["shape"][0] * r["shape"][1] for r in layers)
    return {"pass": "int", "bits": bits, "group_size": group_size, "layers": layers, "quantized_weights": n,
            "quantized_bits_per_weight": sum(r["bits_per_weight"] * r["shape"][0] * r["shape"][1] for r in layers)
            / max(n, 1)}, encoded
