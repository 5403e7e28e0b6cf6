"""Checkpoint -> config + canonical (BlinkDL-named, BlinkDL-shaped) state dict -> model.

>>> model = load_model("tiny-rwkv-5v2-730K-FP32.bin")  # doctest: +SKIP
>>> model.config.version
'5.2'
"""
from __future__ import annotations

import json
from dataclasses import replace

import torch
from safetensors.torch import save_file

from .. import format as compressed
from ..errors import CheckpointError, RWKVLiteError, UnknownArchitectureError
from ..model import RWKV, RWKVConfig
from ..model.structure import restructure
from ..utils.io import atomic_path
from .detect import detect_version, infer_config
from .files import read_tensors
from .names import to_canonical, undo_rwkvcpp

FORMAT_NAME = "rwkvlite-model"
FORMAT_VERSION = "1"


def build_model(config: RWKVConfig, structure: dict | None = None) -> RWKV:
    """An RWKV model with the modules a compressed file's structure specs describe."""
    model = RWKV(config)
    if structure:
        try:
            restructure(model, structure)
        except (ValueError, KeyError, AttributeError, TypeError) as e:
            raise CheckpointError(f"cannot rebuild the compressed model's structure: {e}") from None
    return model


def canonical_shapes(config: RWKVConfig, structure: dict | None = None) -> dict[str, torch.Size]:
    with torch.device("meta"):
        return {k: v.shape for k, v in build_model(config, structure).state_dict().items()}


def conform(sd: dict[str, torch.Tensor], config: RWKVConfig, source: str,
            structure: dict | None = None) -> dict[str, torch.Tensor]:
    """Check key sets and reshape every tensor to its canonical shape (sizes must agree exactly)."""
    shapes = canonical_shapes(config, structure)
    missing = sorted(set(shapes) - set(sd))
    unexpected = sorted(set(sd) - set(shapes))
    if missing or unexpected:
        parts = [f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}" if missing else "",
                 f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}" if unexpected else ""]
        raise CheckpointError(f"{source}: tensors do not match an RWKV-{config.version} model: "
                              + "; ".join(p for p in parts if p))
    out = {}
    for name, shape in shapes.items():
        t = sd[name]
        if t.shape != shape:
            src, dst = [d for d in t.shape if d != 1], [d for d in shape if d != 1]
            vector = len(dst) <= 1 and t.numel() == shape.numel()  # e.g. a per-channel [H, N] stored for [1, 1, C]
            if src != dst and not vector:  # otherwise only size-1 dims may differ
                raise CheckpointError(f"{source}: tensor '{name}' has shape {list(t.shape)}, "
                                      f"expected {list(shape)} for RWKV-{config.version}")
            t = t.reshape(shape)
        out[name] = t.contiguous()  # transposed sources arrive as views
    return out


def load_compressed(path, verify: bool = True) -> tuple[RWKVConfig, dict[str, torch.Tensor], dict]:
    """An rwkvlite compressed file, every tensor decoded (the evaluation path)."""
    manifest, tensors = compressed.load(path, verify=verify)
    try:
        config = RWKVConfig.from_dict(manifest["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: compressed file with a bad config ({e})") from None
    sd = {k: torch.from_numpy(v) for k, v in tensors.items()}
    meta = {"format": compressed.FORMAT_NAME, "tokenizer": manifest.get("tokenizer"), "manifest": manifest,
            "structure": manifest.get("structure") or {}}
    return config, conform(sd, config, str(path), meta["structure"]), meta


def load_state_dict(path) -> tuple[RWKVConfig, dict[str, torch.Tensor], dict]:
    """Any supported checkpoint -> (config, canonical state dict, metadata about the source)."""
    if compressed.is_compressed(path):
        return load_compressed(path)
    raw, meta = read_tensors(path)
    if not raw or not all(isinstance(k, str) for k in raw):
        raise CheckpointError(f"{path}: no named tensors in the file")
    try:
        sd, meta["naming"] = to_canonical(raw)
        version = detect_version(sd)
        if meta["format"] == "rwkv.cpp":
            sd = undo_rwkvcpp(sd, version)
        config = infer_config(sd, version)
        if meta["format"] == "rwkv.cpp" and version.startswith("5"):
            config = replace(config, ln_x_eps=1e-5)  # rwkv.cpp's v5 GroupNorm epsilon
        elif "config" in meta.get("file_metadata", {}):  # our own file: keep what only the config records
            saved = json.loads(meta["file_metadata"]["config"])
            config = replace(config, ln_x_eps=float(saved.get("ln_x_eps", config.ln_x_eps)))
    except UnknownArchitectureError:
        raise
    except (KeyError, ValueError, IndexError, TypeError, AttributeError) as e:  # inconsistent names/shapes
        raise CheckpointError(f"{path}: inconsistent RWKV tensors ({type(e).__name__}: {str(e)[:160]})") from None
    return config, conform(sd, config, str(path)), meta


def load_model(path, device=None, dtype=torch.float32) -> RWKV:
    """Load any supported RWKV checkpoint as an `RWKV` model in eval mode.

    device: "cpu" (default), "cuda", ...; dtype: the weights' dtype (WKV math stays float32),
    None to keep the checkpoint's own.
    """
    device = resolve_device(device)
    config, sd, meta = load_state_dict(path)
    with torch.device("meta"):
        model = build_model(config, meta.get("structure"))
    model.load_state_dict({k: v.to(dtype) if dtype and v.is_floating_point() else v for k, v in sd.items()},
                          strict=True, assign=True)
    model.source = {"path": str(path), **{k: v for k, v in meta.items() if isinstance(v, str)}}
    if meta.get("structure"):
        model.source["structure"] = meta["structure"]
    return model.to(device).eval()


def resolve_device(device) -> torch.device:
    """'cpu', 'cuda', 'cuda:1', ... checked now, so a bad choice is one clear error."""
    try:
        dev = torch.device(device or "cpu")
    except RuntimeError:
        raise RWKVLiteError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RWKVLiteError(f"device {device!r} requested but this PyTorch build sees no CUDA device")
    return dev


def save_model(model: RWKV, path) -> None:
    """Write canonical safetensors with the config as JSON in the header; atomic."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "config": json.dumps(model.config.to_dict())}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)


__all__ = ["load_model", "load_state_dict", "save_model", "detect_version", "infer_config"]
