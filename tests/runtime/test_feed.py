"""Stepping the lean runtime: in-place and copying steps, feeding a prompt in chunks, the
State type, per-runtime kernel settings, and the rows and bytes a token reads."""
import numpy as np
import pytest

from rwkvlite.runtime import Runtime, State, native

from .files import compressed, use_kernels


@pytest.mark.parametrize("kernels", ["c", "numpy"])
def test_ffn_value_rows_are_read_for_active_neurons_only(sources, kernels, monkeypatch):
    """A neuron whose key product comes out <= 0 weighs nothing, so its value row is not read
    (blocks.c, ffn_transposed; SparseFfn in numpy), and bytes_read_per_token counts the
    value rows read, not the neurons predicted."""
    use_kernels(kernels, monkeypatch)
    rt = Runtime(compressed(sources("7"), "lite"))
    assert all(b.ffn.value.transposed and b.ffn.predictor is not None for b in rt.blocks)
    state, token = None, 1
    for _ in range(8):
        logits, state = rt.step(token, state, inplace=True)
        token = int(np.argmax(logits))
    keys, values = sum(b.ffn.key_rows for b in rt.blocks), sum(b.ffn.value_rows for b in rt.blocks)
    assert all(0 < b.ffn.value_rows <= b.ffn.key_rows for b in rt.blocks)
    assert values < keys  # some predicted neurons came out inactive, and their rows were skipped
    t, want = rt.tokens, 0.0
    for b in rt.blocks:
        want += (b.ffn.key.nbytes * b.ffn.key_rows + b.ffn.value.nbytes * b.ffn.value_rows) / t / b.ffn.key.rows
    assert rt.bytes_read_per_token()["ffn"] == pytest.approx(want)


@pytest.mark.parametrize("recipe", ["int8", "lite-int4"])
def test_bytes_read_per_token_is_the_runtimes_own_count(source, recipe):
    """bytes_read_per_token (runtime/reads.py, from the manifest's sizes) gives what the
    runtime's own accounting of its matrices gave: FFN rows and head rows as counted, every
    other tensor whole, one embedding row."""
    rt = Runtime(compressed(source, recipe))
    state, token = None, 1
    for _ in range(6):
        logits, state = rt.step(token, state, inplace=True)
        token = int(np.argmax(logits))
    t = rt.tokens
    total = sum(e["bytes"] for e in rt.w.entries.values())
    ffn = sum((b.ffn.key.nbytes * b.ffn.key_rows + b.ffn.value.nbytes * b.ffn.value_rows) / t / b.ffn.key.rows
              for b in rt.blocks)
    head = rt.head.W.nbytes * rt.head.rows_total / t / rt.head.W.rows
    emb = rt.w.entries["emb.weight"]["bytes"]
    rest = total - emb - rt.head.W.nbytes - sum(b.ffn.key.nbytes + b.ffn.value.nbytes for b in rt.blocks)
    want = {"total": rest + ffn + head + emb / rt.vocab_size, "ffn": ffn, "head": head,
            "embedding": emb / rt.vocab_size, "rest": rest}
    got = rt.bytes_read_per_token()
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-12), k
    assert rt.head.rows_total < rt.head.W.rows * t if "lite" in recipe else rt.head.rows_total == rt.head.W.rows * t


def test_each_runtime_steps_with_its_own_threads(source):
    """Runtime(threads=N) is that runtime's setting, not the last one made in the process."""
    if native.library() is None:
        pytest.skip("no C compiler")
    one, two = (Runtime(compressed(source, "int8"), threads=n) for n in (1, 2))
    first, _ = one.step(5)
    for rt, n in ((one, 1), (two, 2), (one, 1)):  # the library holds no thread setting to leave behind
        rt.step(5)
        assert rt.kernels.settings.threads == n
    assert (one.threads, two.threads) == (1, 2)
    assert not any(hasattr(native.library(), name) for name in ("set_threads", "threads"))
    np.testing.assert_array_equal(one.step(5)[0], first)


def test_state_is_a_documented_dataclass(source):
    """zero_state: one LayerState per block (att, ffn [C]; wkv [H, N, N]); copy() is deep."""
    rt = Runtime(compressed(source, "int8"))
    state = rt.zero_state()
    C, H, N = rt.config["n_embd"], rt.blocks[0].H, rt.blocks[0].N
    assert isinstance(state, State) and len(state) == len(rt.blocks) == rt.config["n_layer"]
    assert all(s.att.shape == s.ffn.shape == (C,) and s.wkv.shape == (H, N, N) for s in state)
    assert all(a.dtype == np.float32 and not a.any() for s in state for a in s.arrays())
    _, state = rt.step(5, state, inplace=True)
    copy = state.copy()
    assert all(a is not b and np.array_equal(a, b) for s, c in zip(state, copy) for a, b in zip(s.arrays(), c.arrays()))


@pytest.mark.parametrize("recipe", ["int8", "lite"])
def test_inplace_steps_equal_copying_steps(source, recipe):
    """step(..., inplace=True) (generation, bench) writes the new state over the old one; the
    logits and states are those of the copying step, which leaves its input alone."""
    rt = Runtime(compressed(source, recipe))
    kept, own = None, rt.zero_state()
    for t in (5, 17, 200, 5, 3):
        logits, new = rt.step(t, kept)
        before = None if kept is None else [s.wkv.copy() for s in kept]
        logits_inplace, same = rt.step(t, own, inplace=True)
        assert same is own
        np.testing.assert_array_equal(logits_inplace, logits)
        for a, b in zip(own, new):
            for x, y in zip(a.arrays(), b.arrays()):
                np.testing.assert_array_equal(x, y)
        if before is not None:  # the copying step left its input as it was
            assert all(np.array_equal(s.wkv, w) for s, w in zip(kept, before))
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
    kept = start.copy()
    state = start
    rt.reset_counters()
    for t in prompt:
        want, state = rt.step(t, state)
    counts = [(b.ffn.key_rows, b.ffn.value_rows) for b in rt.blocks]
    rt.reset_counters()
    head, calls = rt.head, []
    rt.head = lambda h: calls.append(h) or head(h)
    got, fed = rt.feed(prompt, start)
    assert rt.tokens == len(prompt) and [(b.ffn.key_rows, b.ffn.value_rows) for b in rt.blocks] == counts
    np.testing.assert_array_equal(got, want)
    for a, b, c in zip(fed, state, start):
        for x, y, z in zip(a.arrays(), b.arrays(), c.arrays()):
            np.testing.assert_array_equal(x, y)
            assert x is not z
    assert all(np.array_equal(x, y) for a, b in zip(start, kept) for x, y in zip(a.arrays(), b.arrays()))
    assert len(calls) == 1  # a prompt's other logits are not used
    with pytest.raises(ValueError, match="at least one token"):
        rt.feed([])


def test_inplace_steps_follow_state_arrays_replaced_between_them(source):
    """In-place steps reuse the C calls' arguments made for the state's arrays; an array put in
    the state between steps (a reset layer, say) must be the one read and written next."""
    rt = Runtime(compressed(source, "int8"))
    own = rt.zero_state()
    rt.step(5, own, inplace=True)
    own[1].wkv, own[0].att = np.zeros_like(own[1].wkv), np.ones_like(own[0].att)
    want, _ = rt.step(7, own.copy())
    kept = own[1].wkv
    got, _ = rt.step(7, own, inplace=True)
    np.testing.assert_array_equal(got, want)
    assert own[1].wkv is kept and kept.any()  # written in place
