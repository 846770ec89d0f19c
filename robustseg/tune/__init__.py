"""Optuna tuning of the imbalance knobs (hybrid-loss weights a/b, oversampling, focal gamma, lr).

Public API:

- ``run_tuning(study, *, trials, storage, timeout, console) -> TuneResult`` (``robustseg tune``)
- ``parse_tune(study) -> TuneSpec``: the validated ``[tune]`` table (see ``robustseg.tune.space``)
- ``TuneResult``: best search parameters / value(s), counts per trial state, the confirmation table,
  the decision (``adopted_trial``, ``decision``), the tuned study file and the report section path.
- ``robustseg.tune.confirm``: the confirmation stage (fresh seeds, run-level Welch test, Holm) and
  ``decide``, its pure decision rule.
- ``make_storage(url, spec)``: SQLAlchemy URLs (SQLite, PostgreSQL) and ``journal:///path/file.log``.
"""

from robustseg.tune.run import TuneResult, make_storage, run_tuning, safe_url
from robustseg.tune.space import TuneSpec, parse_tune

__all__ = ["TuneResult", "TuneSpec", "make_storage", "parse_tune", "run_tuning", "safe_url"]
