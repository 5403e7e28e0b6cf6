"""Validation of a compressed file's header and manifest, before anything reads its arrays.

Checksums catch damage, not lies: a manifest can be edited and both CRCs recomputed. So every
read checks that what the manifest says is what the runtime and the evaluation path can use:
  - the safetensors header: well-formed entries whose byte counts match dtype x shape;
  - the config: known generation, sizes of the right type and range, consistent with each other;
  - the tensors: exactly those a model of that config and structure has (schema.py), each with
    the shape its role needs;
  - each encoding: known parameters in the supported sets, and arrays of exactly the dtype and
    shape those parameters imply (scalar codes: rows x bytes per row, scales and zeros per
    group; vector codes: indices, 2^bits codebook entries, scales; integers: the packed size);
  - after mapping (contents): permutations are permutations, cluster ids name clusters.
Any violation raises CheckpointError with one line naming the tensor and the field.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import CheckpointError
from .bits import row_bytes
from .encodings import decode
from .schema import structured_shapes

VERSIONS = ("4", "5.0", "5.1", "5.2", "6", "7")
MAX_DIM = 1 << 24  # rows, columns, vocabulary: far above any RWKV model, far below an overflow
ROLES = {"dense": {"values"}, "sq": {"q", "scale", "zero"}, "vq": {"q", "codebook", "codebook_scale"}, "int": {"q"}}
DENSE = {"float16": ("F16",), "bfloat16": ("BF16", "U16"), "float32": ("F32",)}
VALUES, SQ, INT = {"values"}, {"q", "scale", "zero"}, {"q"}
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "bool")
SQ_BITS, VQ_BITS, INT_BITS, VQ_DIMS = range(1, 9), range(1, 13), range(1, 17), (1, 2)


def _fail(where: str, message: str):
    raise CheckpointError(f"{where}: {message}")


def _is_int(v, low: int = 0, high: int = MAX_DIM) -> bool:
    return type(v) is int and low <= v <= high  # (bool is not int here, nor a float that equals one)


def _ints(values, low: int, high: int) -> bool:
    return all(type(v) is int and low <= v <= high for v in values)


HEADER_KEYS = {"dtype", "shape", "data_offsets"}


def header_entries(where: str, header: dict, st_dtypes: dict) -> None:
    """Each safetensors entry: a known dtype, a shape of non-negative ints, offsets whose span
    holds exactly dtype x shape bytes. One pass over the entries, then one over their shapes'
    numbers (a load's budget is about a microsecond an array); the entry at fault is found only
    when a check fails."""
    itemsize = {name: np.dtype(t).itemsize for name, t in st_dtypes.items()}
    if _entries_well_formed(header.values(), itemsize):
        return
    for key, info in header.items():  # which entry, and why
        _header_entry(where, key, info, itemsize)
    _fail(where, "malformed header")  # (not reached: some entry above fails)


def _entries_well_formed(infos, itemsize: dict) -> bool:
    try:
        for i in infos:
            if type(i) is not dict or len(i) != 3:
                return False
            shape, offsets = i["shape"], i["data_offsets"]
            if type(shape) is not list or len(shape) > 4 or type(offsets) is not list or len(offsets) != 2:
                return False
            a, b = offsets
            if type(a) is not int or type(b) is not int or not 0 <= a <= b < 1 << 50:
                return False
            if b - a != itemsize[i["dtype"]] * math.prod(shape):
                return False
        numbers = [n for i in infos for n in i["shape"]]
    except (KeyError, TypeError):
        return False
    return set(map(type, numbers)) <= {int} and (not numbers or (min(numbers) >= 0 and max(numbers) < 1 << 40))


def _header_entry(where: str, key: str, info, itemsize: dict) -> None:
    if type(info) is not dict or info.keys() != HEADER_KEYS:
        _fail(where, f"array '{key}': malformed header entry")
    shape, offsets, dtype = info["shape"], info["data_offsets"], info["dtype"]
    if type(dtype) is not str or dtype not in itemsize:
        _fail(where, f"array '{key}': unsupported dtype {dtype!r}")
    if type(shape) is not list or len(shape) > 4 or not _ints(shape, 0, 1 << 40):
        _fail(where, f"array '{key}': bad shape {shape!r}")
    if type(offsets) is not list or len(offsets) != 2 or not _ints(offsets, 0, 1 << 50) or offsets[1] < offsets[0]:
        _fail(where, f"array '{key}': bad data_offsets {offsets!r}")
    if math.prod(shape) * itemsize[dtype] != offsets[1] - offsets[0]:
        _fail(where, f"array '{key}': {offsets[1] - offsets[0]} bytes for a {dtype} array of shape {shape}")


def config(where: str, cfg) -> None:
    """The config's fields: types, ranges, and agreement with each other."""
    if not isinstance(cfg, dict):
        _fail(where, "manifest config is not an object")
    if cfg.get("version") not in VERSIONS:
        _fail(where, f"config version {cfg.get('version')!r} is not one of {', '.join(VERSIONS)}")
    for key, low, high in (("n_layer", 1, 4096), ("n_embd", 1, 1 << 16), ("vocab_size", 1, MAX_DIM),
                           ("head_size", 1, 1 << 16), ("dim_att", 1, 1 << 17), ("dim_ffn", 1, 1 << 20)):
        if not _is_int(cfg.get(key), low, high):
            _fail(where, f"config {key} must be an integer from {low} to {high}, not {cfg.get(key)!r}")
    for key in ("lora_mix", "lora_decay", "lora_a", "lora_v", "lora_gate"):
        if not _is_int(cfg.get(key, 0), 0, 1 << 16):
            _fail(where, f"config {key} must be an integer from 0 to {1 << 16}, not {cfg.get(key)!r}")
    eps = cfg.get("ln_x_eps", 64e-5)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 < eps < 1:
        _fail(where, f"config ln_x_eps must be a number in (0, 1), not {eps!r}")
    if cfg["version"] == "4" and cfg["head_size"] != 1:
        _fail(where, f"config head_size must be 1 for RWKV-4, not {cfg['head_size']}")
    if cfg["dim_att"] % cfg["head_size"]:
        _fail(where, f"config dim_att {cfg['dim_att']} is not a multiple of head_size {cfg['head_size']}")


def _stored_shape(entry: dict) -> tuple:
    """The shape the arrays hold: the entry's (for a transposed matrix W^T's; the tensor is its transpose)."""
    return tuple(entry["shape"])


def _matrix(shape: tuple) -> tuple[int, int]:
    return shape if len(shape) == 2 else (1, math.prod(shape))


class _Arrays:
    """Checks of one entry's arrays against the header: dtype and shape of each role."""

    def __init__(self, where: str, name: str, entry: dict, header: dict):
        self.where, self.name, self.entry, self.header = where, name, entry, header

    def fail(self, message: str):
        _fail(self.where, f"tensor '{self.name}': {message}")

    def param(self, key: str, allowed) -> int:
        value = self.entry.get(key)
        if not _is_int(value, -(1 << 62), 1 << 62) or value not in allowed:
            self.fail(f"{key} {value!r} is not supported (expected {allowed.start}-{allowed.stop - 1})"
                      if isinstance(allowed, range) else f"{key} {value!r} is not one of {allowed}")
        return value

    def expect(self, role: str, dtypes, shape: tuple) -> None:
        info = self.header[self.entry["arrays"][role]]
        dtypes = (dtypes,) if isinstance(dtypes, str) else dtypes
        if info["dtype"] not in dtypes:
            self.fail(f"array {role} is {info['dtype']}, the encoding needs {dtypes[0]}")
        if tuple(info["shape"]) != tuple(shape):
            self.fail(f"array {role} has shape {info['shape']}, the encoding needs {list(shape)}")


def _encoding(a: _Arrays) -> None:
    """The encoding's parameters in their supported sets and its arrays of the implied sizes."""
    e = a.entry
    rows, cols = _matrix(_stored_shape(e))
    if e["enc"] == "dense":
        if e.get("dtype") not in DENSE:
            a.fail(f"dtype {e.get('dtype')!r} is not one of {', '.join(DENSE)}")
        shape = _stored_shape(e) or (1,)  # a scalar's array is written as one value
        a.expect("values", DENSE[e["dtype"]], shape)
    elif e["enc"] == "sq":
        bits, group = a.param("bits", SQ_BITS), a.param("group_size", range(1, MAX_DIM + 1))
        groups = -(-cols // group)
        if not _is_int(e.get("groups")) or e["groups"] != groups:
            a.fail(f"groups {e.get('groups')!r} disagrees with {cols} columns in groups of {group} ({groups})")
        a.expect("q", "U8", (rows, row_bytes(cols, bits)))
        a.expect("scale", "F16", (rows, groups))
        a.expect("zero", "U8", (rows, row_bytes(groups, bits)))
        if "perm" in e["arrays"]:
            a.expect("perm", "I32", (cols,))
    elif e["enc"] == "vq":
        bits, dim = a.param("bits", VQ_BITS), a.param("dim", VQ_DIMS)
        group = a.param("group_size", range(1, MAX_DIM + 1))
        if cols % dim or group % dim:
            a.fail(f"{cols} columns in groups of {group} do not split into vectors of {dim}")
        groups = -(-cols // group)
        if not _is_int(e.get("groups")) or e["groups"] != groups:
            a.fail(f"groups {e.get('groups')!r} disagrees with {cols} columns in groups of {group} ({groups})")
        a.expect("q", "U8", (rows, row_bytes(cols // dim, bits)))
        a.expect("codebook", "I8", (groups, 1 << bits, dim))
        a.expect("codebook_scale", "F16", (groups,))
    else:  # int
        bits = a.param("bits", INT_BITS)
        a.param("step", range(1, 1 << 16))
        a.param("offset", range(-(1 << 32), 1 << 32))
        if e.get("dtype") not in INT_DTYPES:
            a.fail(f"dtype {e.get('dtype')!r} is not one of {', '.join(INT_DTYPES)}")
        a.expect("q", "U8", (1, row_bytes(math.prod(e["shape"]), bits)))


def _entry(where: str, name: str, e, shape: tuple, header: dict) -> None:
    a = _Arrays(where, name, e if isinstance(e, dict) else {}, header)
    if not isinstance(e, dict) or e.get("enc") not in ROLES:
        a.fail(f"unknown encoding {e.get('enc') if isinstance(e, dict) else e!r}")
    stored = list(shape[::-1]) if e.get("transposed") else list(shape)  # a transposed entry records W^T's shape
    if type(e.get("shape")) is not list or not _ints(e["shape"], 0, MAX_DIM) or e["shape"] != stored:
        a.fail(f"shape {e.get('shape')!r}, a model of this config needs {stored}"
               + (" (transposed)" if e.get("transposed") else ""))
    roles = e.get("arrays")
    optional = {"perm"} if e["enc"] == "sq" else set()
    if not isinstance(roles, dict) or not ROLES[e["enc"]] <= set(roles) <= ROLES[e["enc"]] | optional:
        a.fail(f"arrays {sorted(roles) if isinstance(roles, dict) else roles!r} are not those of a "
               f"{e['enc']} encoding ({', '.join(sorted(ROLES[e['enc']]))})")
    for role, key in roles.items():
        if not isinstance(key, str) or key not in header:
            a.fail(f"array {role} ({key!r}) is not in the file")
    if e.get("transposed", False) not in (True, False):
        a.fail(f"transposed must be true or false, not {e.get('transposed')!r}")
    if e.get("transposed") and not (len(shape) == 2 and name.endswith(".ffn.value.weight")):
        a.fail("only an FFN value matrix may be stored transposed")
    _encoding(a)


def _structure(where: str, structure) -> None:
    if not isinstance(structure, dict) or not all(isinstance(s, dict) for s in structure.values()):
        _fail(where, "manifest structure is not an object of objects")
    for name, spec in (structure.get("ffn_predictor") or {}).items():
        if not isinstance(spec, dict) or not _is_int(spec.get("quant_bits"), 1, 8):
            _fail(where, f"structure ffn_predictor {name}: quant_bits must be 1 to 8")
    for name, spec in (structure.get("cluster_head") or {}).items():
        p, lo, hi = (spec.get(k) if isinstance(spec, dict) else None for k in ("p", "min_clusters", "max_clusters"))
        if not (isinstance(p, (int, float)) and 0 < p <= 1 and _is_int(lo, 1) and _is_int(hi, 1)
                and lo <= hi <= spec.get("clusters", 0)):
            _fail(where, f"structure cluster_head {name}: p in (0, 1] and 1 <= min_clusters <= max_clusters "
                         f"<= clusters required")


def manifest(where: str, m, header: dict) -> None:
    """The whole manifest against the header (dtype and shape of each array), no array read."""
    if not isinstance(m, dict) or not isinstance(m.get("tensors"), dict):
        _fail(where, "manifest is not an object with a tensors object")
    config(where, m.get("config"))
    structure = m.get("structure") or {}
    _structure(where, structure)
    if m.get("tokenizer") is not None and not isinstance(m["tokenizer"], str):
        _fail(where, f"manifest tokenizer must be a name or null, not {m['tokenizer']!r}")
    try:
        shapes = structured_shapes(m["config"], structure)
    except (ValueError, TypeError, KeyError) as e:
        _fail(where, f"manifest structure: {e}")
    tensors = m["tensors"]
    missing, extra = sorted(set(shapes) - set(tensors)), sorted(set(tensors) - set(shapes))
    if missing or extra:
        name = (missing or extra)[0]
        _fail(where, f"tensor '{name}' is {'missing' if missing else 'not part of'} an RWKV-{m['config']['version']} "
                     f"model of this config ({len(missing)} missing, {len(extra)} unexpected)")
    for name, e in tensors.items():
        enc = e.get("enc") if type(e) is dict else None
        plain = PLAIN.get(enc) if type(enc) is str else None
        if plain is None or not plain(name, e, shapes[name], header):
            _entry(where, name, e, shapes[name], header)


def _plain_dense(name: str, e: dict, shape: tuple, header: dict) -> bool:
    """The common entry (a dense, untransposed tensor whose array is exactly its values) in a few
    operations; False sends any other entry through _entry's checks, which name what is wrong."""
    if "transposed" in e:
        return False
    arrays, stored = e.get("arrays"), list(shape)
    if type(arrays) is not dict or arrays.keys() != VALUES or not _is_shape(e.get("shape"), stored):
        return False
    info = header.get(arrays["values"]) if type(arrays["values"]) is str else None
    return info is not None and info["dtype"] in DENSE.get(e.get("dtype"), ()) and info["shape"] == (stored or [1])


def contents(where: str, m: dict, arrays: dict) -> None:
    """What only the mapped arrays can show: act-order permutations, cluster ids in range."""
    for name, e in m["tensors"].items():
        if "perm" in e["arrays"]:
            perm = arrays[e["arrays"]["perm"]]
            n = len(perm)
            if n and (perm.min() < 0 or perm.max() >= n or np.bincount(perm, minlength=n).max() != 1):
                _fail(where, f"tensor '{name}': array perm is not a permutation of its {n} columns")
    for head, spec in ((m.get("structure") or {}).get("cluster_head") or {}).items():
        e = m["tensors"][f"{head}.cluster"]
        q = arrays[e["arrays"]["q"]].reshape(-1)
        if (e["bits"], e["step"], e["offset"], q.size) == (8, 1, 0, math.prod(e["shape"])):
            ids = q  # ids that are their own bytes (as cluster_head writes up to 256 clusters): no decoded copy
        else:
            ids = decode(e, {role: arrays[key] for role, key in e["arrays"].items()})
        if ids.size and (ids.min() < 0 or ids.max() >= spec["clusters"]):
            _fail(where, f"tensor '{head}.cluster': ids outside 0..{spec['clusters'] - 1}")
        if np.bincount(ids.astype(np.int64), minlength=spec["clusters"]).min() == 0:
            _fail(where, f"tensor '{head}.cluster': a cluster without tokens")


def _plain_sq(name: str, e: dict, shape: tuple, header: dict) -> bool:
    """The common scalar-coded matrix (no permutation; transposed only as an FFN value matrix)
    in a few operations, as _plain_dense; False sends it through _entry's checks."""
    transposed = e.get("transposed", False)
    if len(shape) != 2 or (transposed is True and not name.endswith(".ffn.value.weight")):
        return False
    if transposed is True:
        shape = shape[::-1]  # the arrays hold W^T
    elif transposed is not False:
        return False
    arrays, bits, group, groups = e.get("arrays"), e.get("bits"), e.get("group_size"), e.get("groups")
    if (type(arrays) is not dict or arrays.keys() != SQ or type(bits) is not int or type(group) is not int
            or type(groups) is not int or not 1 <= bits <= 8 or not 1 <= group <= MAX_DIM
            or not _is_shape(e.get("shape"), shape)):
        return False
    rows, cols = shape
    row, group_row = (cols * bits + 7) >> 3, (groups * bits + 7) >> 3  # bits.row_bytes, inline: a call per entry counts here
    try:
        q, scale, zero = header.get(arrays["q"]), header.get(arrays["scale"]), header.get(arrays["zero"])
    except TypeError:  # an array name that is not a string
        return False
    return (groups == -(-cols // group) and q is not None and scale is not None and zero is not None
            and q["dtype"] == "U8" and q["shape"] == [rows, row]
            and scale["dtype"] == "F16" and scale["shape"] == [rows, groups]
            and zero["dtype"] == "U8" and zero["shape"] == [rows, group_row])


def _plain_int(name: str, e: dict, shape: tuple, header: dict) -> bool:
    """Packed integers (cluster ids, the predictors' sign copies) in a few operations, as _plain_dense."""
    arrays, bits, step, offset = e.get("arrays"), e.get("bits"), e.get("step"), e.get("offset")
    if ("transposed" in e or type(arrays) is not dict or arrays.keys() != INT or type(bits) is not int
            or type(step) is not int or type(offset) is not int or not 1 <= bits <= 16 or not 1 <= step < 1 << 16
            or not -(1 << 32) <= offset < 1 << 32 or e.get("dtype") not in INT_DTYPES
            or not _is_shape(e.get("shape"), shape)):
        return False
    q = header.get(arrays["q"]) if type(arrays["q"]) is str else None
    return q is not None and q["dtype"] == "U8" and q["shape"] == [1, row_bytes(math.prod(shape), bits)]


def _is_shape(value, shape) -> bool:
    """value is a list of exactly shape's ints ([64.0] or [True] is not [64])."""
    if type(value) is not list or len(value) != len(shape):
        return False
    for v, n in zip(value, shape):
        if type(v) is not int or v != n:
            return False
    return True


PLAIN = {"dense": _plain_dense, "sq": _plain_sq, "int": _plain_int}
