import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from rwkvlite.errors import RWKVLiteError
from rwkvlite.loaders import load_model, save_model
from rwkvlite.recipes import compress
from rwkvlite.runtime import Runtime
from rwkvlite.runtime.native import Kernels, Settings

from ..conftest import make_model, run_cli, shared

TEXT = "And God said, Let there be light: and there was light. " * 300
LITE = [{"lowrank": {"factor": 4}}, {"ffn_predictor": {"steps": 50}},
        {"cluster_head": {"k": 16, "pca_dim": 8, "steps": 50}}, {"fold_ln0": {}}]
RECIPES = {
    "fp16": [],
    "int8": [{"int": {"bits": 8, "group_size": 32}}],
    "int4": [{"int": {"bits": 4, "group_size": 32}}],
    "rwkvquant-3": [{"quantize": {"method": "rwkvquant", "bits": 3, "group_size": 32, "vq_group": 32,
                                  "sq_share": 0.5, "act_order": True}}],
    "lite": LITE,
    "lite-int4": LITE + [{"int": {"bits": 4, "group_size": 32}}],
}
# n-bit predictor copies (decoded once, multiplied as float32 in C) and the relu low-rank variant
OTHER = {"lite-relu-2bitcopy": [{"lowrank": {"factor": 4, "variant": "relu"}},
                                {"ffn_predictor": {"steps": 20, "quant_bits": 2}}, {"fold_ln0": {}},
                                {"int": {"bits": 3, "group_size": 32}}]}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """version -> (folder, checkpoint, calibration text) of a small random model, made once."""
    made = {}

    def source(version):
        if version not in made:
            folder = tmp_path_factory.mktemp(f"rt{version}")
            save_model(make_model(version), folder / "m.safetensors")
            (folder / "t.txt").write_text(TEXT)
            made[version] = folder, folder / "m.safetensors", folder / "t.txt"
        return made[version]

    return source


@pytest.fixture(scope="module")
def source(sources):
    return sources("7")


def compressed(source, recipe):
    folder, path, text = source
    out = folder / f"{recipe}.rwkvlite"
    if not out.exists():
        compress(path, out, {**RECIPES, **OTHER}[recipe], calibration=str(text), n_seq=4, seq_len=32,
                 tokenizer="bytes", progress=False)
    return out


# RWKV-7 (one C call per block) with every recipe; RWKV-6 and 5.x (rwkv6.c, or numpy between
# the kernels: runtime/model.py Block6, Block5) with a recipe of each kind their passes support;
# RWKV-4 the same
CASES = [("7", recipe) for recipe in RECIPES] + [
    ("6", "fp16"), ("6", "int8"), ("6", "rwkvquant-3"), ("6", "lite-int4"),
    ("5.2", "int8"), ("5.2", "lite-int4"), ("5.1", "int8"), ("5.0", "int8")]
CASES4 = [("4", "fp16"), ("4", "int8"), ("4", "rwkvquant-3"), ("4", "lite-int4")]  # rwkv4.c, Block4


@pytest.mark.parametrize("version,recipe", CASES + CASES4)
@pytest.mark.parametrize("kernels", ["c", "c-int16x", "numpy"])
def test_runtime_logits_equal_the_evaluation_path(sources, version, recipe, kernels, monkeypatch):
    out = compressed(sources(version), recipe)
    if kernels == "numpy":
        monkeypatch.setenv("RWKVLITE_KERNELS", "numpy")
    elif Kernels().lib is None:
        pytest.skip("no C compiler")
    # float x: within 1e-3; the int16-x fast path (8/4-bit) rounds x to 2^-15 of its group's max
    tol = 3e-3 if kernels == "c-int16x" else 1e-3
    model, rt = load_model(out), Runtime(out, exact=kernels == "c")
    assert rt.config["version"] == version
    state, ref_state = None, None
    for t in [1, 72, 101, 108, 108, 111, 44, 32, 119, 111]:
        with torch.no_grad():
            ref, ref_state = model(torch.tensor([[t]]), ref_state)
        got, state = rt.step(t, state)
        np.testing.assert_allclose(got, ref[0, -1].numpy(), atol=tol, rtol=tol)


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
        st = {"att": rng.standard_normal(64, np.float32), "ffn": rng.standard_normal(64, np.float32),
              "wkv": rng.standard_normal((3, 96), np.float32) * 0.1}
        a, b = dict(st), dict(st)
        xc, _ = block(x, a, None)
        xn, _ = block.step_numpy(x, b, None)
        for got, want in [(xc, xn), *((a[n], b[n]) for n in ("att", "ffn", "wkv"))]:
            np.testing.assert_allclose(got, want, atol=2e-5, rtol=2e-5)
        x = xn


