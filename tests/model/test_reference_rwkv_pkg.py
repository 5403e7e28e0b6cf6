"""Equivalence with BlinkDL's `rwkv` package (the reference inference code), fp32, 64 tokens."""
import os
import subprocess
import sys

import pytest
import torch

from ..conftest import make_model

pytest.importorskip("rwkv")
SCRIPT = os.path.join(os.path.dirname(__file__), "rwkv_reference.py")
TOLERANCE = 1e-3  # max abs logit difference, float32


def reference_logits(model, tokens, tmp_path):
    pth, tok, out = tmp_path / "model.pth", tmp_path / "tokens.pt", tmp_path / "out.pt"
    torch.save(model.state_dict(), pth)
    torch.save(tokens[0], tok)
    env = {**os.environ, "RWKV_JIT_ON": "0", "RWKV_CUDA_ON": "0"}
    if model.config.version == "7":
        env["RWKV_V7_ON"] = "1"
    subprocess.run([sys.executable, SCRIPT, str(pth), str(tok), str(out)], env=env, check=True,
                   capture_output=True)
    return torch.load(out)


@pytest.mark.parametrize("version", ["4", "5.0", "5.1", "5.2", "6", "7"])
def test_matches_rwkv_package(version, tokens, tmp_path):
    model = make_model(version)
    ref = reference_logits(model, tokens, tmp_path)
    with torch.no_grad():
        seq, _ = model(tokens)
        state, steps = None, []
        for t in range(tokens.shape[1]):
            logits, state = model(tokens[:, t:t + 1], state)
            steps.append(logits[0, 0])
    seq_err = (seq[0] - ref["sequence"]).abs().max().item()
    step_err = (torch.stack(steps) - ref["step"]).abs().max().item()
    assert seq_err <= TOLERANCE, f"RWKV-{version} sequence mode differs from the rwkv package by {seq_err:.2e}"
    assert step_err <= TOLERANCE, f"RWKV-{version} step mode differs from the rwkv package by {step_err:.2e}"
    assert ref["sequence"].abs().max() > 1.0, "degenerate test: reference logits are all near zero"
