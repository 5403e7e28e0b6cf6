"""The one sampler (rwkvlite/sampling.py) and the one generation loop (rwkvlite/generate.py),
shared by the PyTorch path and the lean runtime: the same seed draws the same text from both."""
import random

import numpy as np
import pytest

from rwkvlite.errors import RWKVLiteError
from rwkvlite.generate import generate
from rwkvlite.runtime import Runtime
from rwkvlite.sampling import _most_likely, sample

from ..conftest import run_cli
from .files import compressed


def test_generation_stopped_early_leaves_its_state(source):
    """rwkvlite chat stops a reply at a blank line: the state must still be there."""
    from rwkvlite.tokenizer import tokenizer_for

    rt = Runtime(compressed(source, "int8"))
    tok = tokenizer_for(type("C", (), {"vocab_size": rt.vocab_size})(), "bytes")
    pieces = generate(rt, tok, "Hi", max_tokens=10, seed=0)
    next(pieces)
    pieces.close()  # what a for loop's break does
    state = rt.state
    assert len(state) == len(rt.blocks) and all(np.isfinite(s.wkv).all() for s in state)
    with pytest.raises(RWKVLiteError, match="seed"):
        next(generate(rt, tok, "Hi", seed=-1))


@pytest.mark.parametrize("recipe", ["int8", "rwkvquant-3"])
def test_generate_and_run_draw_the_same_text_under_one_seed(source, recipe):
    """`rwkvlite generate FILE` (the PyTorch model of a compressed file) and `rwkvlite run FILE
    --exact` (the lean runtime) sample with the same sampler from logits that agree to 1e-3:
    one seed, one text."""
    out = compressed(source, recipe)
    args = ("--prompt", "Hello", "--max-tokens", "40", "--seed", "3", "--tokenizer", "bytes")
    torch_path, lean = run_cli("generate", out, *args), run_cli("run", out, *args, "--exact")
    assert torch_path.returncode == 0, torch_path.stderr
    assert lean.returncode == 0, lean.stderr
    assert lean.stdout == torch_path.stdout and len(lean.stdout) > len("Hello")
    other = run_cli("run", out, *args[:-3], "4", "--tokenizer", "bytes", "--exact")
    assert other.returncode == 0 and other.stdout != lean.stdout  # the seed matters


def test_nucleus_sampling_keeps_the_top_mass_and_follows_the_probabilities():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    rng = random.Random(0)
    draws = np.bincount([sample(logits, 1.0, 0.85, rng) for _ in range(4000)], minlength=4)
    assert draws[3] == 0  # outside the top 0.85 (0.5 + 0.3 + 0.15 is needed to reach it)
    np.testing.assert_allclose(draws[:3] / 4000, np.array([0.5, 0.3, 0.15]) / 0.95, atol=0.03)
    assert {sample(logits, 1.0, 0.4, rng) for _ in range(50)} == {0}
    assert sample(logits, 0.0) == 0 and sample(logits, 1.0, 0.0) == 0  # greedy
    draws = [[sample(logits, 1.0, 1.0, r) for _ in range(20)] for r in (random.Random(7), random.Random(7))]
    assert draws[0] == draws[1] != [sample(logits, 1.0, 1.0, random.Random(8)) for _ in range(20)]  # seeded
    flat = np.zeros(8)
    assert {sample(flat, 1.0, 0.5, rng) for _ in range(200)} == {0, 1, 2, 3}  # ties: the first half
    masked = np.array([-np.inf, 0.0, -np.inf, 1.0])
    assert {sample(masked, 1.0, 1.0, rng) for _ in range(200)} == {1, 3}  # -inf is never drawn
    for bad in ([0.0, np.nan, 1.0], [0.0, np.inf, 1.0], [-np.inf] * 3):
        with pytest.raises(RWKVLiteError, match="not finite"):
            sample(np.array(bad), 1.0, 0.9, rng)
    with pytest.raises(ValueError, match="must be numbers"):
        sample(logits, float("nan"), 0.9, rng)


def test_nucleus_sampling_over_large_vocabularies_draws_what_the_full_sort_draws():
    """sample() sorts only as far as the nucleus reaches; for the same random number it
    draws the token a stable sort of the whole vocabulary gives, with ties and -inf."""

    def full_sort(logits, top_p, rng):
        p = np.exp(logits - logits.max())
        p /= p.sum()
        order = np.argsort(-p, kind="stable")
        keep = np.cumsum(p[order]) - p[order] < top_p
        cdf = np.cumsum(p[order] * keep)
        return int(order[int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))])

    rng = np.random.default_rng(0)
    for case in range(40):
        size = 65536 if case % 4 == 0 else int(rng.integers(300, 5000))
        logits = rng.standard_normal(size) * [0.05, 1, 5, 30][case % 4]  # flat to peaked
        if case % 5 == 0:
            logits = np.round(logits)  # many ties
        if case % 3 == 0:
            logits[rng.integers(0, size, size // 3)] = -np.inf
        top_p = float(rng.uniform(0.05, 1.0))
        for draw in range(3):
            assert sample(logits, 1.0, top_p, random.Random(draw)) == full_sort(logits, top_p, random.Random(draw))


def test_nucleus_cut_on_the_boundary_keeps_what_the_full_sort_keeps():
    """top_p exactly on a cumulative sum: the full sort's test (mass before a token < top_p)
    can round an ulp below it and keep one more token; the partial sort must keep it too."""
    rng = np.random.default_rng(0)
    for _ in range(3000):
        logits = rng.standard_normal(1000) * 2
        p = np.exp(logits - logits.max())
        p /= p.sum()
        order = np.argsort(-p, kind="stable")
        mass = np.cumsum(p[order])
        top_p = float(mass[255])  # the nucleus ends at the 256th token, or one later by rounding
        kept = int((mass - p[order] < top_p).sum())
        assert len(_most_likely(p, top_p)) >= kept


def test_the_sampler_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys; import rwkvlite.sampling, rwkvlite.generate; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


