"""Load time, peak resident memory per phase (utils/memory.py), prefill and decode speed
of one model file through the PyTorch path."""
from __future__ import annotations

import os
import time

import torch

from ..loaders import load_model
from ..utils.memory import peak_mib as _peak_mib
from ..utils.memory import reset_peak as _reset_peak


@torch.no_grad()
def bench(path: str, prompt_tokens: int = 512, gen_tokens: int = 128, device=None, seed: int = 0) -> dict:
    """Measure one model file in this process. Returns figures in seconds, MiB and tokens/s."""
    per_phase = _reset_peak()
    base = _peak_mib()
    start = time.perf_counter()
    model = load_model(path, device=device)
    load_s = time.perf_counter() - start
    load_peak = _peak_mib()
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, vocab, (1, prompt_tokens), generator=g).to(device or "cpu")
    _reset_peak()
    start = time.perf_counter()
    logits, state = model(prompt, last_only=True)
    prefill_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(gen_tokens):
        token = logits[0, -1].argmax().view(1, 1)
        logits, state = model(token, state)
    decode_s = time.perf_counter() - start
    return {
        "load_s": load_s, "prefill_tokens_per_s": prompt_tokens / prefill_s,
        "decode_tokens_per_s": gen_tokens / decode_s, "decode_ms_per_token": 1e3 * decode_s / gen_tokens,
        "rss_before_load_mib": base, "peak_rss_load_mib": load_peak, "peak_rss_generate_mib": _peak_mib(),
        "peak_per_phase": per_phase, "model_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "file_bytes": os.path.getsize(path) if os.path.isfile(path) else None,
        "prompt_tokens": prompt_tokens, "gen_tokens": gen_tokens, "threads": torch.get_num_threads(),
    }
