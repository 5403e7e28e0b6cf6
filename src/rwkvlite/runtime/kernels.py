"""The C kernels (kernels.c: packed matrix-vector products; rwkv7.c, rwkv6.c and rwkv4.c: one
RWKV-7, RWKV-5/6 or RWKV-4 block per call, from the parts in blocks.c), built on first use with the
system's C compiler and loaded through ctypes; None when no compiler is available (the
runtime then uses numpy).

Why hand-written C: no maintained package multiplies by our packed layouts (3-bit streams,
2-D VQ codebooks, row subsets) without PyTorch, and a few C files (~2,000 lines) compiled for
the host CPU beat dequantising whole matrices in numpy for every token many times over.
Set RWKVLITE_KERNELS=numpy to force the numpy path. The scalar-quantized kernels round x to
int16 per group (relative error 2^-15) for speed; RWKVLITE_EXACT=1 keeps x in float32.
The kernels use OpenMP threads when the compiler has it: RWKVLITE_THREADS=N sets how many
(default: one per core).
"""
from __future__ import annotations

import ctypes
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def sources(folder: str = HERE) -> list[str]:
    """A runtime folder's C sources: every .c file in it (kernels.c, blocks.c, rwkv7.c, rwkv6.c,
    rwkv4.c here; pyproject.toml ships them by the same pattern), in a fixed order."""
    return sorted(glob.glob(os.path.join(folder, "*.c")))


SOURCES = sources()
HEADER = os.path.join(HERE, "kernels.h")
FLAGS = ["-O3", "-march=native", "-ffast-math", "-shared", "-fPIC"]
OPENMP = ["-fopenmp"]
_lib = None
_tried = False

F32P = ctypes.POINTER(ctypes.c_float)
I64 = ctypes.c_int64
VP = ctypes.c_void_p
SIGNATURES = {
    "mv_f16": [VP, I64, VP, VP, VP, I64],
    "axpy_f16": [VP, I64, VP, VP, VP, I64],
    "mv_sq": [VP, I64, I64, VP, VP, I64, ctypes.c_int, I64, I64, VP, VP, VP, I64],
    "axpy_sq": [VP, I64, I64, VP, VP, I64, ctypes.c_int, I64, I64, VP, VP, VP, I64],
    "mv_vq": [VP, I64, I64, VP, VP, ctypes.c_int, ctypes.c_int, I64, I64, VP, VP, VP, I64],
    "axpy_vq": [VP, I64, I64, VP, VP, ctypes.c_int, ctypes.c_int, I64, I64, VP, VP, VP, I64],
    "rwkv7_time_mix": [VP] * 13 + [I64, I64, ctypes.c_float, VP],
    "rwkv6_time_mix": [VP] * 10 + [I64, I64, ctypes.c_float, VP],
    "rwkv7_block": [VP] * 11,
    "rwkv7_block_floats": [VP],
    "rwkv6_block": [VP] * 10,
    "rwkv6_block_floats": [VP],
    "rwkv4_block": [VP] * 10,
    "rwkv4_block_floats": [VP],
    "head_rows": [VP, VP, I64, VP],
    "head_logprobs": [VP, I64, VP, VP, VP, I64, ctypes.c_double, VP],
    "set_threads": [ctypes.c_int],
    "threads": [],
    "read_sum": [VP, I64],
    "mv_bits": [VP, I64, I64, VP, VP, I64],
}
RESTYPES = {"read_sum": ctypes.c_double, "threads": ctypes.c_int, "rwkv7_block": I64,
            "rwkv7_block_floats": I64, "rwkv6_block": I64, "rwkv6_block_floats": I64, "rwkv4_block": I64,
            "rwkv4_block_floats": I64,
            "head_rows": I64}  # the others return nothing

# kernels.h's, rwkv7.c's, rwkv6.c's and rwkv4.c's structs (every field 8 bytes wide). A matrix: its kernel's arguments by name.
MAT_KINDS = {"f16": 1, "sq": 2, "vq": 3, "f32": 4}
MAT_ARGS = {"f16": ("q", "cols"),
            "sq": ("q", "stride", "qbytes", "scale", "zero", "zstride", "bits", "group", "cols"),
            "vq": ("q", "stride", "qbytes", "zero", "scale", "bits", "dim", "group", "cols")}


class Mat(ctypes.Structure):
    _fields_ = ([(n, I64) for n in ("kind", "rows", "cols", "stride", "qbytes", "zstride", "bits", "dim", "group")]
                + [(n, VP) for n in ("q", "scale", "zero", "perm", "tmp")])


class LinearT(ctypes.Structure):
    _fields_ = [("W", Mat), ("w1", Mat), ("w2", Mat), ("lowrank", I64), ("diag", VP)]


class PredictorT(ctypes.Structure):
    _fields_ = [("m1", Mat), ("m2", Mat), ("copy", Mat), ("b1", VP), ("cut", VP), ("scale", VP),
                ("keep", ctypes.c_double)]


class FfnT(ctypes.Structure):
    _fields_ = [("fk", Mat), ("fv", Mat), ("fv_transposed", I64), ("predicted", I64), ("pred", PredictorT)]


