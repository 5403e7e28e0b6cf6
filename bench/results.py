"""Measured tables as small JSON files in bench/results/, each with what produced it.

A bench script run with `--save [NAME]` ends with `results.write(args, measured, rows)`, and
bench/results/NAME.json then holds
  {"name": ..., "command": the script's own command line, "machine": {cpu, cores, flags,
   python, numpy, torch}, "date": UTC, "rows": [one flat dict per table row]}
and bench/report.py turns every such file into bench/RESULTS.md.

>>> save("quantize-tiny5v2", [{"method": "fp16", "kl": 0.0}])  # doctest: +SKIP
"""
from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import sys

from rwkvlite.utils.io import atomic_path

HERE = os.path.dirname(os.path.abspath(__file__))
FOLDER = os.path.join(HERE, "results")
ROOT = os.path.dirname(HERE)
# CPU features the C kernels choose their loops by; the rest of /proc/cpuinfo's flags say nothing here.
FLAGS = ("avx2", "f16c", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_vbmi", "amx_tile", "neon")


def command_line(argv: list[str] | None = None) -> str:
    """The running script's command as a user types it from the repository root."""
    argv = list(sys.argv if argv is None else argv)
    script = os.path.relpath(os.path.abspath(argv[0]), ROOT) if argv and argv[0].endswith(".py") else argv[0]
    return " ".join(["python", script] + [shlex.quote(a) for a in argv[1:]])


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    """What the figures depend on: the CPU, its core count and features, and the Python stack.
    Versions come from package metadata, so a torch-free runtime bench stays torch-free."""
    info = {}
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())  # the first core's line of each key
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return {"cpu": info.get("model name") or platform.processor() or platform.machine(), "cores": os.cpu_count(), "cpu_features": [f for f in FLAGS if f in flags],
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "numpy": _version("numpy"), "torch": _version("torch")}


def save(name: str, rows: list[dict], command: str | None = None, folder: str = FOLDER) -> str:
    """Write bench/results/NAME.json atomically (temporary file, then rename); its path.

    `rows` are the measured values, one flat dict per table row; `command` defaults to the
    running script's command line."""
    data = {"name": name, "command": command or command_line(), "machine": machine(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "rows": rows}
    path = os.path.join(folder, name + ".json")
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    return path


def write(args, measured, rows: list[dict] | None = None) -> None:
    """A bench script's outputs: with --json, everything it measured (`measured`); with --save,
    the table's rows (`rows`, or `measured` itself) as bench/results/NAME.json, where NAME may
    name the script's options in braces ("runtime-v{version}")."""
    if getattr(args, "json", None):
        with atomic_path(args.json) as tmp, open(tmp, "w") as f:
            json.dump(measured, f, indent=1)
    if args.save:
        save(args.save.format_map(vars(args)), measured if rows is None else rows)


def spread(numerator: list[float], denominator: list[float]) -> dict:
    """Per-round ratios of two alternating measurements: their median and quartiles, and in how
    many rounds the numerator was the smaller (the A/B scripts' summary of a drifting machine)."""
    import numpy as np

    r = np.asarray(numerator) / np.asarray(denominator)
    return {"ratio": float(np.median(r)), "ratio_q1": float(np.quantile(r, 0.25)),
            "ratio_q3": float(np.quantile(r, 0.75)), "smaller_in": int((r < 1).sum()), "rounds": len(r)}


def add_argument(parser, default: str) -> None:
    """The bench scripts' `--save [NAME]`: write the table to bench/results/NAME.json (`default`
    when NAME is left out)."""
    parser.add_argument("--save", nargs="?", const=default, default=None, metavar="NAME",
                        help=f"write the table to bench/results/NAME.json (default name {default})")
