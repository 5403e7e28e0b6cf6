"""Fuzzing compressed files: mutate one manifest field or header entry, recompute the checksums,
and run the file through `rwkvlite run` (lean runtime) and `rwkvlite eval` (PyTorch path).

The outcome of each run must be a one-line refusal (exit 2) or a run that finishes (exit 0):
never a signal, a traceback, a hang or a sanitizer report. Runs go through a worker child process
that takes many files (a fresh interpreter per file would cost seconds); when the worker dies or
stops answering, the file it was on is recorded as a crash or a hang, and a new worker goes on.

    python scripts/fuzz.py --files 2000 [--asan]      (the long mode; tests/format/test_fuzz.py: short)
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import random
import selectors
import subprocess
import sys

from .lies import join, parts

# values a lie may put in place of an integer, a string, a float
INTS = (0, -1, 1, 2, 3, 7, 9, 16, 31, 33, 64, 255, 256, 1 << 16, 10**7, 10**9, 2 * 10**9, 1 << 31, 1 << 40, -(1 << 31))
STRINGS = ("", "dense", "sq", "vq", "int", "float32", "float16", "bfloat16", "int64", "F32", "U8", "7", "4", "x")


def leaves(obj, path=()):
    """Every (path, value) in a JSON tree, containers included (so they can be replaced or emptied)."""
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaves(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from leaves(v, path + (i,))


def mutant(value, rng: random.Random):
    """A different value of a likely-harmful kind for this one."""
    if isinstance(value, bool):
        return rng.choice([not value, 1, "true", None])
    if isinstance(value, int):
        return rng.choice([*INTS, value + 1, value - 1, value * 2, value // 2, -value, str(value), float(value)])
    if isinstance(value, float):
        return rng.choice([0.0, -value, value * 1e9, float("nan"), float("inf"), int(value), str(value)])
    if isinstance(value, str):
        return rng.choice([*STRINGS, value + "x", value[:-1], 5, None])
    if isinstance(value, list):
        return rng.choice([value[:-1], value + value[-1:], [], [value], None, 0] if value else [[0], None, {}])
    if isinstance(value, dict):
        return rng.choice([{}, None, [], 1])
    return rng.choice([0, "x", [], {}])


def _set(tree, path, value, delete: bool):
    *head, last = path
    for k in head:
        tree = tree[k]
    if delete:
        del tree[last]
    else:
        tree[last] = value


def mutate(src: str, dst: str, rng: random.Random) -> str:
    """Write dst: src with one mutated field of its manifest or safetensors header; what changed."""
    meta, header, manifest, data = parts(src)
    target, name = (manifest, "manifest") if rng.random() < 0.75 else (header, "header")
    path, value = rng.choice([p for p in leaves(target) if p[0]])
    delete = rng.random() < 0.1
    new = None if delete else mutant(copy.deepcopy(value), rng)
    _set(target, path, new, delete)
    raw = json.dumps(manifest, sort_keys=True, allow_nan=True)
    with open(dst, "wb") as f:
        f.write(join(meta, header, manifest, data, raw_manifest=raw))
    return f"{name}{list(path)} {'deleted' if delete else f'= {new!r}'[:80]}"


def commands(path: str, text: str) -> list[list[str]]:
    """The two paths a file is run through."""
    return [["run", path, "--prompt", "In the", "--max-tokens", "3", "--tokenizer", "bytes", "--seed", "1"],
            ["eval", path, "--tasks", "wikitext", "--text", text, "--limit", "24", "--ctx", "16",
             "--tokenizer", "bytes"]]


def worker() -> None:
    """Read command lines (JSON) from stdin; run each through the CLI in this process; answer
    {"rc": exit status, "err": stderr} per line. A crash ends the process, which the parent sees."""
    from rwkvlite import cli

    for line in sys.stdin:
        argv = json.loads(line)
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                rc = cli.main(argv)
            except SystemExit as e:  # argparse
                rc = e.code if isinstance(e.code, int) else 1
            except BaseException as e:  # noqa: BLE001  what the fuzzer counts: anything that escapes main
                rc = f"traceback {type(e).__name__}: {str(e)[:200]}"
        print(json.dumps({"rc": rc, "err": err.getvalue()[-2000:]}), flush=True)


class Runner:
    """A worker process and the runs it makes; restarted after a crash or a hang."""

    def __init__(self, env: dict | None = None, timeout: float = 60.0):
        self.env, self.timeout, self.proc = env, timeout, None

    def _start(self):
        here = os.path.dirname(os.path.abspath(__file__))
        root = os.path.dirname(os.path.dirname(here))
        self.proc = subprocess.Popen([sys.executable, "-c", "from tests.format.fuzz import worker; worker()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=root, env=self.env)

    def run(self, argv: list[str]) -> tuple[str, str]:
        """(outcome, detail): outcome in ok, refused, traceback, crash, hang, multiline."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(json.dumps(argv) + "\n")
        self.proc.stdin.flush()
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(self.timeout):
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            return "hang", ""
        line = self.proc.stdout.readline()
        if not line:  # the worker died: a signal, an abort (sanitizers abort)
            code = self.proc.wait()
            err = self.proc.stderr.read()[-2000:]
            self.proc = None
            return "crash", f"exit {code}: {err}"
        answer = json.loads(line)
        rc, err = answer["rc"], answer["err"]
        if isinstance(rc, str):
            return "traceback", rc
        if "AddressSanitizer" in err or "Traceback" in err:
            return "traceback", err
        if rc == 0:
            return "ok", ""
        lines = [x for x in err.strip().splitlines() if not x.startswith("[")]
        return ("refused", lines[0]) if rc == 2 and len(lines) == 1 else ("multiline", f"rc {rc}: {err}")

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


def fuzz(sources: list[str], n: int, folder: str, text: str, seed: int = 0, env=None, log=None) -> dict:
    """n mutated files spread over sources, each run both ways: counts per outcome, and the bad ones."""
    rng, runner = random.Random(seed), Runner(env)
    counts, bad = {}, []
    try:
        for i in range(n):
            src = sources[i % len(sources)]
            dst = os.path.join(folder, f"m{i % 8}.rwkvlite")
            what = mutate(src, dst, rng)
            for argv in commands(dst, text):
                outcome, detail = runner.run(argv)
                counts[outcome] = counts.get(outcome, 0) + 1
                if outcome not in ("ok", "refused"):
                    bad.append({"file": os.path.basename(src), "mutation": what, "command": argv[0],
                                "outcome": outcome, "detail": detail})
            if log and (i + 1) % 100 == 0:
                log(f"{i + 1}/{n} files: {counts}")
    finally:
        runner.close()
    return {"files": n, "runs": counts, "bad": bad}
