"""Which RWKV generation a canonical state dict is, and its sizes, from tensor names and shapes."""
from __future__ import annotations

import torch

from ..errors import UnknownArchitectureError
from ..model.config import RWKVConfig


def detect_version(sd: dict[str, torch.Tensor]) -> str:
    """'4', '5.0', '5.1', '5.2', '6' or '7' (BlinkDL's rules, as in the `rwkv` package)."""
    att = "blocks.0.att."
    if "emb.weight" not in sd or f"{att}key.weight" not in sd:
        shown = ", ".join(sorted(sd)[:6])
        raise UnknownArchitectureError(
            f"not an RWKV state dict: no 'emb.weight' / '{att}key.weight' (found {len(sd)} tensors: {shown}, ...)")
    if f"{att}r_k" in sd or f"{att}x_rwkvag" in sd or f"{att}x_r" in sd:
        return "7"
    if f"{att}time_maa_x" in sd:
        return "6"
    if f"{att}ln_x.weight" in sd:
        decay = sd[f"{att}time_decay"].squeeze()
        if f"{att}time_faaaa" in sd or decay.dim() == 2:
            return "5.2"
        return "5.1" if f"{att}gate.weight" in sd else "5.0"
    if f"{att}time_mix_k" in sd and f"{att}time_decay" in sd:
        return "4"
    raise UnknownArchitectureError(
        f"RWKV-like tensor names but no known time-mix: block 0 has {sorted(k for k in sd if k.startswith(att))}")


def _width(t: torch.Tensor, c: int) -> int:
    """The non-C size of a LoRA-like matrix stored [C, D] or transposed."""
    return t.numel() // c


def infer_config(sd: dict[str, torch.Tensor], version: str | None = None) -> RWKVConfig:
    """Sizes from shapes. Works before tensors are reshaped to canonical form."""
    version = version or detect_version(sd)
    vocab, c = sd["emb.weight"].shape
    layers = sorted({int(k.split(".")[1]) for k in sd if k.startswith("blocks.")})
    if layers != list(range(len(layers))):  # n_layer from the largest index would trust a stray name
        raise ValueError(f"block indices are not 0..n-1 (found {len(layers)} blocks up to {layers[-1]})")
    n_layer = len(layers)
    att = "blocks.0.att."
    dim_att = sd[f"{att}key.weight"].shape[0]
    kw = dict(version=version, n_layer=n_layer, n_embd=c, vocab_size=vocab, dim_att=dim_att,
              dim_ffn=sd["blocks.0.ffn.key.weight"].shape[0])
    if version == "4":
        return RWKVConfig(**kw, head_size=1)
    if version in ("5.0", "5.1"):
        n_head = sd[f"{att}time_decay"].numel()
    elif version in ("5.2", "6"):
        n_head = sd[f"{att}time_faaaa"].shape[0]
    else:
        n_head = sd[f"{att}r_k"].shape[0]
    kw["head_size"] = dim_att // n_head
    if version == "6":
        kw.update(lora_mix=_width(sd[f"{att}time_maa_w1"], c) // 5, lora_decay=_width(sd[f"{att}time_decay_w1"], c))
    if version == "7":
        kw.update(lora_decay=_width(sd[f"{att}w1"], c), lora_a=_width(sd[f"{att}a1"], c),
                  lora_gate=_width(sd[f"{att}g1"], c))
        if n_layer > 1:
            kw["lora_v"] = _width(sd["blocks.1.att.v1"], c)
    return RWKVConfig(**kw)
