"""The reproducibility block: package versions, git commit, study hash, seeds, hardware, wall time per run."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd

from robustseg.report import markdown as md

PACKAGES = ("robustseg", "torch", "numpy", "pandas", "scipy", "scikit-image", "pingouin", "albumentations",
            "matplotlib")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(where: Path | None = None) -> str:
    """``git rev-parse HEAD`` of the source tree (``unknown`` outside a git checkout or without git)."""
    where = where or Path(__file__).resolve().parent
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def shown_path(path: str, cwd: Path | None = None) -> str:
    """A path as a report shows it: relative to ``cwd`` when inside it, else the file name (no user folders)."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.relative_to(cwd or Path.cwd()).as_posix()
    except ValueError:
        return p.name


def block(heading: str, study: dict, study_hash: str, study_file: str | None, runs: pd.DataFrame) -> str:
    versions = package_versions()
    lines = [heading.rstrip("\n"), "",
             f"- Study hash: `{study_hash}`" + (f" (file `{shown_path(study_file)}`)" if study_file else ""),
             f"- Seeds: {study.get('seeds', [])}; split seed {study.get('split', {}).get('seed', '?')}; "
             f"perturbation seed {study.get('perturb', {}).get('seed', '?')}",
             f"- Source commit when the report was built: `{git_commit()}`",
             "- Packages when the report was built: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
             ""]
    done = runs[runs["status"] == "complete"] if "status" in runs.columns else runs
    if not done.empty:
        hw = []
        for col in ("host", "device", "torch_threads"):
            if col in done.columns:
                hw.append(f"{col} " + ", ".join(sorted(str(v) for v in done[col].dropna().unique())))
        lines.append("- Hardware of the runs: " + "; ".join(hw))
        sw = [f"{col.removesuffix('_version')} " + ", ".join(sorted(str(v) for v in done[col].dropna().unique()))
              for col in ("python_version", "robustseg_version", "torch_version", "numpy_version")
              if col in done.columns]
        if sw:
            lines.append("- Packages when the runs ran: " + "; ".join(sw))
        if "seconds" in done.columns:
            lines.append(f"- Wall time of all runs: {done['seconds'].sum():.1f} s (sum over runs)")
        lines.append("")
        cols = {"run_id": "Run", "arm": "Arm", "fold": ("Fold", md.integer), "seed": ("Seed", md.integer)}
        for col, head in (("seconds", "Wall s"), ("train_seconds", "Train s"), ("eval_seconds", "Eval s"),
                          ("epochs_run", "Epochs"), ("best_epoch", "Best epoch"), ("device", "Device"),
                          ("diverged", "Diverged")):
            if col in done.columns:
                cols[col] = (head, md.fixed(1)) if col.endswith("seconds") else (head, str)
        lines.append(md.table(runs, cols | {"status": "Status"}))
    return "\n".join(lines) + "\n"
