"""Command line: parses arguments, calls the public API, prints with rich. No maths here."""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import os
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from robustseg._outdir import expand
from robustseg._warnings import LOG_NAME, logged
from robustseg.cli.progress import ProgressRenderer, collapsed_text
from robustseg.errors import InputError, RobustsegError
from robustseg.labels import CLASS_NAMES


class _Stdout(io.TextIOBase):
    """Standard output that a closed reader (``robustseg check-data DIR | head -1``) silences instead of breaking.

    Writes go to whatever ``sys.stdout`` is at the time; on ``BrokenPipeError`` the file descriptor is pointed at
    ``/dev/null`` and everything after is dropped, so the command finishes its work (a study keeps running when the
    pager quits) and exits with its own status, quietly, like ``head`` itself.
    """

    closed_reader = False

    def write(self, text: str) -> int:
        if not self.closed_reader:
            try:
                sys.stdout.write(text)
            except BrokenPipeError:
                self._silence()
        return len(text)

    def flush(self) -> None:
        if not self.closed_reader:
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                self._silence()

    def isatty(self) -> bool:
        return bool(getattr(sys.stdout, "isatty", lambda: False)())

    def fileno(self) -> int:
        return sys.stdout.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(sys.stdout, "encoding", None) or "utf-8"

    def _silence(self) -> None:
        self.closed_reader = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, sys.stdout.fileno())
            finally:
                os.close(devnull)


console = Console(file=_Stdout())
err_console = Console(stderr=True)


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
    out = generate_phantom(args.out_dir, n=n, seed=args.seed, style=args.style,
                           abnormal_fraction=args.abnormal_fraction, difficulty=args.difficulty, force=args.force)
    console.print(f"wrote {n} phantom images ({args.style}: {style.size[0]} x {style.size[1]}) to {out}")
    return 0


