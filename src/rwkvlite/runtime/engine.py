"""The lean runtime: one token at a time from a memory-mapped compressed file, in numpy plus
the C kernels, without PyTorch. Each block is stepped in one C call (rwkv7.py, rwkv6.py,
rwkv4.py bind their generation's kernel), or in numpy where a matrix has no C kernel.

Weights stay as stored: matrices are multiplied packed (runtime/matrix.py); vectors and
norms are decoded to float32 once. RWKV-Lite structures are used as such: low-rank factors,
FFN predictors (only predicted-active key rows and value columns are read), the embedding
cache (ln0 folded: rows read on demand, LRU-cached) and the clustered head (only the chosen
clusters' rows are read).
"""
from __future__ import annotations

import ctypes

import numpy as np

from .. import format as compressed
from ..errors import RWKVLiteError
from .cache import EmbeddingRows
from .head import Head
from .layers import layer_norm
from .native import Kernels, Settings
from .reads import ReadCounts, bytes_read
from .rwkv4 import Rwkv4Block
from .rwkv6 import Rwkv5Block, Rwkv6Block
from .rwkv7 import Rwkv7Block
from .state import State
from .weights import Weights

BLOCKS = {"7": Rwkv7Block, "6": Rwkv6Block, "5.2": Rwkv5Block, "5.1": Rwkv5Block, "5.0": Rwkv5Block,
          "4": Rwkv4Block}


