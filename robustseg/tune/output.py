"""What a tuning job leaves behind: a ready-to-run study file and a report section.

- ``<study dir>/<name>.tuned.toml``: the study's resolved tables (defaults + file), with the tuned arm's
  settings as the top-level tables, the best values placed in ``[loss] a / b / gamma``,
  ``[sampler] oversampling`` and ``[train] lr``, and the name ``<name>-tuned`` (so its runs and
  report never mix with the original study's).
- ``reports/<name>/tune/tune.md`` with ``figures/`` (optimisation history, parameter importances,
  slice plots, Pareto front in multi-objective mode) and ``tables/trials.csv`` (every trial).
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import tomli_w
from optuna.trial import FrozenTrial, TrialState

from robustseg.config import Study
from robustseg.tune.space import LOG_SCALE, SPACE_KEYS, TuneSpec, apply_params, tuned_arm

KILLED_PREFIX = "killed_trial_"
"""Study user attribute ``killed_trial_<number>``: why a trial was failed by the heartbeat check."""


def _replace_into(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename it over ``path`` (concurrent workers never tear a file)."""
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def tuned_study_path(study: Study) -> Path:
    folder = study.path.parent if study.path is not None else Path("studies")
    return folder / f"{study.name}.tuned.toml"


def tuned_raw(study: Study, spec: TuneSpec, params: Mapping[str, float], description: str) -> dict[str, Any]:
    """The study tables with the tuned arm flattened into them and ``params`` placed in their keys."""
    raw = copy.deepcopy(dict(study.raw))
    arm = tuned_arm(study, spec.options["arm"])
    raw["name"] = f"{study.name}-tuned"
    raw["description"] = description
    raw["model"] = {"name": arm.model, **copy.deepcopy(dict(arm.model_kwargs))}
    raw["loss"] = {"name": arm.loss, "class_weight_smoothing": arm.class_weight_smoothing,
                   **copy.deepcopy(dict(arm.loss_kwargs))}
    raw["sampler"] = {**raw["sampler"], "oversampling": arm.oversampling}
    raw["train"] = arm.train.model_dump()
    placed = apply_params({"loss_kwargs": raw["loss"], "oversampling": raw["sampler"]["oversampling"],
                           "train": raw["train"]},
                          {k: float(params[k]) for k in SPACE_KEYS if k in params})
    raw["loss"], raw["sampler"]["oversampling"], raw["train"] = (placed["loss_kwargs"], placed["oversampling"],
                                                                  placed["train"])
    for key in ("arms", "tune"):
        raw.pop(key, None)
    if not raw["data"].get("external"):
        raw["data"].pop("external", None)
    return raw


def write_tuned_study(study: Study, spec: TuneSpec, params: Mapping[str, float], *, header: str,
                      description: str) -> Path:
    """Write ``<study dir>/<name>.tuned.toml`` atomically; returns its path."""
    path = tuned_study_path(study)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = tomli_w.dumps(tuned_raw(study, spec, params, description))
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    _replace_into(path, lambda tmp: tmp.write_text(comment + body, encoding="utf-8"))
    return path


# --- the report section ---------------------------------------------------------------------------


def effective_params(trial: FrozenTrial) -> dict[str, float]:
    """The values a trial trained with (``a``, ``b``, ...); falls back to its raw Optuna params."""
    params = trial.user_attrs.get("params")
    return dict(params) if isinstance(params, dict) else dict(trial.params)


def trials_table(ostudy: optuna.Study, spec: TuneSpec) -> pd.DataFrame:
    """One row per trial: number, state, objective value(s), effective params, epochs, seconds, reason."""
    killed = {int(k[len(KILLED_PREFIX):]): v for k, v in ostudy.user_attrs.items() if k.startswith(KILLED_PREFIX)}
    rows = []
    for t in ostudy.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        for i, name in enumerate(spec.objective_names):
            row[name] = t.values[i] if t.values is not None and len(t.values) > i else math.nan
        params = effective_params(t)
        row.update({k: params.get(k, math.nan) for k in SPACE_KEYS})
        row["epochs"] = t.user_attrs.get("epochs", len(t.intermediate_values) or math.nan)
        row["seconds"] = t.duration.total_seconds() if t.duration is not None else math.nan
        row["fail_reason"] = t.user_attrs.get("fail_reason") or killed.get(t.number, "")
        rows.append(row)
    columns = ["number", "state", *spec.objective_names, *SPACE_KEYS, "epochs", "seconds", "fail_reason"]
    return pd.DataFrame(rows, columns=columns)


