"""One table from every source naming to canonical BlinkDL names, with the quirks listed by name.

Each rule is (source regex, canonical template, transposed). The first full match wins.
Sources:
  transformers' RwkvForCausalLM (RWKV-4): `rwkv.blocks.N.attention.*`, from
      transformers/models/rwkv/convert_rwkv_checkpoint_to_hf.py (plain renames).
  flash-linear-attention RWKV-7 (`model.layers.N.attn.*`), from fla's
      utils/convert_from_rwkv7.py: LoRA-like matrices are nn.Linear weights ([out, in],
      the transpose of BlinkDL's [in, out]) and w0/a0/v0 are the second Linear's bias.
  rwkv.cpp files keep BlinkDL names but store some tensors transformed (RWKVCPP_QUIRKS).
"""
from __future__ import annotations

import re

import torch

HF_RWKV4 = [
    (r"rwkv\.embeddings\.weight", "emb.weight", False),
    (r"rwkv\.blocks\.0\.pre_ln\.(weight|bias)", r"blocks.0.ln0.\1", False),
    (r"rwkv\.blocks\.(\d+)\.(ln[12])\.(weight|bias)", r"blocks.\1.\2.\3", False),
    (r"rwkv\.blocks\.(\d+)\.attention\.time_mix_(k|v|r)(?:ey|alue|eceptance)", r"blocks.\1.att.time_mix_\2", False),
    (r"rwkv\.blocks\.(\d+)\.feed_forward\.time_mix_(k|r)(?:ey|eceptance)", r"blocks.\1.ffn.time_mix_\2", False),
    (r"rwkv\.blocks\.(\d+)\.attention\.(.+)", r"blocks.\1.att.\2", False),
    (r"rwkv\.blocks\.(\d+)\.feed_forward\.(.+)", r"blocks.\1.ffn.\2", False),
    (r"rwkv\.ln_out\.(weight|bias)", r"ln_out.\1", False),
    (r"head\.weight", "head.weight", False),
]

FLA_RWKV7 = [  # applied after an optional leading "model." is removed
    (r"embeddings\.weight", "emb.weight", False),
    (r"norm\.(weight|bias)", r"ln_out.\1", False),
    (r"lm_head\.weight", "head.weight", False),
    (r"layers\.(\d+)\.pre_norm\.(weight|bias)", r"blocks.\1.ln0.\2", False),
    (r"layers\.(\d+)\.attn_norm\.(weight|bias)", r"blocks.\1.ln1.\2", False),
    (r"layers\.(\d+)\.ffn_norm\.(weight|bias)", r"blocks.\1.ln2.\2", False),
    (r"layers\.(\d+)\.attn\.r_proj\.weight", r"blocks.\1.att.receptance.weight", False),
    (r"layers\.(\d+)\.attn\.k_proj\.weight", r"blocks.\1.att.key.weight", False),
    (r"layers\.(\d+)\.attn\.v_proj\.weight", r"blocks.\1.att.value.weight", False),
    (r"layers\.(\d+)\.attn\.o_proj\.weight", r"blocks.\1.att.output.weight", False),
    (r"layers\.(\d+)\.attn\.g_norm\.(weight|bias)", r"blocks.\1.att.ln_x.\2", False),
    (r"layers\.(\d+)\.attn\.([wavg])_lora\.lora\.0\.weight", r"blocks.\1.att.\g<2>1", True),
    (r"layers\.(\d+)\.attn\.([wavg])_lora\.lora\.2\.weight", r"blocks.\1.att.\g<2>2", True),
    (r"layers\.(\d+)\.attn\.([wav])_lora\.lora\.2\.bias", r"blocks.\1.att.\g<2>0", False),
    (r"layers\.(\d+)\.attn\.(x_[rwkvag]|k_k|k_a|r_k)", r"blocks.\1.att.\2", False),
    (r"layers\.(\d+)\.ffn\.(x_k|key\.weight|value\.weight)", r"blocks.\1.ffn.\2", False),
]

# Tensors some BlinkDL checkpoints carry that the model never uses.
UNUSED = {"blocks.0.att.v0", "blocks.0.att.v1", "blocks.0.att.v2"}


def naming_of(names) -> str:
    """'hf-rwkv4', 'fla-rwkv7' or 'blinkdl', from the tensor names alone."""
    names = list(names)
    if any(n.startswith("rwkv.blocks.") for n in names):
        return "hf-rwkv4"
    if any(re.match(r"(model\.)?layers\.\d+\.(attn|ffn)\.", n) for n in names):
        return "fla-rwkv7"
    return "blinkdl"


def to_canonical(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """Rename (and un-transpose) a state dict to BlinkDL names; returns it and the naming found."""
    naming = naming_of(sd)
    if naming == "blinkdl":
        return {k: v for k, v in sd.items() if k not in UNUSED}, naming
    rules = HF_RWKV4 if naming == "hf-rwkv4" else FLA_RWKV7
    out = {}
    for name, tensor in sd.items():
        key = name[len("model."):] if naming == "fla-rwkv7" and name.startswith("model.") else name
        for pattern, template, transposed in rules:
            m = re.fullmatch(pattern, key)
            if m:
                out[m.expand(template)] = tensor.t() if transposed else tensor
                break
        else:
            out[name] = tensor  # left for the strict key check to report
    return out, naming


# rwkv.cpp's convert_pytorch_to_ggml.py: what it did to each tensor, undone here.
# Each entry: (versions, name suffix, inverse transform). Shapes are fixed afterwards.
def _t(x):
    return x.reshape(x.shape[0], -1).t()


RWKVCPP_QUIRKS = [
    (("4",), ".att.time_decay", lambda x: torch.log(-x)),  # stored -exp(w)
    (("5.0", "5.1", "5.2"), ".att.time_decay", lambda x: torch.log(-torch.log(x))),  # stored exp(-exp(w))
    (("5.0", "5.1"), ".att.time_first", torch.log),  # stored exp(u)
    (("6",), ".att.time_maa_w1", _t),  # transposed
    (("6",), ".att.time_decay_w1", _t),
    (("6",), ".att.time_decay_w2", _t),
    (("6",), ".att.time_maa_w2", lambda x: x.permute(0, 2, 1)),  # (5, D, C) stored as (5, C, D)
    *((("7",), f".att.{m}", _t) for m in ("w1", "w2", "a1", "a2", "v1", "v2", "g1", "g2")),  # transposed
]


def undo_rwkvcpp(sd: dict[str, torch.Tensor], version: str) -> dict[str, torch.Tensor]:
    """Invert rwkv.cpp's conversions; computed in float64 so the round trip is exact in float32."""
    out = {}
    for name, x in sd.items():
        if name.endswith(".att.x_rwkvag"):  # v7: x_r, x_w, x_k, x_v, x_a, x_g concatenated
            prefix = name[: -len("x_rwkvag")]
            for i, part in enumerate(x.reshape(6, -1)):
                out[prefix + "x_" + "rwkvag"[i]] = part
            continue
        for versions, suffix, fn in RWKVCPP_QUIRKS:
            if version in versions and name.endswith(suffix):
                x = fn(x.double()).float()
                break
        out[name] = x
    return out
