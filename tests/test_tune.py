"""Tuning with Optuna against real storages: SQLite (run, resume, failures, a killed worker) and PostgreSQL
on loopback (two worker processes on one study). Tiny sizes: 32 px, base-4 model, 2 epochs."""

from __future__ import annotations

import glob
import math
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from robustseg.config import build_study, load_study
from robustseg.errors import InputError
from robustseg.tune import parse_tune, run_tuning
from robustseg.tune.output import KILLED_PREFIX
from robustseg.tune.space import suggest

STUDY_TOML = """
name = "{name}"
seeds = [0]
[data]
source = "phantom"
path = "{data}"
size = 32
[split]
test_fraction = 0.2
k_folds = 2
[model]
name = "attention_unet"
base = 4
depth = 2
[loss]
name = "hybrid"
[train]
batch_size = 8
max_epochs = {epochs}
lr = 3e-3
device = "cpu"
augment = false
[perturb]
suite = "none"
[execution]
runs_dir = "{root}/runs"
reports_dir = "{root}/reports"
threads = 1
[tune]
startup_trials = 2
pruner_startup_trials = 1
heartbeat_interval = 1
grace_period = 2
"""


def write_study(root: Path, data: Path, name: str = "tiny", epochs: int = 2) -> Path:
    path = root / "studies" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STUDY_TOML.format(name=name, data=data, root=root, epochs=epochs), encoding="utf-8")
    return path


def sqlite_url(root: Path, name: str = "tiny") -> str:
    return f"sqlite:///{root / 'runs' / name / 'tune.db'}"


def check_trials(trials: list[optuna.trial.FrozenTrial], expected: int) -> None:
    """No trial lost or duplicated: numbers 0..N-1 once each, every one finished."""
    assert sorted(t.number for t in trials) == list(range(expected))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) for t in trials)


# --- the [tune] table ------------------------------------------------------------------------------


def _study(tune: dict, loss: str = "hybrid") -> object:
    return build_study({"name": "t", "loss": {"name": loss}, "tune": tune}, where="t.toml")


def test_tune_table_defaults_and_errors():
    spec = parse_tune(_study({}))
    assert (spec.space["a"].low, spec.space["a"].high) == (0.0, 1.0)
    assert spec.space["oversampling"].log and spec.pruner == "median" and spec.folds == (0,)
    assert spec.classes == ("csp", "lv") and "gamma" not in spec.space
    assert parse_tune(_study({"mode": "multi"})).pruner == "none"
    bad = [
        ({"trails": 3}, "tune.trails"),
        ({"pruner": "mean"}, "tune.pruner"),
        ({"a": [0.8, 0.2]}, "tune.a"),
        ({"a": [0.6, 0.9], "b": [0.5, 1.0]}, "a_high + b_low"),
        ({"oversampling": [0.5, 4]}, "tune.oversampling"),
        ({"lr": [0, 1e-2]}, "tune.lr"),
        ({"classes": ["csp", "cerebellum"]}, "tune.classes"),
        ({"folds": [0, 7]}, "tune.folds"),
        ({"mode": "multi", "pruner": "median"}, "tune.pruner"),
        ({"arm": "nope"}, "tune.arm"),
    ]
    for table, needle in bad:
        with pytest.raises(InputError, match=needle.replace("+", r"\+")):
            parse_tune(_study(table))
    with pytest.raises(InputError, match="hybrid"):
        parse_tune(_study({"a": [0, 0.5]}, loss="ce"))
    assert "a" not in parse_tune(_study({}, loss="ce")).space  # nothing to tune in a non-hybrid loss


def test_sampling_keeps_a_plus_b_within_one_and_covers_the_triangle():
    spec = parse_tune(_study({"gamma": [1.0, 3.0]}))
    ostudy = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    points = [suggest(ostudy.ask(), spec, {"a": 0.4, "b": 0.2, "gamma": 2.0, "lr": 1e-3}) for _ in range(400)]
    assert all(p["a"] >= 0 and p["b"] >= 0 and p["a"] + p["b"] <= 1 + 1e-12 for p in points)
    assert all(1 <= p["oversampling"] <= 10 and 1 <= p["gamma"] <= 3 and p["lr"] == 1e-3 for p in points)
    assert max(p["a"] + p["b"] for p in points) > 0.97  # reaches the a + b = 1 edge
    assert max(p["b"] for p in points) > 0.9 and max(p["a"] for p in points) > 0.9
    assert sum(p["oversampling"] < math.sqrt(10) for p in points) > 120  # log scale: half below sqrt(10)


# --- SQLite: run, resume, a failing trial, the tuned study file ------------------------------------


