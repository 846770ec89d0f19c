"""Run folders and their state: file names, the typed :class:`RunResult`, reading a run's outcome."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMPLETE = "complete.json"
FAILED = "failed.json"
SPEC = "spec.json"


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


def run_state(run_dir: Path) -> str:
    """``complete``, ``failed``, ``partial`` (killed mid-run) or ``missing``."""
    if (run_dir / COMPLETE).is_file():
        return "complete"
    if (run_dir / FAILED).is_file():
        return "failed"
    return "partial" if run_dir.exists() else "missing"
