"""The lean runtime against its references: the evaluation path (PyTorch) on every generation
and recipe, rwkv.cpp's logits on real tiny models, and each block's C step against its
numpy step."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from rwkvlite.eval import fast_mode
from rwkvlite.loaders import load_model, save_model
from rwkvlite.recipes import compress
from rwkvlite.runtime import LayerState, Runtime, native

from ..conftest import run_cli, shared
from .files import CASES, CASES4, OTHER, RECIPES, TEXT, compressed, use_kernels


TOKENS = [1, 72, 101, 108, 108, 111, 44, 32, 119, 111]


def logits_of(model, tokens):
    state, out = None, []
    for t in tokens:
        with torch.no_grad():
            y, state = model(torch.tensor([[t]]), state)
        out.append(y[0, -1].double().numpy())
    return np.array(out)


@pytest.mark.parametrize("version,recipe", CASES + CASES4 + [("7", "int6"), ("4", "int6")])
@pytest.mark.parametrize("kernels", ["c", "c-fast", "numpy"])
def test_runtime_logits_equal_the_evaluation_path(sources, version, recipe, kernels, monkeypatch):
    """The exact mode and numpy within 1e-3 of the evaluation path; the fast mode within 3e-3 of
    the evaluation path reproducing its arithmetic (eval/fast_mode.py rounds x where the int8
    tier rounds it, 6-bit codes here; x rounded per group or block is within 2^-15 of its
    largest value)."""
    out = compressed(sources(version), recipe)
    use_kernels(kernels, monkeypatch)
    model, rt = load_model(out), Runtime(out, exact=kernels == "c")
    assert rt.config["version"] == version
    hooked = fast_mode.emulate(model, out) if kernels == "c-fast" and rt.kernels.int8_x else 0
    assert hooked > 0 or recipe != "int6" or kernels != "c-fast" or not rt.kernels.int8_x
    state, got = None, []
    for t in TOKENS:
        y, state = rt.step(t, state)
        got.append(y)
    tol = 3e-3 if kernels == "c-fast" else 1e-3
    np.testing.assert_allclose(np.array(got), logits_of(model, TOKENS), atol=tol, rtol=tol)


@pytest.mark.parametrize("tag,kind", [("4v0-660K", "FP32"), ("5v2-730K", "FP32"), ("6v0-3m", "Q5_1"),
                                      ("7v0-834K", "FP32")])
def test_lean_runtime_on_rwkvcpp_real_models_matches_rwkvcpp(tag, kind, tmp_path):
    """rwkv.cpp's real tiny models, compressed with no pass (16-bit file) and stepped through
    the prompt '"in' by the lean runtime, against rwkv.cpp's FP32 logits: within 1e-2 from FP32
    (the 16-bit file rounds the weights; tests/loaders bound FP16 so), and for the Q5_1 file
    (the only RWKV-6 one) KL <= 1e-2 and the same top token, as tests/loaders does."""
    out = tmp_path / "m.rwkvlite"
    compress(shared("models", "rwkvcpp-tiny", f"tiny-rwkv-{tag}-{kind}.bin"), out, [], progress=False)
    ref = np.fromfile(shared("models", "rwkvcpp-tiny", f"expected-logits-{tag}.bin"), np.float32)
    rt, state = Runtime(out), None
    for t in b'"in':
        got, state = rt.step(t, state)
    got = got[:len(ref)].astype(np.float64)
    if kind == "FP32":
        assert np.abs(got - ref).max() <= 1e-2
    else:
        p, q = np.exp(ref - ref.max()), np.exp(got - got.max())
        p, q = p / p.sum(), q / q.sum()
        assert float(np.sum(p * (np.log(p) - np.log(q)))) <= 1e-2 and got.argmax() == ref.argmax()


@pytest.mark.parametrize("recipe", ["int8", "lite-int4"])
def test_rwkv4_with_a_wider_time_mix(recipe, tmp_path):
    """RWKV-4 with dim_att != n_embd (r, k, v and the WKV 96 wide, the residual 64): logits
    against the evaluation path, and the C block (its workspace laid out for both widths)
    against the numpy step from a random state."""
    from rwkvlite.model import RWKVConfig
    from rwkvlite.model.init import random_model

    save_model(random_model(RWKVConfig("4", n_layer=2, n_embd=64, dim_att=96, vocab_size=300), 0).eval(),
               tmp_path / "m.safetensors")
    (tmp_path / "t.txt").write_text(TEXT)
    out = tmp_path / "m.rwkvlite"
    compress(tmp_path / "m.safetensors", out, RECIPES[recipe], calibration=str(tmp_path / "t.txt"), n_seq=4,
             seq_len=32, tokenizer="bytes", progress=False)
    model, rt = load_model(out), Runtime(out, exact=True)
    state, ref_state = None, None
    for t in [1, 72, 101, 108, 108]:
        with torch.no_grad():
            ref, ref_state = model(torch.tensor([[t]]), ref_state)
        got, state = rt.step(t, state)
        np.testing.assert_allclose(got, ref[0, -1].numpy(), atol=1e-3, rtol=1e-3)
    if rt.kernels.lib is None:
        pytest.skip("no C compiler: the logits agree; no C block to compare with the numpy step")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(64, np.float32)
    for block in rt.blocks:
        st = LayerState(rng.standard_normal(64, np.float32), rng.standard_normal(64, np.float32),
                        rng.standard_normal((3, 96), np.float32) * 0.1)
        a, b = LayerState(*st.arrays()), LayerState(*st.arrays())
        xc, _ = block(x, a, None)
        xn, _ = block.step_numpy(x, b, None)
        for got, want in [(xc, xn), *zip(a.arrays(), b.arrays())]:
            np.testing.assert_allclose(got, want, atol=2e-5, rtol=2e-5)
        x = xn


def test_runtime_refuses_generations_it_does_not_run(source, tmp_path):
    """A file of a generation rwkvlite has no model for (here a manifest that says RWKV-3) is
    refused with one line, by the format's validation before the runtime looks for a block."""
    from rwkvlite.format import container

    manifest, arrays = container.read(compressed(source, "int8"))
    manifest["config"]["version"] = "3"
    out = tmp_path / "m3.rwkvlite"
    container.write(out, manifest, {k: np.array(v) for k, v in arrays.items()})
    r = run_cli("run", out, "--prompt", "x")
    assert r.returncode == 2 and "config version '3' is not one of 4, 5.0, 5.1, 5.2, 6, 7" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("threaded", [False, True], ids=["as-built", "all-threaded"])
