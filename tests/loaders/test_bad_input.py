"""Bad input: one line naming the problem, exit status 2, no traceback, and no pickle code runs."""
import os

import pytest
import torch

from ..conftest import make_model, shared, run_cli



def assert_one_line_error(result, *words):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for w in words:
        assert w in lines[0], lines[0]


class RunsCode:
    """Unpickling this object would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_missing_file(tmp_path):
    assert_one_line_error(run_cli("inspect", tmp_path / "nope.pth"), "no such file")


def test_random_bytes(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"\x17" + os.urandom(4095))  # no known magic by construction
    assert_one_line_error(run_cli("inspect", tmp_path / "junk.pth"), "junk.pth")


def test_truncated_pth(tmp_path):
    torch.save(make_model("7").state_dict(), tmp_path / "m.pth")
    data = (tmp_path / "m.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    assert_one_line_error(run_cli("inspect", tmp_path / "cut.pth"), "truncated or corrupt")


def test_truncated_rwkvcpp(tmp_path):
    data = open(shared("models", "rwkvcpp-tiny", "tiny-rwkv-5v2-730K-Q5_1.bin"), "rb").read()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) - 1000])
    assert_one_line_error(run_cli("inspect", tmp_path / "cut.bin"), "truncated")


def test_truncated_safetensors(tmp_path):
    from rwkvlite import save_model

    save_model(make_model("5.2"), tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-100])
    assert_one_line_error(run_cli("inspect", tmp_path / "cut.safetensors"), "truncated or corrupt")


def test_unknown_architecture(tmp_path):
    torch.save({"transformer.h.0.attn.c_attn.weight": torch.zeros(4, 4)}, tmp_path / "gpt.pth")
    assert_one_line_error(run_cli("inspect", tmp_path / "gpt.pth"), "not an RWKV state dict")


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"emb.weight": torch.zeros(2, 2), "evil": RunsCode(str(marker))}, tmp_path / "evil.pth")
    result = run_cli("inspect", tmp_path / "evil.pth")
    assert_one_line_error(result, "refused")
    assert not marker.exists(), "the pickle's code ran"


def test_api_raises_named_error(tmp_path):
    from rwkvlite import CheckpointError, load_model

    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "nope.pth")


def test_wrong_shapes_are_refused_not_reshaped(tmp_path):
    sd = make_model("7").state_dict()
    sd["blocks.0.ffn.value.weight"] = sd["blocks.0.ffn.value.weight"].reshape(256, 64)  # same size, wrong shape
    torch.save(sd, tmp_path / "bad.pth")
    assert_one_line_error(run_cli("inspect", tmp_path / "bad.pth"), "ffn.value.weight")


def test_inconsistent_tensors_give_one_line(tmp_path):
    sd = make_model("7").state_dict()
    del sd["blocks.0.ffn.key.weight"]
    sd["emb.weight"] = sd["emb.weight"].flatten()
    torch.save(sd, tmp_path / "bad.pth")
    assert_one_line_error(run_cli("inspect", tmp_path / "bad.pth"), "bad.pth")