class Block7(ctypes.Structure):
    _fields_ = ([(n, I64) for n in ("C", "H", "N", "first", "hidden")] + [("eps", ctypes.c_double)]
                + [(n, VP) for n in ("ln1w", "ln1b", "ln2w", "ln2b", "mix", "w0", "a0", "k_k", "k_a", "r_k", "v0",
                                     "lnxw", "lnxb", "x_k")]
                + [(n, LinearT) for n in "rkvo"]
                + [(n, Mat) for n in ("w1", "w2", "a1", "a2", "g1", "g2", "v1", "v2")]
                + [("ffn", FfnT)])


class Block6(ctypes.Structure):
    _fields_ = ([(n, I64) for n in ("C", "A", "H", "N", "D", "hidden", "dynamic", "gated")] + [("eps", ctypes.c_double)]
                + [(n, VP) for n in ("ln1w", "ln1b", "ln2w", "ln2b", "shift", "maa_x", "up_rows", "decay", "u", "lnxw",
                                     "lnxb", "ffn_shift")]
                + [(n, LinearT) for n in ("r", "k", "v", "g", "o", "fr")]
                + [(n, Mat) for n in ("maa_w1", "maa_w2", "decay_w1", "decay_w2")]
                + [("ffn", FfnT)])


class Block4(ctypes.Structure):
    _fields_ = ([(n, I64) for n in ("C", "A", "hidden")]
                + [(n, VP) for n in ("ln1w", "ln1b", "ln2w", "ln2b", "shift", "ffn_shift", "w", "u")]
                + [(n, LinearT) for n in ("r", "k", "v", "o", "fr")]
                + [("ffn", FfnT)])


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "rwkvlite")


def build(sources: list[str] | None = None, header: str | None = None) -> str | None:
    """Path of the compiled library (built once per source version); None if it cannot be built.
    sources, header: another copy of the kernels (bench/kernels_ab.py), else this package's."""
    sources, header = sources or SOURCES, header or HEADER
    # the cache key: CRC-32 and Adler-32 of flags and sources (hashlib would load OpenSSL,
    # 3 MB of resident memory, into a runtime meant to stay small)
    data = " ".join(FLAGS).encode()
    for path in (*sources, header):
        with open(path, "rb") as f:
            data += f.read()
    digest = f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"
    folder = cache_dir()
    target = os.path.join(folder, f"kernels-{digest}.so")
    if os.path.exists(target):
        return target
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or "cc"
    error = None
    for extra in (OPENMP, []):  # without OpenMP the kernels run on one thread
        tmp = None
        try:
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
            os.close(fd)
            subprocess.run([compiler, *FLAGS, *extra, "-o", tmp, *sources, "-lm"], check=True, capture_output=True,
                           timeout=120)
            os.replace(tmp, target)
            return target
        except (OSError, subprocess.SubprocessError) as e:
            error = e
            if tmp and os.path.exists(tmp):
                os.remove(tmp)
    print(f"rwkvlite: note: C kernels unavailable ({type(error).__name__}); using numpy", file=sys.stderr)
    return None


def load(path: str):
    """A compiled kernel library with its functions' signatures (those it has: an older build
    may lack newer kernels)."""
    cdll = ctypes.CDLL(path)
    for name, args in SIGNATURES.items():
        if hasattr(cdll, name):
            fn = getattr(cdll, name)
            fn.argtypes, fn.restype = args, RESTYPES.get(name)
    return cdll


def lib():
    """The loaded kernel library, or None (numpy fallback)."""
    global _lib, _tried
    if not _tried:
        _tried = True
        if os.environ.get("RWKVLITE_KERNELS", "").lower() != "numpy":
            path = build()
            if path:
                _lib = load(path)
                set_exact(os.environ.get("RWKVLITE_EXACT", "") == "1")
                if os.environ.get("RWKVLITE_THREADS"):
                    _lib.set_threads(int(os.environ["RWKVLITE_THREADS"]))
    return _lib


def set_exact(exact: bool) -> None:
    """Float32 x in every kernel (exact up to float rounding) instead of the int16-x fast path."""
    if _lib is not None:
        ctypes.c_int.in_dll(_lib, "int16_x").value = 0 if exact else 1


_threads = None  # what set_threads last set (None: OpenMP's default, one per core, or RWKVLITE_THREADS)


def set_threads(n: int | None) -> None:
    """Use n threads in the C kernels (None: leave as is; default one per core). The setting
    is the process's; each Runtime re-applies its own before it steps (use_threads)."""
    global _threads
    if n is not None:
        if n < 1:
            raise ValueError(f"threads must be at least 1, not {n}")
        if lib() is not None:
            lib().set_threads(int(n))
            _threads = int(n)


def use_threads(n: int) -> None:
    """set_threads(n) unless n is what the kernels use already (a per-token check, no foreign call)."""
    if n != _threads:
        set_threads(n)


def threads() -> int:
    """How many threads the C kernels use (1 without them)."""
    return lib().threads() if lib() is not None else 1


def ptr(a) -> int | None:
    return None if a is None else a.ctypes.data
