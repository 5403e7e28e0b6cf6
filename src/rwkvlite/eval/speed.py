"""Load time, peak resident memory per phase, prefill and decode speed of one model file.

Peak RSS is the kernel's own high-water mark (VmHWM in /proc/self/status), reset between
phases by writing 5 to /proc/self/clear_refs (Linux). Where that is unavailable the peak
comes from getrusage and covers the whole process so far; the result says which.
"""
from __future__ import annotations

import os
import re
import resource
import sys
import time

import torch

from ..loaders import load_model


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{field}:\s+(\d+) kB", f.read(), flags=re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mib() -> float:
    hwm = _rss_kib("VmHWM")
    if hwm is None:  # ru_maxrss is KiB on Linux, bytes on macOS
        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)
    return hwm / 1024


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
