"""The native bridge: the C kernels as one object with its settings.

    k = Kernels(Settings(threads=2, exact=False))
    if k.lib is not None:                   # None: no C compiler (or RWKVLITE_KERNELS=numpy)
        step = k.fn("rwkv7_block")          # the C function, called with these settings
        n = step(args_address, x_ptr, ...)

Each Runtime owns one Kernels; two runtimes in one process may use different settings.
Code outside this module calls C only through Kernels.fn, never through the library.

INTERFACE PIN (temporary, for the runtime split): this module re-exports the structs of
kernels.py under their new names and applies the settings through the C globals; the C
split replaces that with a settings pointer passed to every kernel, behind the same API.
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from . import kernels as _old
from .kernels import MAT_ARGS, MAT_KINDS, FfnT, LinearT, Mat, PredictorT, ptr  # noqa: F401

Rwkv7Args, Rwkv6Args, Rwkv4Args = _old.Block7, _old.Block6, _old.Block4  # block7_t, block6_t, block4_t


@dataclass(frozen=True)
class Settings:
    """How the C kernels run. threads: None = RWKVLITE_THREADS, else one per core.
    exact: float32 activations in every kernel (the reference) instead of the fast mode.
    parallel_min: a call with fewer multiply-adds runs on one thread (0 in tests)."""

    threads: int | None = None
    exact: bool = False
    parallel_min: int = 65536

    def __post_init__(self):
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, not {self.threads}")
        if self.parallel_min < 0:
            raise ValueError(f"parallel_min must be 0 or more, not {self.parallel_min}")


def library():
    """The compiled kernel library (built once per source version), or None."""
    return _old.lib()


_applied: list = [None]  # the Settings the C globals hold now (goes with the settings pointer)


class Kernels:
    """The kernel library with one Settings."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.lib = library()
        if self.lib is not None and self.settings.threads is None and os.environ.get("RWKVLITE_THREADS"):
            self.settings = Settings(int(os.environ["RWKVLITE_THREADS"]), self.settings.exact,
                                     self.settings.parallel_min)

    def _apply(self) -> None:
        if _applied[0] != self.settings:
            s = self.settings
            ctypes.c_int.in_dll(self.lib, "int16_x").value = 0 if s.exact else 1
            ctypes.c_int64.in_dll(self.lib, "parallel_min").value = s.parallel_min
            self.lib.set_threads(s.threads or os.cpu_count() or 1)
            _applied[0] = s

    def fn(self, name: str):
        """The C function `name`, called with this object's settings."""
        f = getattr(self.lib, name)

        def call(*args):
            self._apply()
            return f(*args)

        return call

    @property
    def threads(self) -> int:
        """How many threads the kernels use (1 without them)."""
        if self.lib is None:
            return 1
        self._apply()
        return self.lib.threads()
