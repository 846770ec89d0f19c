"""The fault and bad-input corpus: one case per input or fault, each with one expected outcome.

A case builds its inputs under a fresh folder (``build(folder, ctx) -> argv``), runs ``robustseg ARGV`` in-process
with that folder as the working directory and as ``$HOME``, and expects:

- ``exit``: the exit code (0 ok, 1 a run or the machine failed, 2 bad input);
- ``message``: a regular expression that the single ``error:`` line (or, with exit 0, stdout + stderr) matches;
- nothing changed: when the exit code is not 0, every byte under the case folder is as before (no file added,
  removed or changed, no temporary file left); with exit 0, the paths in ``unchanged`` are as before and
  ``check(folder)`` (when given) holds.

``issue`` ties a case to a defect of the data-safety issue (``D1`` ...) or says ``extra`` (tried beyond it).
``tests/test_corpus.py`` runs every case; ``python tests/corpus/build.py OUT`` writes every case's inputs.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from corpus.build import NAMES, PLANE, real_looking_dataset

SMALL_STUDY = """name = "{name}"
seeds = [0]
[data]
source = "phantom"
phantom_n = 12
size = 32
[split]
test_fraction = 0.3
k_folds = 2
folds = [0]
[model]
base = 4
depth = 3
[train]
max_epochs = 1
batch_size = 8
[perturb]
suite = "none"
[execution]
threads = 1
runs_dir = "{runs}"
reports_dir = "{reports}"
"""


@dataclass
class Ctx:
    """What some cases need besides their own folder: a finished tiny study's run folder (``runs/tiny-qc``)."""

    qc_study: Path | None = None


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    build: Callable[[Path, Ctx], list[str]]
    exit: int
    message: str = ""
    issue: str = "extra"
    unchanged: tuple[str, ...] = ()
    check: Callable[[Path], None] | None = None
    needs: tuple[str, ...] = field(default=())


CASES: list[Case] = []


def case(name: str, what: str, exit: int, message: str = "", issue: str = "extra", **kw) -> Callable:
    def deco(build: Callable[[Path, Ctx], list[str]]) -> Callable:
        CASES.append(Case(name, what, build, exit, message, issue, **kw))
        return build

    return deco


# --- helpers ------------------------------------------------------------------------------------------------


def data(folder: Path, **kw) -> Path:
    """A real-looking data set in ``folder/fhb`` (layout 1, real names, Excel CSV, other user files)."""
    return real_looking_dataset(folder / "fhb", **kw)


def images_of(root: Path) -> Path:
    return root / PLANE / PLANE


def masks_of(root: Path) -> Path:
    return root / PLANE / f"{PLANE}-PASCAL" / "SegmentationClass"


def study_file(folder: Path, name: str = "tiny", runs: str = "runs", reports: str = "reports", extra: str = "",
               text: str | None = None) -> Path:
    path = folder / f"{name}.toml"
    path.write_text((text if text is not None else SMALL_STUDY.format(name=name, runs=runs, reports=reports)) + extra,
                    encoding="utf-8")
    return path


def copy_run(ctx: Ctx, folder: Path, **study_keys) -> Path:
    """A copy of the finished tiny study's run folder, with ``study.json`` keys (dotted) replaced."""
    assert ctx.qc_study is not None
    runs = folder / "runs" / "tiny-qc"
    shutil.copytree(ctx.qc_study, runs, ignore=shutil.ignore_patterns("data"))
    saved = json.loads((runs / "study.json").read_text())
    for dotted, value in study_keys.items():
        d = saved["study"]
        *parts, last = dotted.split(".")
        for p in parts:
            d = d[p]
        d[last] = value
    (runs / "study.json").write_text(json.dumps(saved))
    return runs


# --- data safety: every writing command pointed at a real-looking data set leaves every byte unchanged --------


@case("safety-phantom-into-dataset", "phantom DATA where DATA holds a real data set (same file names)", 2,
      r"not empty .*--force", issue="D1")
