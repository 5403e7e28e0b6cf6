"""The native bridge against the C library it calls: struct layouts, exported functions,
settings held per Kernels object."""
import ctypes
import warnings

import numpy as np
import pytest

from rwkvlite.runtime import native
from rwkvlite.runtime.native import Kernels, Settings

LIB = Kernels().lib
needs_c = pytest.mark.skipif(LIB is None, reason="no C compiler")


def fields(struct):
    """(name, offset, size) of every field of a ctypes struct."""
    return [(name, getattr(struct, name).offset, getattr(struct, name).size) for name, _ in struct._fields_]


@needs_c
@pytest.mark.parametrize("c_name", sorted(native.STRUCTS))
def test_every_struct_field_sits_where_the_c_compiler_put_it(c_name):
    """native.py's mirror of each kernels.h struct: every field at the C offset, and each
    field's size the distance to the next (all fields 8 bytes wide or nested structs)."""
    struct = native.STRUCTS[c_name]
    assert LIB.rwkvlite_sizeof(c_name.encode()) == ctypes.sizeof(struct), c_name
    layout = fields(struct)
    for i, (name, offset, size) in enumerate(layout):
        assert LIB.rwkvlite_offsetof(c_name.encode(), name.encode()) == offset, f"{c_name}.{name}"
        end = layout[i + 1][1] if i + 1 < len(layout) else ctypes.sizeof(struct)
        assert offset + size == end, f"{c_name}.{name}: {size} bytes, C leaves {end - offset}"


@needs_c
def test_the_layout_table_answers_unknown_names_with_minus_one():
    assert LIB.rwkvlite_sizeof(b"no_such_t") == -1
    assert LIB.rwkvlite_offsetof(b"mat_t", b"no_such_field") == -1


@needs_c
def test_a_reordered_field_is_caught():
    """The check above fails for a mirror with two fields swapped (mat_t's q and scale)."""
    names = [name for name, _ in native.Mat._fields_]
    i, j = names.index("q"), names.index("scale")
    swapped = list(native.Mat._fields_)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    Wrong = type("Wrong", (ctypes.Structure,), {"_fields_": swapped})
    wrong = [(n, o) for n, o, _ in fields(Wrong) if LIB.rwkvlite_offsetof(b"mat_t", n.encode()) != o]
    assert sorted(n for n, _ in wrong) == ["q", "scale"]


@needs_c
def test_every_signature_names_a_function_of_the_library_and_its_interface_version():
    assert [name for name in native.SIGNATURES if not hasattr(LIB, name)] == []
    assert ctypes.c_int64.in_dll(LIB, "rwkvlite_abi").value == native.ABI
    for gone in ("set_threads", "threads", "int16_x", "parallel_min"):  # no settings live in the library
        assert not hasattr(LIB, gone), gone


@needs_c
def test_each_kernels_object_calls_with_its_own_settings():
    """Two Kernels in one process: the same matrix product in exact and fast mode, called
    alternately, gives each mode's own result every time."""
    from rwkvlite.format.encodings import encode_sq
    from rwkvlite.runtime.matrix import matrix

    rng = np.random.default_rng(0)
    entry, arrays = encode_sq(rng.integers(0, 8, (64, 256)), rng.uniform(0.1, 0.2, (64, 4)),
                              rng.integers(0, 8, (64, 4)), 3, 64, [64, 256])
    exact, fast = (matrix(entry, arrays, Kernels(Settings(exact=e, threads=1))) for e in (True, False))
    x = rng.standard_normal(256).astype(np.float32)
    want_exact, want_fast = exact.mv(x).copy(), fast.mv(x).copy()
    if np.array_equal(want_exact, want_fast):
        pytest.skip("this build has no fast mode (x as int16 needs AVX2)")
    for _ in range(2):
        assert np.array_equal(fast.mv(x), want_fast) and np.array_equal(exact.mv(x), want_exact)


def test_settings_are_checked_and_read_from_the_environment_when_kernels_are_made(monkeypatch):
    with pytest.raises(ValueError):
        Settings(threads=0)
    with pytest.raises(ValueError):
        Settings(parallel_min=-1)
    monkeypatch.setenv("RWKVLITE_THREADS", "3")
    monkeypatch.setenv("RWKVLITE_EXACT", "1")
    k = Kernels()
    assert k.settings.exact and (k.lib is None or k.threads == 3)
    assert Kernels(Settings(threads=1)).settings.threads == 1  # an explicit setting wins
    monkeypatch.setenv("RWKVLITE_KERNELS", "numpy")
    assert Kernels().lib is None and Kernels().threads == 1


def test_a_failed_build_warns_and_falls_back(monkeypatch, tmp_path):
    """No compiler: a warning (not a print), and no library."""
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert native.build() is None
    assert any("C kernels unavailable" in str(w.message) for w in caught)
