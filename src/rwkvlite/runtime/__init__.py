"""The lean runtime: generation from a compressed file with numpy and C kernels, no PyTorch.

>>> from rwkvlite.runtime import Runtime
>>> model = Runtime("model.rwkvlite")           # doctest: +SKIP
>>> logits, state = model.feed(prompt_ids)      # doctest: +SKIP
>>> logits, state = model.step(token_id, state)  # doctest: +SKIP

feed takes a prompt: the same logits and state as stepping its tokens, in less time. The
state is a State (runtime/state.py): per layer, the token-shift inputs and the WKV state.

The C kernels bring their own threads, so numpy's BLAS is held to one thread when this
package is imported before numpy (set OPENBLAS_NUM_THREADS to override): otherwise its
idle worker threads spin on the same cores between the kernels' calls.
"""
import os
import sys

if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .engine import Runtime  # noqa: E402
from .state import LayerState, State  # noqa: E402

__all__ = ["Runtime", "State", "LayerState"]
