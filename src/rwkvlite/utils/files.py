"""Input paths checked before they are opened: regular files only (a FIFO or a device would block
or never end), and outputs that are not folders."""
from __future__ import annotations

import os
import stat


def regular_file(path, error=ValueError, what: str = "file", max_bytes: int | None = None) -> str:
    """path, if it names a regular file (symlinks followed) of at most max_bytes; else `error`
    with one line saying why."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except OSError as e:
        raise error(f"{path}: cannot read this {what} ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "folder" if stat.S_ISDIR(st.st_mode) else "special file (FIFO, device or socket)"
        raise error(f"{path}: a {kind}, not a regular {what}")
    if max_bytes is not None and st.st_size > max_bytes:
        raise error(f"{path}: {st.st_size} bytes, more than a {what} can be ({max_bytes})")
    return path


def output_file(path, error=ValueError) -> str:
    """path, unless it names an existing folder (checked before any work, so nothing is lost)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise error(f"{path}: is a folder; give the output file's path")
    return path