@pytest.mark.parametrize("version,recipe",
                         [("7", r) for r in list(RECIPES) + list(OTHER)] + CASES[len(RECIPES):] + CASES4)
def test_c_block_step_equals_the_numpy_one(sources, version, recipe, threaded):
    """rwkv7.c (RWKV-7), rwkv6.c (RWKV-6, 5.x) and rwkv4.c step each block in one call; step_numpy
    does the same with the same kernels and numpy in between: they agree to float rounding
    (x kept float32 here). all-threaded: every loop that may split across threads does (two
    threads, no minimum size), as they do at real sizes; these models are too small for that
    otherwise."""
    if native.library() is None:
        pytest.skip("no C compiler")
    settings = {"threads": 2, "parallel_min": 0} if threaded else {}
    rt = Runtime(compressed(sources(version), recipe), exact=True, **settings)
    assert all(b.c is not None for b in rt.blocks)  # every block has the one-call path
    rng = np.random.default_rng(0)
    C = rt.config["n_embd"]
    state = [LayerState(rng.standard_normal(C, np.float32), rng.standard_normal(C, np.float32),
                        rng.standard_normal(s.wkv.shape, np.float32) * 0.1) for s in rt.zero_state()]
    x, v_first = rng.standard_normal(C, np.float32), None
    for block, st in zip(rt.blocks, state):
        a, b, before = LayerState(*st.arrays()), LayerState(*st.arrays()), st.wkv.copy()
        counts = (block.ffn.key_rows, block.ffn.value_rows)
        xc, vc = block(x, a, v_first)
        c_counts = (block.ffn.key_rows - counts[0], block.ffn.value_rows - counts[1])
        xn, vn = block.step_numpy(x, b, v_first)
        # the same FFN rows computed and read (predictor, and value rows of neurons > 0)
        assert (block.ffn.key_rows, block.ffn.value_rows) == (counts[0] + 2 * c_counts[0],
                                                              counts[1] + 2 * c_counts[1])
        assert (vc is None) == (vn is None) == (version != "7")  # v_first: RWKV-7's only
        pairs = [(xc, xn), *zip(a.arrays(), b.arrays())] + ([(vc, vn)] if vc is not None else [])
        for got, want in pairs:
            np.testing.assert_allclose(got, want, atol=2e-5, rtol=2e-5)
        assert np.array_equal(st.wkv, before)  # the old state is kept
        x, v_first = xn, vn


def test_threaded_block_when_openmp_starts_fewer_threads_than_asked():
    """OMP_THREAD_LIMIT (or OMP_DYNAMIC) may give a parallel region fewer threads than
    omp_get_max_threads() says: the split FFN must add only the partial sums of threads that
    ran. The all-threaded block test again, in a process whose teams are capped at one."""
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    test = f"{os.path.abspath(__file__)}::test_c_block_step_equals_the_numpy_one"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test, "-k",
                        "all-threaded and lite-int4"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout
