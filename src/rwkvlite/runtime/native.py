"""The native bridge: the C kernels (runtime/c/) as one object with its settings.

    k = Kernels(Settings(threads=2, exact=False))
    if k.lib is not None:                   # None: no C compiler (or RWKVLITE_KERNELS=numpy)
        step = k.fn("rwkv7_block")          # the C function, called with these settings
        n = step(args_address, x_ptr, ...)

Each Runtime owns one Kernels; two runtimes in one process may use different settings. The
C library holds no settings of its own: every kernel that depends on them takes a settings_t
pointer first, which Kernels.fn binds. Code outside this module calls C only through
Kernels.fn.

Why hand-written C: no maintained package multiplies by our packed layouts (3-bit streams,
2-D VQ codebooks, row subsets) without PyTorch, and a few C files compiled for the host CPU
beat dequantising whole matrices in numpy for every token many times over. The library is
built on first use with the system's C compiler and cached by a hash of its sources and
flags. Environment, read when a Kernels is made: RWKVLITE_KERNELS=numpy (no C),
RWKVLITE_EXACT=1 (exact mode), RWKVLITE_THREADS=N (threads; default one per core).

The structs below mirror runtime/c/kernels.h; tests/runtime/test_native.py checks every
field's offset and size against the library's rwkvlite_offsetof and rwkvlite_sizeof.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import os
import shutil
import subprocess
import tempfile
import warnings
import zlib
from dataclasses import dataclass

C_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "c")
FLAGS = ["-O3", "-march=native", "-ffast-math", "-shared", "-fPIC"]
OPENMP = ["-fopenmp"]

I64, F64, VP = ctypes.c_int64, ctypes.c_double, ctypes.c_void_p


class SettingsT(ctypes.Structure):
    """settings_t: how the kernels run (Settings, as C reads it)."""
    _fields_ = [("threads", I64), ("exact", I64), ("parallel_min", I64)]


class Mat(ctypes.Structure):
    """mat_t: a stored matrix (Matrix.native); its kernel's arguments by name in MAT_ARGS."""
    _fields_ = ([(n, I64) for n in ("kind", "rows", "cols", "stride", "qbytes", "zstride", "bits", "dim", "group")]
                + [(n, VP) for n in ("q", "scale", "zero", "perm", "tmp")])


class LinearT(ctypes.Structure):
    """linear_t: a projection, plain (W) or low-rank (w1, w2, lowrank 1 linear / 2 relu, diag)."""
    _fields_ = [("W", Mat), ("w1", Mat), ("w2", Mat), ("lowrank", I64), ("diag", VP)]


class PredictorT(ctypes.Structure):
    """predictor_t: an FFN's predictor (MLP m1, m2 and a sign or dense copy of the key)."""
    _fields_ = [("m1", Mat), ("m2", Mat), ("copy", Mat), ("b1", VP), ("cut", VP), ("scale", VP), ("keep", F64)]


class FfnT(ctypes.Structure):
    """ffn_t: a channel mix's key and value matrices and its predictor."""
    _fields_ = [("fk", Mat), ("fv", Mat), ("fv_transposed", I64), ("predicted", I64), ("pred", PredictorT)]


class Rwkv7Args(ctypes.Structure):
    """block7_t: one RWKV-7 block (rwkv7_block)."""
    _fields_ = ([(n, I64) for n in ("C", "H", "N", "first", "hidden")] + [("eps", F64)]
                + [(n, VP) for n in ("ln1w", "ln1b", "ln2w", "ln2b", "mix", "w0", "a0", "k_k", "k_a", "r_k", "v0",
                                     "lnxw", "lnxb", "x_k")]
                + [(n, LinearT) for n in "rkvo"]
                + [(n, Mat) for n in ("w1", "w2", "a1", "a2", "g1", "g2", "v1", "v2")]
                + [("ffn", FfnT)])


class Rwkv6Args(ctypes.Structure):
    """block6_t: one RWKV-5 or RWKV-6 block (rwkv6_block)."""
    _fields_ = ([(n, I64) for n in ("C", "A", "H", "N", "D", "hidden", "dynamic", "gated")] + [("eps", F64)]
                + [(n, VP) for n in ("ln1w", "ln1b", "ln2w", "ln2b", "shift", "maa_x", "up_rows", "decay", "u", "lnxw",
                                     "lnxb", "ffn_shift")]
                + [(n, LinearT) for n in ("r", "k", "v", "g", "o", "fr")]
                + [(n, Mat) for n in ("maa_w1", "maa_w2", "decay_w1", "decay_w2")]
                + [("ffn", FfnT)])


