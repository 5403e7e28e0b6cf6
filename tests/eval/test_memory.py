import numpy as np
import pytest
import torch

from rwkvlite.eval.memory import recording, replay
from rwkvlite.model.structure import ClusteredHead, PredictedKey
from rwkvlite.runtime.cache import EmbeddingCache

from ..conftest import make_model


def test_embedding_cache_returns_rows_and_evicts_least_recent():
    table = np.arange(40, dtype=np.float32).reshape(10, 4)
    cache = EmbeddingCache(table, capacity=2)
    assert np.array_equal(cache([3, 5, 3]), table[[3, 5, 3]])
    cache.row(7)  # evicts 5, the least recently used
    assert list(cache.rows) == [3, 7]
    assert cache.stats()["hit_rate"] == pytest.approx(1 / 4)
    assert cache.resident_bytes == 2 * 16
    assert replay([1, 2, 1, 2, 3], capacity=2, row_bytes=8)["hit_rate"] == pytest.approx(2 / 5)


def _sparse_model():
    """A v7 model with a predicted key in block 1 (the quantised copy keeps 1/4 of the neurons,
    the MLP none) and a clustered head of 6 clusters that picks 2."""
    model = make_model("7")
    C, F, V = 64, model.blocks[1].ffn.key.weight.shape[0], 300
    key = PredictedKey(C, F, hidden=8)
    head = ClusteredHead(C, V, 6, p=0.0, min_clusters=2, max_clusters=2)
    with torch.no_grad():
        key.weight.copy_(model.blocks[1].ffn.key.weight)
        key.mlp2.bias.fill_(-10)
        key.qsign.copy_(torch.where(key.weight >= 0, 1, -1).to(torch.int8))
        key.qscale.fill_(1.0)
        key.keep.fill_(0.25)
        head.weight.copy_(model.head.weight)
        head.cluster.copy_(torch.arange(V) % 6)
    model.blocks[1].ffn.key, model.head = key, head
    return model


def test_recording_counts_rows_through_hooks_and_removes_them():
    model = _sparse_model()
    tokens = torch.randint(0, 300, (2, 10), generator=torch.Generator().manual_seed(0))
    with recording(model) as seen:
        model(tokens)
    F = model.blocks[1].ffn.key.out_features
    assert seen.tokens == 20 and seen.keys[1].uses == 20
    assert seen.keys[0].computed == 20 * F  # a plain key computes every row
    assert seen.keys[1].computed == pytest.approx(20 * F / 4, rel=0.05)  # top quarter by the quantised copy
    assert 0 < seen.keys[1].values <= seen.keys[1].computed
    assert seen.keys[1].touched.shape == (F,) and seen.keys[1].touched.sum() >= F / 4
    assert seen.head.uses == 20 and seen.head.computed == 20 * 2 * 50  # two clusters of 50 tokens
    assert int(seen.head.touched.sum()) >= 2
    assert not model.blocks[1].ffn.key._forward_hooks and not model.head._forward_hooks
    assert not model.emb._forward_pre_hooks
    with recording(model) as again:
        pass
    assert again.tokens == 0  # a fresh record each time, nothing kept in the modules
