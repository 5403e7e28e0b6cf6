"""The models and text the fast mode's contract (rwkvlite/runtime/contract.py) is measured on,
for test_fast_contract.py and bench/fast_contract.py: rwkv.cpp's four real tiny models (byte
vocabulary) and 0.1B-shaped random models (width 768, heads of 64, 4x FFN, 3.5x for RWKV-6, the
World vocabulary of 65,536; two layers), each compressed by the recipes files.py's case lists
give its generation, and the first 512 tokens of WikiText-2's raw test text."""
from __future__ import annotations

from pathlib import Path

from rwkvlite.runtime.contract import MEAN_KL, agreement
from rwkvlite.tokenizer import ByteTokenizer, WorldTokenizer

from .files import CASES, CASES4, OTHER, compressed

TOKENS = 512
TINY = {"7": "tiny-rwkv-7v0-834K-FP32.bin", "6": "tiny-rwkv-6v0-3m-Q5_1.bin",  # 6v0: no FP32 copy
        "5.2": "tiny-rwkv-5v2-730K-FP32.bin", "4": "tiny-rwkv-4v0-660K-FP32.bin"}
CALIBRATION = ("data", "wikitext-2", "valid.txt")  # the shared README's calibration text
TEXT = ("data", "wikitext-2-raw", "wiki.test.raw")  # and its evaluation text
WORLD = ("tokenizers", "rwkv_vocab_v20230424.txt")
# A random model's next-token distribution is nearly flat over 65,536 tokens (logits about
# N(0, 1): the top token has p ~ 5e-4) and its two most likely tokens are often within 0.01
# nats. Rounding that the contract allows flips such a pair: KL <= MEAN_KL lets each logit move
# by about sqrt(2 * MEAN_KL), so the difference of two by about 2 * sqrt(MEAN_KL). Below that gap
# a pair is a tie (contract.py's margin), and top-1 is counted on the other tokens. The real
# models' top-1 counts every token (margin 0).
TIE = 2 * MEAN_KL ** 0.5
DECIDED = 0.75  # the share of a random model's tokens that must be decided (not ties) for its top-1 to count


def recipes(version: str) -> list[str]:
    """The recipes files.py's case lists give a generation (RWKV-7: OTHER's too)."""
    return [r for v, r in CASES + CASES4 if v == version] + (list(OTHER) if version == "7" else [])


MODELS = ("tiny", "0.1b")
VERSIONS = {"tiny": list(TINY), "0.1b": list(dict.fromkeys(v for v, _ in CASES + CASES4))}
ALL = [(model, v, r) for model in MODELS for v in VERSIONS[model] for r in recipes(v)]


def wide_config(version: str):
    """A 0.1B model's shapes (RWKV 0.1B World: 768 wide, heads of 64) with two layers."""
    from rwkvlite.model import RWKVConfig

    return RWKVConfig(version, n_layer=2, n_embd=768, vocab_size=65536, head_size=64)


class Sources:
    """The contract's models, compressed files and text, made once under `root`.
    shared(*parts): the path of a file in the shared data folder (tests/conftest.py's shared)."""

    def __init__(self, root, shared):
        self.root, self.shared = Path(root), shared
        self._sources, self._tokens = {}, {}

    def source(self, model: str, version: str):
        """(folder, checkpoint, calibration text) of a model, files.compressed's source."""
        key = (model, version)
        if key not in self._sources:
            folder = self.root / f"{model}-{version}"
            folder.mkdir(parents=True, exist_ok=True)
            if model == "tiny":
                path = Path(self.shared("models", "rwkvcpp-tiny", TINY[version]))
            else:
                path = folder / "m.safetensors"
                if not path.exists():
                    from rwkvlite.loaders import save_model
                    from rwkvlite.model.init import random_model

                    save_model(random_model(wide_config(version), 0).eval(), path)
            text = folder / "calibration.txt"
            with open(self.shared(*CALIBRATION), encoding="utf-8") as f:
                text.write_text(f.read(16384), encoding="utf-8")
            self._sources[key] = folder, path, text
        return self._sources[key]

    def tokenizer(self, model: str):
        return ByteTokenizer() if model == "tiny" else WorldTokenizer(self.shared(*WORLD))

    def file(self, model: str, version: str, recipe: str) -> Path:
        """The model compressed by the recipe (files.compressed, with the model's tokenizer)."""
        tokenizer = "bytes" if model == "tiny" else self.shared(*WORLD)
        return compressed(self.source(model, version), recipe, tokenizer)

    def tokens(self, model: str) -> list[int]:
        """The first TOKENS tokens of the evaluation text in the model's vocabulary."""
        if model not in self._tokens:
            with open(self.shared(*TEXT), encoding="utf-8") as f:
                text = f.read(16 * TOKENS)
            ids = self.tokenizer(model).encode(text)[:TOKENS]
            assert len(ids) == TOKENS, f"{TEXT}: only {len(ids)} tokens in its first {16 * TOKENS} characters"
            self._tokens[model] = ids
        return self._tokens[model]

    def measure(self, model: str, version: str, recipe: str, threads: int | None = 1):
        """contract.agreement on one case, with the model's tie margin."""
        return agreement(self.file(model, version, recipe), self.tokens(model), TIE if model == "0.1b" else 0.0,
                         threads)
