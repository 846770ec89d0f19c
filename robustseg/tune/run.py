"""``robustseg tune``: run (or continue) an Optuna study over the ``[tune]`` search space.

Storage: ``--storage URL`` / ``tune.storage``: any SQLAlchemy URL (e.g. PostgreSQL for several
workers on several machines) or ``journal:///path/to/file.log`` (Optuna's ``JournalStorage`` with a
``JournalFileBackend``: an append-only log file with a lock file beside it, which Optuna recommends over
SQLite for parallel workers, also on NFS; no database server). Default
``sqlite:///<runs_dir>/<study>/tune.db``. The Optuna study is
named after the study (``tune.study_name`` overrides), so running ``robustseg tune`` again continues
it; ``--trials N`` is the number of trials *this call* adds (each worker of a shared study runs its N).

Workers send a heartbeat every ``tune.heartbeat_interval`` seconds; a trial whose worker fell silent for
``tune.grace_period`` seconds (default twice the interval) is marked FAIL by the next worker that starts
a trial, its reason is stored in the study user attribute ``killed_trial_<number>``, and with
``tune.retry_killed = N`` its parameters are tried again (up to N times).

Sampler: TPE (multivariate, constant liar for concurrent workers), seeded with ``tune.seed`` plus the
number of trials already in the study, so a resumed study draws new points yet is reproducible. With a
storage other than the default SQLite file, host and process id are mixed into the seed so that
concurrent workers do not repeat each other's start-up points (such runs are not bit-reproducible).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import socket
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from robustseg.config import Study, stable_hash
from robustseg.errors import InputError, RunError
from robustseg.tune.confirm import (
    BASELINE,
    Decision,
    Setting,
    confirm_seeds,
    decide,
    pick_candidates,
    run_confirmation,
    unconfirmed_text,
)
from robustseg.tune.objective import Objective, TrialFailed, fold_arrays, search_seeds
from robustseg.tune.output import (
    KILLED_PREFIX,
    effective_params,
    md_table,
    pick_best,
    write_report_section,
    write_tuned_study,
)
from robustseg.tune.space import TuneSpec, base_values, parse_tune, tuned_arm


@dataclass
class TuneResult:
    """What ``run_tuning`` did. ``best_value`` is a float (single) or a list (multi-objective)."""

    study_name: str
    storage: str
    best_params: dict[str, float]
    best_value: float | list[float] | None
    best_trial: int | None
    tuned_study: Path | None
    report: Path
    n_trials: int
    n_complete: int
    n_pruned: int
    n_failed: int
    trials_this_call: int
    seconds: float
    pareto: list[dict[str, Any]] = field(default_factory=list)
    decision: str = ""
    adopted_trial: int | None = None
    confirmation: Any = None
    """The confirmation table (``robustseg.tune.confirm.CONFIRM_COLUMNS``), None when confirmation is off."""


def safe_url(url: str) -> str:
    """The URL with any password masked (for messages and reports)."""
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


JOURNAL = "journal://"


def make_journal_storage(url: str) -> optuna.storages.JournalStorage:
    """``journal:///abs/path.log`` (or ``journal://relative/path.log``): a journal file storage.

    The file's folder is created if missing; the lock is Optuna's default for file backends.
    """
    from optuna.storages.journal import JournalFileBackend

    path = Path(url[len(JOURNAL):])
    if not url[len(JOURNAL):] or path.is_dir():
        raise InputError(f"--storage {url!r}: expected journal:///path/to/file.log (a file, not a folder)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    except OSError as exc:
        raise InputError(f"--storage {url!r}: cannot open the journal file ({exc.strerror or exc})") from None


def make_storage(url: str, spec: TuneSpec) -> optuna.storages.BaseStorage:
    """A journal file storage (``journal://``) or an RDB storage with heartbeat; bad URLs raise InputError."""
    import sqlalchemy

    if url.startswith(JOURNAL):
        return make_journal_storage(url)

    interval = spec.options["heartbeat_interval"]
    grace = spec.options["grace_period"] or 2 * interval
    retry = spec.options["retry_killed"]
    retry_cb = optuna.storages.RetryFailedTrialCallback(max_retry=retry) if retry else None

    def on_stale(ostudy: optuna.Study, trial: FrozenTrial) -> None:
        ostudy.set_user_attr(f"{KILLED_PREFIX}{trial.number}",
                             f"worker stopped sending heartbeats for > {grace} s (killed or lost)")
        if retry_cb is not None:
            retry_cb(ostudy, trial)

    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 120}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=interval,
                                              grace_period=grace, heartbeat_stale_trial_callback=on_stale)
    except (sqlalchemy.exc.SQLAlchemyError, ValueError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"--storage {safe_url(url)!r}: cannot open it as an Optuna storage ({first})") from None