def test_runtime_refuses_generations_it_does_not_run(source, tmp_path):
    """A well-formed file of a generation the runtime has no block for (here a manifest that
    says RWKV-3) is refused with one line."""
    from rwkvlite.format import container

    manifest, arrays = container.read(compressed(source, "int8"))
    manifest["config"]["version"] = "3"
    out = tmp_path / "m3.rwkvlite"
    container.write(out, manifest, {k: np.array(v) for k, v in arrays.items()})
    r = run_cli("run", out, "--prompt", "x")
    assert r.returncode == 2 and "runs RWKV-4, 5, 6 and 7 files; this is RWKV-3" in r.stderr
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
    if Kernels().lib is None:
        pytest.skip("no C compiler")
    settings = Settings(threads=2, exact=True, parallel_min=0) if threaded else Settings(exact=True)
    rt = Runtime(compressed(sources(version), recipe), kernels=Kernels(settings))
    assert all(b.c is not None for b in rt.blocks)  # every block has the one-call path
    rng = np.random.default_rng(0)
    C = rt.config["n_embd"]
    state = [{"att": rng.standard_normal(C, np.float32), "ffn": rng.standard_normal(C, np.float32),
              "wkv": rng.standard_normal(s["wkv"].shape, np.float32) * 0.1} for s in rt.zero_state()]
    x, v_first = rng.standard_normal(C, np.float32), None
    for block, st in zip(rt.blocks, state):
        a, b, before = dict(st), dict(st), st["wkv"].copy()
        counts = (block.active_total, block.values_total)
        xc, vc = block(x, a, v_first)
        c_counts = (block.active_total - counts[0], block.values_total - counts[1])
        xn, vn = block.step_numpy(x, b, v_first)
        # the same FFN rows computed and read (predictor, and value rows of neurons > 0)
        assert (block.active_total, block.values_total) == (counts[0] + 2 * c_counts[0], counts[1] + 2 * c_counts[1])
        assert (vc is None) == (vn is None) == (version != "7")  # v_first: RWKV-7's only
        pairs = [(xc, xn), *((a[n], b[n]) for n in ("att", "ffn", "wkv"))] + ([(vc, vn)] if vc is not None else [])
        for got, want in pairs:
            np.testing.assert_allclose(got, want, atol=2e-5, rtol=2e-5)
        assert np.array_equal(st["wkv"], before)  # the old state is kept
        x, v_first = xn, vn


@pytest.mark.parametrize("kernels", ["c", "numpy"])
def test_ffn_value_rows_are_read_for_active_neurons_only(sources, kernels, monkeypatch):
    """A neuron whose key product comes out <= 0 weighs nothing, so its value row is not read
    (blocks.c, ffn_transposed; sparse_ffn in numpy), and bytes_read_per_token counts the
    value rows read, not the neurons predicted."""
    if kernels == "numpy":
        monkeypatch.setenv("RWKVLITE_KERNELS", "numpy")
    elif Kernels().lib is None:
        pytest.skip("no C compiler")
    rt = Runtime(compressed(sources("7"), "lite"))
    assert all(b.fv.transposed and b.predictor is not None for b in rt.blocks)
    state, token = None, 1
    for _ in range(8):
        logits, state = rt.step(token, state, inplace=True)
        token = int(np.argmax(logits))
    keys, values = sum(b.active_total for b in rt.blocks), sum(b.values_total for b in rt.blocks)
    assert all(0 < b.values_total <= b.active_total for b in rt.blocks)
    assert values < keys  # some predicted neurons came out inactive, and their rows were skipped
    t, want = rt.tokens, 0.0
    for b in rt.blocks:
        want += (b.fk.nbytes * b.active_total + b.fv.nbytes * b.values_total) / t / b.fk.rows
    assert rt.bytes_read_per_token()["ffn"] == pytest.approx(want)


