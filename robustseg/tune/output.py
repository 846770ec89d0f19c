"""What a tuning job leaves behind: a ready-to-run study file and a report section.

- ``<study dir>/<name>.tuned.toml``: the study's resolved tables (defaults + file), with the tuned arm's
  settings as the top-level tables, the best values placed in ``[loss] a / b / gamma``,
  ``[sampler] oversampling`` and ``[train] lr``, and the name ``<name>-tuned`` (so its runs and
  report never mix with the original study's).
- ``reports/<name>/tune/tune.md`` with ``figures/`` (optimisation history, parameter importances,
  the a/b simplex, the oversampling curve, slice plots, Pareto front in multi-objective mode),
  ``tables/trials.csv`` (every trial), ``tables/confirmation.csv`` and ``tables/importances.csv``.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import tomli_w
from optuna.trial import FrozenTrial, TrialState

from robustseg._io import atomic_write
from robustseg.config import Study
from robustseg.labels import display_name
from robustseg.tune.space import LOG_SCALE, SPACE_KEYS, TuneSpec, apply_params, tuned_arm

KILLED_PREFIX = "killed_trial_"
"""Study user attribute ``killed_trial_<number>``: why a trial was failed by the heartbeat check."""


def _replace_into(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename it over ``path`` (concurrent workers never tear a file; a full disk
    leaves the previous file): :func:`robustseg._io.atomic_write` with a temporary name that keeps the suffix,
    so matplotlib and pandas infer the format from it."""
    atomic_write(path, write, keep_suffix=True)


def tuned_study_path(study: Study) -> Path:
    """``<study dir>/<name>.tuned.toml``; for a study shipped inside the package (the installed quickstart) or one
    built without a file, ``./studies/`` of the working directory, or ``execution.runs_dir`` where ``./studies``
    is the package's own folder (a source checkout): nothing is ever written into the package."""
    import robustseg

    package = Path(robustseg.__file__).resolve().parent
    if study.path is not None and not study.path.parent.resolve().is_relative_to(package):
        folder = study.path.parent
    else:
        folder = Path("studies")
        if folder.resolve().is_relative_to(package):  # a source checkout, whose ./studies is the package's folder
            folder = Path(study.execution.runs_dir)
        folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{study.name}.tuned.toml"


def is_tuned_study(path: Path) -> bool:
    """Whether ``path`` is a tuned study file written by ``robustseg tune`` (its first comment line says so)."""
    from robustseg._outdir import first_line

    return first_line(path).startswith("# Written by 'robustseg tune'")


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


def md_table(df: pd.DataFrame) -> str:
    """A Markdown table of ``df`` (floats to 4 significant digits, NaN blank)."""
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


def effective_study(ostudy: optuna.Study, spec: TuneSpec) -> optuna.Study | None:
    """An in-memory copy of the complete trials over the *effective* parameters (``a``, ``b``, ...).

    The search samples ``b_share``, not ``b``; importances and plots are about what training used.
    None when no parameter varies or fewer than two trials completed.
    """
    from optuna.distributions import FloatDistribution

    dists = {k: FloatDistribution(r.low, r.high, log=r.log) for k, r in spec.space.items() if not r.fixed}
    complete = ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not dists or len(complete) < 2:
        return None
    copy_ = optuna.create_study(directions=spec.directions)
    for t in complete:
        params = effective_params(t)
        if not all(k in params for k in dists):
            continue
        clipped = {k: min(max(float(params[k]), d.low), d.high) for k, d in dists.items()}
        copy_.add_trial(optuna.trial.create_trial(params=clipped, distributions=dists, values=list(t.values)))
    return copy_


IMPORTANCE_METHODS = ("fanova", "ped_anova")


