"""Layers that do not leak, read from the source with `ast` (every import statement,
relative or absolute, at module level or inside a function):
  rwkvlite.passes   never imports rwkvlite.runtime   (the runtime runs files, passes make them)
  rwkvlite.loaders  never imports rwkvlite.passes    (rebuilding modules lives in model/structure.py)
  rwkvlite.runtime  never imports torch               (the lean runtime runs without PyTorch)
  rwkvlite.model    never imports passes, loaders or eval
"""
import ast
import os

import pytest

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
RULES = [("rwkvlite.passes", "rwkvlite.runtime"), ("rwkvlite.loaders", "rwkvlite.passes"),
         ("rwkvlite.runtime", "torch"), ("rwkvlite.model", "rwkvlite.passes"), ("rwkvlite.model", "rwkvlite.loaders"),
         ("rwkvlite.model", "rwkvlite.eval")]


def module_name(path: str, root: str) -> str:
    rel = os.path.relpath(path, root)[:-3].split(os.sep)
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


def imported(path: str, root: str) -> set[str]:
    """Every module an import statement in the file names, as absolute names; `from X import y`
    counts as X and X.y (y may be a submodule)."""
    name = module_name(path, root)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            base = ".".join(base + ([node.module] if node.module else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def violations(root: str) -> list[str]:
    found = []
    for folder, _, files in os.walk(os.path.join(root, "rwkvlite")):
        for file in files:
            if not file.endswith(".py"):
                continue
            path = os.path.join(folder, file)
            name = module_name(path, root)
            for layer, banned in RULES:
                if name == layer or name.startswith(layer + "."):
                    found += [f"{name} imports {m}" for m in sorted(imported(path, root))
                              if m == banned or m.startswith(banned + ".")]
    return found


def test_layers_do_not_leak():
    assert violations(SRC) == []


@pytest.mark.parametrize("file,line", [
    ("passes/lowrank.py", "from ..runtime.cache import EmbeddingCache"),
    ("passes/__init__.py", "from ..runtime import cache"),
    ("passes/fold_ln0.py", "def f():\n    import rwkvlite.runtime.reads\n"),
    ("loaders/__init__.py", "from ..passes import lowrank"),
    ("loaders/files.py", "def g():\n    from .. import passes\n"),
    ("runtime/reads.py", "import torch.nn"),
    ("model/structure.py", "from ..eval import memory"),
])
def test_the_layer_check_sees_every_kind_of_import(tmp_path, file, line):
    """The check fails on a leak: each line, added to a copy of the source, is found."""
    for folder, _, files in os.walk(os.path.join(SRC, "rwkvlite")):
        for f in files:
            if f.endswith(".py"):
                dst = tmp_path / os.path.relpath(os.path.join(folder, f), SRC)
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_text(open(os.path.join(folder, f)).read())
    target = tmp_path / "rwkvlite" / file
    target.write_text(target.read_text() + "\n" + line + "\n")
    found = violations(str(tmp_path))
    assert found and all(v.startswith(module_name(str(target), str(tmp_path)) + " imports") for v in found), found
