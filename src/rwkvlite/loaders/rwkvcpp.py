"""rwkv.cpp model files (FP32, FP16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), dequantised on load.

Layout (rwkv.cpp docs/FILE_FORMAT.md), little-endian:
  header: int32 magic 0x67676d66 ('ggmf'), version (100 or 101), n_vocab, n_embed, n_layer, data type
  then until EOF, per tensor: int32 n_dims, name length, data type; int32 dims[n_dims]
  (ggml order: reversed from PyTorch); the UTF-8 name; the raw data.
Quantised blocks hold 32 values (ggml after 2023-05, file version 101):
  Q4_0  f16 d, 16 B nibbles            x = (q - 8) d                  18 B
  Q4_1  f16 d, f16 m, 16 B nibbles     x = q d + m                    20 B
  Q5_0  f16 d, u32 high bits, 16 B     x = (q - 16) d                 22 B
  Q5_1  f16 d, f16 m, u32 high, 16 B   x = q d + m                    24 B
  Q8_0  f16 d, 32 int8                 x = q d                        34 B
Nibble j of byte i: value i (low nibble) and value i + 16 (high nibble); high bit
of value j is bit j of the u32. Written here with numpy because no maintained
PyPI package reads this legacy container (gguf-py reads GGUF, a different header).
"""
from __future__ import annotations

import math
import mmap
import struct

import numpy as np
import torch

from ..errors import CheckpointError

MAGIC = 0x67676D66
# rwkv.cpp type id -> (name, values per block, bytes per block)
TYPES = {0: ("FP32", 1, 4), 1: ("FP16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
         7: ("Q5_0", 32, 22), 8: ("Q5_1", 32, 24), 9: ("Q8_0", 32, 34)}


def is_rwkvcpp(head: bytes) -> bool:
    return len(head) >= 4 and struct.unpack("<I", head[:4])[0] == MAGIC


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """[n, 16] bytes -> [n, 32] values 0..15 (low nibbles first, then high)."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int32)


def _high_bits(qh: np.ndarray) -> np.ndarray:
    """[n, 4] bytes (one little-endian u32) -> [n, 32] bits, bit j for value j."""
    return np.unpackbits(qh, axis=1, bitorder="little").astype(np.int32)


def dequantize(kind: str, raw: np.ndarray) -> np.ndarray:
    """Bytes of `kind` blocks -> float32 values, in file order."""
    if kind == "FP32":
        return raw.view("<f4").astype(np.float32)
    if kind == "FP16":
        return raw.view("<f2").astype(np.float32)
    _, _, size = next(t for t in TYPES.values() if t[0] == kind)
    b = raw.reshape(-1, size)
    f16 = lambda lo: b[:, lo:lo + 2].copy().view("<f2").astype(np.float32)  # noqa: E731  [n, 1]
    d = f16(0)
    if kind == "Q8_0":
        return (b[:, 2:].view(np.int8).astype(np.float32) * d).ravel()
    if kind == "Q4_0":
        return ((_nibbles(b[:, 2:]) - 8) * d).ravel()
    if kind == "Q4_1":
        return (_nibbles(b[:, 4:]) * d + f16(2)).ravel()
    if kind == "Q5_0":
        return (((_nibbles(b[:, 6:]) | (_high_bits(b[:, 2:6]) << 4)) - 16) * d).ravel()
    if kind == "Q5_1":
        return ((_nibbles(b[:, 8:]) | (_high_bits(b[:, 4:8]) << 4)) * d + f16(2)).ravel()
    raise CheckpointError(f"unsupported rwkv.cpp tensor type {kind}")


def read_rwkvcpp(path: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read every tensor of an rwkv.cpp file as float32 (PyTorch shape order)."""
    with open(path, "rb") as f:
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    size = len(buf)
    if size < 24:
        raise CheckpointError(f"{path}: truncated rwkv.cpp file ({size} bytes, header needs 24)")
    magic, version, n_vocab, n_embed, n_layer, ftype = struct.unpack_from("<6i", buf, 0)
    if version not in (100, 101):
        raise CheckpointError(f"{path}: rwkv.cpp file version {version} is not supported (expected 100 or 101)")
    sd, off = {}, 24
    while off < size:
        if off + 12 > size:
            raise CheckpointError(f"{path}: truncated rwkv.cpp file (tensor header at byte {off})")
        n_dims, name_len, type_id = struct.unpack_from("<3i", buf, off)
        if not (1 <= n_dims <= 4 and 0 < name_len < 1024 and type_id in TYPES):
            raise CheckpointError(f"{path}: corrupt rwkv.cpp tensor header at byte {off} "
                                  f"(dims={n_dims}, name length={name_len}, type={type_id})")
        kind, per_block, block_bytes = TYPES[type_id]
        if version == 100 and per_block > 1:
            raise CheckpointError(f"{path}: quantised rwkv.cpp files of version 100 use an old block layout; "
                                  "re-quantise with a current rwkv.cpp")
        off += 12
        if off + 4 * n_dims + name_len > size:
            raise CheckpointError(f"{path}: truncated rwkv.cpp file (tensor header at byte {off - 12})")
        dims = struct.unpack_from(f"<{n_dims}i", buf, off)
        off += 4 * n_dims
        name = bytes(buf[off:off + name_len]).decode("utf-8", errors="replace")
        off += name_len
        count = math.prod(dims)  # Python ints: no overflow
        nbytes = count // per_block * block_bytes
        if min(dims) <= 0 or count % per_block or off + nbytes > size:
            raise CheckpointError(f"{path}: truncated or corrupt rwkv.cpp file: tensor '{name}' "
                                  f"{list(dims)} needs {nbytes} bytes at byte {off}, file has {size}")
        if name in sd:
            raise CheckpointError(f"{path}: corrupt rwkv.cpp file: tensor '{name}' appears twice")
        raw = np.frombuffer(buf, dtype=np.uint8, count=nbytes, offset=off)
        sd[name] = torch.from_numpy(dequantize(kind, raw).reshape(tuple(reversed(dims))))
        off += nbytes
    layers = {int(k.split(".")[1]) for k in sd if k.startswith("blocks.") and k.split(".")[1].isdigit()}
    if layers != set(range(n_layer)):
        raise CheckpointError(f"{path}: corrupt rwkv.cpp file: the header says {n_layer} layers, the tensors "
                              f"hold blocks {_ranges(layers)}")
    meta = {"format": "rwkv.cpp", "file_version": version, "data_type": TYPES.get(ftype, ("?",))[0]}
    return sd, meta


def _ranges(indices: set[int]) -> str:
    """Block indices for a message: '0-11' or '0-11, 999999999'."""
    out, ordered = [], sorted(indices)
    for i in ordered:
        if out and out[-1][1] == i - 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in out[:4]) + (" ..." if len(out) > 4 else "") or "none"
