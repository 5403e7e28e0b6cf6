"""The compressed-model file: one safetensors file whose header metadata holds a JSON
manifest, so any safetensors reader can list its arrays, and ours can memory-map them.

  metadata["format"]          "rwkvlite-compressed"
  metadata["format_version"]  FORMAT_VERSION; readers refuse any other
  metadata["manifest"]        JSON: config, tokenizer, tensors (name -> encoding entry with
                              its array keys), recipe, report, data_crc32
  metadata["manifest_crc32"]  CRC-32 of the manifest text ("0x%08x", space-padded)

Arrays are written by the safetensors library (each aligned to its dtype's size). Reading
parses the 8-byte length + JSON header directly and maps the data with numpy.memmap, so
the lean runtime needs neither PyTorch nor a copy of the weights. A flipped byte in the
data fails data_crc32; in the manifest, manifest_crc32; elsewhere in the header, JSON or
layout checks; a short file, the layout check.
"""
from __future__ import annotations

import json
import mmap
import os
import struct
import zlib

import numpy as np

from ..errors import CheckpointError
from ..utils.files import regular_file
from ..utils.io import atomic_path
from . import validate

FORMAT_NAME = "rwkvlite-compressed"
FORMAT_VERSION = "1"
ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64,
             "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "U16": np.uint16}


def crc32_of_file(path: str, start: int, end: int, chunk: int = 1 << 22, keep=()) -> int:
    """CRC-32 of bytes [start, end), read in chunks. A streaming read: the pages it brought
    into the page cache are dropped behind it, so that the memory map later holds only the
    pages the model touches (a cached file would be mapped in large read-ahead blocks), except
    in the byte ranges `keep` [(a, b), ...], left cached for reads that should not wait on the
    disk (the embedding cache's misses)."""
    crc = 0
    with open(path, "rb") as f:
        f.seek(start)
        left, at = end - start, start
        while left > 0:
            block = f.read(min(chunk, left))
            if not block:
                break
            crc = zlib.crc32(block, crc)
            if hasattr(os, "posix_fadvise"):
                for a, b in _outside(at, at + len(block), keep):
                    os.posix_fadvise(f.fileno(), a, b - a, os.POSIX_FADV_DONTNEED)
            left -= len(block)
            at += len(block)
    return crc


def _outside(a: int, b: int, ranges) -> list[tuple[int, int]]:
    """The parts of [a, b) outside every range in `ranges`."""
    parts = [(a, b)]
    for lo, hi in ranges:
        parts = [p for x, y in parts for p in ((x, min(y, lo)), (max(x, hi), y)) if p[0] < p[1]]
    return parts


def _root(a):
    """What a's chain of views ends in: read()'s mmap, the ndarray owning the memory, or another buffer."""
    while getattr(a, "base", None) is not None and not isinstance(a, mmap.mmap):
        a = a.base
    return a


def readable(a: np.ndarray) -> int:
    """Bytes that may be read from a's start: to the end of the map or array it lives in (the
    runtime's kernels load 16 bytes at a time and may run past a packed row)."""
    root = _root(a)
    if isinstance(root, mmap.mmap):
        start, size = np.frombuffer(root, np.uint8).ctypes.data, len(root)
    elif isinstance(root, np.ndarray):
        start, size = root.ctypes.data, root.nbytes
    else:
        return a.nbytes
    return start + size - a.ctypes.data


def advise_random(arrays) -> None:
    """These arrays are read a row here and there (head clusters): a page fault then reads that
    page, not a read-ahead window. Arrays that are not views of read()'s map are skipped."""
    if not hasattr(mmap, "MADV_RANDOM"):
        return
    for a in arrays:
        mm = _root(a)
        if not isinstance(mm, mmap.mmap) or a.nbytes == 0:
            continue
        base = np.frombuffer(mm, np.uint8).ctypes.data
        start, end = a.ctypes.data, a.ctypes.data + a.nbytes
        start -= start % mmap.PAGESIZE  # the map starts on a page
        mm.madvise(mmap.MADV_RANDOM, start - base, min(base + len(mm), end + (-end) % mmap.PAGESIZE) - start)


DATA_CRC_SLOT = "@data-crc32@"  # 12 characters: becomes "0x" + 8 hex digits + 2 spaces
MANIFEST_CRC_SLOT = "@manifest-crc32@"  # 16 characters: becomes "0x" + 8 hex digits + 6 spaces


def _stored_crc(value) -> int | None:
    """A stored checksum: "0x%08x" text padded to its slot, or (files written before the slots)
    an integer or its decimal text; None if unreadable."""
    try:
        return int(str(value).strip(), 0)
    except ValueError:
        return None


def _crc_text(crc: int, width: int) -> str:
    return f"0x{crc:08x}".ljust(width)