def importances_table(ostudy: optuna.Study, spec: TuneSpec) -> tuple[pd.DataFrame, str]:
    """Importances of the effective parameters by fANOVA (seeded random forest) and PED-ANOVA.

    Returns a table (``parameter``, ``fanova``, ``ped_anova``; sorted by fANOVA) and a note on what could
    not be computed. fANOVA splits the variance of the objective over the whole space; PED-ANOVA asks
    which parameters set the top 10% of trials apart (it fits when the good region matters, and needs
    enough trials for a top 10% of more than one).
    """
    eff = effective_study(ostudy, spec)
    if eff is None or len(eff.trials) < 2:
        return pd.DataFrame(columns=["parameter", *IMPORTANCE_METHODS]), (
            "needs at least 2 complete trials and a parameter that varies")
    target = (lambda t: t.values[0]) if spec.mode == "multi" else None
    evaluators = {"fanova": optuna.importance.FanovaImportanceEvaluator(seed=0),
                  "ped_anova": optuna.importance.PedAnovaImportanceEvaluator()}
    out: dict[str, dict[str, float]] = {}
    notes = []
    for name, evaluator in evaluators.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[name] = optuna.importance.get_param_importances(eff, evaluator=evaluator, target=target)
        except (ValueError, RuntimeError, ZeroDivisionError, IndexError) as exc:
            notes.append(f"{name} could not be computed ({type(exc).__name__}: {exc})")
    params = sorted({p for v in out.values() for p in v}, key=lambda p: -out.get("fanova", {}).get(p, 0.0))
    table = pd.DataFrame({"parameter": params,
                          **{m: [out.get(m, {}).get(p, math.nan) for p in params] for m in IMPORTANCE_METHODS}})
    return table, "; ".join(notes)


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


def _simplex_figure(table: pd.DataFrame, spec: TuneSpec, path: Path, *, base: Mapping[str, float],
                    confirmation: pd.DataFrame | None, adopted: int | None) -> None:
    """Trials in the (a, b) triangle coloured by the objective; current settings, confirmed and winner marked."""
    from matplotlib.figure import Figure

    target = spec.objective_names[0]
    done = table[table["state"] == "COMPLETE"]
    pruned = table[table["state"] == "PRUNED"]
    fig = Figure(figsize=(5.6, 4.8), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1, 0, 0], [0, 0, 1, 0], color="black", lw=0.8)
    if not done.empty:
        sc = ax.scatter(done["a"], done["b"], c=done[target], cmap="viridis", s=36, edgecolor="none", zorder=2)
        fig.colorbar(sc, ax=ax, label=f"{target} (search)")
    if not pruned.empty:
        ax.scatter(pruned["a"], pruned["b"], marker="x", color="grey", s=22, label="pruned", zorder=2)
    if "a" in base and "b" in base:
        ax.scatter([base["a"]], [base["b"]], marker="*", s=220, color="black", label="current settings", zorder=3)
    if confirmation is not None:
        conf = confirmation[confirmation["trial"] != ""]
        ax.scatter(conf["a"], conf["b"], marker="s", s=110, facecolor="none", edgecolor="tab:blue", lw=1.4,
                   label="confirmed (top k)", zorder=3)
    if adopted is not None:
        row = table[table["number"] == adopted]
        ax.scatter(row["a"], row["b"], marker="o", s=260, facecolor="none", edgecolor="red", lw=2.2,
                   label=f"confirmed winner (trial {adopted})", zorder=4)
        ax.set_title("confirmed winner marked in red", fontsize=9)
    else:
        ax.set_title("no trial confirmed better than the current settings", fontsize=9)
    for (x, y, text, ha) in [(0, 0, "CE only", "left"), (1, 0, "Dice only", "right"), (0, 1, "focal only", "left")]:
        ax.annotate(text, (x, y), xytext=(4 if ha == "left" else -4, 6), textcoords="offset points", ha=ha, fontsize=8)
    ax.set_xlim(-0.04, 1.04)
    ax.set_ylim(-0.04, 1.04)
    ax.set_aspect("equal")
    ax.set_xlabel("a (Dice share)")
    ax.set_ylabel("b (focal share); CE share = 1 - a - b")
    ax.legend(fontsize=7, loc="upper right")
    _replace_into(path, lambda tmp: fig.savefig(tmp, dpi=110))