class Rwkv4Args(ctypes.Structure):
    """block4_t: one RWKV-4 block (rwkv4_block)."""
    _fields_ = ([(n, I64) for n in ("C", "A", "hidden")]
                + [(n, VP) for n in ("ln1w", "ln1b", "ln2w", "ln2b", "shift", "ffn_shift", "w", "u")]
                + [(n, LinearT) for n in ("r", "k", "v", "o", "fr")]
                + [("ffn", FfnT)])


# the C name of each mirrored struct
STRUCTS = {"settings_t": SettingsT, "mat_t": Mat, "linear_t": LinearT, "predictor_t": PredictorT, "ffn_t": FfnT,
           "block7_t": Rwkv7Args, "block6_t": Rwkv6Args, "block4_t": Rwkv4Args}

# a matrix's kernel suffix -> mat_t's kind, and the kernel's leading arguments by mat_t field
MAT_KINDS = {"f16": 1, "sq": 2, "vq": 3, "f32": 4}
MAT_ARGS = {"f16": ("q", "cols"),
            "sq": ("q", "stride", "qbytes", "scale", "zero", "zstride", "bits", "group", "cols"),
            "vq": ("q", "stride", "qbytes", "zero", "scale", "bits", "dim", "group", "cols")}

S = ctypes.POINTER(SettingsT)  # a kernel's first argument where it depends on the settings
INT = ctypes.c_int
_SQ = [VP, I64, I64, VP, VP, I64, INT, I64, I64, VP, VP, VP, I64]
_VQ = [VP, I64, I64, VP, VP, INT, INT, I64, I64, VP, VP, VP, I64]
SIGNATURES = {  # name: (argument types, result type)
    "mv_f16": ([S, VP, I64, VP, VP, VP, I64], None),
    "axpy_f16": ([S, VP, I64, VP, VP, VP, I64], None),
    "mv_sq": ([S, *_SQ], None),
    "axpy_sq": ([S, *_SQ], None),
    "mv_vq": ([S, *_VQ], None),
    "axpy_vq": ([S, *_VQ], None),
    "mv_bits": ([S, VP, I64, I64, VP, VP, I64], None),
    "rwkv7_time_mix": ([S] + [VP] * 13 + [I64, I64, ctypes.c_float, VP], None),
    "rwkv6_time_mix": ([S] + [VP] * 10 + [I64, I64, ctypes.c_float, VP], None),
    "rwkv7_block": ([S] + [VP] * 11, I64),
    "rwkv6_block": ([S] + [VP] * 10, I64),
    "rwkv4_block": ([S] + [VP] * 10, I64),
    "rwkv7_block_floats": ([VP], I64),
    "rwkv6_block_floats": ([VP], I64),
    "rwkv4_block_floats": ([VP], I64),
    "head_rows": ([VP, VP, I64, VP], I64),
    "head_logprobs": ([VP, I64, VP, VP, VP, I64, F64, VP], None),
    "read_sum": ([S, VP, I64], F64),
    "default_threads": ([], INT),
    "rwkvlite_sizeof": ([ctypes.c_char_p], I64),
    "rwkvlite_offsetof": ([ctypes.c_char_p, ctypes.c_char_p], I64),
    "rwkvlite_tiers": ([], I64),
}
TIER_INT8_X = 4  # kernels.h: the fast mode's int8 tier (q8.c)
TAKES_SETTINGS = frozenset(name for name, (args, _) in SIGNATURES.items() if args[:1] == [S])
ABI = 7  # runtime/c/threads.c's rwkvlite_abi, which these structs and signatures describe


@dataclass(frozen=True)
class Settings:
    """How the C kernels run. threads: None = RWKVLITE_THREADS, else one per core.
    exact: float32 activations in every kernel (the reference) instead of the fast mode (x
    rounded to integers on the integer paths: per 32 columns, multiplied as two int8 planes,
    for scalar codes where the build has the int8 tier, runtime/fast.py; elsewhere to int16
    per group; both within about 2^-15 of x).
    parallel_min: a call with fewer multiply-adds runs on one thread (0 in tests)."""

    threads: int | None = None
    exact: bool = False
    parallel_min: int = 65536

    def __post_init__(self):
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, not {self.threads}")
        if self.parallel_min < 0:
            raise ValueError(f"parallel_min must be 0 or more, not {self.parallel_min}")


def sources(folder: str = C_DIR) -> list[str]:
    """A C folder's sources, every .c file in it, in a fixed order (pyproject.toml ships
    them by the same pattern)."""
    return sorted(glob.glob(os.path.join(folder, "*.c")))