def test_sqlite_run_resume_failing_trial_and_tuned_study(tmp_path, phantom_dir):
    study_file = write_study(tmp_path, phantom_dir)
    study = load_study(study_file)
    url = sqlite_url(tmp_path)
    (tmp_path / "runs" / "tiny").mkdir(parents=True)
    # An enqueued trial with infeasible parameters (a = 1.5) fails with its reason; the study goes on.
    ostudy = optuna.create_study(storage=url, study_name="tiny", direction="maximize")
    ostudy.enqueue_trial({"a": 1.5, "b_share": 0.5, "oversampling": 2.0}, skip_if_exists=False)

    first = run_tuning(study, trials=2, storage=None, timeout=None)
    assert first.storage == url and first.trials_this_call == 2
    assert (first.n_trials, first.n_failed) == (2, 1)
    failed = [t for t in optuna.load_study(study_name="tiny", storage=url).trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and "a=1.5" in failed[0].user_attrs["fail_reason"]

    second = run_tuning(load_study(study_file), trials=2, storage=None, timeout=None)
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    check_trials(trials, 4)
    assert second.n_trials == 4 and second.n_failed == 1
    assert second.n_complete + second.n_pruned == 3 and second.n_complete >= 1
    # Resumed trials draw new points, not the first call's again.
    sampled = [tuple(sorted(t.params.items())) for t in trials if t.state != TrialState.FAIL]
    assert len(set(sampled)) == len(sampled)
    a, b = second.best_params["a"], second.best_params["b"]
    assert 0 <= a and 0 <= b and a + b <= 1

    # The tuned study: beside the input file, loads back, carries the best values.
    assert second.tuned_study == study_file.parent / "tiny.tuned.toml"
    tuned = load_study(second.tuned_study)
    assert tuned.name == "tiny-tuned" and "tune" not in tuned.raw
    arm = tuned.arms[0]
    assert arm.loss_kwargs["a"] == pytest.approx(a) and arm.loss_kwargs["b"] == pytest.approx(b)
    assert arm.oversampling == pytest.approx(second.best_params["oversampling"])
    assert tuned.raw["data"] == {**study.raw["data"], "external": {}}
    raw = tomllib.loads(second.tuned_study.read_text())
    assert raw["train"]["max_epochs"] == 2 and raw["model"]["base"] == 4

    # The report section.
    md = second.report.read_text()
    assert second.report == tmp_path / "reports" / "tiny" / "tune" / "tune.md"
    for fig in ("history.png", "importances.png", "slice.png"):
        assert (second.report.parent / "figures" / fig).stat().st_size > 1000
        assert f"figures/{fig}" in md
    assert "## Top trials" in md and "a=1.5" in md

    # The same storage with different training settings is refused instead of mixing trials.
    changed = load_study(study_file, overrides=["train.lr=0.01"])
    with pytest.raises(InputError, match="tune.study_name"):
        run_tuning(changed, trials=1, storage=None, timeout=None)


def test_hopeless_trial_is_pruned_after_its_first_epoch(tmp_path, phantom_dir):
    """Two finished trials reached Dice 0.95 at every epoch; a tiny 32 px model cannot, so the median
    pruner stops the new trial from inside training after epoch 1 of 2."""
    study_file = write_study(tmp_path, phantom_dir)
    url = sqlite_url(tmp_path)
    (tmp_path / "runs" / "tiny").mkdir(parents=True)
    ostudy = optuna.create_study(storage=url, study_name="tiny", direction="maximize")
    dists = {"a": optuna.distributions.FloatDistribution(0, 1), "b_share": optuna.distributions.FloatDistribution(0, 1),
             "oversampling": optuna.distributions.FloatDistribution(1, 10, log=True)}
    for a in (0.3, 0.6):
        ostudy.add_trial(optuna.trial.create_trial(params={"a": a, "b_share": 0.5, "oversampling": 3.0},
                                                   distributions=dists, value=0.95,
                                                   intermediate_values={1: 0.95, 2: 0.95}))
    result = run_tuning(load_study(study_file), trials=1, storage=None, timeout=None)
    new = optuna.load_study(study_name="tiny", storage=url).trials[-1]
    assert new.state == TrialState.PRUNED and result.n_pruned == 1
    assert list(new.intermediate_values) == [1] and new.intermediate_values[1] < 0.95
    assert new.user_attrs["epochs"] == 1
    assert "pruned trials stopped after 1 epochs" in result.report.read_text()


# --- a killed worker --------------------------------------------------------------------------------


WORKER = ("import sys; from robustseg.config import load_study; from robustseg.tune import run_tuning; "
          "run_tuning(load_study(sys.argv[1]), trials=int(sys.argv[2]), storage=sys.argv[3] or None, timeout=None)")


def start_worker(study_file: Path, trials: int, storage: str = "") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER, str(study_file), str(trials), storage],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_worker_trial_is_failed_by_heartbeat_and_study_continues(tmp_path, phantom_dir):
    study_file = write_study(tmp_path, phantom_dir, epochs=4)
    url = sqlite_url(tmp_path)
    killed_number = None
    for _ in range(3):  # killing lands between two trials now and then: try again
        worker = start_worker(study_file, trials=3)
        deadline = time.time() + 120
        running = []
        while time.time() < deadline and worker.poll() is None and not running:
            time.sleep(0.05)
            try:
                running = optuna.load_study(study_name="tiny", storage=url).get_trials(states=(TrialState.RUNNING,))
            except Exception:  # the worker has not created the study / tables yet
                running = []
        assert worker.poll() is None, worker.communicate()[0][-3000:]
        # Optuna only fails RUNNING trials that have a heartbeat record; the first is written as the
        # trial starts, so give it a moment before the kill.
        time.sleep(0.5)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        still = optuna.load_study(study_name="tiny", storage=url).get_trials(states=(TrialState.RUNNING,))
        if still:
            killed_number = still[0].number
            break
    assert killed_number is not None, "could not kill the worker in the middle of a trial"
    time.sleep(3.5)  # past the 2 s grace period, with SQLite's now() truncated to whole seconds

    before = len(optuna.load_study(study_name="tiny", storage=url).trials)
    result = run_tuning(load_study(study_file), trials=1, storage=None, timeout=None)
    ostudy = optuna.load_study(study_name="tiny", storage=url)
    check_trials(ostudy.trials, before + 1)
    assert ostudy.trials[killed_number].state == TrialState.FAIL
    assert "heartbeat" in ostudy.user_attrs[f"{KILLED_PREFIX}{killed_number}"]
    assert ostudy.trials[-1].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert result.n_trials == before + 1 and "heartbeat" in result.report.read_text()


