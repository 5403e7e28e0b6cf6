"""The runtime-only install (`pip install rwkvlite`: numpy, no PyTorch): the commands for
compressed files run with every optional module made unimportable, a command that needs
PyTorch says so in one line, and the bundled compressed demo is what scripts/make_demo.py
makes from its checkpoint and writes as the checkpoint does."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from rwkvlite.cli.lean import DEMO
from rwkvlite.format import container

from .loaders.test_bad_input import assert_one_line_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKPOINT = os.path.join(ROOT, "src", "rwkvlite", "assets", "demo.safetensors")
# What pyproject.toml's extras bring (compress, report, test): absent from the runtime-only install.
OPTIONAL = ("torch", "safetensors", "tokenizers", "tqdm", "matplotlib", "rwkv")
# `rwkvlite ARGS` with the optional modules unfindable, as they are in that install: the path finder
# skips them, so importing one raises ModuleNotFoundError and importlib.util.find_spec gives None.
WITHOUT_EXTRAS = f"""
import sys
from importlib.machinery import PathFinder

class WithoutExtras(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in {OPTIONAL!r}:
            return None
        return super().find_spec(name, path, target)

sys.meta_path[sys.meta_path.index(PathFinder)] = WithoutExtras
from rwkvlite.cli import main
sys.exit(main(sys.argv[1:]))
"""
NEEDS_PYTORCH = 'needs PyTorch: pip install "rwkvlite[compress]"'


def lean_cli(*args, input=None):
    return subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS, *map(str, args)], capture_output=True, text=True,
                          input=input)


def test_demo_inspect_run_chat_and_bench_run_without_pytorch(tmp_path):
    r = lean_cli("demo", "--max-tokens", "20", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "RWKV-7  layers 6  width 256" in r.stdout and "compressed file:" in r.stdout, r.stdout
    assert r.stdout.split("---\n", 1)[1].startswith("\nROMEO:") and "lean runtime" in r.stderr
    r = lean_cli("inspect", DEMO, "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["config"]["n_layer"] == 6 and s["source"]["tokenizer"] == "bytes" and s["structure"] == []
    assert s["total"]["params"] == s["file"]["weights"] and 8 < s["file"]["bits_per_weight"] < 9
    r = lean_cli("run", DEMO, "--prompt", "JULIET:", "--max-tokens", "12", "--seed", "3", "--threads", "1")
    assert r.returncode == 0 and r.stdout.startswith("JULIET:") and len(r.stdout) > len("JULIET:"), r.stderr
    r = lean_cli("chat", DEMO, "--max-tokens", "4", "--seed", "1", input="hi\n\n")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "b.json"
    r = lean_cli("bench", DEMO, "--prompt-tokens", "3", "--gen-tokens", "3", "--threads", "1", "--json", out)
    assert r.returncode == 0 and "decode" in r.stdout, r.stderr
    assert json.loads(out.read_text())[0]["figures"]["torch_imported"] is False


@pytest.mark.parametrize("args", [
    ("compress", CHECKPOINT, "-o", "OUT", "--recipe", "int8"),
    ("quantize", CHECKPOINT, "-o", "OUT"),
    ("inspect", CHECKPOINT),
    ("bench", CHECKPOINT),
    ("generate", DEMO, "--prompt", "a"),
    ("eval", DEMO, "--limit", "1"),
    ("train", "--config", os.path.join(ROOT, "configs", "demo.json")),
], ids=lambda a: a[0] + ("-checkpoint" if CHECKPOINT in a else ""))
def test_a_command_that_needs_pytorch_says_so_in_one_line(tmp_path, args):
    out = tmp_path / "x.rwkvlite"
    r = lean_cli(*[out if a == "OUT" else a for a in args])
    assert_one_line_error(r, f"rwkvlite {args[0]} {NEEDS_PYTORCH}")
    assert not out.exists()


def test_a_missing_module_outside_the_extras_keeps_its_traceback():
    """Only the modules an install leaves out are reported as such; any other is a fault."""
    from rwkvlite.cli import _missing

    assert _missing("eval", ModuleNotFoundError(name="tqdm.auto")) == 'rwkvlite eval needs tqdm: pip install ' \
                                                                     '"rwkvlite[compress]"'  # torch is here
    assert _missing("run", ModuleNotFoundError(name="tokenizers")) == 'rwkvlite run needs tokenizers: pip install ' \
                                                                      '"tokenizers"'
    assert _missing("run", ModuleNotFoundError(name="rwkvlite.runtime.nope")) is None


def test_the_bundled_demo_is_what_the_script_makes(tmp_path):
    out = tmp_path / "demo.rwkvlite"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_demo.py"), "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (bundled, bundled_arrays), (made, made_arrays) = container.read(DEMO), container.read(out)
    timings = ("report", "data_crc32")  # the passes' seconds, and so the checksum of nothing else
    assert {k: v for k, v in bundled.items() if k not in timings} == {k: v for k, v in made.items()
                                                                       if k not in timings}
    assert bundled["report"]["source"] == "src/rwkvlite/assets/demo.safetensors" and bundled["tokenizer"] == "bytes"
    assert bundled_arrays.keys() == made_arrays.keys()
    assert all(np.array_equal(bundled_arrays[k], made_arrays[k]) for k in bundled_arrays)


def test_the_compressed_demo_writes_as_its_checkpoint_does():
    """The lean runtime on the bundled file against the PyTorch model on the checkpoint, token by
    token over text of the kind the demo was trained on (int8 codes: a few 1e-5 nats apart)."""
    from rwkvlite.loaders import load_model
    from rwkvlite.runtime import Runtime

    text = ("ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n"
            "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\nDeny thy father and refuse thy name.\n")
    tokens = list(text.encode())
    with torch.no_grad():
        reference = torch.log_softmax(load_model(CHECKPOINT)(torch.tensor([tokens]))[0][0].float(), -1).numpy()
    rt, state, lean = Runtime(DEMO, threads=1), None, []
    for t in tokens:
        logits, state = rt.step(t, state)
        lean.append(logits)
    lean = np.array(lean, dtype=np.float64)
    top = lean.max(-1, keepdims=True)
    lean = lean - top - np.log(np.exp(lean - top).sum(-1, keepdims=True))  # log-softmax
    kl = float((np.exp(reference) * (reference - lean)).sum(-1).mean())
    top1 = float((reference.argmax(-1) == lean.argmax(-1)).mean())
    assert kl < 1e-3 and top1 >= 0.97, (kl, top1)
