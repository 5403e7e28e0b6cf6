"""The tensors an RWKV model of a given config has, and their shapes, without PyTorch.

The format layer checks a compressed file against this table before anything reads its
arrays (validate.py). It describes the same modules as model/ (BlinkDL's names and shapes)
plus the modules the compression passes put in their place, as a file's structure specs
record them; tests/format/test_schema.py checks it against the PyTorch model's state dict
for every generation and structure, so the two cannot drift apart.
"""
from __future__ import annotations


def _lora_widths(cfg: dict) -> tuple[int, ...]:
    return tuple(int(cfg.get(k) or 0) for k in ("lora_mix", "lora_decay", "lora_a", "lora_v", "lora_gate"))


def _time_mix(version: str, i: int, C: int, A: int, H: int, N: int, cfg: dict) -> dict[str, tuple]:
    mix, decay, a, v, gate = _lora_widths(cfg)
    vec = (1, 1, C)
    if version == "4":
        t = {"time_decay": (A,), "time_first": (A,), **{f"time_mix_{n}": vec for n in "kvr"}}
        lin = {"key": (A, C), "value": (A, C), "receptance": (A, C), "output": (C, A)}
    elif version.startswith("5"):
        per_head = version == "5.2"
        t = {"time_decay": (H, N) if per_head else (H,), ("time_faaaa" if per_head else "time_first"):
             (H, N) if per_head else (H,), **{f"time_mix_{n}": vec for n in "kvr"}, "ln_x.weight": (A,),
             "ln_x.bias": (A,)}
        lin = {"receptance": (A, C), "key": (A, C), "value": (A, C), "output": (C, A)}
        if version != "5.0":
            t["time_mix_g"] = vec
            lin["gate"] = (A, C)
    elif version == "6":
        t = {**{f"time_maa_{n}": vec for n in "xwkvrg"}, "time_maa_w1": (C, 5 * mix), "time_maa_w2": (5, mix, C),
             "time_decay": (1, 1, A), "time_decay_w1": (C, decay), "time_decay_w2": (decay, A),
             "time_faaaa": (H, N), "ln_x.weight": (A,), "ln_x.bias": (A,)}
        lin = {"receptance": (A, C), "key": (A, C), "value": (A, C), "gate": (A, C), "output": (C, A)}
    else:  # "7"
        t = {**{f"x_{n}": vec for n in "rwkvag"}, "w0": vec, "a0": vec, "w1": (C, decay), "w2": (decay, C),
             "a1": (C, a), "a2": (a, C), "g1": (C, gate), "g2": (gate, C), "k_k": vec, "k_a": vec, "r_k": (H, N),
             "ln_x.weight": (C,), "ln_x.bias": (C,)}
        if i > 0:
            t.update({"v0": vec, "v1": (C, v), "v2": (v, C)})
        lin = {"receptance": (C, C), "key": (C, C), "value": (C, C), "output": (C, C)}
    return {**t, **{f"{n}.weight": s for n, s in lin.items()}}


def _channel_mix(version: str, C: int, F: int) -> dict[str, tuple]:
    if version == "7":
        return {"x_k": (1, 1, C), "key.weight": (F, C), "value.weight": (C, F)}
    mix = "time_maa" if version == "6" else "time_mix"
    return {f"{mix}_k": (1, 1, C), f"{mix}_r": (1, 1, C), "key.weight": (F, C), "receptance.weight": (C, C),
            "value.weight": (C, F)}


def model_shapes(cfg: dict) -> dict[str, tuple]:
    """name -> shape of every tensor of a plain model with this config (sizes as in model/config.py,
    already resolved: dim_att, dim_ffn and the LoRA widths as a compressed file's config records them)."""
    version, L, C, V = cfg["version"], cfg["n_layer"], cfg["n_embd"], cfg["vocab_size"]
    A, F = cfg.get("dim_att") or C, cfg.get("dim_ffn") or 4 * C
    N = 1 if version == "4" else cfg["head_size"]
    H = A // N
    shapes = {"emb.weight": (V, C), "ln_out.weight": (C,), "ln_out.bias": (C,), "head.weight": (V, C),
              "blocks.0.ln0.weight": (C,), "blocks.0.ln0.bias": (C,)}
    for i in range(L):
        p = f"blocks.{i}"
        shapes.update({f"{p}.ln1.weight": (C,), f"{p}.ln1.bias": (C,), f"{p}.ln2.weight": (C,), f"{p}.ln2.bias": (C,)})
        shapes.update({f"{p}.att.{k}": s for k, s in _time_mix(version, i, C, A, H, N, cfg).items()})
        shapes.update({f"{p}.ffn.{k}": s for k, s in _channel_mix(version, C, F).items()})
    return shapes


def _replace_linear(shapes: dict, name: str, new: dict[str, tuple]) -> None:
    """Module `name` (a Linear) replaced: its weight goes, the new module's tensors come."""
    if f"{name}.weight" not in shapes:
        raise ValueError(f"structure names {name!r}, which this model does not have")
    del shapes[f"{name}.weight"]
    shapes.update({f"{name}.{k}": s for k, s in new.items()})


def _int(spec: dict, key: str, low: int = 1) -> int:
    if not isinstance(spec, dict):
        raise ValueError(f"a structure spec must be an object, not {spec!r}")
    value = spec.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 1 << 24:
        raise ValueError(f"structure field {key!r} must be an integer from {low} to {1 << 24}, not {value!r}")
    return value


def structured_shapes(cfg: dict, structure: dict) -> dict[str, tuple]:
    """model_shapes with the passes' structures applied (lowrank, ffn_predictor, cluster_head, fold_ln0)."""
    shapes = model_shapes(cfg)
    for name, spec in (structure.get("lowrank") or {}).items():
        out, inp = shapes.get(f"{name}.weight", (0, 0))
        rank = _int(spec, "rank")  # (checks spec is an object)
        if spec.get("variant") not in ("linear", "relu"):
            raise ValueError(f"lowrank {name}: variant must be 'linear' or 'relu', not {spec.get('variant')!r}")
        new = {"w1": (rank, inp), "w2": (out, rank)}
        if spec["variant"] == "relu":
            new["diag"] = (inp,)
        _replace_linear(shapes, name, new)
    for name, spec in (structure.get("ffn_predictor") or {}).items():
        out, inp = shapes.get(f"{name}.weight", (0, 0))
        hidden, _ = _int(spec, "hidden"), _int(spec, "quant_bits")
        _replace_linear(shapes, name, {"weight": (out, inp), "mlp1.weight": (hidden, inp), "mlp1.bias": (hidden,),
                                       "mlp2.weight": (out, hidden), "mlp2.bias": (out,), "qsign": (out, inp),
                                       "qscale": (out, 1), "threshold": (), "keep": ()})
    for name, spec in (structure.get("cluster_head") or {}).items():
        V, C = shapes.get(f"{name}.weight", (0, 0))
        k = _int(spec, "clusters")
        _replace_linear(shapes, name, {"weight": (V, C), "scorer.weight": (k, C), "scorer.bias": (k,),
                                       "cluster": (V,)})
    for name in structure.get("fold_ln0") or {}:
        if f"{name}.weight" not in shapes:
            raise ValueError(f"structure names {name!r}, which this model does not have")
        del shapes[f"{name}.weight"], shapes[f"{name}.bias"]
    unknown = set(structure) - {"lowrank", "ffn_predictor", "cluster_head", "fold_ln0"}
    if unknown:
        raise ValueError(f"unknown model structure {sorted(unknown)[0]!r} (written by a newer rwkvlite?)")
    return shapes