def cmd_check_data(args: argparse.Namespace) -> int:
    from robustseg.data.check import check_data

    source = None if args.source == "auto" else args.source
    small = [c.strip() for c in args.small_structures.split(",")] if args.small_structures else None
    report = check_data(args.data_dir, source=source, plane=args.plane, colormap=args.colormap, small_structures=small,
                        frame=args.frame)
    print_table(report.summary, title=f"{args.data_dir}")
    print_table(report.classes, title="classes")
    distinct = report.size_summary.attrs.get("distinct_sizes", len(report.sizes))
    print_table(report.size_summary, title=f"image sizes ({distinct} distinct)")
    if not report.geometry_summary.empty:
        kinds = ", ".join(f"{n} {k}" for k, n in report.geometry_summary.attrs.get("kinds", {}).items())
        print_table(report.geometry_summary, title=f"probe geometry ({kinds} images; px, degrees)", digits=1)
    for warning in [*report.warnings, *report.geometry_warnings]:
        err_console.print(f"[yellow]warning:[/yellow] {warning}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from robustseg.config import load_study
    from robustseg.pipeline.study import train_one

    study = load_study(args.study, overrides=args.set)
    with ProgressRenderer(console, err_console) as progress:
        result = train_one(study, arm=args.arm, fold=args.fold, seed=args.seed, on_event=progress, force=args.force)
    console.print(f"run {result.run_id} {result.status.value}{collapsed_text(result.summary)}", markup=False)
    return 0


def cmd_evaluate_folder(args: argparse.Namespace) -> int:
    from robustseg.metrics.folder import check_output, evaluate_folder, write_evaluation

    colormap = args.colormap or "pascal"
    if args.dataset_json:  # an nnU-Net data set: its class list, masks of class indices
        from robustseg.data.nnunet import read_dataset_json

        if args.classes:
            raise InputError("--classes and --dataset-json: give one of them (the class names come from either)")
        classes = read_dataset_json(args.dataset_json)[0]
        colormap = args.colormap or "labels"
    else:
        classes = tuple(c.strip() for c in (args.classes or ",".join(CLASS_NAMES)).split(","))
    small = [c.strip() for c in args.small_structures.split(",")] if args.small_structures else None
    out = expand(args.output) if args.output else expand(args.pred_dir).resolve().parent / "evaluation"
    target = check_output(out, force=args.force, inputs=(args.pred_dir, args.gt_dir))  # before the evaluation
    per_image, summary = evaluate_folder(
        args.pred_dir, args.gt_dir, pixel_size_csv=args.pixel_size_csv, classes=classes, colormap=colormap,
        empty_policy=args.empty_policy, nsd_tolerance_mm=args.nsd_tolerance_mm, boundary=not args.no_boundary,
        postprocess=args.postprocess, min_component_px=args.min_component_px, small_structures=small,
    )
    write_evaluation(target, per_image, summary)
    n = per_image["image_id"].nunique()
    for key, title in (("global", f"global (pooled pixels, {n} images)"), ("per_image", "per-image means"),
                       ("presence", "presence cases per class")):
        table = pd.DataFrame.from_dict(summary[key], orient="index").rename_axis("class").reset_index()
        if key == "per_image" and "dice_n" in table.columns:  # n: the images each class's means are over
            table["n_images"] = table["dice_n"].astype("Int64")
            if "hd95_n" in table.columns and not table["hd95_n"].equals(table["dice_n"]):
                table["n_hd95"] = table["hd95_n"].astype("Int64")
        cols = [c for c in table.columns if not c.endswith(("_std", "_n"))]
        print_table(table[cols], title=title)
    if args.postprocess:
        print_table(pd.DataFrame(summary["postprocessing"]), title="raw vs post-processed (closing + largest component)")
    console.print(f"empty-structure policy: {summary['empty_policy_text']}")
    console.print(f"wrote {out / 'per_image.csv'} and {out / 'summary.json'}")
    return 0


def _geometry_setting(args: argparse.Namespace) -> Any:
    from robustseg.data.geometry import GeometrySetting

    apex = None
    if args.apex:
        try:
            apex = tuple(float(v) for v in args.apex.split(","))
        except ValueError:
            apex = ()
        if len(apex) != 2:
            raise InputError(f"--apex {args.apex!r}: expected ROW,COL of the fan apex in pixels (e.g. -79,479.5)")
    return GeometrySetting(args.geometry, apex, args.opening_deg)


def cmd_perturb(args: argparse.Namespace) -> int:
    from robustseg.perturb import calibrate_folder, calibration_markdown, perturb_folder, resolve_suite

    setting = _geometry_setting(args)
    if args.calibrate:
        names = list(dict.fromkeys(n for n, _ in resolve_suite(args.suite)))
        target = None
        if args.out:  # claimed like every output folder, before any work: never inside the data, never over user files
            from robustseg._outdir import claim_output_dir

            target = claim_output_dir(args.out, "perturb --calibrate", force=args.force, inputs=(args.calibrate,),
                                      what="-o/--out")
        cal = calibrate_folder(args.calibrate, names=names, seed=args.seed, fit=args.fit, max_images=args.max_images,
                               geometry=setting)
        cols = ["perturbation", "severity", "value", "target", "measure", "ssim", "ssim_fan", "psnr_fan",
                "region_fraction"]
        print_table(cal.table[cols], title=f"calibration on {cal.n_images} images of {args.calibrate} (native "
                                           "resolution; SSIM in the fan, or in the region of a local artefact)", digits=3)
        print_table(cal.spread, title="spread of mean SSIM across global perturbations, per severity", digits=3)
        print_table(cal.spread_reachable, title="... leaving out the severities a family cannot reach by nature",
                    digits=3)
        if not cal.spread_local.empty:
            print_table(cal.spread_local, title="local perturbations (SSIM inside the region)", digits=3)
        if cal.fitted is not None:
            print_table(cal.fitted, title="knob values that hit the targets on these images", digits=4)
        if target is not None:
            from robustseg._io import write_csv, write_text

            with target.staging() as stage:  # all files or none
                write_csv(stage / "calibration.csv", cal.table)
                write_csv(stage / "spread.csv", pd.concat([cal.spread.assign(kind="global"),
                                                           cal.spread_reachable.assign(kind="global, reachable"),
                                                           cal.spread_local.assign(kind="local")], ignore_index=True))
                write_text(stage / "calibration.md", calibration_markdown(cal.table))
                if cal.fitted is not None:
                    write_csv(stage / "fitted.csv", cal.fitted)
            console.print(f"wrote {target.path / 'calibration.csv'}")
        return 0
    if not args.image_dir or not args.out_dir:
        raise InputError("perturb: expected IMAGE_DIR OUT_DIR, or --calibrate DATA_DIR")
    table = perturb_folder(args.image_dir, args.out_dir, suite=args.suite, severity=args.severity, seed=args.seed,
                           size=args.size, stage=args.stage, geometry=setting, force=args.force, frame=args.frame)
    console.print(f"wrote {len(table)} perturbed images ({args.stage} stage) and "
                  f"{Path(args.out_dir) / 'contact_sheet.png'}")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from robustseg.config import load_study
    from robustseg.pipeline.study import run_study

    study = load_study(args.study, overrides=args.set)  # no file: the packaged quickstart
    with ProgressRenderer(console, err_console) as progress:
        outcome = run_study(study, scheduler=args.scheduler, cluster=args.cluster, on_event=progress,
                            force=args.force)
    if outcome.diverged:  # finished, so kept; but flagged where nobody can miss it
        err_console.print(f"[yellow]{len(outcome.diverged)} run(s) diverged (finite but absurd validation loss; "
                          "see 'diverged' in tables/runs.csv):[/yellow]")
        for line in outcome.diverged:
            err_console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    if outcome.tracking_errors:  # the study went on; what the tracker could not log is listed
        err_console.print(f"[yellow]tracking ({study.execution.tracking}): {len(outcome.tracking_errors)} "
                          "event(s) could not be logged:[/yellow]")
        for line in outcome.tracking_errors[:5]:
            err_console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    if outcome.failures:
        err_console.print(f"[red]{len(outcome.failures)} run(s) failed:[/red]")
        for failure in outcome.failures:
            err_console.print(f"  {failure}", markup=False, highlight=False, soft_wrap=True)
        return 1
    console.print(f"report: {outcome.report} (and report.html beside it)")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from robustseg.config import load_study
    from robustseg.tune import run_tuning

    if args.trials is not None and args.trials < 1:  # 0 would run nothing and write no tuned study
        raise InputError(f"--trials {args.trials}: expected an integer >= 1 (the number of trials this call adds)")
    study = load_study(args.study, overrides=args.set)
    result = run_tuning(study, trials=args.trials, storage=args.storage, timeout=args.timeout, console=console,
                        force=args.force)
    console.print(f"best search trial: {result.best_params}")
    console.print(result.decision, markup=False, highlight=False, soft_wrap=True)
    console.print(f"tuned study: {result.tuned_study}  report: {result.report}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from robustseg.pipeline.study import report_from_run_dir

    out = report_from_run_dir(args.run_dir, force=args.force)
    console.print(f"report: {out} (and report.html beside it)")
    return 0


def _pct(v: float) -> str:
    return "n/a" if v != v else f"{100 * v:.0f} %"


def cmd_plan(args: argparse.Namespace) -> int:
    from robustseg.report import markdown as md
    from robustseg.report.planning import DIFFERENCES, plan_study

    plan = plan_study(args.run_dir, margin=args.margin)
    t = plan.tables
    say = lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    say(f"Plan from arm '{plan.arm}': {plan.n_folds} fold(s) x {plan.seeds_per_fold:g} seed(s), {plan.n_patients} "
        f"test patients; equivalence margin ±{plan.margin:g}. Differences are in mean Dice over every test image "
        "(the arm comparison's measure); power is simulated through the report's own test.")
    for r in t["plan_claims"].to_dict("records"):
        powers = " / ".join(_pct(r[f"power_{d:g}"]) for d in DIFFERENCES)
        say(f"{r['class']}: design {r['design']}: MDD {md.mdd(r['mdd'])} (80 % power); power {powers} at "
            f"{' / '.join(f'{d:g}' for d in DIFFERENCES)}; equivalence provable within ±{_fmt(r['equivalence_margin'], 3)}; "
            f"recipe CI of global Dice {_fmt(r['estimate'], 3)} [{_fmt(r['recipe_low'], 3)}, {_fmt(r['recipe_high'], 3)}]; "
            f"collapsed {r['n_collapsed']} of {r['n_runs']} runs (a rate up to {_pct(r['collapse_upper'])} not ruled out)")
    runs = t["plan_runs"].pivot_table(index=["class", "difference"], columns="folds", values="seeds_per_fold",
                                      aggfunc="first", sort=False, dropna=False)
    runs.columns = [f"{c} fold{'s' if c > 1 else ''}" for c in runs.columns]
    runs = runs.reset_index().astype({c: object for c in runs.columns})
    for c in runs.columns[2:]:
        runs[c] = [">30" if v != v else str(int(v)) for v in runs[c]]
    print_table(runs, "seeds per fold for 80 % power", 3)
    pats = t["plan_patients"].copy()
    for c in ("patients", "patients_5x5"):
        pats[c] = ["not reachable" if v != v else str(int(v)) for v in pats[c]]
    print_table(pats.rename(columns={"patients_5x5": "with 5 x 5"}), "test patients for a recipe-interval half-width", 3)
    if not t["plan_gap"].empty:
        print_table(t["plan_gap"][["class", "arm_a", "arm_b", "gap", "ci_width", "width_over_gap"]],
                    "gap between arms against the recipe-interval width (Christodoulou et al. 2024)", 3)
    return 0


def cmd_qc(args: argparse.Namespace) -> int:
    from robustseg.pipeline.qc_folder import qc_folder
    from robustseg.qc.scores import DEFAULT_SCORE

    args.score = args.score or DEFAULT_SCORE

    table, path = qc_folder(args.run_dir, args.image_dir, args.output, score=args.score, review=args.review,
                            pixel_size_csv=args.pixel_size_csv, arm=args.arm, device=args.device, force=args.force,
                            frame=args.frame)
    flagged = table[table["review"]]
    console.print(f"{table['image'].nunique()} images scored by {args.score}; {flagged['image'].nunique()} flagged "
                  f"for review in at least one structure (threshold: the {args.review:.0%} least-confident test "
                  f"images of the study); wrote {path}")
    return 0


# --- parser ---------------------------------------------------------------------------------------


FRAME_HELP = "the frame (1 = first) read from each multi-frame image (multi-page TIFF, DICOM cine); required for them"
FORCE_HELP = ("write into an output folder that is not empty and was not made by this command (default: refuse; "
              "robustseg never deletes files it did not write)")
SET_HELP = "override a study key with a TOML value, e.g. --set train.max_epochs=5 --set seeds=[0,1] (repeatable)"


def build_parser() -> argparse.ArgumentParser:
    from robustseg.perturb import list_perturbations, list_suites

    p = argparse.ArgumentParser(prog="robustseg", description="Is your segmentation result real? Seeds, folds, perturbations, reliability.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("phantom", help="write a synthetic trans-thalamic data set in the real layout")
    s.add_argument("out_dir", help="folder to write (Large-Scale Fetal Head Biometry layout)")
    s.add_argument("--n", type=int, default=None, help="number of images (default: the style's, 200 for default)")
    s.add_argument("--seed", type=int, default=0, help="random seed of the phantom (default 0)")
    s.add_argument("--style", default="default", help="a named variant: default, small-thin, low-contrast, "
                   "csp-like-lv, large-ellipse (robustseg.data.phantom.STYLES)")
    s.add_argument("--abnormal-fraction", type=float, default=0.10,
                   help="probability that a patient is abnormal (absent CSP or enlarged LV); default 0.10")
    s.add_argument("--difficulty", type=float, default=0.0,
                   help="0-1: fainter CSP/LV, dark look-alikes, coarser speckle (0 = the default phantom)")
    s.add_argument("--force", action="store_true", help=FORCE_HELP)
    s.set_defaults(func=cmd_phantom)

    s = sub.add_parser("check-data", help="validate a data set and print class / patient statistics")
    s.add_argument("data_dir", help="data set folder")
    s.add_argument("--source", default="auto", choices=["auto", "fetal_head", "phantom", "folder", "nnunet", "dicom"],
                   help="data set layout (default: detected)")
    s.add_argument("--frame", type=int, default=None, help=FRAME_HELP)
    s.add_argument("--plane", default="Trans-thalamic", help="plane folder of a fetal-head data set (default Trans-thalamic)")
    s.add_argument("--colormap", default="pascal", help="mask colours: pascal or rgb (default pascal)")
    s.add_argument("--small-structures", metavar="NAMES",
                   help="classes whose images the summary counts, comma-separated (default: csp,lv when present)")
    s.set_defaults(func=cmd_check_data)

    s = sub.add_parser("train", help="train one run (arm x fold x seed) of a study")
    s.add_argument("study", help="study file (TOML); - reads it from standard input")
    s.add_argument("--arm", help="arm to train (default: the first)")
    s.add_argument("--fold", type=int, default=0, help="validation fold (default 0)")
    s.add_argument("--seed", type=int, help="training seed (default: the study's first)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    s.add_argument("--force", action="store_true", help=FORCE_HELP)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate-folder", help="score saved masks against references")
    s.add_argument("pred_dir", help="folder of predicted masks")
    s.add_argument("gt_dir", help="folder of reference masks (same file names)")
    s.add_argument("-o", "--output", help="output folder (default: PRED_DIR/../evaluation)")
    s.add_argument("--pixel-size-csv", help="CSV of pixel sizes in mm (columns Label, Pixel in mm) for HD95 / NSD in mm")
    s.add_argument("--classes", default=None,
                   help="class names by label, comma-separated (default background,brain,csp,lv)")
    s.add_argument("--dataset-json", metavar="PATH",
                   help="class names from an nnU-Net dataset.json (a file or its folder) instead of --classes; "
                        "masks then hold class indices (--colormap labels)")
    s.add_argument("--small-structures", metavar="NAMES",
                   help="classes that --postprocess cleans up, comma-separated (default: csp,lv when present)")
    s.add_argument("--colormap", default=None,
                   help="mask colours: pascal, rgb or labels (class indices); default pascal, labels with --dataset-json")
    s.add_argument("--empty-policy", default="nan", choices=["nan", "one"],
                   help="both reference and prediction empty: nan (nnU-Net, excluded) or one")
    s.add_argument("--nsd-tolerance-mm", type=float, default=1.0, help="NSD boundary tolerance in mm (default 1.0)")
    s.add_argument("--no-boundary", action="store_true", help="skip HD95 / NSD (faster)")
    s.add_argument("--postprocess", action="store_true",
                   help="also score predictions after closing + keep-largest component of the small structures "
                        "(CSP/LV by default), side by side")
    s.add_argument("--min-component-px", type=int, default=5,
                   help="post-processing: smallest component kept, in pixels (default 5)")
    s.add_argument("--force", action="store_true", help=FORCE_HELP)
    s.set_defaults(func=cmd_evaluate_folder)

    s = sub.add_parser("perturb", help="write perturbed copies of images and a contact sheet, or recompute the "
                                       "severity calibration on your images (--calibrate)")
    s.description = ("Perturbed copies of a folder of images (each perturbation and severity) and a contact sheet; "
                     "with --calibrate DATA_DIR the in-fan SSIM / PSNR of every perturbation and severity on your "
                     "own images instead (the calibration table of docs/perturbations.md).")
    s.add_argument("image_dir", nargs="?", help="folder of images")
    s.add_argument("out_dir", nargs="?", help="folder to write the perturbed images and contact_sheet.png")
    s.add_argument("--suite", default="all", metavar="SUITE",
                   help=f"a suite ({', '.join(list_suites())}) or one perturbation ({', '.join(list_perturbations())}); "
                        "default all")
    s.add_argument("--severity", type=int, help="only this severity, 1-5 (default: all)")
    s.add_argument("--seed", type=int, default=0, help="perturbation seed (default 0)")
    s.add_argument("--size", type=int, help="write what the model sees: resized + padded to this input size")
    s.add_argument("--stage", choices=("native", "model"), default="native",
                   help="with --size: perturb the native image, then preprocess (native, default: where a scanner "
                        "makes its artefacts) or preprocess first (model)")
    s.add_argument("--geometry", choices=("auto", "sector", "linear"), default="auto",
                   help="probe geometry of the ultrasound artefacts: estimated per image (auto) or that kind")
    s.add_argument("--apex", metavar="ROW,COL", help="fan apex in pixels (the row may be negative: above the image)")
    s.add_argument("--opening-deg", type=float, help="full opening angle of the fan (default: estimated)")
    s.add_argument("--calibrate", metavar="DATA_DIR",
                   help="recompute the calibration table on the images of DATA_DIR (a folder of images or a data set)")
    s.add_argument("-o", "--out", help="--calibrate: folder for calibration.csv, spread.csv, calibration.md")
    s.add_argument("--fit", action="store_true", help="--calibrate: also search the knob values that hit the SSIM "
                                                      "targets on these images (slow)")
    s.add_argument("--max-images", type=int, default=40, help="--calibrate: images used (default 40)")
    s.add_argument("--frame", type=int, default=None, help=FRAME_HELP)
    s.add_argument("--force", action="store_true", help=FORCE_HELP)
    s.set_defaults(func=cmd_perturb)

    s = sub.add_parser("study", help="run a whole study (arms x folds x seeds), then write its report")
    s.description = ("Run every run of a study that has not finished yet, then write its report. Finished runs "
                     "(same run id: same settings, data and split) are always reused, so an interrupted study "
                     "continues where it stopped; change a setting or delete runs/<study>/ to run again.")
    s.add_argument("study", nargs="?", help="study file (TOML); - reads it from standard input; default: the packaged "
                   "quickstart (phantom, CPU)")
    s.add_argument("--scheduler", help="address of a Dask scheduler to send runs to")
    s.add_argument("--cluster", choices=["slurm"],
                   help="start a Dask cluster of SLURM jobs (options from [execution.slurm]) and send runs to it")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    s.add_argument("--force", action="store_true", help=FORCE_HELP + "; applies to runs_dir/<name> and reports_dir/<name>")
    s.set_defaults(func=cmd_study)

    s = sub.add_parser("tune", help="tune the imbalance knobs with Optuna")
    s.add_argument("study", help="study file (TOML) with a [tune] table; - reads it from standard input")
    s.add_argument("--trials", type=int, help="trials to run in this call (default: tune.trials)")
    s.add_argument("--storage", help="Optuna storage URL (default: tune.storage or runs/<study>/tune.db)")
    s.add_argument("--timeout", type=float, help="stop starting trials after this many seconds (default: tune.timeout)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    s.add_argument("--force", action="store_true", help=FORCE_HELP)
    s.set_defaults(func=cmd_tune)

    s = sub.add_parser("qc", help="score unlabelled images with a finished study's ensemble; flag images to review")
    s.add_argument("run_dir", help="runs/<study> folder of a finished study")
    s.add_argument("image_dir", help="folder of images without masks (PNG/JPEG/TIFF)")
    s.add_argument("-o", "--output", help="CSV to write (default: IMAGE_DIR/../qc.csv)")
    s.add_argument("--score", default=None, help="confidence score for the review flag (default: pairwise_dice, the pairwise Dice of the seed ensemble)")
    s.add_argument("--review", type=float, default=0.10,
                   help="fraction of the study's test images that the threshold would send for review (default 0.10)")
    s.add_argument("--pixel-size-csv", help="Label, Pixel in mm per image (else measurements in px, no range score)")
    s.add_argument("--arm", help="arm whose runs form the ensemble (default: the baseline arm)")
    s.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N")
    s.add_argument("--frame", type=int, default=None, help=FRAME_HELP)
    s.add_argument("--force", action="store_true",
                   help="replace an existing -o file that is not an earlier qc.csv (default: refuse)")
    s.set_defaults(func=cmd_qc)

    s = sub.add_parser("plan", help="what a study can claim and what a claim would need (MDD, seeds x folds, "
                       "test patients), from its own variance components")
    s.add_argument("run_dir", help="a study's run folder, runs/<study> (a one-arm pilot is enough)")
    s.add_argument("--margin", type=float, default=None,
                   help="equivalence margin in Dice (default: the study's compare.margin, 0.01)")
    s.set_defaults(func=cmd_plan)

    s = sub.add_parser("report", help="rebuild the report of a study from its saved tables")
    s.add_argument("run_dir", help="a study's run folder, runs/<study>")
    s.add_argument("--force", action="store_true", help=FORCE_HELP)
    s.set_defaults(func=cmd_report)
    return p


_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO, errno.EROFS})
"""OSErrors of the machine, not of the input: a full disk, a file-size limit, a failing or read-only device."""


def _error(message: str) -> None:
    err_console.print("[red]error:[/red] ", end="")
    err_console.print(message, markup=False, highlight=False, soft_wrap=True)


def _os_error(exc: OSError) -> int:
    """One line for an OSError that escaped the package's own checks (exit 1 for the machine, 2 for a path)."""
    where = f"{exc.filename}: " if exc.filename else ""
    reason = exc.strerror or str(exc) or type(exc).__name__
    _error(f"{where}{reason}")
    return 1 if exc.errno in _DISK_ERRNOS or not exc.filename else 2


def _logged_elsewhere(caught: list) -> None:
    """Say where the Python warnings that no output folder took were logged (they never print themselves)."""
    if caught:
        n = sum(c.count for c in caught)
        err_console.print(f"[dim]{n} Python warning(s) from libraries logged to {_WARNINGS_FALLBACK / LOG_NAME}[/dim]",
                          highlight=False, soft_wrap=True)


_WARNINGS_FALLBACK = Path(tempfile.gettempdir()) / "robustseg"
"""Where warnings raised outside a study, report or run folder are logged (the study and report log their own)."""


_PATH_ARGS = ("out_dir", "data_dir", "pred_dir", "gt_dir", "output", "pixel_size_csv", "dataset_json", "image_dir",
              "run_dir", "study")
"""Arguments that are paths: ``~`` is expanded in each."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that cleanup runs (workers stopped, queues closed, temporary files
    removed) and the process exits normally: no "leaked semaphore" noise from multiprocessing's resource tracker.
    A BaseException, like KeyboardInterrupt, so no ``except Exception`` records it as a failed run."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def _signals() -> Iterator[None]:
    """SIGXFSZ ignored (a file-size limit, ``ulimit -f``, then raises OSError(EFBIG) instead of killing us) and
    SIGTERM turned into :class:`Terminated` while the command runs; the previous handlers are restored after."""
    previous = {}
    for name, handler in (("SIGXFSZ", signal.SIG_IGN), ("SIGTERM", _terminate)):
        if hasattr(signal, name):
            with contextlib.suppress(ValueError):  # not the main thread: leave the handlers alone
                previous[name] = signal.signal(getattr(signal, name), handler)
    try:
        yield
    finally:
        for name, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(getattr(signal, name), handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in _PATH_ARGS:  # a quoted ~ or --opt=~/x reaches us unexpanded
        value = getattr(args, name, None)
        if isinstance(value, str) and value.startswith("~"):
            setattr(args, name, str(expand(value)))
    caught: list = []
    try:
        with _signals(), logged(_WARNINGS_FALLBACK, args.command) as caught:
            code = int(args.func(args) or 0)
        console.file.flush()
        return code
    except RobustsegError as exc:
        _error(str(exc))
        return exc.exit_code
    except BrokenPipeError:  # stdout closed by its reader: quiet, like head
        console.file._silence()  # type: ignore[attr-defined]
        return 0
    except OSError as exc:
        return _os_error(exc)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Terminated:
        err_console.print("terminated")
        return 128 + signal.SIGTERM
    finally:
        _logged_elsewhere(caught)


if __name__ == "__main__":
    sys.exit(main())
