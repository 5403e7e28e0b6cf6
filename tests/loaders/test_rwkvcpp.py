"""rwkv.cpp's real tiny models: expected logits, and exact dequantisation of Q5 files."""
import numpy as np
import pytest
import torch

from rwkvlite import load_model
from rwkvlite.loaders.rwkvcpp import read_rwkvcpp

from ..conftest import shared

PROMPT = list(b'"in')


def logits_after_prompt(path):
    with torch.no_grad():
        logits, _ = load_model(path)(torch.tensor([PROMPT]))
    return logits[0, -1]


def expected(tag):
    return torch.from_numpy(np.fromfile(shared("models", "rwkvcpp-tiny", f"expected-logits-{tag}.bin"), np.float32))


def kl(ref, got):
    return torch.sum(torch.softmax(ref, -1) * (torch.log_softmax(ref, -1) - torch.log_softmax(got, -1))).item()


@pytest.mark.parametrize("tag", ["4v0-660K", "5v2-730K", "7v0-834K"])
def test_fp32_matches_expected_logits(tag):
    got = logits_after_prompt(shared("models", "rwkvcpp-tiny", f"tiny-rwkv-{tag}-FP32.bin"))
    err = (got - expected(tag)).abs().max().item()
    assert err <= 1e-4, f"{tag} FP32: max |logit - rwkv.cpp| = {err:.2e} > 1e-4"


# FP16 rounds each matrix weight to 11 significant bits (relative error <= 4.9e-4); the
# logits of these models move by at most ~3e-3 (measured), so 1e-2 leaves room but would
# catch a wrong layout. Q5 keeps 5 bits per weight in blocks of 32: logits move by up to
# ~0.5 on 5v2 (measured), so we bound the distribution instead: KL <= 1e-2 and same top-1.
@pytest.mark.parametrize("tag,kind", [("4v0-660K", "FP16"), ("5v2-730K", "FP16"), ("7v0-834K", "FP16")])
def test_fp16_close(tag, kind):
    got = logits_after_prompt(shared("models", "rwkvcpp-tiny", f"tiny-rwkv-{tag}-{kind}.bin"))
    err = (got - expected(tag)).abs().max().item()
    assert err <= 1e-2, f"{tag} {kind}: max |logit - rwkv.cpp FP32| = {err:.2e} > 1e-2"


@pytest.mark.parametrize("tag,kind", [("4v0-660K", "Q5_1"), ("5v2-730K", "Q5_0"), ("5v2-730K", "Q5_1"),
                                      ("7v0-834K", "Q5_1"), ("6v0-3m", "Q5_0"), ("6v0-3m", "Q5_1")])
def test_q5_close(tag, kind):
    ref = expected(tag)
    got = logits_after_prompt(shared("models", "rwkvcpp-tiny", f"tiny-rwkv-{tag}-{kind}.bin"))
    assert kl(ref, got) <= 1e-2, f"{tag} {kind}: KL from rwkv.cpp FP32 logits {kl(ref, got):.2e} > 1e-2"
    assert got.argmax() == ref.argmax()


def ggml_quantize(x: np.ndarray, kind: str) -> np.ndarray:
    """ggml's reference Q5_0 / Q5_1 quantise-then-dequantise, written from its definition."""
    b = x.reshape(-1, 32).astype(np.float32)
    f16 = lambda a: a.astype(np.float16).astype(np.float32)  # noqa: E731
    if kind == "Q5_1":
        lo, hi = b.min(1, keepdims=True), b.max(1, keepdims=True)
        d = (hi - lo) / 31
        q = np.minimum(31, np.floor((b - lo) * np.where(d != 0, 1 / d, 0) + 0.5))
        return (q * f16(d) + f16(lo)).ravel()
    peak = b[np.arange(len(b)), np.abs(b).argmax(1)][:, None]  # signed value of largest magnitude
    d = peak / -16
    q = np.minimum(31, np.floor(b * np.where(d != 0, 1 / d, 0) + 16.5))
    return ((q - 16) * f16(d)).ravel()