def write(path, manifest: dict, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write arrays + manifest. The two checksums are written as fixed-width
    placeholders, then the data is read back once for its CRC and the header patched in place
    (same length), so the file is written once."""
    from safetensors.numpy import save_file

    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    text = json.dumps({**manifest, "data_crc32": DATA_CRC_SLOT}, sort_keys=True)
    with atomic_path(path) as tmp:
        save_file(arrays, tmp, metadata={"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                                         "manifest": text, "manifest_crc32": MANIFEST_CRC_SLOT})
        start, _ = read_header(tmp)
        data_crc = _crc_text(crc32_of_file(tmp, start, os.path.getsize(tmp)), len(DATA_CRC_SLOT))
        manifest_crc = _crc_text(zlib.crc32(text.replace(DATA_CRC_SLOT, data_crc).encode()), len(MANIFEST_CRC_SLOT))
        with open(tmp, "r+b") as f:
            head = f.read(start)
            for slot, value in ((DATA_CRC_SLOT, data_crc), (MANIFEST_CRC_SLOT, manifest_crc)):
                if head.count(slot.encode()) != 1:
                    raise RuntimeError(f"checksum slot {slot} is not unique in the header")
                head = head.replace(slot.encode(), value.encode())
            f.seek(0)
            f.write(head)


def read_header(path: str) -> tuple[int, dict]:
    """(where the data starts, the parsed header) of a safetensors file; CheckpointError if the
    header is cut short, not JSON, or gives a name twice."""
    regular_file(path, CheckpointError)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: truncated compressed file (no header)")
        n = struct.unpack("<Q", head)[0]
        if n > min(size - 8, 100_000_000):
            raise CheckpointError(f"{path}: truncated or corrupt compressed file (header of {n} bytes)")
        raw = f.read(n)
    try:
        header = loads_unique(raw, '"data_offsets"', lambda h: len(h) - ("__metadata__" in h))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"{path}: corrupt compressed file (header is not JSON)") from None
    except _DuplicateKey as e:
        raise CheckpointError(f"{path}: corrupt file (name {e} appears twice in the header)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt compressed file (header is not a JSON object)")
    return 8 + n, header


def loads_unique(text, marker: str, expected):
    """json.loads refusing a name given twice in any object (json.loads keeps the last one
    silently). Checking every object costs a Python call per object, a few ms on a large header,
    so the exact check runs only when the text holds `marker` (a key each entry has once)
    another number of times than expected(parsed) entries: a duplicated entry always does."""
    parsed = json.loads(text)
    count = (text.count(marker.encode()) if isinstance(text, bytes) else text.count(marker))
    if not isinstance(parsed, dict) or count != expected(parsed):
        return json.loads(text, object_pairs_hook=_unique_keys)
    return parsed


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list) -> dict:
    """json's object hook refusing a name given twice (json.loads would keep the last one silently)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen = set()
        raise _DuplicateKey(next(repr(k) for k, _ in pairs if k in seen or seen.add(k)))
    return out


def array_offsets(path) -> dict[str, int]:
    """Where each array of a compressed file starts in it (bytes from the file's start), for
    reads that go around the memory map (os.pread)."""
    start, header = read_header(os.fspath(path))
    return {key: start + info["data_offsets"][0] for key, info in header.items() if key != "__metadata__"}


def is_compressed(path) -> bool:
    try:
        _, header = read_header(os.fspath(path))
    except (CheckpointError, OSError, struct.error):
        return False
    return isinstance(header, dict) and (header.get("__metadata__") or {}).get("format") == FORMAT_NAME


def read(path, verify: bool = True, keep_cached=()) -> tuple[dict, dict[str, np.ndarray]]:
    """(manifest, {key: read-only memory-mapped array}); raises CheckpointError on any damage.
    keep_cached: names of tensors whose pages verification leaves in the page cache (the
    others it drops behind it, see crc32_of_file); names the file lacks are skipped."""
    path = os.fspath(path)
    start, header = read_header(path)
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not an rwkvlite compressed file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: compressed-file version {meta.get('format_version')!r} is not supported "
                              f"(this rwkvlite reads version {FORMAT_VERSION}); upgrade rwkvlite or re-compress")
    text = meta.get("manifest", "")
    if not isinstance(text, str) or zlib.crc32(text.encode()) != _stored_crc(meta.get("manifest_crc32")):
        raise CheckpointError(f"{path}: corrupt compressed file (manifest checksum mismatch)")
    try:
        manifest = loads_unique(text, '"arrays"', lambda m: len(m.get("tensors") or ()))
    except (json.JSONDecodeError, RecursionError, _DuplicateKey) as e:
        raise CheckpointError(f"{path}: corrupt compressed file (manifest: {type(e).__name__} {e})") from None
    validate.header_entries(path, header, ST_DTYPES)
    validate.manifest(path, manifest, header)
    size = os.path.getsize(path)
    spans = sorted((tuple(info["data_offsets"]), key) for key, info in header.items())
    expected = 0
    for (a, b), key in spans:
        if a != expected or b < a:
            raise CheckpointError(f"{path}: corrupt compressed file (array '{key}' at bad offsets)")
        expected = b
    if start + expected != size:
        raise CheckpointError(f"{path}: truncated or corrupt compressed file: {size} bytes, "
                              f"the header describes {start + expected}")
    keep = []
    for name in keep_cached:
        for key in (manifest.get("tensors", {}).get(name) or {}).get("arrays", {}).values():
            if key in header:
                a, b = header[key]["data_offsets"]
                keep.append((start + a, start + b))
    if verify and crc32_of_file(path, start, size, keep=keep) != _stored_crc(manifest.get("data_crc32")):
        raise CheckpointError(f"{path}: corrupt compressed file (data checksum mismatch)")
    arrays = {}
    if expected:
        # plain ndarray views of the map (numpy.memmap slices cost a Python call each)
        data = np.asarray(np.memmap(path, dtype=np.uint8, mode="r", offset=start, shape=(expected,)))
        for key, info in header.items():  # dtypes and byte counts checked by validate.header_entries
            a, b = info["data_offsets"]
            arrays[key] = data[a:b].view(ST_DTYPES[info["dtype"]]).reshape(info["shape"])
    validate.contents(path, manifest, arrays)
    return manifest, arrays