def _warmup(spec: TuneSpec, max_epochs: int) -> int:
    """Epochs before a trial can be pruned: ``tune.pruner_warmup_epochs``, 0 meaning half of ``max_epochs``."""
    return spec.options["pruner_warmup_epochs"] or max(1, max_epochs // 2)


def _make_pruner(spec: TuneSpec, max_epochs: int) -> optuna.pruners.BasePruner:
    """Steps are epochs counted across the tuning folds (fold i, epoch e -> i * max_epochs + e)."""
    o = spec.options
    warmup = _warmup(spec, max_epochs)
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=o["pruner_startup_trials"], n_warmup_steps=warmup)
    if spec.pruner == "hyperband":
        top = max(max_epochs * len(spec.folds), 2)
        return optuna.pruners.HyperbandPruner(min_resource=min(warmup, top - 1), max_resource=top, reduction_factor=3)
    return optuna.pruners.NopPruner()


def _identity(study: Study, spec: TuneSpec) -> str:
    """Hash of what makes trials comparable: data, split, arm settings, seed, objective, folds."""
    arm = tuned_arm(study, spec.options["arm"]).to_dict()
    arm["train"] = {k: v for k, v in arm["train"].items() if k not in ("device", "num_workers")}  # hardware only
    raw = study.raw
    identity = {"data": raw["data"], "split": raw["split"], "arm": arm, "seed": study.seeds[0],
                "classes": spec.classes, "parenchyma": spec.parenchyma_classes, "folds": spec.folds, "mode": spec.mode}
    if spec.options["seeds_per_trial"] != 1:  # absent for one seed: studies made before the option still match
        identity["seeds_per_trial"] = spec.options["seeds_per_trial"]
    return stable_hash(identity)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes of one machine (workers preparing the same runs folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(previous)


def _check_url(url: str) -> None:
    """Parse a storage URL and load its SQLAlchemy dialect, without connecting (journal files: the path)."""
    if url.startswith(JOURNAL):
        path = url[len(JOURNAL):]
        if not path or path.endswith("/"):
            raise InputError(f"--storage {url!r}: expected journal:///path/to/file.log (a file, not a folder)")
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(url).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"--storage {safe_url(url)!r}: cannot open it as an Optuna storage ({first})") from None


