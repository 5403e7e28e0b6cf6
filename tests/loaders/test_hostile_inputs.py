"""Inputs other than compressed files that used to hang, crash or mislead: each refused in one line
with exit status 2, or read correctly."""
import os
import struct

import pytest
from safetensors.torch import save_file

from rwkvlite.loaders import load_state_dict, save_model

from ..conftest import make_model, run_cli, shared
from .test_bad_input import assert_one_line_error

TINY5 = ("models", "rwkvcpp-tiny", "tiny-rwkv-5v2-730K-FP32.bin")


def rwkvcpp_record(name: str, shape: tuple, payload: bytes) -> bytes:
    """One FP32 tensor record of an rwkv.cpp file (dims in ggml's reversed order)."""
    raw = name.encode()
    dims = tuple(reversed(shape))
    return struct.pack(f"<3i{len(dims)}i", len(dims), len(raw), 0, *dims) + raw + payload


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.pth"
    os.mkfifo(fifo)
    assert_one_line_error(run_cli("inspect", fifo), "not a regular file")
    assert_one_line_error(run_cli("run", fifo, "--prompt", "a"), "not a regular file")


def test_a_stray_block_index_is_refused(tmp_path):
    """n_layer comes from the block indices: a stray blocks.999999999 is refused, not built."""
    data = open(shared(*TINY5), "rb").read()
    extra = rwkvcpp_record("blocks.999999999.ln1.weight", (4,), b"\0" * 16)
    (tmp_path / "stray.bin").write_bytes(data + extra)
    assert_one_line_error(run_cli("inspect", tmp_path / "stray.bin"), "999999999")


def test_a_duplicate_tensor_name_is_refused(tmp_path):
    data = open(shared(*TINY5), "rb").read()
    dup = rwkvcpp_record("ln_out.bias", (struct.unpack_from("<6i", data)[3],), b"\0" * 4 * 64)
    (tmp_path / "dup.bin").write_bytes(data + dup)
    assert_one_line_error(run_cli("inspect", tmp_path / "dup.bin"), "twice")


def test_a_duplicate_safetensors_name_is_refused(tmp_path):
    save_model(make_model("7"), tmp_path / "m.safetensors")
    blob = (tmp_path / "m.safetensors").read_bytes()
    n = struct.unpack("<Q", blob[:8])[0]
    head = blob[8:8 + n].decode()
    start = head.index('"ln_out.bias"')
    end = head.index("}", start) + 1
    dup = (head[:end] + "," + head[start:end] + head[end:]).encode()
    (tmp_path / "dup.safetensors").write_bytes(struct.pack("<Q", len(dup)) + dup + blob[8 + n:])
    result = run_cli("inspect", tmp_path / "dup.safetensors")
    assert_one_line_error(result, "dup.safetensors")


def test_a_safetensors_header_length_ending_in_0x80_is_not_a_pickle(tmp_path):
    """The low byte of the header length was taken for pickle's PROTO opcode; the file's config
    (here RWKV-5's ln_x_eps, which only the config records) must survive."""
    model = make_model("5.2")
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    blob = path.read_bytes()
    n = struct.unpack("<Q", blob[:8])[0]
    pad = (0x80 - n) % 256  # JSON allows trailing spaces: the header ends in them
    head = blob[8:8 + n] + b" " * pad
    assert len(head) % 256 == 0x80
    path.write_bytes(struct.pack("<Q", len(head)) + head + blob[8 + n:])
    config, _, meta = load_state_dict(path)
    assert meta["format"] == "safetensors" and config.ln_x_eps == model.config.ln_x_eps


@pytest.fixture(scope="module")
def byte_model(tmp_path_factory):
    """A compressed file of a 300-token model, for the tokenizer checks."""
    from rwkvlite.recipes import compress

    folder = tmp_path_factory.mktemp("tok")
    save_model(make_model("7"), folder / "m.safetensors")
    compress(folder / "m.safetensors", folder / "m.rwkvlite", [], progress=False)
    return folder / "m.rwkvlite"


def test_a_vocabulary_line_that_is_not_a_string_is_refused(byte_model, tmp_path):
    (tmp_path / "vocab.txt").write_text("1 123 3\n")
    assert_one_line_error(run_cli("run", byte_model, "--prompt", "a", "--tokenizer", tmp_path / "vocab.txt"),
                          "not an RWKV World vocabulary")


def test_a_tokenizer_with_ids_past_the_vocabulary_is_refused(byte_model, tmp_path):
    from tokenizers import Tokenizer, models

    vocab = {"[UNK]": 0, **{chr(97 + i): 400 + i for i in range(26)}}  # ids past the model's 300 rows
    Tokenizer(models.WordLevel(vocab, unk_token="[UNK]")).save(str(tmp_path / "tok.json"))
    assert_one_line_error(run_cli("run", byte_model, "--prompt", "a", "--tokenizer", tmp_path / "tok.json"),
                          "tokens but the model only")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_a_device_as_tokenizer_is_refused(byte_model):
    assert_one_line_error(run_cli("run", byte_model, "--prompt", "a", "--tokenizer", "/dev/zero"),
                          "not a regular")


def test_a_safetensors_file_of_plain_tensors_still_loads(tmp_path):
    """The sniffing order keeps plain safetensors checkpoints (no config in the header) readable."""
    model = make_model("4")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "plain.safetensors")
    config, sd, meta = load_state_dict(tmp_path / "plain.safetensors")
    assert meta["format"] == "safetensors" and config.n_layer == model.config.n_layer
