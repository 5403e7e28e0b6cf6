"""Sequence mode, step mode and chunked processing with carried state agree."""
import pytest
import torch

from ..conftest import CONFIGS, make_model

VERSIONS = list(CONFIGS)


@pytest.mark.parametrize("version", VERSIONS)
def test_sequence_equals_steps(version):
    model = make_model(version, seed=3)
    tokens = torch.randint(0, 300, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        seq, seq_state = model(tokens)
        state, steps = None, []
        for t in range(tokens.shape[1]):
            logits, state = model(tokens[:, t:t + 1], state)
            steps.append(logits)
    assert (seq - torch.cat(steps, 1)).abs().max() < 1e-4
    for a, b in zip(seq_state.tensors(), state.tensors()):
        assert (a - b).abs().max() < 1e-4


@pytest.mark.parametrize("version", VERSIONS)
def test_chunks_with_state_equal_one_pass(version):
    model = make_model(version, seed=4)
    tokens = torch.randint(0, 300, (1, 77), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole, whole_state = model(tokens)
        state, parts = None, []
        for lo, hi in ((0, 5), (5, 38), (38, 39), (39, 77)):  # odd sizes, not multiples of the chunk
            logits, state = model(tokens[:, lo:hi], state)
            parts.append(logits)
    assert (whole - torch.cat(parts, 1)).abs().max() < 1e-4
    for a, b in zip(whole_state.tensors(), state.tensors()):
        assert (a - b).abs().max() < 1e-4


def test_incoming_state_is_not_modified():
    model = make_model("7")
    tokens = torch.randint(0, 300, (1, 8))
    with torch.no_grad():
        _, state = model(tokens)
        before = [t.clone() for t in state.tensors()]
        model(tokens, state)
    assert all(torch.equal(a, b) for a, b in zip(before, state.tensors()))


def test_last_only_and_bf16():
    model = make_model("7")
    tokens = torch.randint(0, 300, (1, 20), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        full, _ = model(tokens)
        last, _ = model(tokens, last_only=True)
        half, _ = model.to(torch.bfloat16)(tokens)
    assert last.shape == (1, 1, 300) and (last[:, 0] - full[:, -1]).abs().max() < 1e-5
    assert half.dtype == torch.float32 and (half - full).abs().max() < 0.25  # bf16 weights: ~3 significant digits


def test_gradients_flow_through_sequence_mode():
    model = make_model("7").train()
    logits, _ = model(torch.randint(0, 300, (2, 33)))
    logits.logsumexp(-1).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no finite gradient for {missing}"
