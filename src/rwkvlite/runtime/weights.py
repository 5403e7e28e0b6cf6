"""A compressed file's tensors as the lean runtime reads them: matrices stay packed
(runtime/matrix.py multiplies them as stored), vectors and norms (a few KB per layer)
are decoded to float32 once.

>>> w = Weights("model.rwkvlite")              # doctest: +SKIP
>>> w.vec("blocks.0.ln1.weight").shape         # doctest: +SKIP
(768,)
"""
from __future__ import annotations

import numpy as np

from .. import format as compressed
from ..format.encodings import decode
from .matrix import matrix

# The embedding, whose rows the runtime reads with os.pread (runtime/cache.py, FileRows): left
# in the page cache after verification, so a row is a system call, not a disk read, and no
# resident memory (the file is not mapped there); and the clustered head's cluster ids, which the
# format's validation and then the head decode right after loading (a few KB).
CACHED = ("emb.weight", "head.cluster")


class Weights:
    """Lazy access to a compressed file's tensors. kernels: the runtime's native.Kernels,
    given to every matrix made here."""

    def __init__(self, path, verify: bool = True, kernels=None):
        self.path, self.kernels = path, kernels
        self.manifest, self.arrays = compressed.container.read(path, verify=verify, keep_cached=CACHED)
        self.entries = self.manifest["tensors"]

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def parts(self, name: str) -> tuple[dict, dict]:
        """(encoding entry, {role: memory-mapped array}) of one tensor."""
        e = self.entries[name]
        return e, {role: self.arrays[key] for role, key in e["arrays"].items()}

    def vec(self, name: str) -> np.ndarray:
        """A tensor decoded to float32 and flattened (vectors, norms, mixes)."""
        return decode(*self.parts(name)).astype(np.float32).reshape(-1)

    def mat(self, name: str):
        """A matrix as stored (runtime/matrix.py)."""
        return matrix(*self.parts(name), self.kernels)
