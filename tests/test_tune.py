"""Tuning with Optuna against real storages: SQLite (run, resume, failures, a killed worker), a journal
file and PostgreSQL on loopback (two worker processes on one study); the confirmation stage (a noise
winner is not adopted, a real one is), several seeds per trial under the pruner. Tiny sizes: 32 px,
base-4 model, 2 epochs; confirmation off unless a test is about it."""

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
import pandas as pd
import pytest
from optuna.trial import TrialState

from robustseg.config import build_study, load_study
from robustseg.errors import InputError
from robustseg.tune import make_storage, parse_tune, run_tuning
from robustseg.tune.confirm import BASELINE, Setting, confirm_seeds, decide
from robustseg.tune.objective import search_seeds
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
confirm_top_k = 0
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

    # The tuned study: beside the input file, loads back; confirmation is off (confirm_top_k = 0), so the
    # unconfirmed best trial is named in the header but its settings are not adopted.
    assert second.tuned_study == study_file.parent / "tiny.tuned.toml"
    tuned = load_study(second.tuned_study)
    assert tuned.name == "tiny-tuned" and "tune" not in tuned.raw
    arm = tuned.arms[0]
    assert (arm.loss_kwargs["a"], arm.loss_kwargs["b"], arm.oversampling) == (0.4, 0.2, 3.0)
    header = second.tuned_study.read_text().split("\nname =")[0]
    assert "Settings UNCHANGED" in header and "confirmation is off" in header
    assert f"best search trial {second.best_trial}" in header and second.adopted_trial is None
    assert tuned.raw["data"] == {**study.raw["data"], "external": {}}
    raw = tomllib.loads(second.tuned_study.read_text())
    assert raw["train"]["max_epochs"] == 2 and raw["model"]["base"] == 4

    # The report section.
    md = second.report.read_text()
    assert second.report == tmp_path / "reports" / "tiny" / "tune" / "tune.md"
    for fig in ("history.png", "importances.png", "slice.png", "simplex.png", "oversampling.png"):
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


# --- the confirmation stage ---------------------------------------------------------------------------


def test_new_tune_keys_defaults_and_errors():
    o = parse_tune(_study({})).options
    assert (o["confirm_top_k"], o["confirm_seeds"], o["seeds_per_trial"], o["confirm_alpha"]) == (3, 5, 1, 0.05)
    for table, needle in [({"confirm_seeds": 1}, "tune.confirm_seeds"), ({"confirm_alpha": 1.5}, "tune.confirm_alpha"),
                          ({"seeds_per_trial": 0}, "tune.seeds_per_trial"), ({"confirm_top_k": -1}, "tune.confirm_top_k")]:
        with pytest.raises(InputError, match=needle):
            parse_tune(_study(table))


def test_confirmation_seeds_are_fresh():
    search = search_seeds(7, 2)
    fresh = confirm_seeds(7, 2, 5)
    assert search == [7, 8] and fresh == [9, 10, 11, 12, 13] and not set(search) & set(fresh)


def test_decide_applies_holm_and_needs_a_positive_difference():
    base = Setting(BASELINE, None, {"a": 0.0, "b": 0.0})
    s = [Setting(f"trial {i}", i, {"a": 0.1 * (i + 1), "b": 0.0}) for i in range(3)]
    values = {BASELINE: [0.50, 0.52, 0.54, 0.51, 0.53],
              "trial 0": [0.60, 0.62, 0.64, 0.61, 0.63],   # +0.10, tiny seed SD: better beyond noise
              "trial 1": [0.40, 0.42, 0.44, 0.41, 0.43],   # -0.10: significant, but worse
              "trial 2": [0.45, 0.60, 0.55, 0.62, 0.58]}   # +0.04 with a wide seed spread
    d = decide(s, base, values, alpha=0.05, seeds=[1, 2, 3, 4, 5])
    t = d.table.set_index("setting")
    assert list(d.table["setting"]) == [BASELINE, "trial 0", "trial 1", "trial 2"]
    assert d.adopted is s[0] and "Adopted trial 0" in d.text
    assert t.loc["trial 0", "diff"] == pytest.approx(0.10) and t.loc["trial 0", "ci_low"] > 0
    assert t.loc["trial 1", "p_holm"] < 0.05 and not t.loc["trial 1", "better"]
    assert t.loc["trial 2", "p"] <= t.loc["trial 2", "p_holm"] and not t.loc["trial 2", "better"]
    assert t.loc[BASELINE, "n"] == 5 and t.loc[BASELINE, "sd"] == pytest.approx(0.0158, abs=1e-4)
    # Holm: a raw p below alpha is not enough when k comparisons were made.
    values2 = {BASELINE: [0.50, 0.55, 0.45, 0.52, 0.48], "trial 0": [0.56, 0.61, 0.51, 0.58, 0.54],
               "trial 1": values[BASELINE], "trial 2": values[BASELINE]}
    d2 = decide(s, base, values2, alpha=0.05)
    row = d2.table.set_index("setting").loc["trial 0"]
    assert row["p"] < 0.05 <= row["p_holm"] and d2.adopted is None
    assert "Kept the current settings" in d2.text and "trial 0" in d2.text
    # Failed runs leave fewer than two values: no test, nothing adopted.
    d3 = decide(s[:1], base, {BASELINE: values[BASELINE], "trial 0": [0.9, math.nan]}, alpha=0.05,
                failures={"trial 0": ["seed 2: RunError: non-finite loss"]})
    assert d3.adopted is None and math.isnan(d3.table["p_holm"].iloc[1]) and "non-finite" in d3.table["failures"].iloc[1]


