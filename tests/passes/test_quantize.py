import pytest
import torch

from rwkvlite.groups import group_of
from rwkvlite.passes.calibrate import self_generated_tokens
from rwkvlite.passes.gptq import rtn
from rwkvlite.passes.grids import VectorGrid
from rwkvlite.passes.quantize import QuantConfig, quantize_model, shift_energy

from ..conftest import make_model


@pytest.mark.parametrize("method", ["rtn", "gptq", "gptvq", "rwkvquant"])
def test_quantize_model_reports_and_changes_only_targets(method):
    model = make_model("7")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tokens = self_generated_tokens(model, n_seq=4, seq_len=32)  # data-free calibration
    report, encoded = quantize_model(model, tokens, QuantConfig(method=method, bits=3, group_size=32, vq_group=32,
                                                                mix_bits=0))
    assert set(encoded) == {r["name"] for r in report["layers"]}
    names = {r["name"] for r in report["layers"]}
    assert names == {n for n in before if group_of(n) in ("time-mix", "channel-mix")}
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]) == (name not in names), name
    kinds = {r["kind"] for r in report["layers"]}
    assert kinds == {"rtn": {"sq"}, "gptq": {"sq"}, "gptvq": {"vq"}}.get(method, kinds)
    assert all(0 < r["output_error"] < 1 for r in report["layers"])
    assert 3.0 < report["quantized_bits_per_weight"] < 4.5
    assert "embedding" in report["kept_16bit"]["groups"] and "lora-like" in report["kept_16bit"]["groups"]


def test_sq_rows_use_at_most_2_to_the_bits_levels():
    model = make_model("5.2")
    tokens = torch.randint(0, 300, (4, 32), generator=torch.Generator().manual_seed(0))
    quantize_model(model, tokens, QuantConfig(method="gptq", bits=3, group_size=16, mix_bits=0))
    w = model.blocks[1].att.key.weight
    for row in w[:8]:
        for g in range(0, w.shape[1], 16):
            assert len(torch.unique(row[g:g + 16])) <= 8


def test_bad_config():
    with pytest.raises(ValueError, match="bits must be 2 to 8"):
        QuantConfig(bits=1)
    with pytest.raises(ValueError, match="unknown method"):
        QuantConfig(method="awq")


def test_mix_vectors_get_weighted_codebooks():
    model = make_model("6")
    tokens = torch.randint(0, 300, (4, 32), generator=torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    energy = shift_energy(model, tokens)
    report, encoded = quantize_model(model, tokens, QuantConfig(method="rtn", bits=4, mix_bits=2))
    mixes = {r["name"]: r for r in report["mix_vectors"]}
    assert "blocks.1.att.time_maa_x" in mixes and "blocks.2.ffn.time_maa_r" in mixes
    for name, line in mixes.items():
        value = model.state_dict()[name]
        assert len(torch.unique(value)) <= 4 and encoded[name][0]["enc"] == "vq"
        assert line["importance"] == "E[dx^2]"
    # weighting by E[dx^2] fits the channels that matter better than an unweighted codebook
    name = "blocks.1.att.time_maa_k"
    e = energy["blocks.1.att"].double()
    e = e.clamp(max=torch.quantile(e, 0.99))
    w = before[name].double().reshape(1, -1)
    plain = rtn(w, VectorGrid(2, 1), group_size=w.shape[1]).Q
    ours = model.state_dict()[name].double().reshape(1, -1)
    assert ((ours - w) ** 2 * e).sum() < ((plain - w) ** 2 * e).sum()


def test_head_and_embedding_options():
    model = make_model("7")
    tokens = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    report, encoded = quantize_model(model, tokens, QuantConfig(method="gptq", bits=4, group_size=32,
                                                                quantize_head=True, quantize_embedding=True))
    assert {"head.weight", "emb.weight"} <= set(encoded)
    assert "head" not in report["kept_16bit"]["groups"] and "embedding" not in report["kept_16bit"]["groups"]
