"""How one tensor is stored: an encoding entry (JSON) plus named arrays (numpy).

  dense  the values in a float dtype                  arrays: values
  sq     scalar grid, b-bit codes, per row and group of g input columns:
         w = scale * (q - zero); optional act-order permutation of the columns
                                                      arrays: q (packed b bits), scale (fp16 [rows, groups]),
                                                              zero (packed b bits [rows, groups]), perm (int32)
  vq     codebook per group of g input columns (all rows): each run of d columns of a row is
         the index of one of 2^b centroids (b/d bits per weight); centroids int8 x fp16 scale
                                                      arrays: q (packed b bits [rows, cols/d]),
                                                              codebook (int8 [groups, 2^b, d]), codebook_scale (fp16 [groups])
  int    integers as b-bit codes: v = step * code - offset (1-bit signs: step 2, offset 1)
                                                      arrays: q (packed b bits, one row)
A 1-D tensor (e.g. a token-shift mix vector [1, 1, C]) is encoded as one row [1, C].
Every encoding decodes in float64 and rounds once to float32, so the file reproduces the
fake-quantised model bit for bit.
"""
from __future__ import annotations

import math

import numpy as np

from . import bits as bitpack

DENSE_DTYPES = ("float16", "bfloat16", "float32")


def matrix_shape(shape) -> tuple[int, int]:
    """The 2-D view a tensor is quantised in: [rows, cols], vectors as one row."""
    shape = tuple(shape)
    if len(shape) == 2:
        return shape
    return (1, math.prod(shape))


def encode_dense(values: np.ndarray, dtype: str = "float16") -> tuple[dict, dict]:
    if dtype not in DENSE_DTYPES:
        raise ValueError(f"dense dtype must be one of {DENSE_DTYPES}, not {dtype!r}")
    if dtype == "bfloat16":  # numpy has no bfloat16: keep the upper half of float32 (round to nearest even)
        u = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
        stored = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    else:
        stored = np.ascontiguousarray(values, dtype=dtype)
    return {"enc": "dense", "dtype": dtype, "shape": list(values.shape)}, {"values": stored}


def encode_int(values: np.ndarray, step: int = 1) -> tuple[dict, dict]:
    """Integer tensor (cluster ids, sign bits, ...) with the fewest bits that hold it."""
    v = np.asarray(values).astype(np.int64)
    lo = int(v.min()) if v.size else 0
    codes = (v - lo) // step
    if v.size and not np.array_equal(codes * step + lo, v):
        raise ValueError(f"values are not on a grid of step {step}")
    bits = max(1, int(codes.max()).bit_length() if v.size else 1)
    return ({"enc": "int", "shape": list(v.shape), "bits": bits, "step": step, "offset": -lo,
             "dtype": str(np.asarray(values).dtype)},
            {"q": bitpack.pack(codes.reshape(1, -1), bits)})


def encode_sq(codes: np.ndarray, scale: np.ndarray, zero: np.ndarray, bits: int, group_size: int,
              shape, perm: np.ndarray | None = None) -> tuple[dict, dict]:
    rows, cols = matrix_shape(shape)
    arrays = {"q": bitpack.pack(codes.reshape(rows, cols), bits),
              "scale": np.ascontiguousarray(scale, dtype=np.float16).reshape(rows, -1),
              "zero": bitpack.pack(np.asarray(zero).reshape(rows, -1).astype(np.int64), bits)}
    if perm is not None:
        arrays["perm"] = np.asarray(perm, dtype=np.int32)
    entry = {"enc": "sq", "shape": list(shape), "bits": bits, "group_size": group_size,
             "groups": int(arrays["scale"].shape[1])}
    return entry, arrays


def encode_vq(codes: np.ndarray, codebook: np.ndarray, codebook_scale: np.ndarray, bits: int, dim: int,
              group_size: int, shape) -> tuple[dict, dict]:
    rows, cols = matrix_shape(shape)
    arrays = {"q": bitpack.pack(codes.reshape(rows, cols // dim), bits),
              "codebook": np.ascontiguousarray(codebook, dtype=np.int8),
              "codebook_scale": np.ascontiguousarray(codebook_scale, dtype=np.float16).reshape(-1)}
    entry = {"enc": "vq", "shape": list(shape), "bits": bits, "dim": dim, "group_size": group_size,
             "groups": int(arrays["codebook"].shape[0])}
    return entry, arrays


def transposed(entry_arrays: tuple[dict, dict]) -> tuple[dict, dict]:
    """Mark an encoding of W^T as standing for W (stored rows = W's columns, so a runtime can
    read the columns it needs, e.g. the value columns of active FFN neurons)."""
    entry, arrays = entry_arrays
    return {**entry, "transposed": True}, arrays


def decode(entry: dict, arrays: dict) -> np.ndarray:
    """The tensor an entry and its arrays stand for: float32, or the integer dtype of an int entry."""
    if entry.get("transposed"):
        inner = {k: v for k, v in entry.items() if k != "transposed"}
        return np.ascontiguousarray(decode(inner, arrays).T)
    shape, enc = tuple(entry["shape"]), entry["enc"]
    if enc == "dense":
        v = np.asarray(arrays["values"])
        if entry["dtype"] == "bfloat16":
            v = (v.astype(np.uint32) << 16).view(np.float32)
        return v.astype(np.float32).reshape(shape)
    if enc == "int":
        n = int(np.prod(shape))
        codes = bitpack.unpack(arrays["q"], entry["bits"], n)
        return (codes * entry["step"] - entry["offset"]).astype(entry["dtype"]).reshape(shape)
    rows, cols = matrix_shape(shape)
    g = entry["group_size"]
    if enc == "sq":
        q = bitpack.unpack(arrays["q"], entry["bits"], cols)
        scale = np.asarray(arrays["scale"]).astype(np.float64)
        zero = bitpack.unpack(arrays["zero"], entry["bits"], entry["groups"])
        w = (q - np.repeat(zero, g, axis=1)[:, :cols]) * np.repeat(scale, g, axis=1)[:, :cols]
        if "perm" in arrays:  # codes are in act-order; put columns back
            out = np.empty_like(w)
            out[:, np.asarray(arrays["perm"])] = w
            w = out
    elif enc == "vq":
        d = entry["dim"]
        idx = bitpack.unpack(arrays["q"], entry["bits"], cols // d)
        centroids = np.asarray(arrays["codebook"]).astype(np.float64) * \
            np.asarray(arrays["codebook_scale"]).astype(np.float64)[:, None, None]  # [groups, K, d]
        group_of_vector = np.minimum(np.arange(cols // d) * d // g, centroids.shape[0] - 1)
        w = centroids[group_of_vector[None, :], idx].reshape(rows, cols)
    else:
        raise ValueError(f"unknown tensor encoding {enc!r}")
    return w.astype(np.float32).reshape(shape)


def stored_bytes(arrays: dict) -> int:
    return sum(np.asarray(a).nbytes for a in arrays.values())
