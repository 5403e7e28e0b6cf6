"""The fuzzer's short mode: mutated files of several recipes and generations, each run through
`rwkvlite run` and `rwkvlite eval`: only one-line refusals or finished runs (scripts/fuzz.py: long)."""
from .fuzz import fuzz
from .test_lies import files  # noqa: F401  (the module's compressed files)

SOURCES = [("7", "int8"), ("7", "rwkvquant"), ("7", "lite-int4"), ("5.2", "int8"), ("4", "lite-int4")]


def test_mutated_files_are_refused_or_run(files, tmp_path):  # noqa: F811
    text = tmp_path / "text.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 20)
    result = fuzz([str(files(v, r)) for v, r in SOURCES], 24, str(tmp_path), str(text), seed=1)
    assert not result["bad"], result["bad"][:3]
    assert result["runs"].get("refused", 0) > 0  # the mutations do reach the checks