def test_each_runtime_steps_with_its_own_threads(source):
    """Runtime(threads=N) is that runtime's setting, not the last one made in the process: the
    kernels it calls carry its own settings (native.Kernels), and nothing global is set."""
    if Kernels().lib is None:
        pytest.skip("no C compiler")
    one, two = (Runtime(compressed(source, "int8"), threads=n) for n in (1, 2))
    for rt, n in ((one, 1), (two, 2), (one, 1)):
        rt.step(5)
        assert rt.threads == rt.kernels.settings.threads == rt.kernels._c.threads == n


@pytest.mark.parametrize("recipe", ["int8", "lite"])
def test_inplace_steps_equal_copying_steps(source, recipe):
    """step(..., inplace=True) (generation, bench) writes the new state over the old one; the
    logits and states are those of the copying step, which leaves its input alone."""
    rt = Runtime(compressed(source, recipe))
    kept, own = None, rt.zero_state()
    for t in (5, 17, 200, 5, 3):
        logits, new = rt.step(t, kept)
        before = None if kept is None else [s["wkv"].copy() for s in kept]
        logits_inplace, same = rt.step(t, own, inplace=True)
        assert same is own
        np.testing.assert_array_equal(logits_inplace, logits)
        for a, b in zip(own, new):
            for n in ("att", "ffn", "wkv"):
                np.testing.assert_array_equal(a[n], b[n])
        if before is not None:  # the copying step left its input as it was
            assert all(np.array_equal(s["wkv"], w) for s, w in zip(kept, before))
        kept = new


@pytest.mark.parametrize("version,recipe", [("7", "int8"), ("7", "lite"), ("6", "lite-int4"), ("5.2", "int8"), ("4", "int8")])
@pytest.mark.parametrize("path", ["c", "numpy"])
def test_feeding_a_prompt_equals_stepping_it(sources, version, recipe, path, monkeypatch):
    """feed(tokens) (a prompt: in C, chunks of tokens block by block) gives the last step's
    logits and state bit for bit, leaves the state it is given alone, and runs the head for
    the last token only."""
    rt = Runtime(compressed(sources(version), recipe))
    if path == "c" and any(b.c is None for b in rt.blocks):
        pytest.skip("no C compiler")
    if path == "numpy":
        for b in rt.blocks:
            monkeypatch.setattr(b, "c", None)
    monkeypatch.setattr(rt, "CHUNK", 3)  # a prompt of whole and partial chunks
    prompt = [5, 17, 200, 5, 3, 99, 1, 42]  # chunks of 3, 3 and 2
    start = rt.step(9)[1]
    kept = [{n: v.copy() for n, v in st.items()} for st in start]
    state = start
    rt.reset_counters()
    for t in prompt:
        want, state = rt.step(t, state)
    counts = [(b.active_total, b.values_total) for b in rt.blocks]
    rt.reset_counters()
    head, calls = rt.head, []
    rt.head = lambda h: calls.append(h) or head(h)
    got, fed = rt.feed(prompt, start)
    assert rt.tokens == len(prompt) and [(b.active_total, b.values_total) for b in rt.blocks] == counts
    np.testing.assert_array_equal(got, want)
    for a, b, c in zip(fed, state, start):
        for n in ("att", "ffn", "wkv"):
            np.testing.assert_array_equal(a[n], b[n])
            assert a[n] is not c[n]
    assert all(np.array_equal(a[n], b[n]) for a, b in zip(start, kept) for n in ("att", "ffn", "wkv"))
    assert len(calls) == 1  # a prompt's other logits are not used
    with pytest.raises(ValueError, match="at least one token"):
        rt.feed([])