def run_tuning(study: Study, *, trials: int | None = None, storage: str | None = None, timeout: float | None = None,
               console: Any = None, force: bool = False) -> TuneResult:
    """Run ``trials`` more trials of the study's tuning job, then write the tuned study and the report."""
    from robustseg.pipeline.inputs import load_data
    from robustseg.pipeline.study import prepare

    started = time.time()
    spec = parse_tune(study)  # reads the data set's classes (an nnU-Net dataset.json) and checks tune.classes
    n_trials = spec.options["trials"] if trials is None else trials
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 0:
        raise InputError(f"--trials {n_trials!r}: expected an integer >= 0")
    timeout = (spec.options["timeout"] or None) if timeout is None else timeout
    if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
        raise InputError(f"--timeout {timeout!r}: expected a number of seconds > 0")

    from robustseg.pipeline.study import claim_outputs

    runs, reports_out = claim_outputs(study, force)  # name and folders checked before anything is written
    runs_dir = runs.path
    from robustseg._outdir import claim_output_file
    from robustseg.tune.output import is_tuned_study, tuned_study_path

    claim_output_file(tuned_study_path(study), "tune", force=force, what="tuned study file", signature=is_tuned_study)
    default_storage = not (storage or spec.options["storage"])
    url = storage or spec.options["storage"] or f"sqlite:///{(runs_dir / 'tune.db').resolve()}"
    if not default_storage:
        _check_url(url)  # a malformed --storage fails before runs/ exists (no connection: workers race on it)
    runs.create()  # the folder and its marker before the lock file that workers share
    with _file_lock(runs_dir / ".tune-prepare.lock"):
        prep = prepare(study, force)
    arm = tuned_arm(study, spec.options["arm"])
    rdb = make_storage(url, spec)
    name = spec.options["study_name"] or study.name

    with _quiet_optuna():
        identity = _identity(study, spec)
        try:
            existing = optuna.load_study(study_name=name, storage=rdb)
        except KeyError:
            existing = None
        if existing is not None:
            if existing.user_attrs.get("robustseg_identity", identity) != identity:
                raise InputError(f"{study.path or 'study'}: storage {safe_url(url)} already holds tuning study {name!r} "
                                 "for different data/split/model/loss/training settings; set tune.study_name to "
                                 "start a new one")
            if len(existing.directions) != len(spec.directions):
                raise InputError(f"{study.path or 'study'}: tuning study {name!r} in {safe_url(url)} has "
                                 f"{len(existing.directions)} objective(s); tune.mode = {spec.mode!r} needs "
                                 f"{len(spec.directions)}")
        n_before = len(existing.get_trials(deepcopy=False)) if existing is not None else 0
        seed = spec.options["seed"] + n_before
        if not default_storage:
            seed = int(stable_hash([seed, socket.gethostname(), os.getpid()], 8), 16)
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                             n_startup_trials=spec.options["startup_trials"])
        max_epochs = arm.train.max_epochs
        pruner = _make_pruner(spec, max_epochs)
        ostudy = optuna.create_study(storage=rdb, study_name=name, directions=spec.directions, sampler=sampler,
                                     pruner=pruner, load_if_exists=True)
        if "robustseg_identity" not in ostudy.user_attrs:
            ostudy.set_user_attr("robustseg_identity", identity)
            ostudy.set_user_attr("objectives", spec.objective_names)
            ostudy.set_metric_names(spec.objective_names)
        optuna.storages.fail_stale_trials(ostudy)  # _quiet_optuna() hides its ExperimentalWarning

        threads = study.execution.threads
        if threads:  # as in robustseg.pipeline.runner: the study's thread budget per worker process
            import torch

            torch.set_num_threads(threads)
        data = load_data(prep.data)
        folds = fold_arrays(data, prep.splits, spec.folds)
        objective = Objective(spec, arm.to_dict(), base_values(arm), seed=study.seeds[0], size=prep.data.size,
                              folds=folds, trials_dir=prep.runs_dir / "tune" / name)
        guard = _FailureGuard(spec.options["max_consecutive_failures"], console)
        if n_trials:
            ostudy.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(TrialFailed,), callbacks=[guard],
                            gc_after_trial=False)
        optuna.storages.fail_stale_trials(ostudy)  # _quiet_optuna() hides its ExperimentalWarning
        pruning = spec.pruner if spec.pruner == "none" else (
            f"{spec.pruner} (after {spec.options['pruner_startup_trials']} trials, warm-up "
            f"{_warmup(spec, max_epochs)} epochs)")
        decision = None if guard.tripped else _confirm(study, spec, ostudy, folds, prep.data.size,
                                                       prep.runs_dir / "tune" / name / "confirm", console)
        reports_out.create()  # the report folder (and its marker) that the tuning section goes into
        result = _finish(study, spec, ostudy, url, started, guard.count, pruning, decision)
    if guard.tripped:
        raise RunError(f"tuning stopped after {guard.streak} consecutive failed trials; last reason: {guard.last}")
    if result.n_complete == 0 and n_trials:
        raise RunError(f"no trial of tuning study {name!r} completed ({result.n_failed} failed, {result.n_pruned} "
                       f"pruned); see {result.report}")
    return result


class _FailureGuard:
    """Optuna callback: prints each finished trial and stops after too many consecutive failures."""

    def __init__(self, limit: int, console: Any) -> None:
        self.limit, self.console = limit, console
        self.streak, self.count, self.tripped, self.last = 0, 0, False, ""

    def __call__(self, ostudy: optuna.Study, trial: FrozenTrial) -> None:
        self.count += 1
        if trial.state == TrialState.FAIL:
            self.streak += 1
            self.last = trial.user_attrs.get("fail_reason", "?")
        else:
            self.streak = 0
        if self.console is not None:
            values = ", ".join(f"{v:.4f}" for v in trial.values) if trial.values else ""
            params = ", ".join(f"{k}={v:.4g}" for k, v in effective_params(trial).items())
            extra = f" ({trial.user_attrs.get('fail_reason', '')})" if trial.state == TrialState.FAIL else ""
            self.console.print(f"trial {trial.number} {trial.state.name.lower()} {values}  {params}{extra}",
                               markup=False, highlight=False)
        if self.streak >= self.limit:
            self.tripped = True
            ostudy.stop()


