"""Load time, peak resident memory per phase, prefill and decode speed of one model file
through the PyTorch path: runtime/bench.py's figures, with the model behind model/stepper.py."""
from __future__ import annotations

from ..runtime.bench import GEN_TOKENS, PROMPT_TOKENS
from ..runtime.bench import bench as _bench


def bench(path: str, prompt_tokens: int = PROMPT_TOKENS, gen_tokens: int = GEN_TOKENS, device=None,
          seed: int = 0) -> dict:
    """Measure one model file in this process (runtime/bench.py's keys; kernels "torch")."""
    from ..loaders import load_model
    from ..model.stepper import Stepper

    return _bench(lambda: Stepper(load_model(path, device=device)), path, prompt_tokens, gen_tokens, seed)
