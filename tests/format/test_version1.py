"""A version-1 file written before passes became typed configs (a 2-layer RWKV-7 through
lowrank, recover, ffn_predictor, cluster_head, fold_ln0 and `int` 8-bit) still loads: its
structure specs rebuild the same modules and its logits are the ones recorded when it was written."""
import json
import os

import torch
from torch import nn

from rwkvlite.format.container import read
from rwkvlite.loaders import load_model
from rwkvlite.model.structure import ClusteredHead, LowRankLinear, PredictedKey

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def test_a_version1_lite_int8_file_loads_and_gives_its_logits():
    path = os.path.join(DATA, "v1-lite-int8.rwkvlite")
    with open(os.path.join(DATA, "v1-lite-int8.json")) as f:
        expected = json.load(f)
    manifest, _ = read(path)
    assert set(manifest["structure"]) == {"lowrank", "ffn_predictor", "cluster_head", "fold_ln0"}
    assert [next(iter(s)) for s in manifest["recipe"]["passes"]][-1] == "int"
    model = load_model(path)
    assert isinstance(model.blocks[0].att.key, LowRankLinear) and isinstance(model.blocks[1].ffn.key, PredictedKey)
    assert isinstance(model.head, ClusteredHead) and isinstance(model.blocks[0].ln0, nn.Identity)
    with torch.no_grad():
        logits = model(torch.tensor([expected["tokens"]]))[0][0, -1, :8]
    assert torch.allclose(logits, torch.tensor(expected["last_logits_first8"]), atol=1e-4), logits
