"""Optuna tuning of the imbalance knobs (hybrid-loss weights a/b, oversampling, focal gamma, lr).

Public API:

- ``run_tuning(study, *, trials, storage, timeout, console) -> TuneResult`` (``robustseg tune``)
- ``parse_tune(study) -> TuneSpec``: the validated ``[tune]`` table (see ``robustseg.tune.space``)
- ``TuneResult``: best parameters / value(s), counts per trial state, the tuned study file and the
  report section path.
"""

from robustseg.tune.run import TuneResult, make_storage, run_tuning, safe_url
from robustseg.tune.space import TuneSpec, parse_tune

__all__ = ["TuneResult", "TuneSpec", "make_storage", "parse_tune", "run_tuning", "safe_url"]
