import pytest

from rwkvlite import TokenizerError, load_tokenizer

from .conftest import shared

TEXT = "Hello, world! The quick brown fox.\n  Indented 123 中文 😀 ünïcödé \t end"


def test_bytes_roundtrip():
    tok = load_tokenizer("bytes")
    assert tok.decode(tok.encode(TEXT)) == TEXT and len(tok.encode("é")) == 2


def test_world_matches_blinkdl_trie_tokenizer():
    rwkv_tokenizer = pytest.importorskip("rwkv.rwkv_tokenizer")
    path = shared("tokenizers", "rwkv_vocab_v20230424.txt")
    ours, ref = load_tokenizer(path), rwkv_tokenizer.TRIE_TOKENIZER(path)
    text = open(shared("data", "wikitext-2-raw", "wiki.test.raw"), encoding="utf-8").read()[:50_000] + TEXT
    ids = ours.encode(text)
    assert ids == ref.encode(text)
    assert ours.decode(ids) == text and len(ids) < len(text) / 2


def test_20b_tokenizer():
    tok = load_tokenizer(shared("tokenizers", "20B_tokenizer.json"))
    assert tok.vocab_size == 50277 and tok.decode(tok.encode(TEXT)) == TEXT
    ids = tok.encode(TEXT)
    assert b"".join(tok.decode_bytes([i]) for i in ids) == TEXT.encode("utf-8")  # exact bytes per token


def test_bad_tokenizer(tmp_path):
    (tmp_path / "bad.txt").write_text("this is not a vocabulary\n")
    with pytest.raises(TokenizerError):
        load_tokenizer(tmp_path / "bad.txt")
    with pytest.raises(TokenizerError):
        load_tokenizer(tmp_path / "missing.json")
