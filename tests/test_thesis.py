"""studies/thesis.toml (the reference protocol) runs end to end at a reduced size, so it cannot rot.

Only sizes change (data, input size, width, epochs, seeds, folds, severities) and the DataLoader runs in
process (``train.num_workers=0``: four spawned workers cost ~10 s of CPU at this size, and workers are tested
in test_train); every other setting of the file (model depth, loss, sampler, optimiser, schedule, early
stopping, perturbation suite ``all``, evaluation) runs as written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from robustseg.cli import main
from robustseg.config import load_study

THESIS = Path(__file__).resolve().parents[1] / "studies" / "thesis.toml"

REDUCED = ["data.source=phantom", "data.phantom_n=24", "data.size=32", "model.base=4", "train.max_epochs=1",
           "seeds=[0]", "split.folds=[0]", "perturb.severities=[1]", "execution.bootstrap=20", "train.num_workers=0"]
"""Size-only overrides: 24 phantom images at 32 px, width 4, one epoch, one seed, one fold, severity 1."""


def test_thesis_file_is_the_reference_protocol() -> None:
    study = load_study(THESIS, overrides=["data.path=/nowhere"])
    arm = study.arms[0]
    assert (arm.model, dict(arm.model_kwargs)) == ("attention_unet", {"base": 64, "depth": 4})
    assert arm.loss == "hybrid" and arm.loss_kwargs["a"] == 0.4 and arm.loss_kwargs["b"] == 0.2
    assert arm.oversampling == 3.0 and study.data.size == 256 and study.seeds == [0, 1, 2, 3, 4]
    assert arm.train.lr == 1e-4 and arm.train.batch_size == 8 and arm.train.max_epochs == 100


@pytest.mark.slow
def test_thesis_study_runs_at_reduced_size(tmp_path: Path) -> None:
    sets = [*REDUCED, f"execution.runs_dir={tmp_path / 'runs'}", f"execution.reports_dir={tmp_path / 'reports'}"]
    args = ["study", str(THESIS)]
    for item in sets:
        args += ["--set", item]
    assert main(args) == 0
    runs_dir = tmp_path / "runs" / "thesis"
    runs = pd.read_csv(runs_dir / "tables" / "runs.csv")
    assert runs["status"].tolist() == ["complete"]
    spec = json.loads((runs_dir / runs["run_id"].iloc[0] / "spec.json").read_text())
    assert spec["arm"]["model_kwargs"] == {"base": 4, "depth": 4} and spec["arm"]["loss_kwargs"]["a"] == 0.4
    per_image = pd.read_csv(runs_dir / "tables" / "per_image.csv.gz")
    from robustseg.perturb import SUITES

    assert per_image["perturbation"].nunique() == 1 + len(SUITES["all"])  # clean + every perturbation of "all"
    assert (tmp_path / "reports" / "thesis" / "report.md").is_file()
