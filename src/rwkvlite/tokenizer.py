"""Tokenizers RWKV models use: bytes (vocab 256), RWKV World, and the GPT-NeoX 20B BPE.

>>> tok = load_tokenizer("bytes")
>>> tok.encode("hi"), tok.decode([104, 105])
([104, 105], 'hi')
"""
from __future__ import annotations

import ast
import importlib.util
import os

from .errors import TokenizerError
from .utils.files import regular_file

WORLD_VOCAB = "rwkv_vocab_v20230424.txt"
MAX_FILE_BYTES = 64 << 20  # a vocabulary or tokenizer file larger than this is not one (the World vocab: 1 MB)
DOC_SEPARATOR = 0  # RWKV models are trained with token 0 between documents


class ByteTokenizer:
    """One token per UTF-8 byte (rwkv.cpp's tiny models)."""

    name = "bytes"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode_bytes(self, ids) -> bytes:
        return bytes(ids)

    def decode(self, ids) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


class WorldTokenizer:
    """RWKV World: greedy longest match over a fixed byte vocabulary (rwkv_vocab_v20230424).

    The vocabulary file has one token per line, `id literal length`, the literal being a
    Python str or bytes literal (read with ast.literal_eval, which runs no code). Greedy
    longest match is the rule BlinkDL's TRIE_TOKENIZER implements; a trie of dicts keeps
    encoding linear in the text length. Written here because no maintained package on
    PyPI exposes it without also pulling in an inference engine.
    """

    name = "world"

    def __init__(self, path: str):
        self.id_to_bytes: dict[int, bytes] = {}
        regular_file(path, TokenizerError, "tokenizer file", MAX_FILE_BYTES)
        lineno = 0
        try:
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    if line.strip():
                        idx, tok = self._entry(line)
                        self.id_to_bytes[idx] = tok
        except (OSError, UnicodeDecodeError, ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
            raise TokenizerError(f"{path}: not an RWKV World vocabulary (line {lineno}: {str(e)[:120]})") from None
        self.trie: dict = {}
        for idx, tok in self.id_to_bytes.items():
            node = self.trie
            for byte in tok:
                node = node.setdefault(byte, {})
            node[None] = idx  # key None marks the end of a token
        self.vocab_size = 65536  # World models pad the 65,529 tokens to 65,536 rows

    @staticmethod
    def _entry(line: str) -> tuple[int, bytes]:
        """One vocabulary line: `id literal length`, the literal a str or bytes literal."""
        idx, rest = line.split(" ", 1)
        literal, length = rest.rstrip("\n").rsplit(" ", 1)
        tok = ast.literal_eval(literal)
        if not isinstance(tok, (str, bytes)):
            raise ValueError(f"token {literal[:40]} is not a str or bytes literal")
        tok = tok.encode("utf-8") if isinstance(tok, str) else tok
        if len(tok) != int(length):
            raise ValueError(f"length {length} != {len(tok)}")
        if not 0 <= int(idx) < 65536:
            raise ValueError(f"token id {idx} outside 0..65535")
        return int(idx), tok

    def encode(self, text: str) -> list[int]:
        data, ids, pos = text.encode("utf-8"), [], 0
        while pos < len(data):
            node, best, best_end, i = self.trie, None, pos, pos
            while i < len(data) and data[i] in node:
                node = node[data[i]]
                i += 1
                if None in node:
                    best, best_end = node[None], i
            if best is None:
                raise TokenizerError(f"byte {data[pos]} at offset {pos} is not in the World vocabulary")
            ids.append(best)
            pos = best_end
        return ids

    def decode_bytes(self, ids) -> bytes:
        return b"".join(self.id_to_bytes.get(int(i), b"") for i in ids)

    def decode(self, ids) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


class HFTokenizer:
    """A Hugging Face `tokenizers` JSON file, e.g. 20B_tokenizer.json of the RWKV-4 Pile models."""

    name = "20b"

    def __init__(self, path: str):
        from tokenizers import Tokenizer

        regular_file(path, TokenizerError, "tokenizer file", MAX_FILE_BYTES)
        try:
            self.tok = Tokenizer.from_file(path)
        except Exception as e:  # tokenizers raises a bare Exception on a bad file
            raise TokenizerError(f"{path}: not a tokenizers JSON file ({str(e)[:120]})") from None
        # every id the tokenizer can emit, added tokens included: a model needs a row for each
        self.vocab_size = 1 + max(self.tok.get_vocab(with_added_tokens=True).values(), default=-1)
        # Byte-level BPE (GPT-2 / NeoX) spells each byte as one printable character; invert
        # that map so a token's exact bytes are known even when it holds half a character.
        printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
        extra = [b for b in range(256) if b not in printable]
        self.byte_of = {chr(b): b for b in printable} | {chr(256 + i): b for i, b in enumerate(extra)}

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def decode_bytes(self, ids) -> bytes:
        out = bytearray()
        for i in ids:
            piece = self.tok.id_to_token(int(i)) or ""
            if all(c in self.byte_of for c in piece):
                out.extend(self.byte_of[c] for c in piece)
            else:  # a special token such as <|endoftext|>
                out.extend(self.tok.decode([int(i)], skip_special_tokens=False).encode("utf-8"))
        return bytes(out)

    def decode(self, ids) -> str:
        return self.tok.decode(list(ids))


def _packaged_world_vocab() -> str | None:
    """The World vocabulary file as shipped inside an installed PyPI package, if any."""
    for package in ("rwkv", "rwkv_tokenizer"):
        spec = importlib.util.find_spec(package)
        if spec and spec.submodule_search_locations:
            for folder in spec.submodule_search_locations:
                candidate = os.path.join(folder, WORLD_VOCAB)
                if os.path.exists(candidate):
                    return candidate
    return None


def load_tokenizer(name_or_path: str):
    """'bytes', 'world' (from an installed package), or a path: a World vocab .txt or a tokenizers .json."""
    key = str(name_or_path).lower()
    if key in ("bytes", "byte"):
        return ByteTokenizer()
    if key == "world":
        path = _packaged_world_vocab()
        if path is None:
            raise TokenizerError(f"no {WORLD_VOCAB} in any installed package; pass the file's path instead "
                                 "(it ships with rwkv.cpp and the `rwkv` PyPI package)")
        return WorldTokenizer(path)
    if key in ("20b", "neox"):
        raise TokenizerError("the 20B tokenizer needs its file: pass the path of 20B_tokenizer.json")
    path = os.fspath(name_or_path)
    if not os.path.exists(path):
        raise TokenizerError(f"{path}: no such tokenizer (use 'bytes', 'world' or a file path)")
    return HFTokenizer(path) if path.endswith(".json") else WorldTokenizer(path)


def tokenizer_for(config, hint: str | None = None):
    """The tokenizer a model's vocabulary implies, unless `hint` names one."""
    if hint:
        tok = load_tokenizer(hint)
        if tok.vocab_size > config.vocab_size:  # an id past the embedding would read another array's bytes
            raise TokenizerError(f"tokenizer {hint} has {tok.vocab_size} tokens but the model only "
                                 f"{config.vocab_size}: wrong tokenizer for this model")
        return tok
    if config.vocab_size == 256:
        return ByteTokenizer()
    if config.vocab_size == 65536:
        return load_tokenizer("world")
    raise TokenizerError(f"cannot guess the tokenizer of a {config.vocab_size}-token vocabulary; "
                         "pass --tokenizer (a World vocab .txt or a tokenizers .json)")


class Utf8Pieces:
    """Token bytes in, text out: a piece is released once its bytes are valid UTF-8, so
    streaming never splits a character (bytes that never become valid are replaced)."""

    def __init__(self):
        self.pending = b""

    def feed(self, data: bytes) -> str | None:
        self.pending += data
        try:
            text = self.pending.decode("utf-8")
        except UnicodeDecodeError:
            if len(self.pending) <= 8:
                return None
            text = self.pending.decode("utf-8", errors="replace")  # not a split character
        self.pending = b""
        return text

    def flush(self) -> str | None:
        text, self.pending = (self.pending.decode("utf-8", errors="replace") if self.pending else None), b""
        return text