def test_inplace_steps_follow_state_arrays_replaced_between_them(source):
    """In-place steps reuse the C calls' arguments made for the state's arrays; an array put in
    the state between steps (a reset layer, say) must be the one read and written next."""
    rt = Runtime(compressed(source, "int8"))
    own = rt.zero_state()
    rt.step(5, own, inplace=True)
    own[1]["wkv"], own[0]["att"] = np.zeros_like(own[1]["wkv"]), np.ones_like(own[0]["att"])
    want, _ = rt.step(7, [{k: v.copy() for k, v in st.items()} for st in own])
    kept = own[1]["wkv"]
    got, _ = rt.step(7, own, inplace=True)
    np.testing.assert_array_equal(got, want)
    assert own[1]["wkv"] is kept and kept.any()  # written in place


def _resident_pages(start: int, nbytes: int) -> int:
    """Pages of [start, start + nbytes) mapped into this process (/proc/self/pagemap's present bit)."""
    first, end = start // 4096, (start + nbytes + 4095) // 4096
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(8 * first)
        entries = np.frombuffer(f.read(8 * (end - first)), np.uint64)
    return int(((entries >> np.uint64(63)) & np.uint64(1)).sum())


@pytest.mark.skipif(not os.path.exists("/proc/self/pagemap"), reason="needs Linux's pagemap")
@pytest.mark.parametrize("passes", [[{"fold_ln0": {}}], [{"fold_ln0": {}}, {"int": {"bits": 3, "group_size": 32}}], []],
                         ids=["cached-fp16", "cached-3bit", "uncached-fp16"])
