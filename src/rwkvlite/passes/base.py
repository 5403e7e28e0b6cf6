"""Passes as typed configs applied by one verb (after torchao's quantize_(model, Config(...))).

A pass is a frozen dataclass config, checked when it is made, and the function that applies
it, registered together under the pass's recipe name:

    @dataclass(frozen=True)
    class LowRankConfig(PassConfig):
        factor: int = 8

        def __post_init__(self):
            super().__post_init__()  # option types
            self.require(self.factor >= 1, f"factor must be at least 1, not {self.factor}")

    @register("lowrank", LowRankConfig)
    def lowrank(model, cfg: LowRankConfig, ctx: Context | None = None) -> PassResult: ...

`apply(model, LowRankConfig(factor=4))` runs one pass; `compress_model(model, steps, ctx)`
runs a recipe's (name, config) steps and returns the reports, the structure specs and the
stored encodings apart. A bad option is one ConfigError line naming the pass and the
option; an error inside a pass is that error, with its traceback.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

from ..errors import RWKVLiteError


class ConfigError(RWKVLiteError, ValueError):
    """A recipe step or pass option that cannot be used: names the pass and the option."""


# option types a JSON recipe can give, by their annotation (a bool is not an int here)
_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


@dataclass(frozen=True)
class PassConfig:
    """Base of every pass config: `name` (set by register) and option type checks."""

    name: ClassVar[str] = "pass"
    version: ClassVar[int] = 1

    def __post_init__(self):
        for f in fields(self):
            value, allowed = getattr(self, f.name), _TYPES.get(str(f.type))
            if allowed and (not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool))):
                raise ConfigError(f"{self.name} pass: {f.name} must be {f.type}, not {value!r}")

    def require(self, ok: bool, message: str) -> None:
        """Raise ConfigError("<pass> pass: <message>") unless ok."""
        if not ok:
            raise ConfigError(f"{self.name} pass: {message}")


@dataclass(frozen=True)
class PassResult:
    """What a pass returns: its report (JSON-able), the structure specs of the modules it put
    in the model ({module name: spec}, rebuilt by model.structure), and the stored form of
    tensors it encoded ({tensor name: (entry, arrays)}, see format.encodings)."""

    report: dict
    structure: dict | None = None
    encoded: dict = field(default_factory=dict)


def _no_tokens():
    raise RWKVLiteError("this pass needs calibration tokens: run it through compress() or give Context(tokens=...)")


@dataclass
class Context:
    """What a pass may ask of its driver besides the model and the config. Callables are
    called only by the passes that need them (calibration tokens are made from the model as it
    is when a pass first asks). `bars(description, total)` gives a context manager yielding a
    tick(i, n) callback: the driver's progress display; `show_training` lets training print its own."""

    tokens: Callable[[], Any] = _no_tokens
    calibration: str = "self"
    tokenizer: Callable[[], Any] | None = None
    original: Callable[[], Any] | None = None
    bars: Callable[[str, int], Any] | None = None
    show_training: bool = False

    def progress(self, description: str, total: int):
        return self.bars(description, total) if self.bars else nullcontext(None)


@dataclass(frozen=True)
class Pass:
    name: str
    config: type
    run: Callable[..., PassResult]


PASSES: dict[str, Pass] = {}
ALIASES: dict[str, str] = {}  # older recipe names still accepted


def register(name: str, config: type, aliases: tuple[str, ...] = ()):
    """Decorator: the function applies `config` (a PassConfig) under recipe name `name`."""
    def add(fn):
        if name in PASSES or not issubclass(config, PassConfig):
            raise ValueError(f"pass {name!r}: registered twice, or {config.__name__} is not a PassConfig")
        config.name = name
        PASSES[name] = Pass(name, config, fn)
        ALIASES.update({a: name for a in aliases})
        return fn
    return add


def canonical(name: str) -> str:
    """The registered name for a recipe name or an alias."""
    name = ALIASES.get(name, name)
    if name not in PASSES:
        raise ConfigError(f"unknown pass {name!r}: expected one of {', '.join(PASSES)}")
    return name


def config_for(name: str, options: dict) -> PassConfig:
    """The config of recipe step {name: options}; one ConfigError line for an unknown pass,
    an option the pass does not take, or a bad value."""
    spec = PASSES[canonical(name)]
    if not isinstance(options, dict):
        raise ConfigError(f"{spec.name} pass: options must be an object, not {options!r}")
    known = {f.name: f for f in fields(spec.config)}
    for key in options:
        if key not in known:
            raise ConfigError(f"{spec.name} pass: unknown option {key!r}; it takes {', '.join(known) or 'none'}")
    missing = [k for k, f in known.items() if k not in options and f.default is MISSING
               and f.default_factory is MISSING]
    if missing:
        raise ConfigError(f"{spec.name} pass: option {missing[0]!r} is required")
    return spec.config(**options)


def apply(model, config: PassConfig, ctx: Context | None = None) -> PassResult:
    """Run one pass on `model` in place; its report gains the pass name and its seconds."""
    spec = PASSES[canonical(config.name)]
    if not isinstance(config, spec.config):
        raise TypeError(f"{type(config).__name__} is not the {spec.name} pass's config ({spec.config.__name__})")
    start = time.perf_counter()
    result = spec.run(model, config, ctx or Context())
    result.report.setdefault("pass", spec.name)
    result.report["seconds"] = time.perf_counter() - start
    return result


@dataclass
class Compressed:
    """What a recipe did: one report per step, the structure specs merged by pass name
    ({pass name: {module name: spec}}, as a manifest records them) and every encoded tensor."""

    reports: list[dict]
    structure: dict
    encoded: dict


def compress_model(model, steps: Iterable[tuple[str, PassConfig]], ctx: Context | None = None,
                   structure: dict | None = None, before_each: Callable[[str], None] | None = None) -> Compressed:
    """Run recipe `steps` in order on `model` in place. `structure`: the specs the model was
    loaded with (a compressed source keeps its rebuilt modules); `before_each(name)` lets the
    driver show which pass runs."""
    out = Compressed([], {k: dict(v) for k, v in (structure or {}).items()}, {})
    for name, config in steps:
        if before_each:
            before_each(name)
        result = apply(model, config, ctx)
        out.reports.append(result.report)
        out.encoded.update(result.encoded)
        if result.structure:
            out.structure[config.name] = {**out.structure.get(config.name, {}), **result.structure}
    return out
