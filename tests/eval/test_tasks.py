import json
import math

import pytest
import torch

import rwkvlite
from rwkvlite.errors import DataError
from rwkvlite.eval import fidelity, lambada, perplexity, piqa, read_lambada, read_piqa, read_text
from rwkvlite.tokenizer import ByteTokenizer

from ..conftest import make_model, shared

BYTES = ByteTokenizer()


def test_bits_per_byte_independent_of_chunking():
    model = rwkvlite.load_model(shared("models", "rwkvcpp-tiny", "tiny-rwkv-5v2-730K-FP32.bin"))
    text = read_text(shared("data", "wikitext-2-raw", "wiki.test.raw"))[:1500]
    one = perplexity(model, BYTES, text, ctx=10_000, progress=False)
    chunks = perplexity(model, BYTES, text, ctx=97, progress=False)
    steps = perplexity(model, BYTES, text, ctx=1, progress=False)
    assert abs(one["bits_per_byte"] - chunks["bits_per_byte"]) < 1e-4
    assert abs(one["bits_per_byte"] - steps["bits_per_byte"]) < 1e-4
    # independent computation: one forward pass, NLL of every byte after a leading 0
    tokens = torch.tensor([[0] + list(text.encode())])
    with torch.no_grad():
        logp = torch.log_softmax(model(tokens[:, :-1])[0][0].double(), -1)
    nll = -logp.gather(1, tokens[0, 1:, None]).mean().item()
    assert abs(one["ppl"] - math.exp(nll)) < 1e-4 * one["ppl"]
    assert abs(one["bits_per_byte"] - nll / math.log(2)) < 1e-4
    windows = perplexity(model, BYTES, text, ctx=97, stateful=False, progress=False)
    assert windows["bits_per_byte"] > one["bits_per_byte"]  # forgetting context costs


class BigramStub:
    """Constructed logits: after byte a, byte TABLE[a] gets logit 10, every other byte 0."""

    TABLE = {ord(a): ord(b) for a, b in ("c ", " d", "de", "ef", "gh", "hi")}

    def __call__(self, tokens, state=None):
        logits = torch.zeros(*tokens.shape, 256)
        for (b, t), tok in zip(torch.cartesian_prod(torch.arange(tokens.shape[0]), torch.arange(tokens.shape[1])),
                               tokens.flatten()):
            if int(tok) in self.TABLE:
                logits[b, t, self.TABLE[int(tok)]] = 10.0
        return logits, None


LOGP_HIT = 10 - math.log(math.exp(10) + 255)  # log p of the favoured byte
LOGP_MISS = -math.log(math.exp(10) + 255)


def test_lambada_on_constructed_logits():
    items = [("abc", "def"), ("abc", "dxf")]  # " d e f" all favoured; "x" after "d" is not
    result = lambada(BigramStub(), BYTES, items, progress=False)
    assert result["accuracy"] == 0.5
    first = 4 * LOGP_HIT
    second = 2 * LOGP_HIT + LOGP_MISS - math.log(256)  # ' '->d hit, d->x miss, nothing favoured after x
    assert result["ppl"] == pytest.approx(math.exp(-(first + second) / 2), rel=1e-5)


def test_piqa_on_constructed_logits():
    items = [("g", ("ghi", "xyz"), 0), ("g", ("xyz", "ghi"), 1), ("g", ("xyz", "ghi"), 0)]
    result = piqa(BigramStub(), BYTES, items, progress=False)
    assert result["accuracy_norm"] == pytest.approx(2 / 3) and result["items"] == 3


def test_fidelity_self_and_perturbed():
    base = make_model("7")
    text = "The quick brown fox jumps over the lazy dog. " * 8
    tok = ByteTokenizer()
    same = fidelity(base, base, tok, text, progress=False)
    assert same["kl_mean"] == pytest.approx(0, abs=1e-7) and same["top1_agreement"] == 1.0
    assert same["ppl_ratio"] == pytest.approx(1.0)
    kls, agreements = [], []
    for scale in (0.01, 0.05, 0.2):
        noisy = make_model("7")
        with torch.no_grad():
            for p in noisy.parameters():
                p.add_(scale * p.std() * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
        r = fidelity(base, noisy, tok, text, progress=False)
        kls.append(r["kl_mean"])
        agreements.append(r["top1_agreement"])
    assert kls[0] > 0 and kls == sorted(kls), kls
    assert agreements == sorted(agreements, reverse=True) and agreements[-1] < 1, agreements


def test_bad_data_files(tmp_path):
    with pytest.raises(DataError, match="no such data file"):
        read_text(tmp_path / "missing.txt")
    bad = tmp_path / "lambada.jsonl"
    bad.write_text('{"text": "a b"}\n')
    with pytest.raises(DataError, match="wrong checksum"):
        read_lambada(bad)
    bad.write_text('{"text": "a b"}\nnot json\n')
    with pytest.raises(DataError, match=":2: malformed JSON"):
        read_lambada(bad, verify=False)
    (tmp_path / "piqa.jsonl").write_text(json.dumps({"goal": "g", "sol1": "a", "sol2": "b"}) + "\n")
    (tmp_path / "valid-labels.lst").write_text("0\n1\n")
    with pytest.raises(DataError, match="expected 1 labels"):
        read_piqa(tmp_path / "piqa.jsonl")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_text(tmp_path / "latin1.txt")


def test_real_lambada_file_checksum():
    items = read_lambada(shared("data", "lambada_test.jsonl"))
    assert len(items) == 5153 and all(w and " " not in w for _, w in items[:50])