def _inject(ostudy: optuna.Study, params: dict, seeds: list[int], values: list[float], folds=(0,)) -> None:
    """Store confirmation values as run_confirmation does, so the stage reads instead of training."""
    from robustseg.tune.confirm import _cache_key

    for seed, v in zip(seeds, values, strict=True):
        ostudy.set_user_attr(_cache_key(params, seed, folds), {"seed": seed, "params": params, "value": v, "error": ""})


def test_confirmed_winner_replaces_a_plain_ce_baseline(tmp_path, phantom_dir):
    """Baseline a = b = 0 (weighted CE). The decision path end to end -- candidates from the storage, the
    confirmation values, Holm, the tuned file and the report -- with the run-level values injected
    through the confirmation cache: making a Dice-loss winner beat CE beyond seed noise with real
    training needs 96 px and tens of epochs (measured: at 32-64 px and <= 12 epochs the effect is
    0.1-0.2 with a seed SD of ~0.1, not reliably significant with 3-5 seeds)."""
    study_file = write_study(tmp_path, phantom_dir)
    study = load_study(study_file, overrides=["loss.a=0.0", "loss.b=0.0", "tune.confirm_top_k=2",
                                              "tune.confirm_seeds=4"])
    url = sqlite_url(tmp_path)
    (tmp_path / "runs" / "tiny").mkdir(parents=True)
    ostudy = optuna.create_study(storage=url, study_name="tiny", direction="maximize")
    dists = {"a": optuna.distributions.FloatDistribution(0, 1), "b_share": optuna.distributions.FloatDistribution(0, 1),
             "oversampling": optuna.distributions.FloatDistribution(1, 10, log=True)}
    for a, b, value in [(0.05, 0.10, 0.31), (0.85, 0.05, 0.62), (0.60, 0.30, 0.58), (0.02, 0.02, 0.20)]:
        params = {"a": a, "b": b, "oversampling": 3.0, "gamma": 2.0, "lr": 3e-3}
        ostudy.add_trial(optuna.trial.create_trial(
            params={"a": a, "b_share": b / (1 - a), "oversampling": 3.0}, distributions=dists, value=value,
            user_attrs={"params": params}))
    base = {"a": 0.0, "b": 0.0, "gamma": 2.0, "oversampling": 3.0, "lr": 3e-3}
    seeds = confirm_seeds(0, 1, 4)
    _inject(ostudy, base, seeds, [0.08, 0.00, 0.15, 0.05])                        # CE misses CSP/LV
    _inject(ostudy, {**base, "a": 0.85, "b": 0.05}, seeds, [0.55, 0.61, 0.58, 0.66])   # trial 1
    _inject(ostudy, {**base, "a": 0.60, "b": 0.30}, seeds, [0.20, 0.09, 0.31, 0.12])   # trial 2: noise
    result = run_tuning(study, trials=0, storage=None, timeout=None)

    assert result.adopted_trial == 1 and result.best_trial == 1
    table = result.confirmation.set_index("setting")
    assert list(table.index) == [BASELINE, "trial 1", "trial 2"] and (table["n"] == 4).all()
    assert table.loc["trial 1", "better"] and not table.loc["trial 2", "better"]
    assert table.loc["trial 1", "p_holm"] < 0.05 < table.loc["trial 2", "p_holm"]
    tuned = load_study(result.tuned_study)
    assert (tuned.arms[0].loss_kwargs["a"], tuned.arms[0].loss_kwargs["b"]) == (0.85, 0.05)
    text = result.tuned_study.read_text()
    assert "Settings CHANGED. Adopted trial 1" in text and "| trial 2 | 4 |" in text
    md = result.report.read_text()
    assert "## Confirmation" in md and "Adopted trial 1" in md and "### Parameter importances" in md
    for fig in ("simplex.png", "oversampling.png", "importances.png"):
        assert (result.report.parent / "figures" / fig).stat().st_size > 1000
    conf = result.report.parent / "tables" / "confirmation.csv"
    assert conf.exists() and "trial 2" in conf.read_text()
    imp = pd.read_csv(result.report.parent / "tables" / "importances.csv").set_index("parameter")
    assert set(imp.index) == {"a", "b", "oversampling"}
    assert imp.loc["oversampling", "fanova"] == pytest.approx(0.0, abs=1e-9)  # constant in every trial


