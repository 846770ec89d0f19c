"""robustseg: tells medical-imaging researchers whether their segmentation results are real.

The public API, imported on first use so that ``import robustseg`` stays light (no torch, no pandas)::

    import robustseg
    study = robustseg.load_study()                      # the packaged quickstart (or a path)
    outcome = robustseg.run_study(study)                # train, evaluate, report
    per_image, summary = robustseg.evaluate_folder("pred/", "gt/")
    table = robustseg.per_image_table(pred, ref, image_ids=ids)
    robustseg.build_report("runs/quickstart", "reports/quickstart")
    plan = robustseg.plan_study("runs/quickstart")        # what the study can claim, what a claim needs
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from robustseg.errors import InputError, RobustsegError, RunError

__version__ = "0.1.0"

_LAZY = {
    "load_study": "robustseg.config",
    "run_study": "robustseg.pipeline.study",
    "evaluate_folder": "robustseg.metrics.folder",
    "per_image_table": "robustseg.metrics",
    "build_report": "robustseg.report",
    "plan_study": "robustseg.report.planning",
}

__all__ = ["InputError", "RobustsegError", "RunError", "__version__", "build_report", "evaluate_folder", "load_study",
           "per_image_table", "plan_study", "run_study"]

if TYPE_CHECKING:
    from robustseg.config import load_study
    from robustseg.metrics import per_image_table
    from robustseg.metrics.folder import evaluate_folder
    from robustseg.pipeline.study import run_study
    from robustseg.report import build_report
    from robustseg.report.planning import plan_study


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'robustseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
