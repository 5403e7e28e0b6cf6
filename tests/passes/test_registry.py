"""Passes as typed configs: one-line errors for unknown passes and bad options, before any
model loads; a bug inside a pass is that bug, with its traceback."""
import json
from dataclasses import dataclass

import pytest

from rwkvlite.compress import compress
from rwkvlite.loaders import save_model
from rwkvlite.passes import ConfigError, LowRankConfig, PassConfig, PassResult, QuantConfig, RTNConfig, base
from rwkvlite.recipes import PRESETS, load_recipe, parse

from ..conftest import make_model, run_cli


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(make_model("7"), path)
    return path


def test_every_preset_parses_to_configs():
    for name in PRESETS:
        steps = parse(name)
        assert all(isinstance(cfg, base.PASSES[n].config) and cfg.name == n for n, cfg in steps)
    assert parse("int4")[-1] == ("rtn", RTNConfig(bits=4, group_size=64))


def test_the_old_int_name_reads_as_rtn():
    assert parse([{"int": {"bits": 4}}]) == [("rtn", RTNConfig(bits=4))]
    assert load_recipe([{"int": {}}]) == [{"rtn": {"bits": 8, "group_size": 128}}]


@pytest.mark.parametrize("options,message", [
    ({"factor": 0}, "lowrank pass: factor must be at least 1, not 0"),
    ({"factor": "8"}, "lowrank pass: factor must be int, not '8'"),
    ({"factor": True}, "lowrank pass: factor must be int, not True"),
    ({"variant": "cubic"}, "lowrank pass: variant must be one of linear, relu, not 'cubic'"),
    ({"rank": 3}, "lowrank pass: unknown option 'rank'; it takes factor, variant"),
])
def test_bad_options_are_one_line_errors_naming_pass_and_option(options, message):
    with pytest.raises(ConfigError) as e:
        parse([{"lowrank": options}])
    assert str(e.value) == message


def test_configs_check_themselves_when_made():
    with pytest.raises(ConfigError, match="quantize pass: bits must be 2 to 8, not 1"):
        QuantConfig(bits=1)
    with pytest.raises(ConfigError, match="rtn pass: group_size must be at least 1"):
        RTNConfig(group_size=0)
    assert LowRankConfig(factor=4).factor == 4


def test_cli_unknown_pass_and_bad_option_exit_2_with_one_line(tiny, tmp_path):
    recipe = tmp_path / "r.json"
    for steps, fragment in [([{"prune": {}}], "unknown pass 'prune': expected one of cluster_head"),
                            ([{"lowrank": {"factr": 4}}], "lowrank pass: unknown option 'factr'"),
                            ([{"cluster_head": {"p": 2.0}}], "cluster_head pass: p must be in [0, 1], not 2.0"),
                            ([{"quantize": "fast"}], "quantize pass: options must be an object")]:
        recipe.write_text(json.dumps({"passes": steps}))
        r = run_cli("compress", tiny, "-o", tmp_path / "x", "--recipe", recipe)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert fragment in lines[0], lines[0]
    assert not (tmp_path / "x").exists()


def test_a_bug_inside_a_pass_is_that_bug(tiny, tmp_path, monkeypatch):
    """A TypeError raised inside a pass comes out as itself, not as a 'bad option' message."""
    monkeypatch.setattr(base, "PASSES", dict(base.PASSES))

    @dataclass(frozen=True)
    class BrokenConfig(PassConfig):
        size: int = 1

    @base.register("broken", BrokenConfig)
    def broken(model, cfg, ctx) -> PassResult:
        return len(cfg.size)  # a bug: int has no len()

    with pytest.raises(TypeError, match="object of type 'int' has no len") as e:
        compress(tiny, tmp_path / "x", [{"broken": {"size": 2}}], progress=False)
    assert not isinstance(e.value, ConfigError) and e.traceback[-1].name == "broken"
    with pytest.raises(ConfigError, match="broken pass: unknown option 'sise'"):
        compress(tiny, tmp_path / "x", [{"broken": {"sise": 2}}], progress=False)