def pick_best(ostudy: optuna.Study, spec: TuneSpec) -> FrozenTrial | None:
    """The best trial; in multi-objective mode the Pareto trial with the best small-structure Dice."""
    complete = ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    if spec.mode == "single":
        return ostudy.best_trial
    return max(ostudy.best_trials, key=lambda t: (t.values[0], t.values[1], -t.number))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(none)_\n"
    lines = ["| " + " | ".join(str(c) for c in df.columns) + " |", "|" + "---|" * len(df.columns)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v).replace("|", "/").replace("\n", " ") for v in row) + " |")
    return "\n".join(lines) + "\n"


def _slice_figure(table: pd.DataFrame, spec: TuneSpec, keys: Sequence[str], path: Path) -> None:
    from matplotlib.figure import Figure

    done = table[table["state"] == "COMPLETE"]
    pruned = table[table["state"] == "PRUNED"]
    target = spec.objective_names[0]
    fig = Figure(figsize=(3.2 * len(keys), 3.0), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys, strict=True):
        sc = ax.scatter(done[key], done[target], c=done["number"], cmap="viridis", s=22)
        if not pruned.empty:
            ax.scatter(pruned[key], np.zeros(len(pruned)), marker="x", color="grey", s=18, label="pruned (at 0)")
        if key in LOG_SCALE:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(target)
    if not pruned.empty:
        axes[0].legend(fontsize=7, loc="lower left")
    fig.colorbar(sc, ax=axes[-1], label="trial")
    _replace_into(path, lambda tmp: fig.savefig(tmp, dpi=110))


def _importances(ostudy: optuna.Study, spec: TuneSpec) -> tuple[dict[str, float], str]:
    """Parameter importances (Optuna's default evaluator, PED-ANOVA) or a reason why there are none."""
    complete = ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2 or not complete[0].params:
        return {}, f"needs at least 2 complete trials with sampled parameters ({len(complete)} complete)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            target = (lambda t: t.values[0]) if spec.mode == "multi" else None
            return optuna.importance.get_param_importances(ostudy, target=target), ""
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        return {}, f"could not be computed ({type(exc).__name__}: {exc})"


def _bar_figure(values: Mapping[str, float], path: Path, xlabel: str) -> None:
    from matplotlib.figure import Figure

    names = list(values)[::-1]
    fig = Figure(figsize=(5.0, 0.5 + 0.4 * len(names)), layout="constrained")
    ax = fig.subplots()
    ax.barh(names, [values[n] for n in names], color="tab:blue")
    ax.set_xlabel(xlabel)
    _replace_into(path, lambda tmp: fig.savefig(tmp, dpi=110))