def _confirm(study: Study, spec: TuneSpec, ostudy: optuna.Study, folds: dict[int, Any], size: int, out_dir: Path,
             console: Any) -> Decision | None:
    """The confirmation stage (None when ``tune.confirm_top_k = 0`` or no trial completed)."""
    k = spec.options["confirm_top_k"]
    if k == 0 or pick_best(ostudy, spec) is None:
        return None
    arm = tuned_arm(study, spec.options["arm"])
    base = base_values(arm)
    candidates = pick_candidates(ostudy, spec, base, k)
    baseline = Setting(BASELINE, None, base)
    seeds = confirm_seeds(study.seeds[0], spec.options["seeds_per_trial"], spec.options["confirm_seeds"])
    log = None
    if console is not None:
        console.print(f"confirming {len(candidates)} trial(s) and the current settings with seeds "
                      f"{', '.join(map(str, seeds))} (search seeds: "
                      f"{', '.join(map(str, search_seeds(study.seeds[0], spec.options['seeds_per_trial'])))})",
                      markup=False, highlight=False)

        def log(line: str) -> None:
            console.print(line, markup=False, highlight=False)

    values, failures = run_confirmation(ostudy, spec, arm.to_dict(), [baseline, *candidates], seeds=seeds, size=size,
                                        folds=folds, out_dir=out_dir, log=log)
    decision = decide(candidates, baseline, values, alpha=spec.options["confirm_alpha"], seeds=seeds,
                      failures=failures)
    if console is not None:
        console.print(md_table(decision.table.drop(columns=["seeds"])), markup=False, highlight=False, soft_wrap=True)
        console.print(decision.text, markup=False, highlight=False, soft_wrap=True)
    return decision


def _header_table(decision: Decision) -> str:
    cols = ["setting", "n", "mean", "sd", "diff", "ci_low", "ci_high", "p_holm"]
    return md_table(decision.table[cols])


def _finish(study: Study, spec: TuneSpec, ostudy: optuna.Study, url: str, started: float, ran: int,
            pruning: str, decision: Decision | None) -> TuneResult:
    all_trials = ostudy.get_trials(deepcopy=False)

    def count(state: TrialState) -> int:
        return sum(t.state == state for t in all_trials)

    best = pick_best(ostudy, spec)
    best_params = effective_params(best) if best is not None else {}
    best_value: float | list[float] | None = None
    tuned = None
    text = decision.text if decision is not None else unconfirmed_text(best, spec)
    adopted = decision.adopted if decision is not None else None
    if best is not None:
        best_value = best.value if spec.mode == "single" else list(best.values)
        values = ", ".join(f"{n} = {v:.4f}" for n, v in zip(spec.objective_names, best.values, strict=True))
        changed = "CHANGED" if adopted is not None else "UNCHANGED"
        header = (f"Written by 'robustseg tune' from {study.path or study.name} (Optuna study "
                  f"{ostudy.study_name!r}; best search trial {best.number}: {values}).\n"
                  f"Settings {changed}. {text}\n")
        if decision is not None:
            header += f"Confirmation ({spec.objective_names[0]}, run-level Welch test, Holm):\n{_header_table(decision)}"
        header += "Run it with: robustseg study <this file>"
        params = dict(adopted.params) if adopted is not None else base_values(tuned_arm(study, spec.options["arm"]))
        what = f"tuned: {adopted.label}" if adopted is not None else "tuning kept the current settings"
        tuned = write_tuned_study(study, spec, params, header=header,
                                  description=f"{study.description or study.name} ({what})")
    pareto = []
    if spec.mode == "multi" and best is not None:
        pareto = [{"number": t.number, "values": list(t.values), "params": effective_params(t)}
                  for t in sorted(ostudy.best_trials, key=lambda t: -t.values[0])]
    reports = Path(study.execution.reports_dir) / study.name / "tune"
    summary = {"study_name": ostudy.study_name, "storage": safe_url(url), "mode": spec.mode,
               "objective": " and ".join(spec.objective_names) + " (validation Dice, mean over folds "
               + ", ".join(str(f) for f in spec.folds) + " and search seeds "
               + ", ".join(map(str, search_seeds(study.seeds[0], spec.options["seeds_per_trial"]))) + ")",
               "sampler": "TPE (multivariate, constant liar)", "pruner": pruning,
               "space": "; ".join(f"{k} {'fixed ' if r.fixed else ''}[{r.low:g}, {r.high:g}]{' log' if r.log else ''}"
                                  for k, r in spec.space.items()),
               "tuned study": str(tuned) if tuned else "(none: no complete trial)"}
    report = write_report_section(ostudy, spec, reports, summary=summary, best=best, decision=decision,
                                  decision_text=text, base=base_values(tuned_arm(study, spec.options["arm"])))
    return TuneResult(
        study_name=ostudy.study_name, storage=safe_url(url), best_params=best_params, best_value=best_value,
        best_trial=best.number if best is not None else None, tuned_study=tuned, report=report,
        n_trials=len(all_trials), n_complete=count(TrialState.COMPLETE), n_pruned=count(TrialState.PRUNED),
        n_failed=count(TrialState.FAIL), trials_this_call=ran, seconds=time.time() - started, pareto=pareto,
        decision=text, adopted_trial=adopted.trial if adopted is not None else None,
        confirmation=decision.table if decision is not None else None,
    )
