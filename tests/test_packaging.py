"""What a wheel ships: the lean runtime compiles its C sources on the user's machine, so every
one of them must be package data (an installed rwkvlite without rwkv4.c failed to build any);
so must the compressed demo `rwkvlite demo` runs."""
import fnmatch
import os

import pytest

from rwkvlite.cli.lean import DEMO
from rwkvlite.runtime import native

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_c_source_and_header_and_the_demo_are_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        patterns = tomllib.load(f)["tool"]["setuptools"]["package-data"]["rwkvlite"]
    package = os.path.dirname(os.path.dirname(native.__file__))
    files = [os.path.relpath(p, package) for p in native.sources() + native.headers() + [DEMO]]
    assert len(native.sources()) >= 5 and "kernels.h" in map(os.path.basename, native.headers())
    assert [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)] == []
