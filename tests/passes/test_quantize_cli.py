import json

import pytest

from rwkvlite.loaders import load_model

from ..conftest import run_cli, shared


def one_line_error(result, fragment):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def tiny():
    return shared("models", "rwkvcpp-tiny", "tiny-rwkv-5v2-730K-FP32.bin")


def test_quantize_cli_writes_a_file_that_evaluates(tiny, tmp_path):
    out, report = tmp_path / "q.rwkvlite", tmp_path / "q.json"
    r = run_cli("quantize", tiny, "-o", out, "--method", "rwkvquant", "--bits", "3", "--calib-seqs", "4",
                "--calib-len", "64", "--report", report)
    assert r.returncode == 0, r.stderr
    assert "codebook-1d" in r.stdout and "bits/weight" in r.stdout
    data = json.loads(report.read_text())
    assert data["file"]["file_bytes"] == out.stat().st_size and 3 < data["quantized_bits_per_weight"] < 3.6
    assert load_model(out).config.version == "5.2"
    r = run_cli("eval", out, "--tasks", "fidelity", "--reference", tiny, "--limit", "300")
    assert r.returncode == 0, r.stderr
    assert "top1" in r.stdout


def test_quantize_bad_input(tiny, tmp_path):
    one_line_error(run_cli("quantize", tiny, "-o", tmp_path / "x", "--bits", "9"), "bits must be 2 to 8")
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    one_line_error(run_cli("quantize", tiny, "-o", tmp_path / "x", "--calibration", empty), "empty text file")
    binary = tmp_path / "latin1.txt"
    binary.write_bytes("caf\xe9 na\xefve".encode("latin-1"))
    one_line_error(run_cli("quantize", tiny, "-o", tmp_path / "x", "--calibration", binary), "not UTF-8")
    notes = tmp_path / "notes.bin"
    notes.write_text("these are not weights")
    one_line_error(run_cli("quantize", notes, "-o", tmp_path / "x"), "not a checkpoint")
    assert not (tmp_path / "x").exists()
