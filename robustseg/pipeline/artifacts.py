"""Run folders and their state: file names, the typed :class:`RunResult`, reading a run's outcome.

A run is complete only if its files verify: ``complete.json`` carries a manifest (size and SHA-256 of
every other file of the run folder, ``files``) and :func:`run_state` checks it. A run whose marker or
files do not verify is ``corrupt``: it is reported and run again, never trusted.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustseg._io import file_digest, read_json

COMPLETE = "complete.json"
FAILED = "failed.json"
SPEC = "spec.json"

DIVERGED_FACTOR = 1e3
"""A finished run is flagged ``diverged`` when its best validation loss exceeds this value (the losses
here are of order 1 at chance level) or its last one exceeds this many times the first epoch's."""


class RunStatus(enum.StrEnum):
    """Where a run stands. ``skipped``: already complete before this call (nothing was executed)."""

    COMPLETE = "complete"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class RunResult:
    """What executing one run produced. ``summary`` is the run's ``complete.json`` (or failure record)."""

    run_id: str
    status: RunStatus
    error: str | None = None
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def ok(self) -> bool:
        return self.status is not RunStatus.FAILED


def file_manifest(run_dir: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {"size": bytes, "sha256": hex}}`` of the run's files, sub-folders included
    (``predictions/*.png``); not the marker, not hidden or temporary files."""
    out = {}
    for f in sorted(run_dir.rglob("*")):
        rel = f.relative_to(run_dir)
        if f.is_file() and rel.as_posix() != COMPLETE and not any(part.startswith(".") for part in rel.parts):
            out[rel.as_posix()] = {"size": f.stat().st_size, "sha256": file_digest(f)}
    return out


_VERIFIED: dict[str, tuple[tuple, str | None]] = {}
"""Per-process cache: run folder -> (stat signature of marker and files, problem or None)."""


def _signature(run_dir: Path, names: list[str]) -> tuple:
    sig = []
    for name in [COMPLETE, *names]:
        try:
            st = (run_dir / name).stat()
        except OSError:
            return ()
        sig.append((name, st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(sig)


def verify_run(run_dir: Path) -> str | None:
    """Why the complete run in ``run_dir`` cannot be trusted (one line), or None when it verifies."""
    marker = run_dir / COMPLETE
    try:
        info = read_json(marker)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"{COMPLETE} unreadable ({type(exc).__name__})"
    files = info.get("files") if isinstance(info, dict) else None
    if not isinstance(files, dict) or not files:
        return f"{COMPLETE} has no file manifest (written by an older version or damaged)"
    sig = _signature(run_dir, sorted(files))
    cached = _VERIFIED.get(str(run_dir))
    if sig and cached is not None and cached[0] == sig:
        return cached[1]
    problem = None
    for name, want in sorted(files.items()):
        path = run_dir / name
        if not path.is_file():
            problem = f"{name} missing"
        elif path.stat().st_size != want.get("size"):
            problem = f"{name} has {path.stat().st_size} bytes, expected {want.get('size')}"
        elif file_digest(path) != want.get("sha256"):
            problem = f"{name} content differs from its recorded SHA-256"
        if problem:
            break
    if sig:
        _VERIFIED[str(run_dir)] = (sig, problem)
    return problem


def run_state(run_dir: Path) -> str:
    """``complete`` (verified), ``corrupt``, ``failed``, ``partial`` (killed mid-run) or ``missing``."""
    if (run_dir / COMPLETE).is_file():
        return "corrupt" if verify_run(run_dir) else "complete"
    if (run_dir / FAILED).is_file():
        return "failed"
    return "partial" if run_dir.exists() else "missing"


def read_failure(run_dir: Path) -> str:
    """The error line of a failed run (``failed.json``), or why it cannot be read."""
    try:
        return str(read_json(run_dir / FAILED).get("error"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        return f"{FAILED} unreadable ({type(exc).__name__})"


def divergence(history: Any) -> str | None:
    """Why a finished run's validation loss says it diverged (one line), or None.

    ``history``: the run's ``history.csv`` as a DataFrame (``epoch``, ``val_loss``). A run diverged when
    its best validation loss is above ``DIVERGED_FACTOR`` (absurd for losses of order 1), or its last one
    is above ``DIVERGED_FACTOR`` x the first epoch's (it blew up on the way).
    """
    if history is None or len(history) == 0 or "val_loss" not in history:
        return None
    losses = history["val_loss"].astype(float)
    first, best, last = float(losses.iloc[0]), float(losses.min()), float(losses.iloc[-1])
    if best > DIVERGED_FACTOR:
        return f"best validation loss {best:.3g} > {DIVERGED_FACTOR:g}"
    if first > 0 and last > DIVERGED_FACTOR * first:
        return f"last validation loss {last:.3g} > {DIVERGED_FACTOR:g} x the first epoch's {first:.3g}"
    return None
