"""The lean runtime's fast mode reproduced on the evaluation path, so `rwkvlite eval --fast`
measures what a device with the int8 tier runs (runtime/fast.py says what that is).

Every product the runtime computes as W x with a scalar-coded W that rounds x (runtime.fast.
rounds_x) gets its x rounded the same way: a forward pre-hook on an nn.Linear, or on the
nn.Identity a compression module keeps before each of its products (model/structure.py).
Products the runtime computes as y += a W (LoRA factors, transposed FFN values) and the
other encodings keep float x, as the runtime's fast mode keeps them within 2^-15 of it.
"""
from __future__ import annotations

import torch
from torch import nn

from ..format import container
from ..runtime.fast import BLOCK, LEVELS, rounds_x


def round_x(x: torch.Tensor, perm: torch.Tensor | None = None, block: int = BLOCK) -> torch.Tensor:
    """x (last axis) rounded per block of columns and scaled back, as runtime.fast.round_x;
    perm: an act-order matrix's column order (the kernel rounds x in the order it stores columns)."""
    if perm is not None:
        x = x[..., perm]
    cols = x.shape[-1]
    blocks = nn.functional.pad(x.float(), (0, -cols % block)).unflatten(-1, (-1, block))
    top = blocks.abs().amax(-1, keepdim=True)
    inv = torch.where(top > 0, LEVELS / top, torch.zeros_like(top))
    out = (torch.round(blocks * inv).clamp(-LEVELS, LEVELS) * (top / LEVELS)).flatten(-2)[..., :cols].to(x.dtype)
    if perm is not None:
        out = out[..., torch.argsort(perm)]
    return out


def emulate(model: nn.Module, path) -> int:
    """Hooks on a model loaded from the compressed file at `path` that round x before each
    product the fast mode rounds it for; how many were hooked."""
    manifest, arrays = container.read(path, verify=False)  # (the model's load verified it)
    hooked = 0
    for name, entry in manifest["tensors"].items():
        if not rounds_x(entry) or entry.get("transposed"):
            continue
        owner, _, param = name.rpartition(".")
        try:
            module = model.get_submodule(owner)
        except AttributeError:
            continue
        key = entry["arrays"].get("perm")
        perm = None if key is None else torch.from_numpy(arrays[key].astype("int64"))
        if isinstance(module, nn.Linear) and param == "weight":
            module.register_forward_pre_hook(lambda m, args, perm=perm: (round_x(args[0], perm), *args[1:]))
        elif isinstance(getattr(module, f"{param}_input", None), nn.Identity):
            getattr(module, f"{param}_input").register_forward_hook(lambda m, args, out, perm=perm: round_x(out, perm))
        else:
            continue  # a LoRA factor or another product the runtime computes as y += a W
        hooked += 1
    return hooked
