"""Speed and memory of one model file, the same figures for either path: the lean runtime
(bench_file: a compressed file, in this process, which must not have imported PyTorch for
the RSS to mean anything) or the PyTorch model (eval/speed.py). Load time, peak RSS while
loading and while generating, prefill and decode speed (greedy, `gen_tokens` tokens after a
random prompt of `prompt_tokens`), and for the lean runtime the weight bytes each token reads.
RSS at the end is split into anonymous memory (the process's own) and pages of the
memory-mapped file (clean: the kernel can drop and re-read them under memory pressure).

>>> figures = bench_file("model.rwkvlite", gen_tokens=32)   # doctest: +SKIP
>>> figures["decode_ms_per_token_median"]                    # doctest: +SKIP
"""
from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable

import numpy as np

from ..utils.memory import peak_mib, reset_peak, rss_kib
from .engine import Runtime

PROMPT_TOKENS, GEN_TOKENS = 64, 128  # one chunk of Runtime.feed; tokens timed


def bench(load: Callable[[], object], path, prompt_tokens: int = PROMPT_TOKENS, gen_tokens: int = GEN_TOKENS,
          seed: int = 0) -> dict:
    """Measure the model load() returns (a Runtime, or model/stepper.py's Stepper: feed/step
    with numpy logits, vocab_size, threads, engine, reset_counters, bytes_read_per_token),
    loaded from the file at path. Figures in seconds, ms, MiB and bytes."""
    per_phase = reset_peak()
    base = peak_mib()
    start = time.perf_counter()
    model = load()
    load_s = time.perf_counter() - start
    load_peak = peak_mib()
    rng = random.Random(seed)  # not numpy.random, which loads OpenSSL (rwkvlite/sampling.py)
    reset_peak()
    prompt = [rng.randrange(1, model.vocab_size) for _ in range(prompt_tokens)]
    start = time.perf_counter()
    logits, state = model.feed(prompt)  # the first tokens also map the file's pages in
    prefill_s = time.perf_counter() - start
    model.reset_counters()
    times = []
    for _ in range(gen_tokens):
        t = time.perf_counter()
        logits, state = model.step(int(np.argmax(logits)), state, inplace=True)
        times.append(time.perf_counter() - t)
    decode_s = sum(times)
    reads = model.bytes_read_per_token()
    anon, file = rss_kib("RssAnon"), rss_kib("RssFile")
    return {"kernels": model.engine, "threads": model.threads, "load_s": load_s,
            "rss_before_load_mib": base, "peak_rss_load_mib": load_peak, "peak_rss_generate_mib": peak_mib(),
            "peak_per_phase": per_phase, "rss_end_anon_mib": anon / 1024 if anon is not None else None,
            "rss_end_file_mib": file / 1024 if file is not None else None,
            "prefill_ms_per_token": 1e3 * prefill_s / prompt_tokens, "prefill_tokens_per_s": prompt_tokens / prefill_s,
            "decode_ms_per_token": 1e3 * decode_s / gen_tokens,
            "decode_ms_per_token_median": 1e3 * float(np.median(times)), "decode_tokens_per_s": gen_tokens / decode_s,
            "bytes_read_per_token": reads["total"] if reads else None, "bytes_read_detail": reads,
            "file_bytes": os.path.getsize(path) if os.path.isfile(path) else None, "prompt_tokens": prompt_tokens,
            "gen_tokens": gen_tokens, "torch_imported": "torch" in sys.modules, "process_threads": _threads()}


def bench_file(path, prompt_tokens: int = PROMPT_TOKENS, gen_tokens: int = GEN_TOKENS, seed: int = 0,
               threads: int | None = None, exact: bool = False) -> dict:
    """bench() of the lean runtime on a compressed file (threads, exact: Runtime's)."""
    return bench(lambda: Runtime(path, threads=threads, exact=exact), path, prompt_tokens, gen_tokens, seed)


def _threads() -> int | None:
    """The process's threads now (Linux): the kernels' OpenMP team and any BLAS workers."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None