def _optuna_figure(plot: Any, path: Path, **kw: Any) -> str:
    """Save one of ``optuna.visualization.matplotlib``'s plots; returns '' or why it was skipped."""
    import matplotlib.pyplot as plt

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ax = plot(**kw)
        fig = ax.figure if hasattr(ax, "figure") else np.ravel(ax)[0].figure
        fig.set_size_inches(6.0, 4.0)
        _replace_into(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight"))
        plt.close(fig)
        return ""
    except (ValueError, RuntimeError, IndexError) as exc:
        plt.close("all")
        return f"{type(exc).__name__}: {exc}"


def write_report_section(ostudy: optuna.Study, spec: TuneSpec, out_dir: Path, *, summary: Mapping[str, Any],
                         best: FrozenTrial | None) -> Path:
    """Write ``tune.md`` + ``figures/*.png`` + ``tables/trials.csv`` into ``out_dir``; returns the Markdown.

    ``best`` is ``pick_best(ostudy, spec)`` (None: no complete trial).
    """
    import optuna.visualization.matplotlib as ovm

    figs, tabs = out_dir / "figures", out_dir / "tables"
    figs.mkdir(parents=True, exist_ok=True)
    tabs.mkdir(parents=True, exist_ok=True)
    table = trials_table(ostudy, spec)
    _replace_into(tabs / "trials.csv", lambda tmp: table.to_csv(tmp, index=False))
    target = spec.objective_names[0]
    counts = table["state"].value_counts()
    lines = [f"# Tuning: {summary['study_name']}", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in summary.items() if k != "study_name"]
    lines += [f"- trials: {len(table)} ({', '.join(f'{n} {s.lower()}' for s, n in counts.items())})"]
    ran = table[table["state"].isin(["COMPLETE", "PRUNED"])]
    if (ran["state"] == "PRUNED").any():
        full = ran.loc[ran["state"] == "COMPLETE", "epochs"].mean()
        cut = ran.loc[ran["state"] == "PRUNED", "epochs"].mean()
        lines.append(f"- pruning: pruned trials stopped after {cut:.3g} epochs on average; completed trials ran "
                     f"{full:.3g}")
    lines.append("")

    if best is not None:
        lines += ["## Best parameters", "", f"Trial {best.number}: "
                  + ", ".join(f"{n} = {v:.4f}" for n, v in zip(spec.objective_names, best.values, strict=True)), ""]
        lines += [f"- {k} = {v:.6g}" for k, v in effective_params(best).items()] + [""]
    if spec.mode == "multi" and best is not None:
        front = {t.number for t in ostudy.best_trials}
        lines += ["## Pareto front (small structures vs parenchyma)", "",
                  _md_table(table[table["number"].isin(front)].sort_values(target, ascending=False))]
        problem = _optuna_figure(ovm.plot_pareto_front, figs / "pareto_front.png", study=ostudy,
                                 target_names=spec.objective_names)
        lines += ["![Pareto front](figures/pareto_front.png)" if not problem else f"_Pareto front: {problem}_", ""]

    lines += ["## Optimisation history", ""]
    kw: dict[str, Any] = {"study": ostudy}
    if spec.mode == "multi":
        kw.update(target=lambda t: t.values[0], target_name=target)
    problem = "no complete trial" if best is None else _optuna_figure(ovm.plot_optimization_history,
                                                                      figs / "history.png", **kw)
    lines += ["![Optimisation history](figures/history.png)" if not problem else f"_History not drawn: {problem}_", ""]

    lines += ["## Parameter importances", "",
              "Optuna parameters: `b_share` is b's position in [b_low, min(b_high, 1 - a)] (see robustseg.tune.space).", ""]
    importances, why = _importances(ostudy, spec)
    if importances:
        _bar_figure(importances, figs / "importances.png", f"importance for {target}")
        lines += [_md_table(pd.DataFrame({"parameter": list(importances), "importance": list(importances.values())})),
                  "![Parameter importances](figures/importances.png)", ""]
    else:
        lines += [f"_Importances not computed: {why}._", ""]

    keys = [k for k in SPACE_KEYS if k in spec.space and not spec.space[k].fixed]
    done = table[table["state"] == "COMPLETE"]
    if keys and not done.empty:
        _slice_figure(table, spec, keys, figs / "slice.png")
        lines += ["## Slice plots", "", "![Slice plots](figures/slice.png)", ""]

    top = done.sort_values(target, ascending=False).head(10)
    lines += ["## Top trials", "", _md_table(top.drop(columns=["fail_reason"]))]
    failed = table[table["state"] == "FAIL"]
    if not failed.empty:
        lines += ["## Failed trials", "", _md_table(failed[["number", "fail_reason"]])]
    md = out_dir / "tune.md"
    _replace_into(md, lambda tmp: tmp.write_text("\n".join(lines) + "\n", encoding="utf-8"))
    return md
