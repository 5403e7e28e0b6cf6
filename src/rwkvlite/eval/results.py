"""Result records: figures plus everything needed to trust and reproduce them."""
from __future__ import annotations

import datetime
import functools
import json
import os
import platform

import torch

from ..utils.io import atomic_path
from .data import sha256_of


def environment() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(),
            "processor": platform.processor(), "threads": torch.get_num_threads(), "cpus": os.cpu_count()}


@functools.lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime: float) -> str:
    return sha256_of(path)  # keyed by size and mtime: one read per file version, not per task


def record(model_path: str, task: str, figures: dict, settings: dict) -> dict:
    path = os.fspath(model_path)
    digest = _digest(path, os.path.getsize(path), os.path.getmtime(path)) if os.path.isfile(path) else None
    size = os.path.getsize(path) if os.path.isfile(path) else None
    return {"model": path, "model_sha256": digest, "model_bytes": size, "task": task, "figures": figures, "settings": settings,
            "environment": environment(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat()}


def write_json(records: list[dict], path: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(records, f, indent=1)
