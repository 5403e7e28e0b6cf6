import json
import os
import re

from rwkvlite.groups import group_of

from .conftest import make_model, shared, run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



def test_inspect_json_groups(tmp_path):
    import torch

    torch.save(make_model("7").state_dict(), tmp_path / "m.pth")
    out = run_cli("inspect", tmp_path / "m.pth", "--json")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["config"]["version"] == "7" and s["config"]["n_layer"] == 3
    assert sum(g["params"] for g in s["groups"].values()) == s["total"]["params"]
    assert s["groups"]["lora-like"]["params"] > 0 and s["groups"]["embedding"]["params"] == 300 * 64
    assert group_of("blocks.1.att.time_maa_w2") == "lora-like" and group_of("blocks.1.att.gate.weight") == "time-mix"


def test_generate_is_deterministic_under_seed():
    model = shared("models", "rwkvcpp-tiny", "tiny-rwkv-5v2-730K-FP32.bin")
    args = ("generate", model, "--prompt", "The ", "--max-tokens", "30", "--seed", "7")
    a, b = run_cli(*args), run_cli(*args)
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout and a.stdout.startswith("The ") and len(a.stdout) > 20


def test_readme_commands_and_ci_agree():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    commands = re.findall(r"^```(?:bash|sh)?\n(.+?)\n```", readme, flags=re.S | re.M)[:2]
    assert len(commands) == 2, "README must start with two command blocks"
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read()
    assert commands[1].strip() in ci, "the README's test command must be what .ci/run calls"


def test_counts_below_their_least_are_one_line_errors():
    """A zero or negative count (context, limit, tokens) is refused by the argument parser in one
    line; --ctx 0 reached range() and a ZeroDivisionError before."""
    model = shared("models", "rwkvcpp-tiny", "tiny-rwkv-4v0-660K-FP32.bin")
    for args, name in [(("eval", model, "--ctx", "0"), "--ctx"), (("eval", model, "--limit", "-5"), "--limit"),
                       (("bench", model, "--gen-tokens", "0"), "--gen-tokens"),
                       (("generate", model, "--prompt", "a", "--max-tokens", "-1"), "--max-tokens"),
                       (("quantize", model, "-o", "x", "--calib-len", "0"), "--calib-len")]:
        r = run_cli(*args)
        assert r.returncode == 2 and f"argument {name}: must be at least" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
