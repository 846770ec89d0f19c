"""Output locations checked before any work, and the temporary files a killed process leaves behind.

- :func:`check_output_dir`: a folder robustseg will write into must be a folder (or creatable as one) and
  writable; checked with a probe file in the nearest existing folder, so nothing is left behind and
  read-only mounts, immutable folders and root-owned paths are caught even when ``os.access`` would say yes.
- :func:`check_component`: a name used as one folder (a study name) must be a single, safe path component.
- :func:`clean_stale_temp`: remove ``.<name>.tmp-<pid>`` files (from ``robustseg._io.atomic_write``) and
  ``<name>.tmp-<pid>`` folders whose process no longer runs on this machine.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from robustseg.errors import InputError

_COMPONENT = re.compile(r"^\w(?:[\w .+-]{0,126}[\w+-])?$")
_TEMP = re.compile(r"\.tmp-(\d+)(?:\.[A-Za-z0-9]+)?$")


def check_component(name: str, what: str) -> str:
    """``name`` if it is one safe path component, else InputError.

    Letters, digits, ``_``, and inside the name also space, ``.``, ``+``, ``-``; no ``/``, no ``..``, no leading
    dot or dash (hidden files, options), at most 128 characters.
    """
    text = str(name)
    if not _COMPONENT.match(text) or ".." in text:
        raise InputError(f"{what} = {text!r}: expected a single folder name (letters, digits, '_'; inside also "
                         "space, '.', '+', '-'; no '/', no '..', at most 128 characters)")
    return text


def check_output_dir(path: str | Path, what: str) -> Path:
    """Raise InputError unless ``path`` is (or can be created as) a writable folder; writes nothing lasting."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{what} {p}: exists and is not a folder; expected a folder to write into")
    probe_dir = p
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    if probe_dir.exists() and not probe_dir.is_dir():
        raise InputError(f"{what} {p}: {probe_dir} is a file, so the folder cannot be created")
    try:
        fd, probe = tempfile.mkstemp(dir=probe_dir, prefix=".robustseg-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(f"{what} {p}: cannot write into {probe_dir} ({reason}); expected a writable folder") from None
    return p


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_temp(root: str | Path, depth: int = 2, prefix: str = "") -> list[Path]:
    """Remove temporary files and folders (``*.tmp-<pid>``) under ``root`` whose process is gone.

    Looks ``depth`` levels deep (a study folder, its run folders and ``data/``), at names starting with
    ``prefix``. Returns what was removed.
    Temporary names of live processes (another study on the same folder) are left alone. Pids are checked
    on this machine only: on a shared file system, start the studies of one folder from one machine.
    """
    root = Path(root)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    level = [root]
    for _ in range(depth):
        nxt = []
        for folder in level:
            try:
                entries = list(folder.iterdir())
            except OSError:
                continue
            for entry in entries:
                m = _TEMP.search(entry.name)
                if m and entry.name.startswith(prefix) and not _alive(int(m.group(1))):
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
                    removed.append(entry)
                elif entry.is_dir() and not entry.is_symlink():
                    nxt.append(entry)
        level = nxt
    return removed
