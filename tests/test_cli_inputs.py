"""Command-line inputs that used to end in tracebacks: refused in one line with exit status 2, or
handled as documented."""
import numpy as np
import pytest

from rwkvlite.errors import RWKVLiteError
from rwkvlite.loaders import save_model
from rwkvlite.recipes import compress

from .conftest import make_model, run_cli
from .loaders.test_bad_input import assert_one_line_error


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A checkpoint and its compressed file (300-token random RWKV-7)."""
    folder = tmp_path_factory.mktemp("cli")
    save_model(make_model("7"), folder / "m.safetensors")
    compress(folder / "m.safetensors", folder / "m.rwkvlite", [], progress=False)
    return folder / "m.safetensors", folder / "m.rwkvlite"


@pytest.mark.parametrize("option,value", [("--temperature", "nan"), ("--top-p", "nan"), ("--temperature", "-1"),
                                          ("--top-p", "1.5"), ("--temperature", "inf"), ("--seed", str(2**70)),
                                          ("--seed", "-1")])
def test_sampling_options_out_of_range_are_refused(small, option, value):
    _, lean = small
    result = run_cli("run", lean, "--prompt", "a", "--tokenizer", "bytes", option, value)
    assert_one_line_error(result, option.lstrip("-").split("-")[0])


def test_generate_accepts_the_largest_seed(small):
    ckpt, _ = small
    result = run_cli("generate", ckpt, "--prompt", "a", "--tokenizer", "bytes", "--max-tokens", "3",
                     "--seed", str(2**64 - 1))
    assert result.returncode == 0, result.stderr


def test_prompt_bytes_that_are_not_utf8_become_replacement_characters(small):
    import os
    import subprocess
    import sys

    _, lean = small
    argv = [os.fsencode(sys.executable), b"-m", b"rwkvlite.cli", b"run", os.fsencode(lean), b"--prompt", b"\xff\xfeab",
            b"--tokenizer", b"bytes", b"--max-tokens", b"2", b"--seed", b"0"]
    result = subprocess.run(argv, capture_output=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("\ufffd\ufffdab".encode())


def test_an_output_folder_is_refused_before_any_work(small, tmp_path):
    ckpt, _ = small
    (tmp_path / "out").mkdir()
    for command in ("compress", "quantize"):
        result = run_cli(command, ckpt, "-o", tmp_path / "out", "--calibration", "self")
        assert_one_line_error(result, "is a folder")


def test_the_api_refuses_an_output_folder_before_loading(tmp_path):
    from rwkvlite.compress import compress

    (tmp_path / "out").mkdir()
    with pytest.raises(RWKVLiteError, match="is a folder"):
        compress(tmp_path / "no-such-model.pth", tmp_path / "out", "int8")  # the model is never read


def test_the_runtime_refuses_token_ids_outside_the_vocabulary(small):
    from rwkvlite.runtime import Runtime

    rt = Runtime(small[1])
    for bad in (-1, rt.vocab_size, 10**9):
        with pytest.raises(RWKVLiteError, match="outside"):
            rt.feed([1, bad])
    logits, _ = rt.feed([1, rt.vocab_size - 1])
    assert np.isfinite(logits).all()
