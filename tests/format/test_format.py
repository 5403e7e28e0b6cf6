import ctypes
import json
import mmap
import os
import struct
import sys

import numpy as np
import pytest
import torch

from rwkvlite import format as compressed
from rwkvlite.format.schema import model_shapes
from rwkvlite.errors import CheckpointError
from rwkvlite.format import bits as bitpack
from rwkvlite.format.encodings import decode, encode_dense, encode_sq, encode_vq
from rwkvlite.loaders import load_model
from rwkvlite.passes.calibrate import self_generated_tokens
from rwkvlite.passes.quantize import QuantConfig, quantize_model

from ..conftest import make_model


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 7, 8, 12])
def test_bit_packing_round_trips(bits):
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 2**bits, size=(5, 37))
    packed = bitpack.pack(codes, bits)
    assert packed.dtype == np.uint8 and packed.shape == (5, (37 * bits + 7) // 8)
    assert np.array_equal(bitpack.unpack(packed, bits, 37), codes)


def test_three_bit_layout_is_little_endian():
    packed = bitpack.pack(np.array([[5, 1, 7, 0, 2, 6, 3, 4]]), 3)
    stream = sum(int(b) << (8 * i) for i, b in enumerate(packed[0]))
    assert [(stream >> (3 * j)) & 7 for j in range(8)] == [5, 1, 7, 0, 2, 6, 3, 4]


def test_pack_refuses_codes_out_of_range():
    with pytest.raises(ValueError, match="out of range"):
        bitpack.pack(np.array([[8]]), 3)


def test_encodings_decode_to_their_values():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 10)).astype(np.float32)
    for dtype, tol in (("float32", 0), ("float16", 1e-3), ("bfloat16", 1e-2)):
        entry, arrays = encode_dense(w, dtype)
        assert np.allclose(decode(entry, arrays), w, atol=tol, rtol=tol) and entry["shape"] == [6, 10]
    codes, scale, zero = rng.integers(0, 8, (6, 10)), rng.random((6, 2)).astype(np.float16), rng.integers(0, 8, (6, 2))
    perm = rng.permutation(10)
    entry, arrays = encode_sq(codes, scale, zero, 3, 5, [6, 10], perm)
    expected = (codes - np.repeat(zero, 5, 1)) * np.repeat(scale.astype(np.float64), 5, 1)
    unpermuted = np.empty_like(expected)
    unpermuted[:, perm] = expected
    assert np.array_equal(decode(entry, arrays), unpermuted.astype(np.float32))
    book = rng.integers(-127, 128, (2, 64, 2)).astype(np.int8)
    idx = rng.integers(0, 64, (6, 5))
    entry, arrays = encode_vq(idx, book, np.array([0.5, 0.25], np.float16), 6, 2, 6, [6, 10])
    out = decode(entry, arrays)
    assert np.array_equal(out[:, 0:2], book[0][idx[:, 0]] * 0.5)  # columns 0-5: codebook 0
    assert np.array_equal(out[:, 6:8], book[1][idx[:, 3]] * 0.25)  # columns 6-9: codebook 1


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """A small RWKV-7, quantised by the hybrid (some SQ, some VQ) with mix codebooks, saved."""
    model = make_model("7")
    tokens = self_generated_tokens(model, n_seq=4, seq_len=32)
    cfg = QuantConfig(method="rwkvquant", bits=3, group_size=32, vq_group=32, sq_share=0.5, mix_bits=3,
                      act_order=True)
    report, encoded = quantize_model(model, tokens, cfg)
    path = tmp_path_factory.mktemp("q") / "m.rwkvlite"
    tensors = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    compressed.save(path, model.config.to_dict(), tensors, encoded, dense_dtype="float32", report=report)
    return model, report, encoded, path


def test_saved_file_loads_back_identically(quantized):
    model, report, encoded, path = quantized
    assert {e[0]["enc"] for e in encoded.values()} == {"sq", "vq"}
    loaded = load_model(path)
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    tokens = torch.randint(0, 300, (1, 20), generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded(tokens)[0], model(tokens)[0])


def test_reported_bits_match_the_file(quantized):
    model, report, encoded, path = quantized
    sizes = compressed.size_report(path)
    assert sizes["file_bytes"] == os.path.getsize(path)
    manifest, arrays = compressed.container.read(path)
    data = sum(a.nbytes for a in arrays.values())
    assert sizes["header_bytes"] == os.path.getsize(path) - data > 0
    q_bits = sum(8 * manifest["tensors"][r["name"]]["bytes"] for r in report["layers"])
    q_weights = sum(r["shape"][0] * r["shape"][1] for r in report["layers"])
    assert report["quantized_bits_per_weight"] == pytest.approx(q_bits / q_weights)
    # codes alone are exactly 3 bits per weight; metadata (scales, zeros, codebooks) comes on top
    assert 3.0 < report["quantized_bits_per_weight"] < 4.0
    assert sizes["bits_per_weight"] == pytest.approx(8 * os.path.getsize(path) / sizes["weights"])


