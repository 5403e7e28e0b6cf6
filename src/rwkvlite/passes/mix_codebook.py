"""RWKVQuant's codebooks for the element-wise mix vectors (arXiv 2505.03803).

A mix vector mu enters x' = x + dx * mu, with dx = x_{t-1} - x the token-shift difference,
so its error costs E[dx^2] per channel. Each vector gets a 1-D codebook of 2^bits values
fitted by k-means weighted by E[dx^2] of the channel it multiplies (clipped at the 99th
percentile so one loud channel cannot take every centroid). RWKV-7's k_k, k_a and r_k
multiply other activations and are fitted unweighted.
"""
from __future__ import annotations

import re

import torch

from ..format.encodings import encode_vq
from ..model.common import token_shift
from .calibrate import run_observed
from .gptq import GPTQResult, rtn
from .grids import VectorGrid
from .stored import report_line

MIX = re.compile(r"\.(att|ffn)\.(time_mix_[krvg]|time_maa_[xwkvrg]|x_[rwkvag]|k_k|k_a|r_k)$")
TOKEN_SHIFT_MIX = re.compile(r"\.(time_mix_|time_maa_|x_)")


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
    """1-D codebook of 2^bits values for one element-wise vector, weighted by E[dx^2]; p is
    overwritten with its quantised values. Returns (report line, (entry, arrays))."""
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
    error = float(torch.sqrt((err[0] * weights).sum() / (w[0] ** 2 * weights).sum().clamp_min(1e-30)))
    line = report_line(name, "codebook-1d", p.shape, arrays, error,
                       importance="E[dx^2]" if imp is not None else "uniform")
    return line, (entry, arrays)


@torch.no_grad()
def quantize_mixes(model, energy: dict, bits: int) -> tuple[list[dict], dict]:
    """Every mix vector of `model` to a 1-D codebook, in place: (report lines, encoded).
    energy: shift_energy of the model before any of its matrices was quantised."""
    lines, encoded = [], {}
    for name, p in model.named_parameters():
        if MIX.search(name):
            line, encoded[name] = quantize_mix(name, p, energy, bits)
            lines.append(line)
    return lines, encoded


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