def headers(folder: str = C_DIR) -> list[str]:
    """The folder's headers, which the sources include."""
    return sorted(glob.glob(os.path.join(folder, "*.h")))


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "rwkvlite")


def _digest(compiler: str, files: list[str]) -> str:
    """The cache key: CRC-32 and Adler-32 of the compiler command, flags and files (hashlib
    would load OpenSSL, 3 MB of resident memory, into a runtime meant to stay small)."""
    data = " ".join([compiler, *FLAGS]).encode()
    for path in files:
        with open(path, "rb") as f:
            data += f.read()
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def build(srcs: list[str] | None = None, hdrs: list[str] | None = None) -> str | None:
    """Path of the compiled library (built once per source version); None if it cannot be
    built. srcs, hdrs: another copy of the kernels (bench/kernels_ab.py), else this package's.
    CC may carry flags of its own (CC="gcc -mno-avx512f": the AVX2 tier on an AVX-512 machine)."""
    srcs, hdrs = srcs or sources(), hdrs if hdrs is not None else headers()
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or "cc"
    folder = cache_dir()
    target = os.path.join(folder, f"kernels-{_digest(compiler, [*srcs, *hdrs])}.so")
    if os.path.exists(target):
        return target
    error = None
    for extra in (OPENMP, []):  # without OpenMP the kernels run on one thread
        tmp = None
        try:
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
            os.close(fd)
            subprocess.run([*compiler.split(), *FLAGS, *extra, "-o", tmp, *srcs, "-lm"], check=True,
                           capture_output=True, timeout=300)
            os.replace(tmp, target)
            return target
        except (OSError, subprocess.SubprocessError) as e:
            error = e
            if tmp and os.path.exists(tmp):
                os.remove(tmp)
    warnings.warn(f"rwkvlite: C kernels unavailable ({type(error).__name__}); using numpy", RuntimeWarning,
                  stacklevel=2)
    return None


def load(path: str) -> ctypes.CDLL:
    """A compiled kernel library with its functions' signatures (those it has: another build
    may lack some kernels)."""
    cdll = ctypes.CDLL(path)
    for name, (args, result) in SIGNATURES.items():
        if hasattr(cdll, name):
            fn = getattr(cdll, name)
            fn.argtypes, fn.restype = args, result
    return cdll


@functools.cache
def library(path: str | None = None) -> ctypes.CDLL | None:
    """The loaded library at `path`, or this package's (built on first use); None without a
    compiler."""
    path = path or build()
    return load(path) if path else None


class Kernels:
    """The kernel library with one Settings. library_path: another build to use
    (bench/runtime_ab.py); default this package's."""

    def __init__(self, settings: Settings | None = None, library_path: str | None = None):
        s = settings or Settings()
        numpy_only = os.environ.get("RWKVLITE_KERNELS", "").lower() == "numpy"
        self.lib = None if numpy_only else library(library_path)
        threads = s.threads or int(os.environ.get("RWKVLITE_THREADS") or 0) or None
        if threads is None:
            threads = self.lib.default_threads() if self.lib is not None else 1
        exact = s.exact or os.environ.get("RWKVLITE_EXACT", "") == "1"
        self.settings = Settings(threads, exact, s.parallel_min)  # as the kernels run
        self._c = SettingsT(threads, int(exact), s.parallel_min)
        self._fns: dict = {}

    def fn(self, name: str):
        """The C function `name`, called with this object's settings: its arguments are the C
        function's after the settings pointer."""
        if name not in self._fns:
            f = getattr(self.lib, name)
            self._fns[name] = functools.partial(f, self._c) if name in TAKES_SETTINGS else f
        return self._fns[name]

    @property
    def int8_x(self) -> bool:
        """Whether fast-mode scalar-code products round x per 32 columns for the int8 tier's byte
        dot products (runtime/fast.py) in this build."""
        return (self.lib is not None and not self.settings.exact and hasattr(self.lib, "rwkvlite_tiers")
                and bool(self.lib.rwkvlite_tiers() & TIER_INT8_X))

    @property
    def threads(self) -> int:
        """How many threads the kernels use (1 without them)."""
        return self.settings.threads if self.lib is not None else 1

    def __repr__(self) -> str:
        return f"Kernels({self.settings}, {'C' if self.lib is not None else 'numpy'})"


def ptr(a) -> int | None:
    """The address of a numpy array's data (None for None), for a kernel's pointer argument."""
    return None if a is None else a.ctypes.data