def _(f: Path, ctx: Ctx) -> list[str]:
    return ["phantom", str(data(f)), "--n", "2", "--style", "small-thin"]


@case("safety-phantom-into-user-folder", "phantom into a folder holding other user files", 2,
      r"not empty .*notes", issue="D2")
def _(f: Path, ctx: Ctx) -> list[str]:
    (f / "mine").mkdir()
    (f / "mine" / "notes.txt").write_text("x")
    return ["phantom", str(f / "mine"), "--n", "2", "--style", "small-thin"]


@case("safety-phantom-into-plane-folder", "phantom into the plane folder of a data set", 2, r"not empty")
def _(f: Path, ctx: Ctx) -> list[str]:
    return ["phantom", str(data(f) / PLANE), "--n", "2", "--style", "small-thin"]


@case("safety-perturb-output-is-input", "perturb IMAGES IMAGES (output = input)", 2, r"inside the input folder",
      issue="D6")
def _(f: Path, ctx: Ctx) -> list[str]:
    img = images_of(data(f))
    return ["perturb", str(img), str(img), "--suite", "gaussian_noise", "--severity", "1"]


@case("safety-perturb-output-inside-input", "perturb IMAGES IMAGES/out", 2, r"inside the input folder", issue="D6")
def _(f: Path, ctx: Ctx) -> list[str]:
    img = images_of(data(f))
    return ["perturb", str(img), str(img / "out"), "--suite", "gaussian_noise", "--severity", "1"]


@case("safety-perturb-output-symlink-to-input", "perturb IMAGES LINK where LINK is a symlink to IMAGES", 2,
      r"inside the input folder")
def _(f: Path, ctx: Ctx) -> list[str]:
    img = images_of(data(f))
    (f / "link").symlink_to(img, target_is_directory=True)
    return ["perturb", str(img), str(f / "link"), "--suite", "gaussian_noise", "--severity", "1"]


@case("safety-perturb-into-dataset-root", "perturb IMAGES DATA (the data set's root)", 2, r"not empty .*--force")
def _(f: Path, ctx: Ctx) -> list[str]:
    root = data(f)
    return ["perturb", str(images_of(root)), str(root), "--suite", "gaussian_noise", "--severity", "1"]


@case("safety-evaluate-into-dataset", "evaluate-folder PRED GT -o DATA", 2, r"not empty .*--force")
def _(f: Path, ctx: Ctx) -> list[str]:
    root = data(f)
    return ["evaluate-folder", str(masks_of(root)), str(masks_of(root)), "-o", str(root), "--no-boundary"]


@case("safety-evaluate-into-gt", "evaluate-folder PRED GT -o GT", 2, r"inside the input folder")
def _(f: Path, ctx: Ctx) -> list[str]:
    root = data(f)
    pred = f / "pred"
    shutil.copytree(masks_of(root), pred)
    return ["evaluate-folder", str(pred), str(masks_of(root)), "-o", str(masks_of(root)), "--no-boundary"]


@case("safety-evaluate-default-into-user-folder", "evaluate-folder PRED GT with PRED/../evaluation a user folder",
      2, r"not empty")
def _(f: Path, ctx: Ctx) -> list[str]:
    root = data(f)
    pred = f / "results" / "pred"
    shutil.copytree(masks_of(root), pred)
    (f / "results" / "evaluation").mkdir()
    (f / "results" / "evaluation" / "my scores.xlsx").write_bytes(b"PK")
    return ["evaluate-folder", str(pred), str(masks_of(root)), "--no-boundary"]


@case("safety-qc-over-user-csv", "qc RUN IMAGES -o DATA/meta.csv (an existing user table)", 2,
      r"exists and was not written by 'robustseg qc'", needs=("qc_study",))
def _(f: Path, ctx: Ctx) -> list[str]:
    root = data(f)
    return ["qc", str(ctx.qc_study), str(images_of(root)), "-o", str(root / PLANE / "meta.csv")]


