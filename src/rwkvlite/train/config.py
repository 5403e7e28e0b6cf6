"""Training run configuration: a JSON file of these fields (unknown keys are an error)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from ..errors import RWKVLiteError


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Paths may start with {shared}/ for the shared data folder.

    Model: version, n_layer, n_embd, head_size (dim_ffn 0 = the version's default), the
    tokenizer ('bytes', 'world' or a vocab path) and its vocab_size; or init_from, a
    checkpoint to continue from (its shapes win).
    Data: train_files, of which the last val_fraction of each is held out.
    Steps: max_steps optimiser steps of batch_size x grad_accum windows of ctx_len tokens.
    """

    train_files: tuple[str, ...]
    out_dir: str
    version: str = "7"
    n_layer: int = 4
    n_embd: int = 256
    head_size: int = 64
    dim_ffn: int = 0
    tokenizer: str = "bytes"
    vocab_size: int = 256
    init_from: str | None = None
    val_fraction: float = 0.02
    ctx_len: int = 256
    batch_size: int = 8
    grad_accum: int = 1
    max_steps: int = 1000
    lr: float = 6e-4
    lr_final: float = 6e-5
    warmup_steps: int = 50
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    seed: int = 0
    eval_interval: int = 100
    eval_tokens: int = 65536
    checkpoint_interval: int = 200
    device: str | None = None
    save_dtype: str = "float16"
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.train_files:
            raise RWKVLiteError("train config: train_files is empty")
        if not 0 < self.val_fraction < 0.5:
            raise RWKVLiteError(f"train config: val_fraction {self.val_fraction} must be in (0, 0.5)")
        for name in ("ctx_len", "batch_size", "grad_accum", "max_steps", "eval_interval", "checkpoint_interval"):
            if getattr(self, name) < 1:
                raise RWKVLiteError(f"train config: {name} must be at least 1")

    @classmethod
    def from_json(cls, path: str, **overrides) -> "TrainConfig":
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise RWKVLiteError(f"{path}: cannot read the train config ({e})") from None
        data.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RWKVLiteError(f"{path}: unknown train config keys {unknown}")
        for key in ("train_files", "betas"):
            if key in data:
                data[key] = tuple(data[key])
        try:
            return cls(**data)
        except TypeError as e:
            raise RWKVLiteError(f"{path}: {e}") from None

    def to_dict(self) -> dict:
        return asdict(self)
