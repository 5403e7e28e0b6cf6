"""The compressed-model file (see container.py for the layout, encodings.py for tensors).

numpy only, so the lean runtime can read it without PyTorch.

>>> save("m.rwkvlite", config, tensors, encoded={"blocks.0.att.key.weight": (entry, arrays)})  # doctest: +SKIP
>>> manifest, tensors = load("m.rwkvlite")  # doctest: +SKIP
"""
from __future__ import annotations

import os

import numpy as np

from ..groups import tally
from . import container
from .container import FORMAT_NAME, FORMAT_VERSION, is_compressed
from .encodings import decode, encode_dense, encode_int, stored_bytes, transposed


def save(path, config: dict, tensors: dict[str, np.ndarray], encoded: dict[str, tuple[dict, dict]] | None = None,
         *, dense_dtype: str = "float16", tokenizer: str | None = None, recipe: dict | None = None,
         report: dict | None = None, structure: dict | None = None, transpose=()) -> dict:
    """Write every tensor: those in `encoded` as given, integers packed, the rest dense in
    dense_dtype. `structure` records the passes that changed the model's modules
    ({pass name: spec}), so a reader can rebuild them before loading the weights.
    Dense tensors named in `transpose` are stored as W^T (see encodings.transposed).
    Returns the manifest written (with per-tensor stored bytes and bits per weight)."""
    encoded = dict(encoded or {})
    entries, arrays = {}, {}
    for name, value in tensors.items():
        value = np.asarray(value)
        if name in encoded:
            entry, parts = encoded.pop(name)
        elif np.issubdtype(value.dtype, np.integer) or value.dtype == np.bool_:
            signs = value.dtype != np.bool_ and value.size and np.all(np.abs(value) == 1)
            entry, parts = encode_int(value, step=2 if signs else 1)  # +-1 signs: one bit each
        elif name in transpose:
            entry, parts = transposed(encode_dense(np.ascontiguousarray(value.T), dense_dtype))
        else:
            entry, parts = encode_dense(value, dense_dtype)
        numel = int(np.prod(entry["shape"]))  # (W^T has W's count)
        nbytes = stored_bytes(parts)
        entries[name] = {**entry, "arrays": {role: f"{name}:{role}" for role in parts},
                         "bytes": nbytes, "bits_per_weight": 8 * nbytes / max(numel, 1)}
        arrays.update({f"{name}:{role}": a for role, a in parts.items()})
    if encoded:
        raise ValueError(f"encodings given for tensors the model does not have: {sorted(encoded)[:5]}")
    manifest = {"config": config, "tokenizer": tokenizer, "tensors": entries, "recipe": recipe or {},
                "report": report or {}, "structure": structure or {}}
    container.write(path, manifest, arrays)
    return manifest


def load(path, verify: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
    """(manifest, every tensor decoded: float32, integers in their own dtype)."""
    manifest, arrays = container.read(path, verify=verify)
    out = {}
    for name, entry in manifest["tensors"].items():
        out[name] = decode(entry, {role: arrays[key] for role, key in entry["arrays"].items()})
    return manifest, out


def size_report(path, read: tuple | None = None) -> dict:
    """Bytes and bits per weight from the file itself: per encoding and overall. read: the
    file's container.read(path) when the caller has it (not read again)."""
    manifest, arrays = read or container.read(path, verify=False)
    file_bytes = os.path.getsize(path)
    by_enc: dict[str, dict] = {}
    for entry in manifest["tensors"].values():
        key = entry["enc"] if entry["enc"] != "dense" else f"dense-{entry['dtype']}"
        slot = by_enc.setdefault(key, {"tensors": 0, "weights": 0, "bytes": 0})
        slot["tensors"] += 1
        slot["weights"] += int(np.prod(entry["shape"]))
        slot["bytes"] += sum(arrays[k].nbytes for k in entry["arrays"].values())
    for slot in by_enc.values():
        slot["bits_per_weight"] = 8 * slot["bytes"] / max(slot["weights"], 1)
    weights = sum(s["weights"] for s in by_enc.values())
    data = sum(s["bytes"] for s in by_enc.values())
    quant = [s for k, s in by_enc.items() if not k.startswith("dense")]
    qw, qb = sum(s["weights"] for s in quant), sum(s["bytes"] for s in quant)
    return {"file_bytes": file_bytes, "header_bytes": file_bytes - data, "weights": weights,
            "bits_per_weight": 8 * file_bytes / max(weights, 1),
            "quantized_bits_per_weight": 8 * qb / qw if qw else None, "by_encoding": by_enc}


def summary(path, read: tuple | None = None) -> dict:
    """The make-up of the model a compressed file decodes to, as model/inspect.py's summary of
    that model gives it (config, heads, per-group counts at the decoded dtypes, every shape) and
    its source, read from the validated manifest without decoding a tensor (no PyTorch). read:
    as size_report's.

    >>> summary("m.rwkvlite")["groups"]["head"]  # doctest: +SKIP
    {'params': 16384, 'bytes': 65536}
    """
    manifest, _ = read or container.read(path)
    cfg = manifest["config"]
    # decode(): integers in their own dtype, every other encoding as float32; a matrix stored as
    # W^T (encodings.transposed) is W
    counts = tally((name, tuple(e["shape"][::-1] if e.get("transposed") else e["shape"]),
                    np.dtype(e["dtype"]).itemsize if e["enc"] == "int" else 4)
                   for name, e in manifest["tensors"].items())
    source = {"path": str(path), "format": FORMAT_NAME}
    if isinstance(manifest.get("tokenizer"), str):
        source["tokenizer"] = manifest["tokenizer"]
    if manifest.get("structure"):
        source["structure"] = manifest["structure"]
    return {"config": cfg, "n_head": cfg["dim_att"] // cfg["head_size"], "dtype": "float32", **counts,
            "source": source}


__all__ = ["save", "load", "size_report", "summary", "is_compressed", "FORMAT_NAME", "FORMAT_VERSION"]
