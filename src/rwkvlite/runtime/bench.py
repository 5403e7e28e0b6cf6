"""Speed and memory of the lean runtime on one compressed file, in this process (which
must not have imported PyTorch for the RSS to mean anything): load time, peak RSS while
loading and while generating, decode ms/token, and the weight bytes each token reads.
RSS at the end is split into anonymous memory (the process's own) and pages of the
memory-mapped file (clean: the kernel can drop and re-read them under memory pressure)."""
from __future__ import annotations

import os
import random
import sys
import time

import numpy as np

from ..utils.memory import peak_mib, reset_peak, rss_kib
from .model import Runtime


def bench(path, prompt_tokens: int = 16, gen_tokens: int = 128, seed: int = 0, threads: int | None = None) -> dict:
    per_phase = reset_peak()
    base = peak_mib()
    start = time.perf_counter()
    rt = Runtime(path, threads=threads)
    load_s = time.perf_counter() - start
    load_peak = peak_mib()
    rng = random.Random(seed)  # not numpy.random, which loads OpenSSL (runtime/generate.py)
    vocab = rt.config["vocab_size"]
    reset_peak()
    prompt = [rng.randrange(1, vocab) for _ in range(prompt_tokens)]
    start = time.perf_counter()
    logits, state = rt.feed(prompt)  # the first tokens also map the file's pages in
    prefill_s = time.perf_counter() - start
    rt.reset_counters()
    times = []
    for _ in range(gen_tokens):
        t = time.perf_counter()
        logits, state = rt.step(int(np.argmax(logits)), state, inplace=True)
        times.append(time.perf_counter() - t)
    decode_s = sum(times)
    reads = rt.bytes_read_per_token()
    anon, file = rss_kib("RssAnon"), rss_kib("RssFile")
    return {"rss_end_anon_mib": anon / 1024 if anon is not None else None,
            "rss_end_file_mib": file / 1024 if file is not None else None, "threads": rt.threads,
            "load_s": load_s, "rss_before_load_mib": base, "peak_rss_load_mib": load_peak,
            "peak_rss_generate_mib": peak_mib(), "peak_per_phase": per_phase,
            "prefill_ms_per_token": 1e3 * prefill_s / prompt_tokens, "decode_ms_per_token": 1e3 * decode_s / gen_tokens,
            "decode_ms_per_token_median": 1e3 * float(np.median(times)),
            "decode_tokens_per_s": gen_tokens / decode_s, "bytes_read_per_token": reads["total"],
            "bytes_read_detail": reads, "file_bytes": os.path.getsize(path), "gen_tokens": gen_tokens,
            "torch_imported": "torch" in sys.modules, "kernels": "c" if rt.kernels.lib is not None else "numpy",
            "process_threads": _threads()}


def _threads() -> int | None:
    """The process's threads now (Linux): the kernels' OpenMP team and any BLAS workers."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None