@pytest.mark.slow
def test_noise_winner_is_not_adopted(tmp_path, phantom_dir, one_torch_thread):
    """The search space cannot change the result beyond noise (lr varies by 0.1%; a, b and oversampling
    fixed), so whatever trial the search ranks first is luck. Real training of the top 2 and the current
    settings with 3 fresh seeds keeps the current settings, and the tuned file says so with the numbers."""
    study_file = write_study(tmp_path, phantom_dir, epochs=6)
    study = load_study(study_file, overrides=[
        "model.base=8", "train.lr=0.01", "train.samples_per_epoch=64", "loss.class_weight_smoothing=0.1",
        "loss.a=0.8", "loss.b=0.0", "tune.a=0.8", "tune.b=0.0", "tune.oversampling=3.0",
        "tune.lr=[0.01, 0.01001]", "tune.pruner=none", "tune.confirm_top_k=1", "tune.confirm_seeds=3"])
    result = run_tuning(study, trials=3, storage=None, timeout=None)
    assert result.n_complete == 3 and result.adopted_trial is None
    table = result.confirmation
    assert list(table["setting"]) == [BASELINE, f"trial {result.best_trial}"] and (table["n"] == 3).all()
    assert (table["seeds"] == "1 2 3").all() and not table["better"].any()
    assert (table["mean"] > 0).any()  # the runs learned something: a non-degenerate comparison
    tuned = load_study(result.tuned_study)
    assert tuned.arms[0].train.lr == 0.01  # not the best trial's 0.01000x
    header = result.tuned_study.read_text().split("\nname =")[0]
    assert "Settings UNCHANGED" in header and "no trial was better beyond seed noise" in header
    assert "Holm p = " in header and "| current settings | 3 |" in header


# --- several seeds per trial under the pruner -----------------------------------------------------------


@pytest.mark.slow
def test_seeds_per_trial_reports_the_mean_so_far_at_comparable_steps(tmp_path, phantom_dir):
    """Units (seed, fold) run one after another in the same order in every trial, so step
    ``unit * max_epochs + epoch`` means the same training done in every trial. Two earlier trials were
    poor during seed 0 (steps 1-2: Dice 0) but good once seed 1 was averaged in (steps 3-4: 0.95): the
    new trial survives steps 1-2 and is pruned at step 3, where its mean so far -- seed 0's final value
    and seed 1's epoch-1 Dice -- falls below the other trials' values at that same step."""
    study_file = write_study(tmp_path, phantom_dir)
    study = load_study(study_file, overrides=["tune.seeds_per_trial=2", "tune.keep_checkpoints=true",
                                              "tune.pruner_warmup_epochs=1"])
    url = sqlite_url(tmp_path)
    (tmp_path / "runs" / "tiny").mkdir(parents=True)
    from robustseg.tune.run import _identity

    ostudy = optuna.create_study(storage=url, study_name="tiny", direction="maximize")
    ostudy.set_user_attr("robustseg_identity", _identity(study, parse_tune(study)))
    dists = {"a": optuna.distributions.FloatDistribution(0, 1), "b_share": optuna.distributions.FloatDistribution(0, 1),
             "oversampling": optuna.distributions.FloatDistribution(1, 10, log=True)}
    for a in (0.3, 0.6):
        ostudy.add_trial(optuna.trial.create_trial(params={"a": a, "b_share": 0.5, "oversampling": 3.0},
                                                   distributions=dists, value=0.95,
                                                   intermediate_values={1: 0.0, 2: 0.0, 3: 0.95, 4: 0.95}))
    run_tuning(study, trials=1, storage=None, timeout=None)
    new = optuna.load_study(study_name="tiny", storage=url).trials[-1]
    assert new.state == TrialState.PRUNED and sorted(new.intermediate_values) == [1, 2, 3]
    units = new.user_attrs["units"]
    assert [(u["seed"], u["fold"]) for u in units] == [(0, 0)]  # seed 0 finished, seed 1 cut at epoch 1
    trial_dir = tmp_path / "runs" / "tiny" / "tune" / "tiny" / f"trial-{new.number:05d}"
    h0 = pd.read_csv(trial_dir / "seed-0-fold-0" / "history.csv")
    h1 = pd.read_csv(trial_dir / "seed-1-fold-0" / "history.csv")
    assert len(h0) == 2 and len(h1) == 1
    for epoch in (1, 2):  # steps 1-2: seed 0's own per-epoch Dice
        row = h0.iloc[epoch - 1]
        assert new.intermediate_values[epoch] == pytest.approx((row["val_dice_csp"] + row["val_dice_lv"]) / 2)
    seed1 = (h1.iloc[0]["val_dice_csp"] + h1.iloc[0]["val_dice_lv"]) / 2
    assert new.intermediate_values[3] == pytest.approx((units[0]["dice_csp_lv"] + seed1) / 2)
    assert new.intermediate_values[3] < 0.95


