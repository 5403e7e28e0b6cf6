"""BlinkDL -> safetensors -> load is exact; HF- and fla-named twins load to the same model."""
import json
import re

import pytest
import torch
from safetensors.torch import save_file

from rwkvlite import load_model, save_model

from ..conftest import CONFIGS, make_model


def same_logits(a, b, tokens):
    with torch.no_grad():
        return (a(tokens)[0] - b(tokens)[0]).abs().max().item()


@pytest.mark.parametrize("version", list(CONFIGS))
def test_blinkdl_safetensors_roundtrip_is_exact(version, tmp_path, tokens):
    model = make_model(version)
    torch.save(model.state_dict(), tmp_path / "model.pth")
    loaded = load_model(tmp_path / "model.pth")
    save_model(loaded, tmp_path / "model.safetensors")
    again = load_model(tmp_path / "model.safetensors")
    assert again.config == model.config
    for name, t in model.state_dict().items():
        assert torch.equal(t, again.state_dict()[name]), name
    assert same_logits(model, again, tokens) == 0.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_pth(dtype, tmp_path, tokens):
    model = make_model("6")
    torch.save({k: v.to(dtype) for k, v in model.state_dict().items()}, tmp_path / "half.pth")
    loaded = load_model(tmp_path / "half.pth")  # upcast to float32 by default
    assert loaded.emb.weight.dtype == torch.float32
    rounded = make_model("6")
    rounded.load_state_dict({k: v.to(dtype).float() for k, v in model.state_dict().items()})
    assert same_logits(rounded, loaded, tokens) == 0.0
    assert load_model(tmp_path / "half.pth", dtype=dtype).emb.weight.dtype == dtype


def fla_names(sd, prefix="model."):
    """BlinkDL RWKV-7 -> flash-linear-attention names, written from fla's convert_from_rwkv7.py."""
    out = {}
    for name, t in sd.items():
        if name in ("emb.weight", "ln_out.weight", "ln_out.bias"):
            key = {"emb.weight": "embeddings.weight", "ln_out.weight": "norm.weight", "ln_out.bias": "norm.bias"}[name]
            out[prefix + key] = t
            continue
        if name == "head.weight":
            out["lm_head.weight"] = t
            continue
        _, i, part, rest = name.split(".", 3)
        part = {"att": "attn", "ffn": "ffn", "ln0": "pre_norm", "ln1": "attn_norm", "ln2": "ffn_norm"}[part]
        m = re.fullmatch(r"([wavg])([012])", rest)
        if m:
            rest = f"{m[1]}_lora.lora." + {"0": "2.bias", "1": "0.weight", "2": "2.weight"}[m[2]]
            t = t.flatten() if m[2] == "0" else t.t().contiguous()
        elif part == "attn":
            rest = {"receptance.weight": "r_proj.weight", "key.weight": "k_proj.weight", "value.weight": "v_proj.weight",
                    "output.weight": "o_proj.weight", "ln_x.weight": "g_norm.weight", "ln_x.bias": "g_norm.bias"}.get(rest, rest)
            t = t.flatten() if rest in ("k_k", "k_a") else t
        elif rest == "x_k":
            t = t.flatten()
        out[f"{prefix}layers.{i}.{part}.{rest}"] = t.contiguous()
    return out


def test_fla_and_hf_rwkv7_twins(tmp_path, tokens):
    model = make_model("7")
    sd = model.state_dict()
    sd["blocks.0.att.v0"] = torch.zeros(1, 1, 64)  # some BlinkDL files carry unused layer-0 value LoRA
    torch.save(sd, tmp_path / "blinkdl.pth")
    hf = tmp_path / "hf"
    hf.mkdir()
    save_file(fla_names(model.state_dict()), hf / "model.safetensors")
    (hf / "config.json").write_text(json.dumps({"model_type": "rwkv7"}))
    torch.save(fla_names(model.state_dict(), prefix=""), tmp_path / "fla.pth")
    base = load_model(tmp_path / "blinkdl.pth")
    for twin in (hf, tmp_path / "fla.pth"):
        other = load_model(twin)
        assert other.config == base.config
        assert same_logits(base, other, tokens) == 0.0, twin


def test_hf_rwkv4_twin(tmp_path, tokens):
    model = make_model("4")
    hf = {}
    for name, t in model.state_dict().items():
        key = name.replace("blocks.0.ln0", "blocks.0.pre_ln").replace(".att.", ".attention.")
        key = key.replace(".ffn.", ".feed_forward.").replace("emb.", "embeddings.")
        key = re.sub(r"time_mix_k$", "time_mix_key", key)
        key = re.sub(r"time_mix_v$", "time_mix_value", key)
        key = re.sub(r"time_mix_r$", "time_mix_receptance", key)
        hf[key if key == "head.weight" else "rwkv." + key] = t.contiguous()
    save_file(hf, tmp_path / "model.safetensors")
    other = load_model(tmp_path / "model.safetensors")
    assert same_logits(model, other, tokens) == 0.0