def smooth_curve(x: np.ndarray, y: np.ndarray, grid: np.ndarray, *, log: bool = True,
                 bandwidth: float = 0.15) -> np.ndarray:
    """Gaussian kernel (Nadaraya-Watson) smoother of ``y`` over ``x``, in log space when ``log``.

    ``bandwidth`` is a fraction of the (log) range of ``x``.
    """
    x, g = np.asarray(x, dtype=np.float64), np.asarray(grid, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if log:
        x, g = np.log(x), np.log(g)
    span = float(np.ptp(x)) or 1.0
    w = np.exp(-0.5 * ((g[:, None] - x[None, :]) / (bandwidth * span)) ** 2)
    return (w * y[None, :]).sum(axis=1) / w.sum(axis=1)


def _oversampling_figure(table: pd.DataFrame, spec: TuneSpec, path: Path, *, base: Mapping[str, float],
                         confirmation: pd.DataFrame | None) -> None:
    """The objective against the oversampling factor: search trials, a kernel-smoothed curve, confirmed means."""
    from matplotlib.figure import Figure

    target = spec.objective_names[0]
    done = table[table["state"] == "COMPLETE"]
    r = spec.space["oversampling"]
    fig = Figure(figsize=(5.6, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.scatter(done["oversampling"], done[target], color="tab:grey", s=22, label="search trials")
    if len(done) >= 3:
        grid = np.geomspace(r.low, r.high, 100)
        ax.plot(grid, smooth_curve(done["oversampling"].to_numpy(), done[target].to_numpy(), grid), color="tab:blue",
                label="kernel-smoothed search value")
    if confirmation is not None:
        for _, row in confirmation.iterrows():
            is_base = row["trial"] == ""
            ax.errorbar([row["oversampling"]], [row["mean"]], yerr=[row["sd"] if math.isfinite(row["sd"]) else 0.0],
                        fmt="*" if is_base else "s", color="black" if is_base else "tab:red", capsize=3, ms=9 if is_base else 6,
                        label=None)
        ax.plot([], [], "s", color="tab:red", label="confirmed mean ± SD (fresh seeds)")
        ax.plot([], [], "*", color="black", label="current settings, confirmed")
    elif "oversampling" in base:
        ax.axvline(base["oversampling"], color="black", ls=":", lw=1, label="current settings")
    ax.set_xscale("log")
    small = "/".join(display_name(spec.class_names[k]) for k in spec.small_classes)
    ax.set_xlabel(f"oversampling factor of images with {small}")
    ax.set_ylabel(target)
    ax.legend(fontsize=7)
    _replace_into(path, lambda tmp: fig.savefig(tmp, dpi=110))


def write_report_section(ostudy: optuna.Study, spec: TuneSpec, out_dir: Path, *, summary: Mapping[str, Any],
                         best: FrozenTrial | None, decision: Any = None, decision_text: str = "",
                         base: Mapping[str, float] | None = None) -> Path:
    """Write ``tune.md`` + ``figures/*.png`` + ``tables/*.csv`` into ``out_dir``; returns the Markdown.

    ``best`` is ``pick_best(ostudy, spec)`` (None: no complete trial); ``decision`` the confirmation
    (``robustseg.tune.confirm.Decision``, None when off) and ``decision_text`` what the tuned file did.
    """
    import optuna.visualization.matplotlib as ovm

    base = dict(base or {})
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

    confirmation = decision.table if decision is not None else None
    adopted = decision.adopted.trial if decision is not None and decision.adopted is not None else None
    lines += ["## Decision", "", decision_text or "_(no decision)_", ""]
    if confirmation is not None:
        _replace_into(tabs / "confirmation.csv", lambda tmp: confirmation.to_csv(tmp, index=False))
        shown = confirmation.drop(columns=["seeds"] + (["failures"] if not confirmation["failures"].any() else []))
        lines += ["## Confirmation", "",
                  f"The top {len(confirmation) - 1} distinct trial(s) and the current settings, re-trained with "
                  f"{int(confirmation['n'].max() or 0)} fresh seed(s) each (seeds {confirmation['seeds'].iloc[0]}, "
                  "never used in the search) on the tuning folds. `mean`/`sd`: the objective over those seeds; "
                  "`diff`: mean minus the current settings' mean with its 95% CI (Welch, run-level: seed noise in the "
                  "error term); `p_holm`: Holm over the comparisons; `better`: Holm p < alpha and diff > 0. "
                  "`search_value` is the trial's value in the search, where it was ranked best partly by luck.", "",
                  md_table(shown)]

    if best is not None:
        lines += ["## Best search trial", "", f"Trial {best.number}: "
                  + ", ".join(f"{n} = {v:.4f}" for n, v in zip(spec.objective_names, best.values, strict=True))
                  + " (the search's value, not confirmed)", ""]
        lines += [f"- {k} = {v:.6g}" for k, v in effective_params(best).items()] + [""]
    if spec.mode == "multi" and best is not None:
        front = {t.number for t in ostudy.best_trials}
        lines += [f"## Pareto front ({'/'.join(map(display_name, spec.classes))} vs "
                  f"{'/'.join(map(display_name, spec.parenchyma_classes))})", "",
                  md_table(table[table["number"].isin(front)].sort_values(target, ascending=False))]
        problem = _optuna_figure(ovm.plot_pareto_front, figs / "pareto_front.png", study=ostudy,
                                 target_names=spec.objective_names)
        lines += ["![Pareto front](figures/pareto_front.png)" if not problem else f"_Pareto front: {problem}_", ""]

    lines += ["## What mattered", "", "### Parameter importances", "",
              "Over the effective parameters (a, b, ...) of the complete trials: fANOVA (the share of the "
              "objective's variance each parameter explains; seeded random forest) and PED-ANOVA (which parameters "
              "set the top 10% of trials apart). With a few dozen trials or fewer they are rough; a parameter whose "
              "importance is near zero did not change the search value beyond its noise.", ""]
    importances, why = importances_table(ostudy, spec)
    _replace_into(tabs / "importances.csv", lambda tmp: importances.to_csv(tmp, index=False))
    if not importances.empty:
        col = "fanova" if importances["fanova"].notna().any() else "ped_anova"
        _bar_figure(dict(zip(importances["parameter"], importances[col].fillna(0.0), strict=True)),
                    figs / "importances.png", f"{col} importance for {target}")
        lines += [md_table(importances), "![Parameter importances](figures/importances.png)", ""]
        if why:
            lines += [f"_{why}._", ""]
    else:
        lines += [f"_Importances not computed: {why}._", ""]

    done = table[table["state"] == "COMPLETE"]
    if "a" in spec.space and not done.empty:
        _simplex_figure(table, spec, figs / "simplex.png", base=base, confirmation=confirmation, adopted=adopted)
        lines += ["### The a/b simplex", "",
                  "Each trial at its Dice share a and focal share b (cross-entropy gets 1 - a - b), coloured by "
                  "its search value; the star is the current settings, squares the confirmed trials, the red "
                  "ring the confirmed winner (if any).", "", "![a/b simplex](figures/simplex.png)", ""]
    if "oversampling" in spec.space and not spec.space["oversampling"].fixed and not done.empty:
        _oversampling_figure(table, spec, figs / "oversampling.png", base=base, confirmation=confirmation)
        lines += ["### The oversampling factor", "",
                  "Search values against the oversampling factor with a Gaussian-kernel smoothed curve (in log "
                  "oversampling; the other parameters vary along it), and the confirmed means ± seed SD.", "",
                  "![Oversampling curve](figures/oversampling.png)", ""]

    lines += ["## Optimisation history", ""]
    kw: dict[str, Any] = {"study": ostudy}
    if spec.mode == "multi":
        kw.update(target=lambda t: t.values[0], target_name=target)
    problem = "no complete trial" if best is None else _optuna_figure(ovm.plot_optimization_history,
                                                                      figs / "history.png", **kw)
    lines += ["![Optimisation history](figures/history.png)" if not problem else f"_History not drawn: {problem}_", ""]

    keys = [k for k in SPACE_KEYS if k in spec.space and not spec.space[k].fixed]
    if keys and not done.empty:
        _slice_figure(table, spec, keys, figs / "slice.png")
        lines += ["## Slice plots", "", "![Slice plots](figures/slice.png)", ""]

    top = done.sort_values(target, ascending=False).head(10)
    lines += ["## Top trials (search values)", "", md_table(top.drop(columns=["fail_reason"]))]
    failed = table[table["state"] == "FAIL"]
    if not failed.empty:
        lines += ["## Failed trials", "", md_table(failed[["number", "fail_reason"]])]
    md = out_dir / "tune.md"
    _replace_into(md, lambda tmp: tmp.write_text("\n".join(lines) + "\n", encoding="utf-8"))
    return md
