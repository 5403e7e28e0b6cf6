"""Evaluation data files, read with checks: a bad file is one DataError naming the problem."""
from __future__ import annotations

import hashlib
import json
import os

from ..errors import DataError

# sha256 of the OpenAI LAMBADA test file (lm-evaluation-harness's lambada_openai has the same).
LAMBADA_SHA256 = "4aa8d02cd17c719165fc8a7887fddd641f43fcafa4b1c806ca8abc31fabdb226"


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_exists(path: str) -> None:
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such data file")


def read_text(path: str) -> str:
    _check_exists(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None
    if not text.strip():
        raise DataError(f"{path}: empty text file")
    return text


def read_windows(path: str, n: int, size: int) -> list[str]:
    """n pieces of about `size` bytes from evenly spread places in a text file, read without
    reading the rest (a large calibration corpus); each piece cut to whole UTF-8 characters."""
    _check_exists(path)
    total = os.path.getsize(path)
    pieces = []
    with open(path, "rb") as f:
        for i in range(n):
            f.seek(max(0, total - size) * i // max(1, n - 1))
            raw = f.read(size + 3)
            start = 0
            while start < min(4, len(raw)) and raw[start] & 0xC0 == 0x80:  # a character's continuation bytes
                start += 1
            for end in range(min(len(raw), start + size), start + size - 4, -1):  # the last whole character
                try:
                    pieces.append(raw[start:end].decode("utf-8"))
                    break
                except UnicodeDecodeError as e:
                    if e.start < end - start - 4:  # not a character cut at the end: not UTF-8
                        at = f.tell() - len(raw) + start + e.start
                        raise DataError(f"{path}: not UTF-8 text (byte {at})") from None
            else:
                raise DataError(f"{path}: not UTF-8 text (near byte {f.tell() - len(raw)})")
    return pieces


def read_text_or_windows(path: str, max_bytes: int, n: int, size: int) -> str | list[str]:
    """All of a text file, or, from a file over max_bytes bytes (a corpus), n pieces of `size`
    bytes spread over it (read_windows)."""
    if os.path.isfile(path) and os.path.getsize(path) > max_bytes:
        return read_windows(path, n, size)
    return read_text(path)


def _read_jsonl(path: str, fields: tuple[str, ...]) -> list[dict]:
    rows = []
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
        if not isinstance(row, dict) or any(not isinstance(row.get(k), str) for k in fields):
            raise DataError(f"{path}:{lineno}: expected an object with string fields {list(fields)}")
        rows.append(row)
    return rows


def read_lambada(path: str, verify: bool = True) -> list[tuple[str, str]]:
    """(context, last word) pairs; the context ends before the space that precedes the word."""
    _check_exists(path)
    if verify and sha256_of(path) != LAMBADA_SHA256:
        raise DataError(f"{path}: wrong checksum for the OpenAI LAMBADA test set "
                        f"(sha256 {sha256_of(path)[:16]}..., expected {LAMBADA_SHA256[:16]}...); "
                        "pass verify=False / --no-verify to score it anyway")
    items = []
    for row in _read_jsonl(path, ("text",)):
        context, _, word = row["text"].rpartition(" ")
        items.append((context, word))
    return items


def read_piqa(path: str, labels_path: str | None = None) -> list[tuple[str, tuple[str, str], int]]:
    """(goal, (sol1, sol2), label) triples; labels from valid-labels.lst beside the file by default."""
    rows = _read_jsonl(path, ("goal", "sol1", "sol2"))
    labels_path = labels_path or os.path.join(os.path.dirname(path), "valid-labels.lst")
    labels = read_text(labels_path).split()
    if len(labels) != len(rows) or any(x not in ("0", "1") for x in labels):
        raise DataError(f"{labels_path}: expected {len(rows)} labels of 0 or 1, found {len(labels)} entries")
    return [(r["goal"], (r["sol1"], r["sol2"]), int(y)) for r, y in zip(rows, labels)]
