"""Rewrite a compressed file with one edit and checksums that pass: the lies validation must refuse.

    rewrite(src, dst, manifest=lambda m: ..., header=lambda h: ..., data=lambda buf, offsets: ...)

Each edit function changes its argument in place (the manifest dict, the safetensors header dict
without __metadata__, or the data as a bytearray with the header's array offsets). The data CRC
and the manifest CRC are recomputed, as anyone editing a file can.
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


def rewrite(src, dst, manifest=None, header=None, data=None) -> None:
    meta, h, m, buf = parts(src)
    for edit, arg in ((manifest, m), (header, h)):
        if edit is not None:
            edit(arg)
    if data is not None:
        data(buf, {k: v["data_offsets"] for k, v in h.items()})
    with open(dst, "wb") as f:
        f.write(join(meta, h, m, buf))
