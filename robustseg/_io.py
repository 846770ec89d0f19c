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

from robustseg.errors import WriteError


def atomic_write(path: str | Path, write: Callable[[Path], None], *, fsync: bool = True,
                 keep_suffix: bool = False) -> Path:
    """Call ``write(tmp_path)`` and rename the result over ``path``; the temporary file never survives.

    An ``OSError`` while writing (a full disk, a file-size limit, an I/O error) becomes a :class:`WriteError`
    naming ``path``; ``path`` is then untouched (its previous content, or absent). ``keep_suffix``: the temporary
    name ends in ``path``'s suffix (``.<stem>.tmp-<pid>.png``) for writers that infer the format from it.
    """
    path = Path(path)
    tmp = (path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}") if keep_suffix
           else path.with_name(f".{path.name}.tmp-{os.getpid()}"))
    try:
        write(tmp)
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except WriteError:
        raise
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_error(path: str | Path, exc: OSError) -> WriteError:
    """One line for a failed write: the file, the reason (``No space left on device``), nothing left half-written."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    err = WriteError(f"{path}: cannot write ({reason}); nothing was left half-written")
    err.errno = exc.errno
    return err


def write_bytes(path: str | Path, data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` atomically (``fsync=False`` for bulk files inside a staging folder that is published as a
    whole, see :meth:`robustseg._outdir.Output.staging`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), fsync=fsync)


def save_figure(path: str | Path, fig: Any, *, fsync: bool = True, **kw: Any) -> Path:
    """Save a matplotlib figure atomically (the format follows ``path``'s suffix)."""
    fmt = kw.pop("format", None) or Path(path).suffix.lstrip(".") or "png"
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, **kw), fsync=fsync)


def save_image(path: str | Path, image: Any, *, fsync: bool = True, **kw: Any) -> Path:
    """Save a Pillow image atomically (the format follows ``path``'s suffix)."""
    fmt = kw.pop("format", None) or _pil_format(path)
    return atomic_write(path, lambda tmp: image.save(tmp, format=fmt, **kw), fsync=fsync)


def _pil_format(path: str | Path) -> str:
    """Pillow's format name for a file suffix (``.png`` -> ``PNG``, ``.jpg`` -> ``JPEG``)."""
    from PIL import Image

    Image.init()
    suffix = Path(path).suffix.lower()
    return Image.EXTENSION.get(suffix, "PNG")


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


def append_text(path: str | Path, text: str) -> Path:
    """Append ``text`` (UTF-8) to a log file in one ``write`` with ``O_APPEND``, then fsync.

    For logs that several processes share (lines of one call stay together); data files are written with
    :func:`atomic_write` instead.
    """
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    data = memoryview(text.encode("utf-8"))
    try:
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return path
