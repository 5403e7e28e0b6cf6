"""Measured figures have a source: bench/RESULTS.md and README.md's results section are what
bench/report.py makes of bench/results/*.json, and every figure in the README's results
names the JSON file it comes from."""
from __future__ import annotations

import importlib.util
import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a decimal (not a model size such as 0.1B) or a count with a unit
FIGURE = re.compile(r"\d+\.\d+(?![\d.]*[BM]\b)|\b\d+ ?(?:MB|MiB|GB|ms|%)")
SOURCE = re.compile(r"bench/results/([\w.-]+)\.json")


def _report():
    spec = importlib.util.spec_from_file_location("bench_report", os.path.join(ROOT, "bench", "report.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(*parts) -> str:
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def _results_part(readme: str) -> str:
    """README.md from its '## Results' heading to the end."""
    start = readme.find("\n## Results")
    assert start >= 0, "README.md has no '## Results' section"
    return readme[start:]


def figures_and_sources(text: str) -> list[tuple[str, str]]:
    """(line with a figure, the line that must name its source): a table row's source is the
    caption above its table, any other line's is itself."""
    out, caption = [], ""
    for line in text.splitlines():
        if line.startswith("|"):
            source = caption
        else:
            source = line
            if line.strip():
                caption = line
        if FIGURE.search(line):
            out.append((line, source))
    return out


def test_results_files_say_what_made_them():
    results = _report().load()
    assert results, "bench/results/ holds no measured table"
    for name, data in results.items():
        assert data["name"] == name
        assert data["command"].startswith("python bench/"), f"{name}.json: {data['command']!r}"
        assert {"cpu", "cores", "python", "numpy"} <= set(data["machine"]), f"{name}.json: {data['machine']}"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", data["date"]), f"{name}.json: {data['date']!r}"
        assert data["rows"] and all(isinstance(r, dict) for r in data["rows"]), f"{name}.json has no rows"
        for row in data["rows"]:
            assert all(not isinstance(v, (dict, list)) for v in row.values()), f"{name}.json: rows must be flat"


def test_results_md_is_generated_from_the_json_files():
    report = _report()
    assert _read("bench", "RESULTS.md") == report.results_md(report.load()), \
        "bench/RESULTS.md differs from the JSON files: run python bench/report.py"


def test_readme_results_are_generated_from_the_json_files():
    report = _report()
    readme = _read("README.md")
    assert report.with_readme_section(readme, report.readme_section(report.load())) == readme, \
        "README.md's results section differs from the JSON files: run python bench/report.py"


def test_readme_is_short():
    lines = _read("README.md").count("\n")
    assert lines <= 200, f"README.md has {lines} lines (at most 200): move detail to docs/ or bench/RESULTS.md"


def test_every_readme_figure_names_an_existing_results_file():
    found = figures_and_sources(_results_part(_read("README.md")))
    assert found, "README.md's results section shows no figure"
    for line, source in found:
        names = SOURCE.findall(source)
        assert names, f"README.md: {line!r} does not name the bench/results/*.json it comes from"
        for name in names:
            assert os.path.exists(os.path.join(ROOT, "bench", "results", name + ".json")), \
                f"README.md: {line!r} names bench/results/{name}.json, which does not exist"


def test_the_source_rule_catches_a_figure_without_a_file():
    text = ("**Speed** (`bench/results/runtime-v7.json`)\n\n| a |\n|---|\n| 1.5 |\n\nabout 3.2 ms a token\n"
            "0.1B shapes: run `python bench/runtime.py`\n2.9x llama.cpp\n")
    found = figures_and_sources(text)
    assert found == [("| 1.5 |", "**Speed** (`bench/results/runtime-v7.json`)"),
                     ("about 3.2 ms a token", "about 3.2 ms a token"), ("2.9x llama.cpp", "2.9x llama.cpp")]
    assert not SOURCE.findall(found[1][1])


def test_report_writes_tables_from_rows(tmp_path):
    report = _report()
    (tmp_path / "x.json").write_text(json.dumps({
        "name": "x", "command": "python bench/x.py --save x", "date": "2026-01-01 00:00 UTC",
        "machine": {"cpu": "cpu", "cores": 2, "python": "3", "numpy": "2"},
        "rows": [{"method": "gptq", "kl": 0.00151, "extra": None}]}))
    md = report.results_md(report.load(str(tmp_path)))
    assert "## x" in md and "`python bench/x.py --save x`" in md
    assert "| method | KL | extra |" in md and "| gptq | 0.0015 | - |" in md


def test_save_records_the_command_machine_and_rows(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_results", os.path.join(ROOT, "bench", "results.py"))
    results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results)
    command = results.command_line([os.path.join(ROOT, "bench", "lite.py"), "--models", "a b.pth"])
    assert command == "python bench/lite.py --models 'a b.pth'"
    path = results.save("lite-x", [{"variant": "fp16", "kl": 0.0}], command=command, folder=str(tmp_path))
    assert os.listdir(tmp_path) == ["lite-x.json"]  # no temporary file left beside it
    data = _report().load(str(tmp_path))["lite-x"]
    assert data == json.load(open(path))
    assert data["command"] == command and data["rows"] == [{"variant": "fp16", "kl": 0.0}]
    assert data["machine"]["cores"] == os.cpu_count() and data["machine"]["python"]
