"""Progress events. Library code calls ``on_event(event)``; only ``robustseg.cli`` renders them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from robustseg.pipeline.artifacts import RunResult


@dataclass(frozen=True)
class EpochEnd:
    """One training epoch of run ``run_id`` finished (``metrics``: val_loss, val_dice_<class>, ...;
    ``small``: the data set's small structures, whose Dice a progress line shows)."""

    run_id: str
    epoch: int
    max_epochs: int
    metrics: dict[str, float] = field(default_factory=dict)
    small: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunStarted:
    """The plan has ``total`` runs, ``done`` of them already complete before this study started."""

    total: int
    done: int


@dataclass(frozen=True)
class RunFinished:
    """A run finished (complete, skipped or failed)."""

    result: RunResult


@dataclass(frozen=True)
class RunWaiting:
    """Run ``run_id`` is locked by another process (``holder``: its host and pid, when known); this process
    waits for it and then uses its result."""

    run_id: str
    holder: str = ""


@dataclass(frozen=True)
class RunInvalid:
    """A run folder marked complete failed verification (``reason``); the run is executed again."""

    run_id: str
    reason: str


@dataclass(frozen=True)
class ReportWritten:
    """The study's report was written to ``path`` (``reports/<study>/report.md``; figures and tables beside it)."""

    path: Path


Event = EpochEnd | RunStarted | RunFinished | RunWaiting | RunInvalid | ReportWritten
OnEvent = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The default ``on_event``: drop everything."""
