"""format/schema.py against the PyTorch model: the same tensors and shapes for every generation and structure."""
import pytest

from rwkvlite.format.schema import structured_shapes
from rwkvlite.loaders import canonical_shapes
from rwkvlite.model import RWKVConfig

CONFIGS = {v: RWKVConfig(v, n_layer=2, n_embd=64, vocab_size=300, head_size=16 if v != "4" else 1)
           for v in ("4", "5.0", "5.1", "5.2", "6", "7")}


def structures(version):
    """A structure of every kind the passes write, for this generation's projections."""
    gate = "gate" if version not in ("4", "5.0", "7") else "key"
    return [
        {},
        {"lowrank": {"blocks.0.att.receptance": {"rank": 8, "variant": "linear"},
                     f"blocks.1.att.{gate}": {"rank": 4, "variant": "relu"}}},
        {"ffn_predictor": {f"blocks.{i}.ffn.key": {"hidden": 16, "quant_bits": 1} for i in range(2)}},
        {"cluster_head": {"head": {"clusters": 12, "p": 0.9, "min_clusters": 2, "max_clusters": 6}}},
        {"fold_ln0": {"blocks.0.ln0": "identity"}},
    ]


@pytest.mark.parametrize("version", list(CONFIGS))
@pytest.mark.parametrize("which", range(5))
def test_schema_matches_the_model(version, which):
    cfg, structure = CONFIGS[version], structures(version)[which]
    expected = {k: tuple(v) for k, v in canonical_shapes(cfg, structure).items()}
    assert structured_shapes(cfg.to_dict(), structure) == expected


def test_validation_knows_the_models_generations():
    """format/validate.py keeps its own list (the format layer does not import the model)."""
    from rwkvlite.format.validate import VERSIONS as FORMAT_VERSIONS
    from rwkvlite.model.config import VERSIONS

    assert FORMAT_VERSIONS == VERSIONS


def test_schema_refuses_structures_the_model_lacks():
    cfg = CONFIGS["7"].to_dict()
    with pytest.raises(ValueError, match="does not have"):
        structured_shapes(cfg, {"lowrank": {"blocks.9.att.key": {"rank": 4, "variant": "linear"}}})
    with pytest.raises(ValueError, match="rank"):
        structured_shapes(cfg, {"lowrank": {"blocks.0.att.key": {"rank": 0, "variant": "linear"}}})
    with pytest.raises(ValueError, match="unknown model structure"):
        structured_shapes(cfg, {"sparsify": {}})
