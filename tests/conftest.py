import os
import subprocess
import sys

import pytest
import torch

from rwkvlite.model import RWKVConfig
from rwkvlite.model.init import random_model

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("RWKVLITE_SHARED") or os.path.normpath(os.path.join(HERE, "..", "..", "shared"))
TINY = os.path.join(SHARED, "models", "rwkvcpp-tiny")

# Small but non-trivial shapes: several layers, several heads, dim_ffn != 4C for v6.
CONFIGS = {
    "4": RWKVConfig("4", n_layer=3, n_embd=64, vocab_size=300),
    "5.0": RWKVConfig("5.0", n_layer=3, n_embd=64, vocab_size=300, head_size=16),
    "5.1": RWKVConfig("5.1", n_layer=3, n_embd=64, vocab_size=300, head_size=16),
    "5.2": RWKVConfig("5.2", n_layer=3, n_embd=64, vocab_size=300, head_size=16),
    "6": RWKVConfig("6", n_layer=3, n_embd=64, vocab_size=300, head_size=16, lora_mix=8, lora_decay=16),
    "7": RWKVConfig("7", n_layer=3, n_embd=64, vocab_size=300, head_size=16,
                    lora_decay=16, lora_a=16, lora_v=8, lora_gate=32),
}


def shared(*parts) -> str:
    """A path in the shared data folder; fails in CI and skips elsewhere when it is absent."""
    path = os.path.join(SHARED, *parts)
    if not os.path.exists(path):
        if os.environ.get("CI"):
            pytest.fail(f"shared data missing in CI: {path}")
        pytest.skip(f"shared data not present: {path}")
    return path


def make_model(version: str, seed: int = 0):
    return random_model(CONFIGS[version], seed).eval()


@pytest.fixture
def tokens():
    return torch.randint(0, 300, (1, 64), generator=torch.Generator().manual_seed(1))


def run_cli(*args, env=None, input=None):
    """Run `rwkvlite ARGS` in a fresh process (env: its environment, default this one's; input:
    its standard input); returns the CompletedProcess (text output)."""
    return subprocess.run([sys.executable, "-m", "rwkvlite.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, input=input)
