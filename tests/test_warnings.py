"""Python warnings never reach the user's terminal: they are logged to the folder of the work that raised them."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustseg._warnings import LOG_NAME, logged
from robustseg.errors import InputError


def test_logged_counts_distinct_warnings_and_prints_nothing(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    with logged(tmp_path, "demo") as caught:
        for _ in range(4):
            warnings.warn("Mean of empty slice", RuntimeWarning, stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
    out, err = capfd.readouterr()
    assert out == err == ""
    lines = (tmp_path / LOG_NAME).read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith("[demo] RuntimeWarning: Mean of empty slice (") and lines[0].endswith("(x4)")
    assert sum(c.count for c in caught) == 5
    with logged(tmp_path, "again"):
        warnings.warn("third", UserWarning, stacklevel=1)
    assert len((tmp_path / LOG_NAME).read_text().splitlines()) == 3  # appended, not overwritten


def test_report_logs_warnings_to_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capfd: pytest.CaptureFixture) -> None:
    import robustseg.report as report

    def noisy(runs_dir: object) -> None:
        warnings.warn("a library complains", UserWarning, stacklevel=1)
        raise InputError("stop here")

    monkeypatch.setattr(report, "load_inputs", noisy)
    with pytest.raises(InputError):
        report.build_report(tmp_path / "runs", tmp_path / "out")
    assert "a library complains" in (tmp_path / "out" / LOG_NAME).read_text()
    assert "Warning" not in capfd.readouterr().err


def test_pool_worker_logs_warnings_to_the_runs_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capfd: pytest.CaptureFixture) -> None:
    from robustseg.pipeline import executors

    class Spec:
        run_id = "arm-f0-s0-abc"

    def noisy(spec: object, runs_dir: object, threads: int = 0, on_event: object = None) -> str:
        warnings.warn("torch says something", UserWarning, stacklevel=1)
        return "result"

    monkeypatch.setattr(executors, "execute_run", noisy)
    assert executors._pool_run(Spec(), tmp_path, 1) == "result"
    assert "[run arm-f0-s0-abc] UserWarning: torch says something" in (tmp_path / LOG_NAME).read_text()
    assert capfd.readouterr().err == ""


def test_cli_logs_stray_warnings_and_says_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capfd: pytest.CaptureFixture) -> None:
    import importlib

    import robustseg.data.check as check

    cli = importlib.import_module("robustseg.cli.main")  # the module (robustseg.cli.main is also the function)

    def noisy(*args: object, **kw: object) -> None:
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
        raise InputError("no data here")

    monkeypatch.setattr(check, "check_data", noisy)
    monkeypatch.setattr(cli, "_WARNINGS_FALLBACK", tmp_path / "fallback")
    assert cli.main(["check-data", str(tmp_path)]) == 2
    err = capfd.readouterr().err
    assert "DeprecationWarning" not in err and "deprecated thing" not in err
    assert "1 Python warning(s) from libraries logged to" in err and "no data here" in err
    assert "deprecated thing" in (tmp_path / "fallback" / LOG_NAME).read_text()


def test_risk_coverage_raises_no_warning_without_failures() -> None:
    """The 'Mean of empty slice' of a clean set without failures: no failure to catch is NaN, not a warning."""
    from robustseg.qc.riskcov import evaluate_scores, review_table

    t = pd.DataFrame({"g": "a", "run_id": ["r1"] * 4 + ["r2"] * 4, "patient_id": list("pqrs") * 2,
                      "risk": [0.1, 0.2, 0.1, 0.3] * 2, "failure": False, "s": np.arange(8.0)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rev = review_table(t, ["s"], by=["g"])
        flat = evaluate_scores(t.assign(risk=0.2), ["s"], by=["g"], n_boot=20)  # every image at one risk
    assert rev["failures_caught"].isna().all() and (rev["failure_rate_all"] == 0).all()
    assert flat["naurc"].isna().all()


def test_log_reads_back_as_a_table_for_the_report(tmp_path: Path) -> None:
    from robustseg._warnings import read_log
    from robustseg.report.repro import warnings_line

    with logged(tmp_path, "run a-f0-s0-1"):
        for _ in range(3):
            warnings.warn("a (parenthesised) message", UserWarning, stacklevel=1)
    table = read_log(tmp_path / LOG_NAME)
    assert table[["context", "category", "message", "count"]].values.tolist() == [
        ["run a-f0-s0-1", "UserWarning", "a (parenthesised) message", 3]]
    assert "3 (1 distinct per run)" in warnings_line(table) and "none logged" in warnings_line(read_log(tmp_path / "x"))
