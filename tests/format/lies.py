"""Rewrite a compressed file with one edit and checksums that pass: the lies validation must refuse.

    rewrite(src, dst, edit)    # edit(manifest, header, data) changes them in place

manifest: the parsed manifest; header: the safetensors header without __metadata__; data: the
arrays' bytes (a bytearray). The data CRC and the manifest CRC are recomputed, as anyone
editing a file can.
"""
from __future__ import annotations

import json
import struct
import zlib


def parts(path) -> tuple[dict, dict, dict, bytearray]:
    """(metadata, header without metadata, manifest, data) of a compressed file."""
    blob = open(path, "rb").read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__")
    return meta, header, json.loads(meta["manifest"]), bytearray(blob[8 + n:])


def join(meta: dict, header: dict, manifest: dict, data: bytes, raw_manifest: str | None = None) -> bytes:
    """A file from its parts, with both checksums recomputed."""
    manifest = dict(manifest, data_crc32=f"0x{zlib.crc32(bytes(data)):08x}")
    text = raw_manifest if raw_manifest is not None else json.dumps(manifest, sort_keys=True)
    meta = dict(meta, manifest=text, manifest_crc32=f"0x{zlib.crc32(text.encode()):08x}")
    head = json.dumps({"__metadata__": meta, **header}).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + bytes(data)


def rewrite(src, dst, edit) -> None:
    meta, header, manifest, data = parts(src)
    edit(manifest, header, data)
    with open(dst, "wb") as f:
        f.write(join(meta, header, manifest, data))


ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "U16": 2}


def resize(header: dict, data: bytearray, key: str, shape: list[int]) -> None:
    """Give array `key` a new shape: its bytes cut or zero-padded, the arrays after it moved, so the
    header stays contiguous and the file consistent (a short or long array that passes every CRC)."""
    info = header[key]
    a, b = info["data_offsets"]
    new = ITEMSIZE[info["dtype"]]
    for d in shape:
        new *= d
    delta = new - (b - a)
    data[a:b] = bytes(data[a:b])[:new].ljust(new, b"\0")
    info["shape"], info["data_offsets"] = list(shape), [a, a + new]
    for other in header.values():
        if other is not info and other["data_offsets"][0] >= b:
            other["data_offsets"] = [o + delta for o in other["data_offsets"]]


def first(manifest: dict, enc: str, role: str | None = None) -> str:
    """The name of the first tensor with this encoding (and array role)."""
    return next(n for n, e in manifest["tensors"].items() if e["enc"] == enc and (role is None or role in e["arrays"]))
