"""Files that pass their checksums but lie: each refused with one line and exit status 2, by the lean
runtime (`rwkvlite run`) and, for a sample, the evaluation path (`rwkvlite generate`: the file
decoded into the PyTorch model)."""
import struct

import numpy as np
import pytest

from rwkvlite.loaders import save_model
from rwkvlite.recipes import compress

from ..conftest import make_model, run_cli
from ..loaders.test_bad_input import assert_one_line_error
from .lies import first, resize, rewrite

TEXT = "In the beginning God created the heaven and the earth. " * 200
LITE = [{"lowrank": {"factor": 4}}, {"ffn_predictor": {"steps": 20}},
        {"cluster_head": {"k": 16, "pca_dim": 8, "steps": 20}}, {"fold_ln0": {}}]
RECIPES = {
    "int8": [{"int": {"bits": 8, "group_size": 32}}],
    "rwkvquant": [{"quantize": {"method": "rwkvquant", "bits": 3, "group_size": 32, "vq_group": 32,
                                "sq_share": 0.5, "act_order": True}}],
    "lite-int4": LITE + [{"int": {"bits": 4, "group_size": 32}}],
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(version, recipe) -> a compressed file of a small random model, made on first use."""
    folder, made = tmp_path_factory.mktemp("lies"), {}
    (folder / "t.txt").write_text(TEXT)

    def get(version, recipe):
        if (version, recipe) not in made:
            src = folder / f"{version}.safetensors"
            if not src.exists():
                save_model(make_model(version), src)
            out = folder / f"{version}-{recipe}.rwkvlite"
            compress(src, out, RECIPES[recipe], calibration=str(folder / "t.txt"), n_seq=4, seq_len=32,
                     tokenizer="bytes", progress=False)
            made[version, recipe] = out
        return made[version, recipe]

    return get


def tensor(m, name):
    return m["tensors"][name]


def sq(m):
    """A scalar-coded matrix of several groups per row (int8 files: every matrix is)."""
    return tensor(m, "blocks.0.att.key.weight")


def vq(m):
    return tensor(m, first(m, "vq"))


def perm_key(m):
    return tensor(m, first(m, "sq", "perm"))["arrays"]["perm"]


def set_perm(m, h, d, value):
    a = h[perm_key(m)]["data_offsets"][0]
    d[a:a + 4] = struct.pack("<i", value)


def resize_role(m, h, d, name, role, shape_of):
    key = tensor(m, name)["arrays"][role]
    resize(h, d, key, shape_of(h[key]["shape"]))


# name -> (version, recipe, edit(manifest, header, data), a word of the expected message)
LIES = {
    "sq group_size 0": ("7", "int8", lambda m, h, d: sq(m).update(group_size=0), "group_size"),
    "vq group_size 0": ("7", "rwkvquant", lambda m, h, d: vq(m).update(group_size=0), "group_size"),
    "1e7 rows": ("7", "int8", lambda m, h, d: sq(m)["shape"].__setitem__(0, 10**7), "shape"),
    "1e7 columns": ("7", "int8", lambda m, h, d: sq(m)["shape"].__setitem__(1, 10**7), "shape"),
    "head of 1e8 rows": ("7", "int8", lambda m, h, d: tensor(m, "head.weight")["shape"].__setitem__(0, 10**8), "head"),
    "vq bits 31": ("7", "rwkvquant", lambda m, h, d: vq(m).update(bits=31), "bits"),
    "short permutation": ("7", "rwkvquant", lambda m, h, d: resize(h, d, perm_key(m), [h[perm_key(m)]["shape"][0] - 1]),
                          "perm"),
    "permutation holding 1e9": ("7", "rwkvquant", lambda m, h, d: set_perm(m, h, d, 10**9), "permutation"),
    "permutation with a repeat": ("7", "rwkvquant", lambda m, h, d: set_perm(m, h, d, 1), "permutation"),
    "value matrix marked transposed": ("7", "int8", lambda m, h, d: tensor(m, "blocks.0.ffn.value.weight").update(
        transposed=True), "value"),
    "key matrix marked transposed": ("7", "lite-int4", lambda m, h, d: tensor(m, "blocks.1.ffn.key.weight").update(
        transposed=True), "transposed"),
    "sq bits 9": ("7", "int8", lambda m, h, d: sq(m).update(bits=9), "bits"),
    "sq bits 16": ("5.2", "int8", lambda m, h, d: sq(m).update(bits=16), "bits"),
    "sq bits -1": ("7", "int8", lambda m, h, d: sq(m).update(bits=-1), "bits"),
    "a shape of floats": ("7", "int8", lambda m, h, d: tensor(m, "blocks.0.att.x_r")["shape"].__setitem__(2, 64.0),
                          "shape"),
    "sq bits as text": ("7", "int8", lambda m, h, d: sq(m).update(bits="8"), "bits"),
    "group size that does not match the arrays": ("7", "int8", lambda m, h, d: sq(m).update(
        group_size=sq(m)["group_size"] * 2), "groups"),
    "short scale array": ("7", "int8", lambda m, h, d: resize_role(m, h, d, "blocks.0.att.key.weight", "scale",
                                                                   lambda s: [s[0] - 1, s[1]]), "scale"),
    "short code array": ("5.2", "int8", lambda m, h, d: resize_role(m, h, d, "blocks.0.att.key.weight", "q",
                                                                    lambda s: [s[0], s[1] - 1]), "q"),
    "float32 over float16 data": ("7", "int8", lambda m, h, d: tensor(m, "blocks.0.ln1.weight").update(
        dtype="float32"), "values"),
    "short layer-norm vector": ("7", "int8", lambda m, h, d: resize_role(m, h, d, "blocks.0.ln1.weight", "values",
                                                                         lambda s: [s[0] // 2]), "ln1"),
    "short mix vector": ("5.2", "int8", lambda m, h, d: resize_role(m, h, d, "blocks.1.att.time_mix_k", "values",
                                                                    lambda s: [1, 1, s[-1] - 8]), "time_mix_k"),
    "codebook with too few entries": ("7", "rwkvquant", lambda m, h, d: resize_role(
        m, h, d, first(m, "vq"), "codebook", lambda s: [s[0], s[1] // 2, s[2]]), "codebook"),
    "n_layer 0": ("7", "int8", lambda m, h, d: m["config"].update(n_layer=0), "n_layer"),
    "n_layer -1": ("7", "int8", lambda m, h, d: m["config"].update(n_layer=-1), "n_layer"),
    "n_layer beyond the blocks": ("5.2", "int8", lambda m, h, d: m["config"].update(n_layer=4), "missing"),
    "head size leaving no head": ("7", "int8", lambda m, h, d: m["config"].update(head_size=128), "head_size"),
    "head size 0": ("7", "int8", lambda m, h, d: m["config"].update(head_size=0), "head_size"),
    "16-row embedding for 300 tokens": ("7", "int8", lambda m, h, d: resize_role(
        m, h, d, "emb.weight", "q", lambda s: [16, s[1]]) or tensor(m, "emb.weight")["shape"].__setitem__(0, 16),
        "emb.weight"),
    "unknown version": ("7", "int8", lambda m, h, d: m["config"].update(version="8"), "version"),
    "config not an object": ("7", "int8", lambda m, h, d: m.update(config=[1]), "config"),
    "tensor missing": ("7", "int8", lambda m, h, d: m["tensors"].pop("ln_out.bias"), "ln_out.bias"),
    "array missing": ("7", "int8", lambda m, h, d: sq(m)["arrays"].update(q="nope"), "nope"),
    "unknown encoding": ("7", "int8", lambda m, h, d: sq(m).update(enc="zq"), "encoding"),
    "cluster ids of -2e9": ("7", "lite-int4", lambda m, h, d: tensor(m, "head.cluster").update(offset=2 * 10**9),
                            "cluster"),
    "cluster count 1e9": ("7", "lite-int4", lambda m, h, d: m["structure"]["cluster_head"]["head"].update(
        clusters=10**9), "clusters"),
    "cluster count off by one": ("7", "lite-int4", lambda m, h, d: m["structure"]["cluster_head"]["head"].update(
        clusters=m["structure"]["cluster_head"]["head"]["clusters"] + 1), "scorer"),
    "groups as a float": ("5.2", "int8", lambda m, h, d: sq(m).update(groups=float(sq(m)["groups"])), "groups"),
    "a structure spec that is not an object": ("7", "lite-int4", lambda m, h, d: m["structure"]["lowrank"].update(
        {next(iter(m["structure"]["lowrank"])): []}), "structure"),
    "low-rank rank 0": ("7", "lite-int4", lambda m, h, d: next(iter(m["structure"]["lowrank"].values())).update(
        rank=0), "rank"),
    "header array of a wrong byte count": ("7", "int8", lambda m, h, d: h[sq(m)["arrays"]["q"]]["shape"].__setitem__(
        0, 2), "bytes"),
    "header dtype unknown": ("7", "int8", lambda m, h, d: h[sq(m)["arrays"]["q"]].update(dtype="Q4"), "dtype"),
}


@pytest.mark.parametrize("lie", list(LIES))
def test_a_lying_file_is_refused_by_the_runtime(files, tmp_path, lie):
    version, recipe, edit, word = LIES[lie]
    out = tmp_path / "lie.rwkvlite"
    rewrite(files(version, recipe), out, edit)
    result = run_cli("run", out, "--prompt", "In", "--max-tokens", "3", "--tokenizer", "bytes")
    assert_one_line_error(result, word)


@pytest.mark.parametrize("lie", ["sq group_size 0", "short permutation", "cluster ids of -2e9", "n_layer -1"])
def test_a_lying_file_is_refused_by_the_evaluation_path(files, tmp_path, lie):
    version, recipe, edit, word = LIES[lie]
    out = tmp_path / "lie.rwkvlite"
    rewrite(files(version, recipe), out, edit)
    assert_one_line_error(run_cli("generate", out, "--prompt", "In", "--max-tokens", "1", "--tokenizer", "bytes"), word)


@pytest.mark.parametrize("version,recipe", [("7", "int8"), ("7", "rwkvquant"), ("7", "lite-int4"), ("5.2", "int8")])
def test_an_unedited_rewrite_still_runs(files, tmp_path, version, recipe):
    """The rewriting itself keeps a file valid: what the lies are refused for is their edit."""
    out = tmp_path / "same.rwkvlite"
    rewrite(files(version, recipe), out, lambda m, h, d: None)
    result = run_cli("run", out, "--prompt", "In", "--max-tokens", "3", "--tokenizer", "bytes", "--seed", "0")
    assert result.returncode == 0, result.stderr


def test_duplicate_names_in_the_header_are_refused(files, tmp_path):
    src = files("7", "int8")
    blob = open(src, "rb").read()
    n = struct.unpack("<Q", blob[:8])[0]
    head = blob[8:8 + n].decode()
    key = '"ln_out.bias:values":'
    entry_start = head.index(key)
    entry_end = head.index("}", entry_start) + 1
    dup = head[:entry_end] + "," + head[entry_start:entry_end] + head[entry_end:]
    raw = dup.encode()
    (tmp_path / "dup.rwkvlite").write_bytes(struct.pack("<Q", len(raw)) + raw + blob[8 + n:])
    assert_one_line_error(run_cli("run", tmp_path / "dup.rwkvlite", "--prompt", "a"), "twice")


def test_random_header_flips_never_crash(files, tmp_path):
    """One-byte flips anywhere in the header (names, fields, padding): a one-line refusal or a run."""
    src = files("5.2", "int8")
    blob = bytearray(open(src, "rb").read())
    n = struct.unpack("<Q", blob[:8])[0]
    rng = np.random.default_rng(0)
    for i in range(12):
        at = 8 + int(rng.integers(n))
        flipped = bytearray(blob)
        flipped[at] ^= 1 << int(rng.integers(8))
        out = tmp_path / f"flip{i}.rwkvlite"
        out.write_bytes(flipped)
        result = run_cli("run", out, "--prompt", "a", "--max-tokens", "2", "--tokenizer", "bytes")
        assert "Traceback" not in result.stderr and result.returncode in (0, 2), (at, result.stderr[-600:])
        assert result.returncode == 0 or len(result.stderr.strip().splitlines()) == 1, result.stderr
