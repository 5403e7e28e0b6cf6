"""The lean runtime from the command line and as a process: run, chat and bench, files it
must refuse, no PyTorch imported, the embedding read without mapping it, and the kernels built."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rwkvlite.recipes import compress
from rwkvlite.runtime import Runtime

from ..conftest import run_cli
from .files import RECIPES, compressed


def test_run_chat_and_bench_commands(source, tmp_path):
    folder, path, text = source
    out = folder / "cli-int8.rwkvlite"
    compress(path, out, RECIPES["int8"], progress=False)
    r = run_cli("run", out, "--prompt", "Hello", "--max-tokens", "8", "--seed", "0", "--tokenizer", "bytes")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Hello") and "lean runtime" in r.stderr
    r = run_cli("chat", out, "--max-tokens", "5", "--seed", "1", "--tokenizer", "bytes", input="hi\n\n")
    assert r.returncode == 0, r.stderr
    r = run_cli("chat", out, "--max-tokens", "5", "--seed", "1", "--tokenizer", "bytes", "--exact", input="hi\n\n")
    assert r.returncode == 0, r.stderr
    result = tmp_path / "b.json"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}  # as a user's shell has it
    r = run_cli("bench", out, "--gen-tokens", "8", "--threads", "1", "--json", result, env=env)
    assert r.returncode == 0, r.stderr
    figures = json.loads(result.read_text())[0]["figures"]
    assert figures["torch_imported"] is False and figures["decode_ms_per_token"] > 0
    assert figures["threads"] == 1 or figures["kernels"] == "numpy"
    # one thread in all: numpy's OpenBLAS held to one (no idle workers spinning beside the kernels)
    if "openblas" in np.__config__.CONFIG["Build Dependencies"]["blas"]["name"].lower():
        assert figures["process_threads"] in (1, None)
    assert run_cli("bench", out, "--threads", "0").returncode == 2
    assert 0 < figures["bytes_read_per_token"] < figures["file_bytes"]
    r = run_cli("bench", out, "--gen-tokens", "2", "--prompt-tokens", "3", "--exact", "--threads", "1")
    assert r.returncode == 0 and "decode" in r.stdout, r.stderr


def test_one_bench_for_both_paths(source):
    """runtime/bench.py measures the lean runtime and (eval/speed.py) the PyTorch model with
    the same figures; only the lean runtime counts the bytes a token reads."""
    from rwkvlite.eval.speed import bench as torch_bench
    from rwkvlite.runtime.bench import bench_file

    folder, path, _ = source
    lean = bench_file(compressed(source, "int8"), prompt_tokens=3, gen_tokens=2, threads=1)
    torch_path = torch_bench(str(path), prompt_tokens=3, gen_tokens=2)
    assert lean.keys() == torch_path.keys()
    assert torch_path["kernels"] == "torch" and torch_path["bytes_read_per_token"] is None
    assert lean["kernels"] in ("c", "numpy") and lean["bytes_read_per_token"] > 0
    assert lean["prompt_tokens"] == torch_path["prompt_tokens"] == 3 and torch_path["decode_tokens_per_s"] > 0


@pytest.mark.parametrize("version,recipe", [("7", "int8"), ("7", "rwkvquant-3"), ("7", "lite-int4"), ("4", "int8")])
def test_inspect_reads_a_compressed_file_as_the_model_it_decodes_to(sources, version, recipe):
    """`rwkvlite inspect` of a compressed file reads its manifest (format.summary, no PyTorch)
    and gives what model/inspect.py gives of the decoded model: config, counts, shapes, source."""
    from rwkvlite.format import summary
    from rwkvlite.loaders import load_model
    from rwkvlite.model.inspect import summary as model_summary

    path = compressed(sources(version), recipe)
    model = load_model(path, dtype=None)
    assert summary(path) == {**model_summary(model), "source": model.source}


def test_runtime_refuses_damaged_and_foreign_files(source, tmp_path):
    folder, path, _ = source
    r = run_cli("run", path, "--prompt", "x")  # a plain checkpoint, not a compressed file
    assert r.returncode == 2 and "not an rwkvlite compressed file" in r.stderr
    out = compressed(source, "int8")
    data = bytearray(out.read_bytes())
    data[-10] ^= 0xFF
    bad = tmp_path / "bad.rwkvlite"
    bad.write_bytes(bytes(data))
    r = run_cli("run", bad, "--prompt", "x")
    assert r.returncode == 2 and "checksum" in r.stderr and "Traceback" not in r.stderr


def test_lean_runtime_does_not_import_torch(source):
    out = compressed(source, "int8")
    code = ("import sys; from rwkvlite.runtime import Runtime; from rwkvlite.runtime.bench import bench_file; "
            "from rwkvlite.sampling import sample; import rwkvlite.generate; rt = Runtime(sys.argv[1]); "
            "from rwkvlite.runtime.contract import agreement; agreement(sys.argv[1], [5, 6]); "
            "sample(rt.step(5)[0]); bench_file(sys.argv[1], 2, 2); "
            "print('torch' in sys.modules, '_hashlib' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False False"  # nor OpenSSL (numpy.random would load it)


def _resident_pages(start: int, nbytes: int) -> int:
    """Pages of [start, start + nbytes) mapped into this process (/proc/self/pagemap's present bit)."""
    first, end = start // 4096, (start + nbytes + 4095) // 4096
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(8 * first)
        entries = np.frombuffer(f.read(8 * (end - first)), np.uint64)
    return int(((entries >> np.uint64(63)) & np.uint64(1)).sum())


@pytest.mark.skipif(not os.path.exists("/proc/self/pagemap"), reason="needs Linux's pagemap")
@pytest.mark.parametrize("passes", [[{"fold_ln0": {}}], [{"fold_ln0": {}}, {"int": {"bits": 3, "group_size": 32}}], []],
                         ids=["cached-fp16", "cached-3bit", "uncached-fp16"])
def test_embedding_rows_are_read_without_mapping_the_table(tmp_path, passes):
    """Embedding rows come from the file by os.pread (runtime/cache.py, FileRows), with or
    without the LRU cache: they equal the stored rows decoded, and no page of the table is
    mapped into the process after steps over tokens across it (the 64 KiB at either end
    excepted: a neighbouring tensor's read may map them, fault-around)."""
    from rwkvlite.loaders import save_model
    from rwkvlite.model import RWKVConfig
    from rwkvlite.model.init import random_model

    cfg = RWKVConfig("7", n_layer=1, n_embd=64, vocab_size=16384, head_size=16, lora_decay=16, lora_a=16, lora_v=8,
                     lora_gate=32)
    save_model(random_model(cfg, 0).eval(), tmp_path / "m.safetensors")
    out = tmp_path / "m.rwkvlite"
    compress(tmp_path / "m.safetensors", out, passes, progress=False)
    rt, state = Runtime(out), None
    tokens = (5, 9000, 16383, 77, 5, 12000)
    for t in tokens:
        _, state = rt.step(t, state)
    assert (rt.emb.cache is not None) == bool(passes)
    checked = 0
    for a in rt.w.parts("emb.weight")[1].values():
        lo, hi = -(-a.ctypes.data // 65536) * 65536 + 65536, (a.ctypes.data + a.nbytes) // 65536 * 65536 - 65536
        if hi > lo:  # (small arrays, the 3-bit table's scales and zeros, have no such middle)
            assert _resident_pages(lo, hi - lo) == 0
            checked += hi - lo
    assert checked >= 128 * 1024
    stored = rt.w.mat("emb.weight")  # (decoding from the map, as the runtime does not)
    for t in tokens:
        np.testing.assert_allclose(rt.emb(t), stored.dense_rows([t])[0], rtol=1e-6, atol=1e-7)


def test_the_kernels_build_wherever_a_compiler_is_found():
    """The kernel tests skip without C kernels; a compile error must fail, not skip."""
    import shutil

    from rwkvlite.runtime import native

    if os.environ.get("RWKVLITE_KERNELS", "").lower() == "numpy":
        pytest.skip("numpy kernels asked for")
    if not (os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler")
    assert native.library() is not None