# --- PostgreSQL on loopback: two workers, one study --------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A throw-away PostgreSQL server on 127.0.0.1 (trust auth), run as the 'postgres' system user."""
    initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not initdb:
        pytest.skip("PostgreSQL server binaries not installed (run scripts/install-test-services.sh)")
    bindir = Path(initdb[-1]).parent
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' system user to run the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="robustseg-pg-"))
    if as_user:
        shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", _free_port()
    run = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
                   **run)
    opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(base / "log"), "-w",
                    "start"], **run)
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.postgres
def test_postgres_two_workers_one_study(tmp_path, phantom_dir, postgres_url):
    study_file = write_study(tmp_path, phantom_dir, name="shared")
    workers = [start_worker(study_file, trials=2, storage=postgres_url) for _ in range(2)]
    outputs = [w.communicate(timeout=240)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n".join(o[-3000:] for o in outputs)

    ostudy = optuna.load_study(study_name="shared", storage=postgres_url)
    check_trials(ostudy.trials, 4)
    assert sum(t.state == TrialState.COMPLETE for t in ostudy.trials) >= 1
    # Each worker ran its own 2 trials; a third call continues the same study.
    result = run_tuning(load_study(study_file), trials=1, storage=postgres_url, timeout=None)
    assert result.n_trials == 5 and result.storage == postgres_url
    check_trials(optuna.load_study(study_name="shared", storage=postgres_url).trials, 5)
    assert load_study(result.tuned_study).name == "shared-tuned"


def test_multi_objective_returns_the_pareto_front(tmp_path, phantom_dir):
    study_file = write_study(tmp_path, phantom_dir, name="multi", epochs=1)
    study = load_study(study_file, overrides=["tune.mode=multi"])
    result = run_tuning(study, trials=3, storage=None, timeout=None)
    ostudy = optuna.load_study(study_name="multi", storage=sqlite_url(tmp_path, "multi"))
    assert len(ostudy.directions) == 2 and result.n_trials == 3
    front = {t.number for t in ostudy.best_trials}
    assert front and {p["number"] for p in result.pareto} == front
    assert all(len(p["values"]) == 2 for p in result.pareto)
    assert "Pareto" in result.report.read_text()


def test_hyperband_pruner_runs(tmp_path, phantom_dir):
    study_file = write_study(tmp_path, phantom_dir, name="hb", epochs=2)
    result = run_tuning(load_study(study_file, overrides=["tune.pruner=hyperband"]), trials=3, storage=None,
                        timeout=None)
    ostudy = optuna.load_study(study_name="hb", storage=sqlite_url(tmp_path, "hb"))
    assert result.n_trials == 3 and "pruner: hyperband" in result.report.read_text()
    check_trials(ostudy.trials, 3)