@pytest.mark.parametrize("kind", ["Q5_0", "Q5_1"])
def test_q5_dequantisation_is_exact(kind):
    fp32, _ = read_rwkvcpp(shared("models", "rwkvcpp-tiny", "tiny-rwkv-5v2-730K-FP32.bin"))
    quant, _ = read_rwkvcpp(shared("models", "rwkvcpp-tiny", f"tiny-rwkv-5v2-730K-{kind}.bin"))
    for name in ("blocks.0.att.key.weight", "blocks.5.ffn.value.weight", "blocks.11.att.gate.weight"):
        want = ggml_quantize(fp32[name].numpy(), kind)
        got = quant[name].numpy().ravel()
        assert np.array_equal(want, got), f"{kind} {name}: dequantised values differ from ggml's rule"
        assert not np.array_equal(got, fp32[name].numpy().ravel()), "tensor was not quantised: test is vacuous"


def write_rwkvcpp(path, tensors: dict, kinds: dict):
    """A minimal rwkv.cpp file (version 101): kinds maps name -> (type id, packed bytes)."""
    import struct

    with open(path, "wb") as f:
        f.write(struct.pack("<6i", 0x67676D66, 101, 256, 64, 12, 0))
        for name, t in tensors.items():
            type_id, data = kinds.get(name, (0, t.numpy().astype("<f4").tobytes()))
            f.write(struct.pack("<3i", t.dim(), len(name), type_id))
            f.write(struct.pack(f"<{t.dim()}i", *reversed(t.shape)))
            f.write(name.encode() + data)


def pack_ggml(x: np.ndarray, kind: str):
    """ggml Q4_0 / Q4_1 / Q8_0 blocks of 32 and the values they decode to, from ggml's definitions."""
    b = x.reshape(-1, 32).astype(np.float32)
    f16 = lambda a: a.astype("<f2")  # noqa: E731
    if kind == "Q8_0":
        d = np.abs(b).max(1, keepdims=True) / 127
        q = np.round(b / np.where(d == 0, 1, d)).astype(np.int8)
        data = np.concatenate([f16(d).view(np.uint8), q.view(np.uint8)], 1)
        return data.tobytes(), (q * f16(d).astype(np.float32)).ravel()
    if kind == "Q4_0":
        peak = b[np.arange(len(b)), np.abs(b).argmax(1)][:, None]
        d = peak / -8
        q = np.minimum(15, np.floor(b * np.where(d != 0, 1 / d, 0) + 8.5)).astype(np.uint8)
        head, values = f16(d).view(np.uint8), (q.astype(np.float32) - 8) * f16(d).astype(np.float32)
    else:  # Q4_1
        lo, hi = b.min(1, keepdims=True), b.max(1, keepdims=True)
        d = (hi - lo) / 15
        q = np.minimum(15, np.floor((b - lo) * np.where(d != 0, 1 / d, 0) + 0.5)).astype(np.uint8)
        head = np.concatenate([f16(d).view(np.uint8), f16(lo).view(np.uint8)], 1)
        values = q * f16(d).astype(np.float32) + f16(lo).astype(np.float32)
    nibbles = q[:, :16] | (q[:, 16:] << 4)  # byte j: value j low, value j + 16 high
    return np.concatenate([head, nibbles], 1).tobytes(), values.ravel()


@pytest.mark.parametrize("kind,type_id", [("Q4_0", 2), ("Q4_1", 3), ("Q8_0", 9)])
def test_q4_q8_layouts(kind, type_id, tmp_path):
    fp32, _ = read_rwkvcpp(shared("models", "rwkvcpp-tiny", "tiny-rwkv-5v2-730K-FP32.bin"))
    names = [n for n, t in fp32.items() if t.dim() == 2 and n.startswith("blocks.")]
    packed = {n: pack_ggml(fp32[n].numpy(), kind) for n in names}
    write_rwkvcpp(tmp_path / "m.bin", fp32, {n: (type_id, data) for n, (data, _) in packed.items()})
    got, _ = read_rwkvcpp(str(tmp_path / "m.bin"))
    for n in names:
        assert np.array_equal(got[n].numpy().ravel(), packed[n][1]), f"{kind} {n}"
    assert logits_after_prompt(str(tmp_path / "m.bin")).argmax() == expected("5v2-730K").argmax()