def test_seeds_per_trial_averages_the_seeds(tmp_path, phantom_dir):
    study_file = write_study(tmp_path, phantom_dir, epochs=1)
    study = load_study(study_file, overrides=["tune.seeds_per_trial=2", "tune.pruner=none"])
    result = run_tuning(study, trials=1, storage=None, timeout=None)
    trial = optuna.load_study(study_name="tiny", storage=sqlite_url(tmp_path)).trials[0]
    units = trial.user_attrs["units"]
    assert [u["seed"] for u in units] == [0, 1]
    assert trial.value == pytest.approx(sum(u["dice_csp_lv"] for u in units) / 2)
    assert "search seeds 0, 1" in result.report.read_text()


# --- journal file storage: two workers ------------------------------------------------------------------


@pytest.mark.slow
def test_journal_storage_two_workers_one_file(tmp_path, phantom_dir):
    study_file = write_study(tmp_path, phantom_dir, name="journal", epochs=1)
    journal = tmp_path / "shared" / "tune.log"  # folder created on first use
    url = f"journal://{journal}"
    workers = [start_worker(study_file, trials=2, storage=url) for _ in range(2)]
    outputs = [w.communicate(timeout=240)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    storage = make_storage(url, parse_tune(load_study(study_file)))
    ostudy = optuna.load_study(study_name="journal", storage=storage)
    check_trials(ostudy.trials, 4)
    sampled = [tuple(sorted(t.params.items())) for t in ostudy.trials]
    assert len(set(sampled)) == 4  # each worker drew its own points
    result = run_tuning(load_study(study_file), trials=0, storage=url, timeout=None)  # a third process reads it back
    assert result.n_trials == 4 and result.storage == url and result.n_complete + result.n_pruned == 4
    with pytest.raises(InputError, match="journal"):
        make_storage(f"journal://{tmp_path}", parse_tune(load_study(study_file)))


def test_tuned_file_of_a_packaged_study_is_not_written_into_the_package(tmp_path, monkeypatch):
    import robustseg
    from robustseg.tune.output import tuned_study_path

    monkeypatch.chdir(tmp_path)
    path = tuned_study_path(load_study())  # the quickstart shipped inside the package
    assert path == Path("studies") / "quickstart.tuned.toml" and (tmp_path / "studies").is_dir()
    assert not path.resolve().is_relative_to(Path(robustseg.__file__).resolve().parent)


def test_tuned_file_from_a_source_checkout_is_not_written_into_the_package(tmp_path, monkeypatch):
    """In a source checkout ``./studies`` links to the package's folder: the tuned file goes to the runs folder."""
    import robustseg
    from robustseg.config import build_study
    from robustseg.tune.output import tuned_study_path

    package = Path(robustseg.__file__).resolve().parent
    (tmp_path / "studies").symlink_to(package / "studies")
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "my-runs"
    for study in (load_study(), build_study({"name": "from-dict", "execution": {"runs_dir": str(runs)}}),
                  load_study(None, [f"execution.runs_dir={str(runs)!r}"])):
        path = tuned_study_path(study)
        assert not path.resolve().is_relative_to(package), path
    assert tuned_study_path(load_study(None, [f"execution.runs_dir={str(runs)!r}"])).parent == runs