def test_embedding_rows_are_read_without_mapping_the_table(tmp_path, passes):
    """Embedding rows come from the file by os.pread (runtime/cache.py, FileRows), with or
    without the LRU cache: they equal the stored rows decoded, and no page of the table is
    mapped into the process after steps over tokens across it (the 64 KiB at either end
    excepted: a neighbouring tensor's read may map them, fault-around)."""
    from rwkvlite.model import RWKVConfig
    from rwkvlite.model.init import random_model

    cfg = RWKVConfig("7", n_layer=1, n_embd=64, vocab_size=16384, head_size=16, lora_decay=16, lora_a=16, lora_v=8,
                     lora_gate=32)
    save_model(random_model(cfg, 0).eval(), tmp_path / "m.safetensors")
    out = tmp_path / "m.rwkvlite"
    compress(tmp_path / "m.safetensors", out, passes, progress=False)
    rt, state = Runtime(out), None
    tokens = (5, 9000, 16383, 77, 5, 12000)
    for t in tokens:
        _, state = rt.step(t, state)
    assert (rt.emb.cache is not None) == bool(passes)
    checked = 0
    for a in rt.w.parts("emb.weight")[1].values():
        lo, hi = -(-a.ctypes.data // 65536) * 65536 + 65536, (a.ctypes.data + a.nbytes) // 65536 * 65536 - 65536
        if hi > lo:  # (small arrays, the 3-bit table's scales and zeros, have no such middle)
            assert _resident_pages(lo, hi - lo) == 0
            checked += hi - lo
    assert checked >= 128 * 1024
    stored = rt.w.mat("emb.weight")  # (decoding from the map, as the runtime does not)
    for t in tokens:
        np.testing.assert_allclose(rt.emb(t), stored.dense_rows([t])[0], rtol=1e-6, atol=1e-7)


def test_lean_runtime_does_not_import_torch(source):
    out = compressed(source, "int8")
    code = ("import sys; from rwkvlite.runtime import Runtime; from rwkvlite.runtime.bench import bench; "
            "from rwkvlite.runtime.generate import sample; rt = Runtime(sys.argv[1]); sample(rt.step(5)[0]); "
            "bench(sys.argv[1], 2, 2); print('torch' in sys.modules, '_hashlib' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False False"  # nor OpenSSL (numpy.random would load it)


def test_generation_stopped_early_leaves_its_state(source):
    """rwkvlite chat stops a reply at a blank line: the state must still be there."""
    from rwkvlite.runtime.generate import generate
    from rwkvlite.tokenizer import tokenizer_for

    rt = Runtime(compressed(source, "int8"))
    tok = tokenizer_for(type("C", (), {"vocab_size": rt.config["vocab_size"]})(), "bytes")
    pieces = generate(rt, tok, "Hi", max_tokens=10, seed=0)
    next(pieces)
    pieces.close()  # what a for loop's break does
    state = rt.state
    assert len(state) == len(rt.blocks) and all(np.isfinite(s["wkv"]).all() for s in state)
    with pytest.raises(RWKVLiteError, match="seed"):
        next(generate(rt, tok, "Hi", seed=-1))


def test_nucleus_sampling_keeps_the_top_mass_and_follows_the_probabilities():
    import random

    from rwkvlite.runtime.generate import sample

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


def test_nucleus_sampling_over_large_vocabularies_draws_what_the_full_sort_draws():
    """sample() sorts only as far as the nucleus reaches; for the same random number it
    draws the token a stable sort of the whole vocabulary gives, with ties and -inf."""
    import random

    from rwkvlite.runtime.generate import sample

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
    from rwkvlite.runtime.generate import _most_likely

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


def test_run_chat_and_bench_commands(source, tmp_path):
    folder, path, text = source
    out = folder / "cli-int8.rwkvlite"
    compress(path, out, RECIPES["int8"], progress=False)
    r = run_cli("run", out, "--prompt", "Hello", "--max-tokens", "8", "--seed", "0", "--tokenizer", "bytes")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Hello") and "lean runtime" in r.stderr
    r = run_cli("chat", out, "--max-tokens", "5", "--seed", "1", "--tokenizer", "bytes", input="hi\n\n")
    assert r.returncode == 0, r.stderr
    result = tmp_path / "b.json"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}  # as a user's shell has it
    r = run_cli("bench", out, "--gen-tokens", "8", "--threads", "1", "--json", result, env=env)
    assert r.returncode == 0, r.stderr
    figures = json.loads(result.read_text())[0]["figures"]
    assert figures["torch_imported"] is False and figures["decode_ms_per_token"] > 0
    assert figures["threads"] == 1 or figures["kernels"] == "numpy"
    # one thread in all: numpy's OpenBLAS held to one (no idle workers spinning beside the kernels)
    if "openblas" in np.__config__.CONFIG["Build Dependencies"]["blas"]["name"].lower():
        assert figures["process_threads"] in (1, None)
    assert run_cli("bench", out, "--threads", "0").returncode == 2
    assert 0 < figures["bytes_read_per_token"] < figures["file_bytes"]


def test_runtime_refuses_damaged_and_foreign_files(source, tmp_path):
    folder, path, _ = source
    r = run_cli("run", path, "--prompt", "x")  # a plain checkpoint, not a compressed file
    assert r.returncode == 2 and "not an rwkvlite compressed file" in r.stderr
    out = compressed(source, "int8")
    data = bytearray(out.read_bytes())
    data[-10] ^= 0xFF
    bad = tmp_path / "bad.rwkvlite"
    bad.write_bytes(bytes(data))
    r = run_cli("run", bad, "--prompt", "x")
    assert r.returncode == 2 and "checksum" in r.stderr and "Traceback" not in r.stderr


def test_the_kernels_build_wherever_a_compiler_is_found():
    """The kernel tests skip without C kernels; a compile error must fail, not skip."""
    import shutil

    if os.environ.get("RWKVLITE_KERNELS", "").lower() == "numpy":
        pytest.skip("numpy kernels asked for")
    if not (os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler")
    from rwkvlite.runtime import native

    assert native.build() is not None and native.library() is not None


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