@case("safety-qc-into-images", "qc RUN IMAGES -o IMAGES/qc.csv", 2, r"inside the input folder", needs=("qc_study",))
def _(f: Path, ctx: Ctx) -> list[str]:
    root = data(f)
    return ["qc", str(ctx.qc_study), str(images_of(root)), "-o", str(images_of(root) / "qc.csv")]


@case("safety-report-into-dataset", "report RUN whose reports_dir/<name> is a data set", 2, r"not empty .*--force",
      needs=("qc_study",))
def _(f: Path, ctx: Ctx) -> list[str]:
    root = data(f)
    runs = copy_run(ctx, f / "work", **{"execution.reports_dir": str(root.parent), "name": "tiny-qc"})
    target = root.parent / "tiny-qc"
    shutil.move(root, target)  # the report folder of the study is the data set
    return ["report", str(runs)]


@case("safety-study-runs-into-dataset", "study with runs_dir/<name> = a data set", 2, r"not empty .*--force")
def _(f: Path, ctx: Ctx) -> list[str]:
    data(f)
    return ["study", str(study_file(f, name="fhb", runs=str(f), reports=str(f / "reports")))]


@case("safety-study-reports-into-dataset", "study with reports_dir/<name> = a data set", 2, r"not empty .*--force")
def _(f: Path, ctx: Ctx) -> list[str]:
    data(f)
    return ["study", str(study_file(f, name="fhb", runs=str(f / "runs"), reports=str(f)))]


@case("safety-study-runs-inside-data", "study whose runs_dir lies inside data.path", 2, r"inside the input folder")
def _(f: Path, ctx: Ctx) -> list[str]:
    root = data(f)
    text = SMALL_STUDY.format(name="tiny", runs=str(root / "runs"), reports=str(f / "reports")).replace(
        'source = "phantom"', f'source = "fetal_head"\npath = "{root}"')
    return ["study", str(study_file(f, text=text))]


@case("safety-train-into-dataset", "train with runs_dir/<name> = a data set", 2, r"not empty .*--force")
def _(f: Path, ctx: Ctx) -> list[str]:
    data(f)
    return ["train", str(study_file(f, name="fhb", runs=str(f), reports=str(f / "reports")))]


@case("safety-tune-into-dataset", "tune with runs_dir/<name> = a data set", 2, r"not empty .*--force")
def _(f: Path, ctx: Ctx) -> list[str]:
    data(f)
    return ["tune", str(study_file(f, name="fhb", runs=str(f), reports=str(f / "reports"), extra="[tune]\ntrials = 1\n"))]


@case("safety-tune-over-user-toml", "tune when <name>.tuned.toml beside the study is a user's file", 2,
      r"tuned study file .*not written by 'robustseg tune'")
def _(f: Path, ctx: Ctx) -> list[str]:
    (f / "tiny.tuned.toml").write_text("# my hand-tuned settings\n")
    return ["tune", str(study_file(f, extra="[tune]\ntrials = 1\n"))]


@case("safety-study-runs-equals-reports", "study with runs_dir = reports_dir (the report would clear run tables)",
      2, r"overlaps the run folder")
def _(f: Path, ctx: Ctx) -> list[str]:
    return ["study", str(study_file(f, runs="out", reports="out"))]


# --- every case's inputs on disk -----------------------------------------------------------------------------


def build_all(out: Path, ctx: Ctx | None = None) -> None:
    """Write every case's inputs (and its argv and expected outcome) under ``out/<case>/``."""
    ctx = ctx or Ctx()
    for c in CASES:
        if "qc_study" in c.needs and ctx.qc_study is None:
            continue
        folder = out / c.name
        folder.mkdir(parents=True, exist_ok=True)
        argv = c.build(folder, ctx)
        (folder / "case.json").write_text(json.dumps({"what": c.what, "argv": argv, "exit": c.exit,
                                                      "message": c.message, "issue": c.issue}, indent=2))


__all__ = ["CASES", "NAMES", "Case", "Ctx", "build_all"]
