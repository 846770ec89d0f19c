"""Does the quickstart recipe transfer? Train it on every phantom style and tabulate validation Dice.

Run: ``python benchmarks/transfer.py [--styles small-thin,low-contrast] [--folds 0,1] [--seeds 0,1,2]
[--set train.max_epochs=30] [--workers 2] [--label TEXT] [--log benchmarks/transfer_log.md]``

For each style of ``robustseg.data.phantom.STYLES`` this loads ``studies/transfer.toml`` with
``data.phantom_style`` and ``data.phantom_n`` (the style's data set size; the quickstart's 160 images for
``default``) overridden, builds the
study's data and splits exactly as ``robustseg study`` does, and trains each (fold, seed) run of the
first arm with ``train_run`` (no test-set evaluation: the target is validation Dice). It prints one row
per run (pooled validation Dice of CSP and LV at the kept checkpoint, epochs, seconds, mean seconds
per epoch) and per style how many runs reach CSP and LV Dice >= 0.5 (issue 14's target: >= 5 of 6).
``--log`` appends the rows to a Markdown table (the experiment log).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
THRESHOLD = 0.5


@functools.lru_cache(maxsize=2)
def _prepare(study_path: Path, style: str, overrides: tuple[str, ...]) -> tuple[Any, Any, np.ndarray]:
    """The study for one style, its data (at input size) and the fold of each image (-1: test).

    Cached per process: a worker trains the six (fold, seed) runs of a style from one read of its images.
    """
    from robustseg.config import load_study
    from robustseg.data.splits import folds_for, make_splits
    from robustseg.pipeline.plan import DataSpec
    from robustseg.pipeline.runner import load_data
    from robustseg.pipeline.study import _phantom_path

    sets = [f"data.phantom_style={style}", f"data.phantom_n={_style_n(style)}", *overrides]
    study = load_study(study_path, sets)
    d = study.raw["data"]
    runs_dir = Path(study.raw["execution"]["runs_dir"]) / study.name
    path = _phantom_path(study, runs_dir)
    data = load_data(DataSpec(d["source"], str(path.resolve()), d["plane"], d["colormap"], int(d["size"])))
    s = study.raw["split"]
    splits = make_splits(data.index, test_fraction=s["test_fraction"], k_folds=s["k_folds"], seed=s["seed"])
    return study, data, folds_for(data.index["image_id"], splits)


def _style_n(style: str) -> int:
    """Images per style: the style's own size, except the default phantom at the quickstart's size."""
    from robustseg.config import load_study
    from robustseg.data.phantom import get_style

    if style == "default":
        return int(load_study(ROOT / "studies" / "quickstart.toml").raw["data"]["phantom_n"])
    return get_style(style).n


def _one_run(job: dict[str, Any]) -> dict[str, Any]:
    """Train one (style, fold, seed) run in this process (single-threaded) and summarise it."""
    import torch

    from robustseg.nn.train import train_run
    from robustseg.pipeline.runner import train_config

    torch.set_num_threads(job["threads"])
    study, data, folds = _prepare(Path(job["study"]), job["style"], tuple(job["overrides"]))
    arm = study.arms[0].to_dict()
    cfg = train_config(arm, job["seed"], int(study.raw["data"]["size"]))
    tr = np.flatnonzero((folds != -1) & (folds != job["fold"]))
    va = np.flatnonzero(folds == job["fold"])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        res = train_run(cfg, (data.images[tr], data.masks[tr]), (data.images[va], data.masks[va]), tmp)
    return {
        "style": job["style"], "fold": job["fold"], "seed": job["seed"],
        "csp": res.val_dice["csp"], "lv": res.val_dice["lv"], "brain": res.val_dice["brain"],
        "best_epoch": res.best_epoch, "epochs": res.epochs_run,
        "s_per_epoch": float(res.history["seconds"].mean()), "seconds": time.perf_counter() - t0,
    }


def summarise(runs: pd.DataFrame, threshold: float = THRESHOLD) -> pd.DataFrame:
    """Per style: runs, how many reach CSP and LV Dice >= threshold, mean (min) Dice, mean seconds."""
    ok = (runs["csp"] >= threshold) & (runs["lv"] >= threshold)
    g = runs.assign(ok=ok).groupby("style", sort=False)
    return pd.DataFrame({
        "runs": g.size(), "reach": g["ok"].sum(),
        "csp_mean": g["csp"].mean(), "csp_min": g["csp"].min(),
        "lv_mean": g["lv"].mean(), "lv_min": g["lv"].min(),
        "seconds_mean": g["seconds"].mean(),
    }).reset_index()


def _append_log(path: Path, label: str, runs: pd.DataFrame) -> None:
    header = "| when | lever | style | fold | seed | CSP | LV | brain | best ep | epochs | s/epoch | s |\n" \
             "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    lines = []
    when = time.strftime("%H:%M")
    for r in runs.itertuples():
        lines.append(f"| {when} | {label} | {r.style} | {r.fold} | {r.seed} | {r.csp:.3f} | {r.lv:.3f} | "
                     f"{r.brain:.3f} | {r.best_epoch} | {r.epochs} | {r.s_per_epoch:.2f} | {r.seconds:.0f} |")
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    last = next((ln for ln in reversed(text.splitlines()) if ln.strip()), "")
    with open(path, "a", encoding="utf-8") as fh:
        if not text:
            fh.write("# Transfer experiments (benchmarks/transfer.py)\n\n")
        if not last.startswith("|"):  # the file ends in prose: start a new table
            fh.write(("\n" if text else "") + header)
        fh.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    from robustseg.data.phantom import STYLES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default=str(ROOT / "studies" / "transfer.toml"))
    ap.add_argument("--styles", default=",".join(STYLES))
    ap.add_argument("--folds", default="0,1")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--label", default="recipe", help="what this round changes (for the log)")
    ap.add_argument("--log", default="", help="append the runs to this Markdown file")
    args = ap.parse_args(argv)
    styles = [s for s in args.styles.split(",") if s]
    unknown = [s for s in styles if s not in STYLES]
    if unknown:
        print(f"--styles: unknown {unknown}; valid: {', '.join(STYLES)}", file=sys.stderr)
        return 2
    for style in styles:  # generate each phantom once, before the workers race for it
        _prepare(Path(args.study), style, tuple(args.set))
    jobs = [{"study": args.study, "style": s, "fold": int(f), "seed": int(k), "overrides": args.set,
             "threads": args.threads}
            for s in styles for f in args.folds.split(",") for k in args.seeds.split(",")]
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            rows = list(pool.map(_one_run, jobs))
    else:
        rows = [_one_run(j) for j in jobs]
    runs = pd.DataFrame(rows)
    with pd.option_context("display.width", 160, "display.float_format", "{:.3f}".format):
        print(runs.to_string(index=False))
        print()
        print(summarise(runs).to_string(index=False))
    if args.log:
        _append_log(Path(args.log), args.label, runs)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
