"""Recipes: which compression passes run, in which order, with which options.

A recipe is a list of {pass name: options}: one of the named presets below, a JSON file
{"passes": [...]} for a custom stack, or a list. `parse` turns it into (name, config) steps
(rwkvlite/passes, one frozen config per pass), checked before any model is loaded: an
unknown pass or a bad option is one ConfigError line. `rwkvlite.compress.compress` runs
one on a checkpoint.

>>> parse([{"lowrank": {"factor": 4}}, {"int": {"bits": 8}}])  # doctest: +SKIP
[('lowrank', LowRankConfig(factor=4, variant='linear')), ('rtn', RTNConfig(bits=8, group_size=128))]
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict

from .errors import RWKVLiteError
from .passes import PASSES, PassConfig, config_for
from .passes.base import ConfigError

LITE = [{"lowrank": {"factor": 8}}, {"recover": {"steps": 150}}, {"ffn_predictor": {}},
        {"cluster_head": {}}, {"fold_ln0": {}}]
PRESETS = {
    "int8": [{"rtn": {"bits": 8}}],
    "int4": [{"rtn": {"bits": 4, "group_size": 64}}],
    "rwkvquant": [{"quantize": {"method": "rwkvquant", "bits": 3}}],
    "lite": LITE,
    "lite-int8": LITE + [{"rtn": {"bits": 8}}],
    "lite-int4": LITE + [{"rtn": {"bits": 4, "group_size": 64}}],
}


def read_steps(recipe: str | list) -> list:
    """A preset name, a JSON file path, or an already parsed list -> the list of steps as written."""
    if isinstance(recipe, list):
        return recipe
    if recipe in PRESETS:
        return PRESETS[recipe]
    if not os.path.isfile(recipe):
        raise RWKVLiteError(f"unknown recipe {recipe!r}: use a preset ({', '.join(PRESETS)}) or a JSON file")
    try:
        with open(recipe) as f:
            steps = json.load(f)["passes"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise RWKVLiteError(f"{recipe}: not a recipe file ({{\"passes\": [...]}}): {e}") from None
    if not isinstance(steps, list):
        raise RWKVLiteError(f"{recipe}: \"passes\" must be a list of {{pass name: options}}")
    return steps


def parse(recipe: str | list) -> list[tuple[str, PassConfig]]:
    """(pass name, config) per step; every step is checked before any pass runs. Older pass
    names (`int` for `rtn`) are read as their current ones."""
    steps = []
    for step in read_steps(recipe):
        if not isinstance(step, dict) or len(step) != 1:
            raise ConfigError(f"recipe step {step!r}: expected one of {{{', '.join(PASSES)}: options}}")
        (name, options), = step.items()
        config = config_for(name, options)
        steps.append((config.name, config))
    return steps


def to_json(steps: list[tuple[str, PassConfig]]) -> list[dict]:
    """The steps as a manifest records them: [{pass name: every option}]."""
    return [{name: asdict(config)} for name, config in steps]


def load_recipe(recipe: str | list) -> list[dict]:
    """The recipe checked and written out in full: [{pass name: every option}]."""
    return to_json(parse(recipe))


def __getattr__(name):
    # older import paths of the driver's functions (rwkvlite.recipes.compress, ...): one implementation, in compress.py
    if name in ("compress", "calibration_set", "calibration_text"):
        from . import compress as driver

        return getattr(driver, name)
    raise AttributeError(f"module 'rwkvlite.recipes' has no attribute {name!r}")
