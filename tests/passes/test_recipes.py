import json

import pytest
import torch

from rwkvlite.compress import compress
from rwkvlite.errors import RWKVLiteError
from rwkvlite.eval.memory import accounting, recording
from rwkvlite.eval.scoring import kl_divergence
from rwkvlite.loaders import load_model, save_model
from rwkvlite.model.structure import ClusteredHead, LowRankLinear, PredictedKey
from rwkvlite.recipes import load_recipe

from ..conftest import make_model, run_cli

TEXT = "In the beginning was the word, and the word was with the model. " * 200


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(make_model("7"), path)
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    return path, text


def test_lite_int8_stack_writes_a_file_that_rebuilds(tiny, tmp_path):
    path, text = tiny
    recipe = [{"lowrank": {"factor": 4}}, {"recover": {"steps": 20, "ctx_len": 32}},
              {"ffn_predictor": {"steps": 50}}, {"cluster_head": {"k": 20, "pca_dim": 8, "steps": 50}},
              {"fold_ln0": {}}, {"int": {"bits": 8, "group_size": 32}}]
    out = tmp_path / "lite.rwkvlite"
    report = compress(path, out, recipe, calibration=str(text), n_seq=8, seq_len=32, tokenizer="bytes",
                      progress=False)
    assert [r["pass"] for r in report["passes"]] == ["lowrank", "recover", "ffn_predictor", "cluster_head",
                                                     "fold_ln0", "rtn"]  # `int` is read as `rtn`
    assert report["passes"][1]["kl_end_train"] < report["passes"][1]["kl_start"]
    model = load_model(out)
    assert isinstance(model.blocks[1].att.key, LowRankLinear)
    assert isinstance(model.blocks[0].ffn.key, PredictedKey)
    assert isinstance(model.head, ClusteredHead)
    original = load_model(path)
    tokens = torch.randint(0, 256, (1, 40), generator=torch.Generator().manual_seed(0))
    with recording(model) as seen:
        b = model(tokens)[0]
    a = original(tokens)[0]
    assert torch.allclose(b.exp().sum(-1), torch.ones(1, 40), atol=1e-4)
    assert kl_divergence(torch.log_softmax(a, -1), b).mean() < 2.0
    assert report["file"]["file_bytes"] == out.stat().st_size
    # memory accounting from the file and the accesses recorded in the run above
    mem = accounting(out, model, seen, tokens[0].tolist(), cache_rows=16)
    comps = mem["components"]
    assert mem["total"]["stored"] == out.stat().st_size - report["file"]["header_bytes"]
    assert comps["embedding"]["resident"] == pytest.approx(16 * comps["embedding"]["stored"] / model.config.vocab_size)
    assert 0 < mem["ffn_active_fraction"] <= mem["ffn_touched_fraction"] <= 1
    assert comps["ffn_rows"]["read_per_token"] < comps["ffn_rows"]["stored"] or mem["ffn_active_fraction"] == 1
    assert 0 < mem["head_rows_computed_fraction"] <= mem["head_rows_touched_fraction"] <= 1
    assert mem["embedding_cache"]["lookups"] == 40
    # bytes read per token: the runtime's model (runtime/reads.py), split over the components
    assert mem["total"]["read_per_token"] == pytest.approx(sum(c["read_per_token"] for c in comps.values()))
    assert mem["total"]["read_per_token"] == mem["bytes_read"]["total"] < mem["total"]["stored"]


def test_recipe_errors(tiny, tmp_path):
    with pytest.raises(RWKVLiteError, match="unknown recipe"):
        load_recipe("tiny-magic")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"passes": [{"prune": {}}]}))
    with pytest.raises(RWKVLiteError, match="expected one of"):
        load_recipe(str(bad))
    bad.write_text(json.dumps({"passes": [{"int": {"bits": 12}}]}))
    with pytest.raises(RWKVLiteError, match="bits must be 2 to 8"):
        load_recipe(str(bad))  # checked before any model is loaded
    # an option a pass does not take fails when the recipe is read, not when the pass runs
    for step, word in [({"lowrank": {"factr": 4}}, "factr"), ({"cluster_head": {"clusters": 9}}, "clusters"),
                       ({"fold_ln0": {"eps": 1}}, "eps"), ({"recover": {"step": 3}}, "step"),
                       ({"ffn_predictor": {"keep": 0.5}}, "keep"), ({"quantize": {"bit": 3}}, "bit")]:
        with pytest.raises(RWKVLiteError, match=f"{next(iter(step))} pass: .*{word}"):
            load_recipe([{"fold_ln0": {}}, step])
    assert load_recipe([{"lowrank": {"factor": 4}}, {"ffn_predictor": {"steps": 5, "hidden": 8}}])
    path, _ = tiny
    r = run_cli("compress", path, "-o", tmp_path / "x", "--recipe", "lite")  # recover needs text
    assert r.returncode == 2 and "recover pass trains on text" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("compress", path, "-o", tmp_path / "x", "--recipe", "int8")
    assert r.returncode == 0, r.stderr
    assert load_model(tmp_path / "x").config.version == "7"


def test_a_large_calibration_text_is_read_in_windows(tmp_path, monkeypatch):
    """A calibration file over passes.calibrate.WHOLE_TEXT bytes (a corpus) is not read whole: n_seq
    windows spread over it, cut to whole UTF-8 characters, give n_seq runs of seq_len tokens
    of the file; a text under the limit is read whole as before; a byte that is not UTF-8
    inside a window is one DataError."""
    from rwkvlite.errors import DataError
    from rwkvlite.passes import calibrate
    from rwkvlite.eval import data
    from rwkvlite.eval.data import read_windows
    from rwkvlite.tokenizer import load_tokenizer

    text = "".join(f"line {i}: héllo wörld ✓ — ünïcode {i * i}\n" for i in range(4000))
    path = tmp_path / "corpus.txt"
    path.write_text(text)
    for size in (100, 101, 102, 103):  # cuts at every byte of the 2- and 3-byte characters
        pieces = read_windows(str(path), 7, size)
        assert len(pieces) == 7 and all(p in text and size - 4 <= len(p.encode()) <= size for p in pieces)
    model, tok = make_model("7"), load_tokenizer("bytes")
    monkeypatch.setattr(calibrate, "WHOLE_TEXT", 10_000)
    monkeypatch.setattr(data, "read_text", lambda p: pytest.fail("read the whole corpus"))
    rows = calibrate.calibration_set(model, str(path), 5, 64, tok)
    assert rows.shape == (5, 64)
    raw = text.encode()
    assert all(bytes(r.tolist()) in raw for r in rows)
    assert len({bytes(r.tolist()) for r in rows}) == 5  # from different places
    monkeypatch.undo()
    whole = calibrate.calibration_set(model, str(path), 5, 64, tok)  # under the limit: the whole text, as before
    assert whole.shape == (5, 64) and bytes(whole[0].tolist()) == raw[:64]
    path.write_bytes(raw[:50_000] + b"\xff" + raw[50_000:])
    with pytest.raises(DataError, match="not UTF-8"):
        read_windows(str(path), 200, 1000)
