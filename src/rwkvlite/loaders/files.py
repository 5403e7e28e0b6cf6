"""Read raw tensors from a checkpoint path, recognising the container by its bytes, not its name.

  PyTorch .pth (zip or legacy pickle) -> torch.load(weights_only=True): a pickle that
      would run code is refused before anything in it runs.
  safetensors (one file, or a folder of shards as Hugging Face repos have them)
  rwkv.cpp .bin (see rwkvcpp.py)
"""
from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile

import torch
from safetensors import SafetensorError, safe_open

from ..errors import CheckpointError
from ..format.container import read_header
from ..utils.files import regular_file
from .rwkvcpp import is_rwkvcpp, read_rwkvcpp


def _container(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    if is_rwkvcpp(head):
        return "rwkv.cpp"
    # safetensors before pickle: a header length whose low byte is 0x80 would look like pickle's opcode
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < os.path.getsize(path):
        return "safetensors"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "pytorch"
    raise CheckpointError(f"{path}: not a checkpoint (unrecognised bytes {head[:8]!r}); "
                          "expected a PyTorch .pth, safetensors or rwkv.cpp file")


def _read_pytorch(path: str) -> tuple[dict, dict]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e) or "GLOBAL" in str(e):
            raise CheckpointError(f"{path}: refused: the pickle would import or run code, which a plain "
                                  f"weights file never needs ({first[:160]})") from None
        raise CheckpointError(f"{path}: corrupt PyTorch checkpoint ({first[:160]})") from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: truncated or corrupt PyTorch checkpoint ({first[:160]})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # training checkpoints wrap the weights
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: a PyTorch file but not a state dict of tensors")
    if "_strategy" in obj:
        raise CheckpointError(f"{path}: converted by the rwkv package's convert_model.py for one strategy; "
                              "load the original .pth instead")
    return obj, {"format": "pytorch"}


def _read_safetensors(files: list[str]) -> tuple[dict, dict]:
    sd, meta = {}, {"format": "safetensors"}
    for path in files:
        read_header(path)  # our parse refuses a name given twice, which safetensors lets the last one win
        try:
            with safe_open(path, framework="pt") as f:
                meta.setdefault("file_metadata", {}).update(f.metadata() or {})
                for k in f.keys():
                    sd[k] = f.get_tensor(k)
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: truncated or corrupt safetensors file ({str(e)[:160]})") from None
    return sd, meta


def read_tensors(path: str) -> tuple[dict[str, torch.Tensor], dict]:
    """All tensors of a checkpoint file or Hugging Face-style folder, and metadata about it."""
    path = os.fspath(path)
    if os.path.isdir(path):
        shards = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".safetensors"))
        if shards:
            sd, meta = _read_safetensors(shards)
            cfg = os.path.join(path, "config.json")
            if os.path.exists(cfg):
                with open(cfg) as f:
                    meta["hf_config"] = json.load(f)
            return sd, meta
        weights = [f for f in os.listdir(path) if f.endswith((".pth", ".bin", ".pt"))]
        if len(weights) != 1:
            raise CheckpointError(f"{path}: a folder needs *.safetensors or exactly one .pth/.bin file, "
                                  f"found {sorted(weights) or 'none'}")
        return read_tensors(os.path.join(path, weights[0]))
    regular_file(path, CheckpointError)
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: empty file")
    kind = _container(path)
    if kind == "rwkv.cpp":
        return read_rwkvcpp(path)
    if kind == "pytorch":
        return _read_pytorch(path)
    return _read_safetensors([path])
