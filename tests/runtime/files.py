"""Small random models of each generation, compressed by each kind of recipe, made once per
test session (conftest.py's sources fixture) and shared by the runtime's tests."""
from rwkvlite.recipes import compress

TEXT = "And God said, Let there be light: and there was light. " * 300
LITE = [{"lowrank": {"factor": 4}}, {"ffn_predictor": {"steps": 50}},
        {"cluster_head": {"k": 16, "pca_dim": 8, "steps": 50}}, {"fold_ln0": {}}]
RECIPES = {
    "fp16": [],
    "int8": [{"int": {"bits": 8, "group_size": 32}}],
    "int4": [{"int": {"bits": 4, "group_size": 32}}],
    "rwkvquant-3": [{"quantize": {"method": "rwkvquant", "bits": 3, "group_size": 32, "vq_group": 32,
                                  "sq_share": 0.5, "act_order": True}}],
    "lite": LITE,
    "lite-int4": LITE + [{"int": {"bits": 4, "group_size": 32}}],
}
# n-bit predictor copies (decoded once, multiplied as float32 in C) and the relu low-rank variant
# 6-bit codes: the fast mode's int8 tier (runtime/fast.py), where the kernels have it
OTHER = {"int6": [{"int": {"bits": 6, "group_size": 64}}],
         "lite-relu-2bitcopy": [{"lowrank": {"factor": 4, "variant": "relu"}},
                                {"ffn_predictor": {"steps": 20, "quant_bits": 2}}, {"fold_ln0": {}},
                                {"int": {"bits": 3, "group_size": 32}}]}

# RWKV-7 (rwkv7.py) with every recipe; RWKV-6 and 5.x (rwkv6.py: Rwkv6Block, Rwkv5Block) with a
# recipe of each kind their passes support; RWKV-4 (rwkv4.py) the same
CASES = [("7", recipe) for recipe in RECIPES] + [
    ("6", "fp16"), ("6", "int8"), ("6", "rwkvquant-3"), ("6", "lite-int4"),
    ("5.2", "int8"), ("5.2", "lite-int4"), ("5.1", "int8"), ("5.0", "int8")]
CASES4 = [("4", "fp16"), ("4", "int8"), ("4", "rwkvquant-3"), ("4", "lite-int4")]


def compressed(source, recipe, tokenizer="bytes"):
    """The source model (folder, checkpoint, calibration text) compressed by a recipe, made once;
    tokenizer: the calibration text's ("bytes", or a World vocabulary's path)."""
    folder, path, text = source
    out = folder / f"{recipe}.rwkvlite"
    if not out.exists():
        compress(path, out, {**RECIPES, **OTHER}[recipe], calibration=str(text), n_seq=4, seq_len=32,
                 tokenizer=str(tokenizer), progress=False)
    return out


def use_numpy(monkeypatch) -> None:
    """Runtimes made from here on run without the C kernels (RWKVLITE_KERNELS=numpy)."""
    monkeypatch.setenv("RWKVLITE_KERNELS", "numpy")


def rebuild_kernels(monkeypatch) -> None:
    """Runtimes made from here on use the C kernels again (undoing use_numpy)."""
    monkeypatch.delenv("RWKVLITE_KERNELS", raising=False)


def use_kernels(kind: str, monkeypatch) -> None:
    """Runtimes made from here on use the C kernels ("c", "c-fast") or numpy ("numpy");
    skips when the C kernels are asked for and there is no compiler."""
    import pytest

    from rwkvlite.runtime import native

    if kind == "numpy":
        use_numpy(monkeypatch)
        return
    rebuild_kernels(monkeypatch)
    if native.library() is None:
        pytest.skip("no C compiler")