def _damaged(path, tmp_path, edit) -> str:
    data = bytearray(open(path, "rb").read())
    edit(data)
    out = tmp_path / "damaged.rwkvlite"
    out.write_bytes(bytes(data))
    return str(out)


def _header_length(path) -> int:
    return struct.unpack("<Q", open(path, "rb").read(8))[0]


def test_damaged_files_are_refused(quantized, tmp_path):
    path = quantized[3]
    n = _header_length(path)

    def flip_data(d):
        d[8 + n + (len(d) - 8 - n) // 2] ^= 0x10

    def flip_manifest(d):
        i = d.index(b"bits_per_weight", 8)
        d[i + 2] ^= 0x01

    for edit, message in ((flip_data, "data checksum"), (flip_manifest, "manifest checksum"),
                          (lambda d: d.__delitem__(slice(len(d) - 100, None)), "truncated")):
        with pytest.raises(CheckpointError, match=message):
            load_model(_damaged(path, tmp_path, edit))


def test_unknown_version_is_refused(quantized, tmp_path):
    path = quantized[3]
    n = _header_length(path)
    raw = open(path, "rb").read()
    header = json.loads(raw[8:8 + n])
    header["__metadata__"]["format_version"] = "99"
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    out = tmp_path / "future.rwkvlite"
    out.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    with pytest.raises(CheckpointError, match="version '99' is not supported"):
        load_model(out)


def test_written_files_get_the_usual_permissions(quantized):
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(quantized[3]).st_mode & 0o777 == 0o666 & ~umask


def _cached_pages(path: str, start: int, nbytes: int) -> tuple[int, int]:
    """(pages in the page cache, pages) of the whole pages within the file's bytes [start,
    start + nbytes) (mincore on a map of the file, which maps no page into this process)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    first, end = -(-start // 4096), (start + nbytes) // 4096
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
        view = np.frombuffer(mm, np.uint8)
        vec = (ctypes.c_ubyte * (end - first))()
        assert libc.mincore(ctypes.c_void_p(view.ctypes.data + 4096 * first), 4096 * (end - first), vec) == 0
        del view
    return sum(v & 1 for v in vec), end - first


@pytest.mark.skipif(not hasattr(os, "posix_fadvise") or not sys.platform.startswith("linux"), reason="Linux only")
def test_verification_keeps_only_the_ranges_asked_for_in_the_page_cache(tmp_path):
    """read() drops the pages its checksum read behind it, except those of the tensors
    keep_cached names (the runtime's embedding, read with os.pread); crc32_of_file drops the
    parts of each block outside the kept byte ranges."""
    outside = compressed.container._outside
    assert outside(0, 100, []) == [(0, 100)]
    assert outside(0, 100, [(10, 20), (50, 60)]) == [(0, 10), (20, 50), (60, 100)]
    assert outside(0, 100, [(0, 100)]) == []
    assert outside(30, 40, [(0, 35), (38, 90)]) == [(35, 38)]
    assert outside(30, 40, [(40, 50), (0, 30)]) == [(30, 40)]
    path = str(tmp_path / "t.rwkvlite")
    # a one-layer RWKV-4 whose embedding and head are 4 MiB each (16384 x 64 float32)
    config = {"version": "4", "n_layer": 1, "n_embd": 64, "vocab_size": 16384, "head_size": 1, "dim_att": 64,
              "dim_ffn": 256}
    tensors = {n: np.ones(s, np.float32) for n, s in model_shapes(config).items()}
    compressed.save(path, config, tensors, dense_dtype="float32")
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)  # clean pages, which fadvise can drop
    os.close(fd)
    at = compressed.container.array_offsets(path)
    compressed.container.read(path, keep_cached=["head.weight"])
    cached, pages = _cached_pages(path, at["head.weight:values"], 4 * 2**20)
    assert pages >= 1023 and cached == pages
    # arrays straddle the 4 MiB checksum blocks: at most the kernel's read-ahead window (32 pages)
    # past a block's end may still arrive after that block is dropped
    assert _cached_pages(path, at["emb.weight:values"], 4 * 2**20)[0] <= 32
    compressed.container.read(path)
    assert _cached_pages(path, at["head.weight:values"], 4 * 2**20)[0] <= 32
