"""Turn result JSON files into a markdown table and a quality-against-size plot.

>>> write_report(["fp16.json", "int4.json"], "report/")  # doctest: +SKIP
"""
from __future__ import annotations

import json
import os

from ..errors import DataError
from ..utils.io import atomic_path

# (task, figure, column title); the first present figure of QUALITY is plotted.
COLUMNS = [
    ("wikitext", "bits_per_byte", "wikitext bits/byte"), ("wikitext", "ppl", "wikitext ppl"),
    ("lambada", "accuracy", "lambada acc"), ("lambada", "ppl", "lambada ppl"),
    ("piqa", "accuracy_norm", "piqa acc_norm"), ("fidelity", "kl_mean", "KL"),
    ("fidelity", "top1_agreement", "top-1 agree"), ("bench", "decode_ms_per_token", "decode ms/tok"),
    ("bench", "peak_rss_generate_mib", "peak RSS MiB"),
]
QUALITY = [("wikitext", "bits_per_byte"), ("wikitext", "ppl"), ("lambada", "ppl")]


def load_records(paths) -> list[dict]:
    records = []
    for path in paths:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: not a results file ({e})") from None
        data = data if isinstance(data, list) else [data]
        if not all(isinstance(r, dict) and {"model", "task", "figures"} <= set(r) for r in data):
            raise DataError(f"{path}: records need 'model', 'task' and 'figures'")
        records.extend(data)
    return records


def table(records) -> tuple[list[str], dict[str, dict]]:
    """Rows keyed by model path: {column title: value, 'size_mb': file size}."""
    rows: dict[str, dict] = {}
    for r in records:
        row = rows.setdefault(r["model"], {})
        if r.get("model_bytes"):
            row["size_mb"] = r["model_bytes"] / 2**20
        for task, figure, title in COLUMNS:
            if r["task"] == task and figure in r["figures"]:
                row[title] = r["figures"][figure]
    titles = [t for _, _, t in COLUMNS if any(t in row for row in rows.values())]
    return titles, rows


def markdown(titles, rows) -> str:
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| model | size MB | " + " | ".join(titles) + " |", "|---" * (len(titles) + 2) + "|"]
    for model, row in rows.items():
        cells = [fmt(row.get("size_mb", "")) if "size_mb" in row else ""] + [fmt(row.get(t, "")) for t in titles]
        lines.append(f"| {os.path.basename(model)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(records, rows, path) -> bool:
    """Quality against size, one point per model; False when nothing is plottable."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DataError("the plot needs matplotlib: pip install 'rwkvlite[report]'") from None
    for task, figure in QUALITY:
        points = [(row["size_mb"], rec["figures"][figure], os.path.basename(rec["model"]))
                  for rec in records if rec["task"] == task and figure in rec["figures"]
                  for row in [rows[rec["model"]]] if "size_mb" in row]
        if points:
            break
    else:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([p[0] for p in points], [p[1] for p in points])
    for x, y, name in points:
        ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.margins(x=0.3, y=0.15)  # room for the labels
    ax.set_xlabel("model file size (MB)")
    ax.set_ylabel(f"{task} {figure}")
    ax.set_title("quality against size")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return True


def write_report(paths, out_dir) -> dict:
    records = load_records(paths)
    titles, rows = table(records)
    os.makedirs(out_dir, exist_ok=True)
    md_path, png_path = os.path.join(out_dir, "report.md"), os.path.join(out_dir, "quality_vs_size.png")
    with atomic_path(md_path) as tmp, open(tmp, "w") as f:
        f.write(markdown(titles, rows))
    return {"markdown": md_path, "plot": png_path if plot(records, rows, png_path) else None}
