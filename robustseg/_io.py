"""The one place for atomic writes, JSON files and stable hashing.

A file written here appears complete or not at all: the bytes go to a temporary file in the same folder
(``.<name>.tmp-<pid>``), are flushed and fsynced, and are renamed over the target. A crash leaves at most
a stray temporary file, never a truncated target.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[Path], None], *, fsync: bool = True) -> Path:
    """Call ``write(tmp_path)`` and rename the result over ``path``; the temporary file never survives."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON atomically (non-JSON values via ``str``)."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


def write_csv(path: str | Path, df: Any, **kw: Any) -> Path:
    """Write a DataFrame with ``to_csv`` atomically (compression follows the target's suffix)."""
    path = Path(path)
    kw.setdefault("index", False)
    if "compression" not in kw and path.suffix == ".gz":
        kw["compression"] = "gzip"
    return atomic_write(path, lambda tmp: df.to_csv(tmp, **kw))


def read_json(path: str | Path) -> Any:
    """Parse a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def stable_hash(obj: Any, length: int = 12) -> str:
    """Hex SHA-256 of ``obj`` as canonical JSON (sorted keys), cut to ``length`` characters."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
