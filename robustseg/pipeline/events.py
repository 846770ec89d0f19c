"""Progress events. Library code calls ``on_event(event)``; only ``robustseg.cli`` renders them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from robustseg.pipeline.artifacts import RunResult


@dataclass(frozen=True)
class EpochEnd:
    """One training epoch of run ``run_id`` finished (``metrics``: val_loss, val_dice_<class>, ...)."""

    run_id: str
    epoch: int
    max_epochs: int
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RunStarted:
    """The plan has ``total`` runs, ``done`` of them already complete before this study started."""

    total: int
    done: int


@dataclass(frozen=True)
class RunFinished:
    """A run finished (complete, skipped or failed)."""

    result: RunResult


Event = EpochEnd | RunStarted | RunFinished
OnEvent = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The default ``on_event``: drop everything."""
