"""Command line: parses arguments, calls the public API, prints with rich. No maths here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from robustseg.errors import RobustsegError

console = Console()
err_console = Console(stderr=True)

QUICKSTART = Path(__file__).resolve().parent.parent / "studies" / "quickstart.toml"


def print_table(df: pd.DataFrame, title: str | None = None, digits: int = 4) -> None:
    """Print a DataFrame as a rich table (numbers rounded for display only)."""
    table = Table(title=title, show_lines=False)
    for col in df.columns:
        table.add_column(str(col), justify="right" if pd.api.types.is_numeric_dtype(df[col]) else "left")
    for row in df.itertuples(index=False):
        table.add_row(*[_fmt(v, digits) for v in row])
    console.print(table)


def _fmt(v: object, digits: int) -> str:
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.{digits}g}" if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3) else f"{v:.{digits}f}"
    return str(v)


# --- handlers -------------------------------------------------------------------------------------


def cmd_phantom(args: argparse.Namespace) -> int:
    from robustseg.data.phantom import generate_phantom, get_style

    style = get_style(args.style)
    n = style.n if args.n is None else args.n
    out = generate_phantom(args.out_dir, n=n, seed=args.seed, style=args.style)
    console.print(f"wrote {n} phantom images ({args.style}: {style.size[0]} x {style.size[1]}) to {out}")
    return 0


def cmd_check_data(args: argparse.Namespace) -> int:
    from robustseg.data.check import check_data

    source = None if args.source == "auto" else args.source
    report = check_data(args.data_dir, source=source, plane=args.plane, colormap=args.colormap)
    print_table(report.summary, title=f"{args.data_dir}")
    print_table(report.classes, title="classes")
    print_table(report.sizes, title="image sizes")
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {warning}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from robustseg.config import load_study
    from robustseg.pipeline.study import train_one

    study = load_study(args.study, overrides=args.set)
    result = train_one(study, arm=args.arm, fold=args.fold, seed=args.seed, console=console)
    console.print(f"run {result['run_id']} -> {result['run_dir']}")
    return 0


def cmd_evaluate_folder(args: argparse.Namespace) -> int:
    from robustseg.metrics.folder import evaluate_folder, write_evaluation

    classes = tuple(c.strip() for c in args.classes.split(","))
    per_image, summary = evaluate_folder(
        args.pred_dir, args.gt_dir, pixel_size_csv=args.pixel_size_csv, classes=classes, colormap=args.colormap,
        empty_policy=args.empty_policy, nsd_tolerance_mm=args.nsd_tolerance_mm, boundary=not args.no_boundary,
        postprocess=args.postprocess, min_component_px=args.min_component_px,
    )
    out = Path(args.output) if args.output else Path(args.pred_dir).parent / "evaluation"
    write_evaluation(out, per_image, summary)
    n = per_image["image_id"].nunique()
    for key, title in (("global", f"global (pooled pixels, {n} images)"), ("per_image", "per-image means"),
                       ("presence", "presence cases per class")):
        table = pd.DataFrame.from_dict(summary[key], orient="index").rename_axis("class").reset_index()
        cols = [c for c in table.columns if not c.endswith(("_std", "_n"))]
        print_table(table[cols], title=title)
    if args.postprocess:
        print_table(pd.DataFrame(summary["postprocessing"]), title="raw vs post-processed (closing + largest component)")
    console.print(f"empty-structure policy: {summary['empty_policy_text']}")
    console.print(f"wrote {out / 'per_image.csv'} and {out / 'summary.json'}")
    return 0


def cmd_perturb(args: argparse.Namespace) -> int:
    from robustseg.perturb import perturb_folder

    table = perturb_folder(args.image_dir, args.out_dir, suite=args.suite, severity=args.severity, seed=args.seed,
                           size=args.size)
    console.print(f"wrote {len(table)} perturbed images and {Path(args.out_dir) / 'contact_sheet.png'}")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from robustseg.config import load_study
    from robustseg.pipeline.study import run_study

    path = Path(args.study) if args.study else QUICKSTART
    study = load_study(path, overrides=args.set)
    outcome = run_study(study, resume=args.resume, scheduler=args.scheduler, console=console)
    if outcome.failures:
        err_console.print(f"[red]{len(outcome.failures)} run(s) failed:[/red]")
        for failure in outcome.failures:
            err_console.print(f"  {failure}", markup=False, highlight=False, soft_wrap=True)
        return 1
    console.print(f"report: {outcome.report}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from robustseg.config import load_study
    from robustseg.tune import run_tuning

    study = load_study(args.study, overrides=args.set)
    result = run_tuning(study, trials=args.trials, storage=args.storage, timeout=args.timeout, console=console)
    console.print(f"best: {result.best_params}  -> {result.tuned_study}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from robustseg.pipeline.study import report_from_run_dir

    out = report_from_run_dir(args.run_dir, console=console)
    console.print(f"report: {out}")
    return 0


# --- parser ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="robustseg", description="Is your segmentation result real? Seeds, folds, perturbations, reliability.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("phantom", help="write a synthetic trans-thalamic data set in the real layout")
    s.add_argument("out_dir")
    s.add_argument("--n", type=int, default=None, help="number of images (default: the style's, 200 for default)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--style", default="default", help="a named variant: default, small-thin, low-contrast, "
                   "csp-like-lv, large-ellipse (robustseg.data.phantom.STYLES)")
    s.set_defaults(func=cmd_phantom)

    s = sub.add_parser("check-data", help="validate a data set and print class / patient statistics")
    s.add_argument("data_dir")
    s.add_argument("--source", default="auto", choices=["auto", "fetal_head", "phantom", "folder"])
    s.add_argument("--plane", default="Trans-thalamic")
    s.add_argument("--colormap", default="pascal")
    s.set_defaults(func=cmd_check_data)

    s = sub.add_parser("train", help="train one run (arm x fold x seed) of a study")
    s.add_argument("study")
    s.add_argument("--arm")
    s.add_argument("--fold", type=int, default=0)
    s.add_argument("--seed", type=int)
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate-folder", help="score saved masks against references")
    s.add_argument("pred_dir")
    s.add_argument("gt_dir")
    s.add_argument("-o", "--output")
    s.add_argument("--pixel-size-csv")
    s.add_argument("--classes", default="background,brain,csp,lv")
    s.add_argument("--colormap", default="pascal")
    s.add_argument("--empty-policy", default="nan", choices=["nan", "one"],
                   help="both reference and prediction empty: nan (nnU-Net, excluded) or one")
    s.add_argument("--nsd-tolerance-mm", type=float, default=1.0)
    s.add_argument("--no-boundary", action="store_true", help="skip HD95 / NSD (faster)")
    s.add_argument("--postprocess", action="store_true",
                   help="also score predictions after closing + keep-largest CSP/LV component, side by side")
    s.add_argument("--min-component-px", type=int, default=5)
    s.set_defaults(func=cmd_evaluate_folder)

    s = sub.add_parser("perturb", help="write perturbed copies of images and a contact sheet")
    s.add_argument("image_dir")
    s.add_argument("out_dir")
    s.add_argument("--suite", default="all")
    s.add_argument("--severity", type=int)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, help="resize + pad to the model input size first (the calibration used 256)")
    s.set_defaults(func=cmd_perturb)

    s = sub.add_parser("study", help="run a whole study (arms x folds x seeds), then write its report")
    s.add_argument("study", nargs="?")
    s.add_argument("--resume", action="store_true", help="skip finished runs (always safe; the default behaviour)")
    s.add_argument("--scheduler", help="address of a Dask scheduler to send runs to")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    s.set_defaults(func=cmd_study)

    s = sub.add_parser("tune", help="tune the imbalance knobs with Optuna")
    s.add_argument("study")
    s.add_argument("--trials", type=int)
    s.add_argument("--storage")
    s.add_argument("--timeout", type=float)
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    s.set_defaults(func=cmd_tune)

    s = sub.add_parser("report", help="rebuild the report of a study from its saved tables")
    s.add_argument("run_dir")
    s.set_defaults(func=cmd_report)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RobustsegError as exc:
        err_console.print("[red]error:[/red] ", end="")
        err_console.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
