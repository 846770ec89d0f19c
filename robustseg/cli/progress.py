"""The one progress renderer: rich bars on a terminal, one plain line per milestone otherwise.

Library code emits :mod:`robustseg.pipeline.events`; this module turns them into output, so a log file
(stdout not a TTY) still shows every finished run and every ``EPOCH_STEP``-th epoch.
"""

from __future__ import annotations

import math
import time
from types import TracebackType
from typing import Any

from rich.console import Console

from robustseg.pipeline.artifacts import RunStatus
from robustseg.pipeline.events import EpochEnd, Event, RunFinished, RunInvalid, RunStarted, RunWaiting

EPOCH_STEP = 10
"""Plain mode prints an epoch line every this many epochs (and the last one)."""


def _small(metrics: dict[str, float], small: tuple[str, ...] = ()) -> str:
    """``val_loss`` and the validation Dice of the small structures (every foreground class when not given)."""
    parts = [f"val_loss {metrics.get('val_loss', math.nan):.4f}"]
    dice = {k.removeprefix("val_dice_"): v for k, v in metrics.items() if k.startswith("val_dice_")}
    names = [c for c in small if c in dice] if small else list(dice)[1:]  # the first class is the background
    parts += [f"{c} {dice[c]:.3f}" for c in names]
    return " ".join(parts)


def collapsed_text(summary: dict) -> str:
    """`` collapsed: csp, lv`` for a run that never predicted a structure seen on validation (else empty)."""
    names = summary.get("collapsed") or []
    return f" collapsed: {', '.join(names)}" if names else ""


class ProgressRenderer:
    """Context manager and ``on_event`` callback. ``plain`` defaults to "stdout is not a terminal"."""

    def __init__(self, console: Console, err_console: Console | None = None, plain: bool | None = None) -> None:
        self.console = console
        self.err = err_console or console
        self.plain = (not console.is_terminal) if plain is None else plain
        self._bar: Any = None
        self._runs: Any = None
        self._epochs: Any = None
        self._total = 0
        self._done = 0
        self._started = time.time()

    def __enter__(self) -> ProgressRenderer:
        if not self.plain:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=self.console, transient=False)
            self._bar.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._total, self._done = event.total, event.done
            if self._bar is not None:
                self._runs = self._bar.add_task("runs", total=event.total, completed=event.done)
            else:
                self._line(f"{event.total} runs planned, {event.done} already complete")
        elif isinstance(event, EpochEnd):
            self._epoch(event)
        elif isinstance(event, RunFinished):
            self._finished(event)
        elif isinstance(event, RunWaiting):
            by = f" ({event.holder})" if event.holder else ""
            self._say(f"waiting for run {event.run_id} locked by another process{by}; its result will be used")
        elif isinstance(event, RunInvalid):
            self._say(f"run {event.run_id} is corrupt ({event.reason}); running it again", err=True)

    def _say(self, text: str, err: bool = False) -> None:
        """A plain line in both modes (above the bars on a terminal)."""
        if self._bar is None and not err:
            self._line(text)
        else:
            (self.err if err else self.console).print(text, markup=False, highlight=False, soft_wrap=True)

    def _line(self, text: str) -> None:
        self.console.print(f"[{time.time() - self._started:7.1f}s] {text}", markup=False, highlight=False,
                           soft_wrap=True)

    def _epoch(self, e: EpochEnd) -> None:
        if self._bar is None:
            if e.epoch % EPOCH_STEP == 0 or e.epoch == e.max_epochs:
                self._line(f"{e.run_id} epoch {e.epoch}/{e.max_epochs} {_small(e.metrics, e.small)}")
            return
        if self._epochs is None:
            self._epochs = self._bar.add_task("epochs", total=e.max_epochs)
        self._bar.update(self._epochs, total=e.max_epochs, completed=e.epoch,
                         description=f"{e.run_id} {_small(e.metrics, e.small)}")

    def _finished(self, e: RunFinished) -> None:
        r = e.result
        self._done += 1
        if r.status is RunStatus.FAILED:
            self.err.print(f"failed {r.run_id}: {r.error}", markup=False, highlight=False, soft_wrap=True)
        elif self._bar is None:
            self._line(f"run {self._done}/{self._total} {r.status.value} {r.run_id} ({r.seconds:.0f} s)"
                       + collapsed_text(r.summary))
        elif collapsed_text(r.summary):
            self.console.print(f"{r.run_id}{collapsed_text(r.summary)}", markup=False, highlight=False, soft_wrap=True)
        if r.ok and r.summary.get("diverged"):
            self.err.print(f"diverged {r.run_id}: {r.summary.get('diverged_reason')} (finished; flagged)",
                           markup=False, highlight=False, soft_wrap=True)
        if self._bar is not None and self._runs is not None:
            self._bar.advance(self._runs)
