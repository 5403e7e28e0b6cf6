import pytest
import torch
from torch import nn

from rwkvlite.model.structure import ClusteredHead, LowRankLinear, PredictedKey, restructure
from rwkvlite.passes import Context, FFNPredictorConfig, LowRankConfig
from rwkvlite.passes.cluster_head import cluster_vocabulary, train_scorer
from rwkvlite.passes.ffn_predictor import ffn_predictor, layer_stats
from rwkvlite.passes.fold_ln0 import fold_ln0
from rwkvlite.passes.lowrank import lowrank

from ..conftest import make_model


def test_full_rank_svd_factors_reproduce_the_layer():
    torch.manual_seed(0)
    linear = nn.Linear(48, 32, bias=False).double()
    x = torch.randn(5, 48, dtype=torch.float64)
    full = LowRankLinear.from_linear(linear, rank=32)
    assert torch.allclose(full(x), linear(x), atol=1e-12)
    half = LowRankLinear.from_linear(linear, rank=16)
    assert (half(x) - linear(x)).norm() > 1e-3  # truncation loses something


@pytest.mark.parametrize("version", ["5.2", "7"])
def test_lowrank_pass_factors_the_targets_and_rebuilds(version):
    model = make_model(version)
    result = lowrank(model, LowRankConfig(factor=8))
    report = result.report
    names = {r["name"] for r in report["layers"]}
    expected = {"att.receptance", "att.key", "att.value"} | ({"att.gate", "ffn.receptance"} if version != "7" else set())
    assert {n.split(".", 2)[2] for n in names} == expected
    assert all(r["rank"] == 8 for r in report["layers"]) and report["params_after"] * 4 == report["params_before"]
    fresh = make_model(version)
    restructure(fresh, {"lowrank": result.structure})
    fresh.load_state_dict(model.state_dict(), strict=True)
    tokens = torch.randint(0, 300, (1, 12), generator=torch.Generator().manual_seed(0))
    assert torch.equal(fresh(tokens)[0], model(tokens)[0])


def test_relu_variant_has_a_diagonal_and_runs():
    m = LowRankLinear.from_linear(nn.Linear(16, 16, bias=False), rank=4, variant="relu")
    assert m.diag.shape == (16,) and m(torch.randn(2, 16)).shape == (2, 16)


def _head(p):
    torch.manual_seed(0)
    V, C, K = 300, 32, 12
    head = ClusteredHead(C, V, K, p=p, min_clusters=1, max_clusters=K)
    with torch.no_grad():
        head.weight.normal_()
        head.cluster.copy_(cluster_vocabulary(head.weight, k=K, pca_dim=8))
    return head


def test_clustered_head_with_p_1_is_the_full_softmax():
    head = _head(p=1.0)
    h = torch.randn(4, 7, 32)
    full = torch.log_softmax(h @ head.weight.T, -1)
    assert torch.allclose(head(h), full, atol=1e-6)


@pytest.mark.parametrize("p", [0.0, 0.3, 0.8, 0.95])
def test_clustered_head_is_a_distribution_for_any_p(p):
    head = _head(p)
    h = torch.randn(6, 32)
    out = head(h)
    assert torch.allclose(out.exp().sum(-1), torch.ones(6), atol=1e-5)
    computed = float((head.chosen(head.scores(h)).float() @ head.cluster_sizes().float()).mean()) / 300
    assert 0 < computed <= 1 and (computed < 1 or p == 0.95)


def test_cluster_scorer_learns_cluster_mass():
    head = _head(p=0.9)
    feats = torch.randn(2048, 32) * 2
    losses = train_scorer(head, feats, steps=200)
    assert losses[-1] < 0.5 * losses[0]
    assert cluster_vocabulary(head.weight, k=12, pca_dim=8).unique().numel() <= 12


def test_predictor_statistics_on_constructed_inputs():
    true = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    pred = torch.tensor([[1, 0, 1, 0], [1, 0, 0, 1]], dtype=torch.bool)
    s = layer_stats(true, pred)
    assert s["true_sparsity"] == pytest.approx(5 / 8)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["predicted_active"] == pytest.approx(4 / 8)


def test_predicted_key_masks_only_predicted_inactive_neurons():
    key = PredictedKey(8, 16)
    with torch.no_grad():
        key.weight.normal_()
        key.mlp2.bias.fill_(-10)  # the MLP says nothing is active
        key.qsign.copy_(torch.where(key.weight >= 0, 1, -1).to(torch.int8))
        key.qscale.fill_(1.0)
        key.keep.fill_(0.25)
    x = torch.randn(3, 8)
    y = key(x)
    active = (y != 0).sum(-1)
    assert torch.all(active <= 4)  # top 25% of 16 by the quantised scores
    key.keep.fill_(1.0)
    assert torch.equal(key(x), x @ key.weight.T)


def test_ffn_predictors_reach_their_recall():
    model = make_model("7")
    tokens = torch.randint(0, 300, (8, 64), generator=torch.Generator().manual_seed(0))
    cfg = FFNPredictorConfig(steps=100, target_recall=0.9)
    report = ffn_predictor(model, cfg, Context(tokens=lambda: tokens)).report
    assert isinstance(model.blocks[0].ffn.key, PredictedKey)
    for layer in report["layers"]:
        assert layer["recall"] > 0.8  # measured on held-out positions
        assert 0 <= layer["predicted_active"] <= 1
    logits, _ = model(tokens[:1])
    assert torch.isfinite(logits).all()


def test_folding_ln0_keeps_the_function():
    model = make_model("6")
    tokens = torch.randint(0, 300, (1, 9), generator=torch.Generator().manual_seed(0))
    before = model(tokens)[0]
    assert fold_ln0(model).structure == {"blocks.0.ln0": "identity"}
    assert isinstance(model.blocks[0].ln0, nn.Identity)
    assert torch.allclose(model(tokens)[0], before, atol=1e-5)