def _trim_heap() -> None:
    """Give the C heap's free memory back to the system (glibc's malloc_trim; elsewhere nothing)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Runtime:
    """model = Runtime("m.rwkvlite"); logits, state = model.step(token, state).
    threads: the C kernels' threads (default one per core, or RWKVLITE_THREADS); exact: float32
    activations in every kernel instead of the fast mode; parallel_min: the multiply-adds below
    which a kernel runs on one thread. These settings are this runtime's own (native.Kernels):
    another Runtime in the process may use others. kernels: a native.Kernels to use instead
    (another build of the C code, bench/runtime_ab.py), which then holds the settings."""

    CHUNK = 64  # prompt tokens that go through a block together (feed)

    def __init__(self, path, verify: bool = True, cache_rows: int = 1024, threads: int | None = None,
                 exact: bool = False, *, parallel_min: int = Settings.parallel_min, kernels: Kernels | None = None):
        self.kernels = kernels or Kernels(Settings(threads, exact, parallel_min))
        self.threads = self.kernels.threads
        self.w = Weights(path, verify, self.kernels)
        cfg = self.w.manifest["config"]
        block = BLOCKS[cfg["version"]]  # one of format/validate.py's VERSIONS, checked on reading
        self.config = cfg
        structure = self.w.manifest.get("structure") or {}
        self.blocks = [block(self.w, i, cfg, structure, self.kernels) for i in range(cfg["n_layer"])]
        self._share_workspace()
        # in-place steps with every block in C: x and v_first in buffers of the runtime's own, a row
        # per token of a chunk, and the blocks' prepared calls made once per state (_calls_for)
        self._X, self._V = (np.empty((self.CHUNK, cfg["n_embd"]), np.float32) for _ in range(2))  # pages touched as used
        self._calls = (None, None)
        folded = "fold_ln0" in structure
        self.ln0 = None if folded else (self.w.vec("blocks.0.ln0.weight"), self.w.vec("blocks.0.ln0.bias"))
        self.emb = EmbeddingRows(self.w.mat("emb.weight"), path, compressed.container.array_offsets(path),
                                 cache_rows if folded else 0)
        self.ln_out = (self.w.vec("ln_out.weight"), self.w.vec("ln_out.bias"))
        self.head = Head(self.w, structure.get("cluster_head", {}).get("head"), self.kernels)
        if self.head.spec:  # the chosen clusters' rows, read here and there: page by page, not in read-ahead blocks
            compressed.container.advise_random(self.w.parts("head.weight")[1].values())
        self.tokens = 0
        _trim_heap()  # what loading freed (the manifest's text, the verification's buffers)

    def _share_workspace(self) -> None:
        """Blocks step one after another: one workspace for all the C ones."""
        native = [b for b in self.blocks if b.c is not None]
        if native:
            work = np.empty(max(b.work_floats for b in native), np.float32)
            rows = np.empty(max(b.ffn.key.rows for b in native), np.int32)
            for b in native:
                b.use_workspace(work, rows)

    @property
    def vocab_size(self) -> int:
        return self.config["vocab_size"]

    @property
    def engine(self) -> str:
        """"c" where the C kernels run, else "numpy"."""
        return "numpy" if self.kernels.lib is None else "c"

    def zero_state(self) -> State:
        return State.zero(self.config["n_embd"], (b.zero_wkv() for b in self.blocks))

    def step(self, token: int, state: State | None = None, inplace: bool = False) -> tuple[np.ndarray, State]:
        """Logits [V] (float32) after `token`, and the new state. The old state is not modified,
        unless inplace: then it is updated and returned (no new state allocated per token)."""
        return self.feed([token], state, inplace)

    def feed(self, tokens, state: State | None = None, inplace: bool = False) -> tuple[np.ndarray, State]:
        """Logits after the last of `tokens` and the state after all of them (a prompt): the
        same as stepping them one by one, bit for bit, in less time. The head runs for the last
        token only (a prompt's other logits are not used), and with every block in C up to
        CHUNK tokens go through one block before the next block starts, so that a block's
        weights are read from memory once per chunk rather than once per token
        (bench/prefill.py)."""
        tokens = list(tokens)
        if not tokens:
            raise ValueError("feed needs at least one token")
        if not 0 <= min(tokens) <= max(tokens) < self.vocab_size:  # a row past the embedding is another array
            bad = next(t for t in tokens if not 0 <= t < self.vocab_size)
            raise RWKVLiteError(f"token id {bad} is outside this model's vocabulary (0..{self.vocab_size - 1})")
        if state is None:
            state = self.zero_state()
        elif not inplace:
            state = state.copy()
        if all(b.c is not None for b in self.blocks):
            chunk = min(self.CHUNK, len(self._X))  # the buffers' rows, made for the class's CHUNK
            for i in range(0, len(tokens), chunk):
                x = self._blocks_in_place(tokens[i:i + chunk], state)
        else:
            for token in tokens:
                x = self._blocks(self._embed(token), state)
        self.tokens += len(tokens)
        return self.head(layer_norm(x, *self.ln_out).astype(np.float32)), state

    def _embed(self, token: int) -> np.ndarray:
        x = self.emb(token)
        return x if self.ln0 is None else layer_norm(x, *self.ln0)

    def _blocks(self, x, state: State) -> np.ndarray:
        """x through the blocks one call each (numpy or C), the state stepped in place."""
        v_first = None
        for block, st in zip(self.blocks, state.layers):
            x, v_first = block(x, st, v_first, True)
        return x

    def _blocks_in_place(self, tokens: list[int], state: State) -> np.ndarray:
        """The same for up to CHUNK tokens with every block in C, block by block: each block
        steps every token (its state in token order) before the next block starts. Rows of
        self._X hold the tokens' x, of self._V their v_first (RWKV-7); each block's call is
        prepared once (_calls_for) for the first row and moved a row per further token.
        Returns the last token's x."""
        X = self._X
        for t, token in enumerate(tokens):
            X[t] = self._embed(token)
        row, n = X.strides[0], len(tokens)
        for call in self._calls_for(state):
            call.count(call.fn(*call.args))
            for t in range(1, n):
                call.count(call.fn(*call.at(t, row)))
        return X[n - 1]

    def _calls_for(self, state: State) -> list:
        """Each block's prepared in-place call for `state`; made again only when one of the
        state's arrays, or a block's workspace, is not the one they were made for (an in-place
        step keeps them)."""
        arrays = [a for st in state.layers for a in st.arrays()] + [b._bufs for b in self.blocks]
        made_for, calls = self._calls
        if made_for is None or len(made_for) != len(arrays) or any(a is not b for a, b in zip(arrays, made_for)):
            for a in arrays[:3 * len(state)]:
                if a.dtype != np.float32 or not a.flags.c_contiguous:
                    raise ValueError("state arrays must be C-contiguous float32 (Runtime.zero_state, step)")
            rows = {"x": self._X.ctypes.data, "v_first": self._V.ctypes.data}
            calls = [b.prepare(st, {name: rows[name] for name in b.PER_TOKEN}) for b, st in zip(self.blocks, state)]
            self._calls = (arrays, calls)  # the arrays kept alive while their addresses are used
        return calls

    def reset_counters(self) -> None:
        """Start counting tokens, active FFN neurons and head rows afresh (bytes_read_per_token)."""
        self.tokens = self.head.rows_total = 0
        for b in self.blocks:
            b.ffn.key_rows = b.ffn.value_rows = 0

    def read_counts(self) -> ReadCounts:
        """The rows read so far (runtime/reads.py)."""
        return ReadCounts(self.tokens, [b.ffn.key_rows for b in self.blocks], [b.ffn.value_rows for b in self.blocks],
                          self.head.rows_total)

    def bytes_read_per_token(self) -> dict:
        """Weight bytes read per token so far (mean): what the bandwidth bound is computed from.
        Counted as for tokens stepped one by one; a prompt fed in chunks reads a block's
        weights once per chunk, so count decoding only (reset_counters after the prompt)."""
        return bytes_read(self.w.entries, self.vocab_size, self.read_counts())
