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

import numpy as np
from _tiny import tiny_study
from PIL import Image

from corpus.build import (
    NAMES,
    PLANE,
    arrays,
    exif_jpeg,
    folder_dataset,
    multipage_tiff,
    palette_png,
    pixel_csv_excel,
    real_looking_dataset,
)


def small_study(name: str = "tiny", runs: str = "runs", reports: str = "reports") -> str:
    """A one-run study on a 12-image small phantom (what the failing cases never get to train)."""
    return tiny_study(name, seeds="[0]", phantom_n=12, max_epochs=1, bootstrap=None, suite='"none"',
                      data='phantom_style = "small-thin"') + f'runs_dir = "{runs}"\nreports_dir = "{reports}"\n'


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
    stdin: str = ""
    """A file (relative to the case folder) fed to the command as standard input."""
    slow: bool = False


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
    path.write_text((text if text is not None else small_study(name, runs, reports)) + extra,
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


def _runs_into_dataset(verb: str, extra: str) -> Callable[[Path, Ctx], list[str]]:
    def build(f: Path, ctx: Ctx) -> list[str]:
        data(f)
        return [verb, str(study_file(f, name="fhb", runs=str(f), reports=str(f / "reports"), extra=extra))]
    return build


for _verb, _extra in (("study", ""), ("train", ""), ("tune", "[tune]\ntrials = 1\n")):
    CASES.append(Case(f"safety-{_verb}-runs-into-dataset", f"{_verb} with runs_dir/<name> = a data set",
                      _runs_into_dataset(_verb, _extra), 2, r"not empty .*--force"))


@case("safety-study-reports-into-dataset", "study with reports_dir/<name> = a data set", 2, r"not empty .*--force")
def _(f: Path, ctx: Ctx) -> list[str]:
    data(f)
    return ["study", str(study_file(f, name="fhb", runs=str(f / "runs"), reports=str(f)))]


@case("safety-study-runs-inside-data", "study whose runs_dir lies inside data.path", 2, r"inside the input folder")
def _(f: Path, ctx: Ctx) -> list[str]:
    root = data(f)
    text = small_study("tiny", str(root / "runs"), str(f / "reports")).replace(
        'source = "phantom"', f'source = "fetal_head"\npath = "{root}"')
    return ["study", str(study_file(f, text=text))]


@case("safety-tune-over-user-toml", "tune when <name>.tuned.toml beside the study is a user's file", 2,
      r"tuned study file .*not written by 'robustseg tune'")
def _(f: Path, ctx: Ctx) -> list[str]:
    (f / "tiny.tuned.toml").write_text("# my hand-tuned settings\n")
    return ["tune", str(study_file(f, extra="[tune]\ntrials = 1\n"))]


@case("safety-study-runs-equals-reports", "study with runs_dir = reports_dir (the report would clear run tables)",
      2, r"overlaps the run folder")
def _(f: Path, ctx: Ctx) -> list[str]:
    return ["study", str(study_file(f, runs="out", reports="out"))]


# --- user tables: Excel, encodings, separators --------------------------------------------------------------


def _meta_case(name: str, what: str, meta: bytes, exit: int = 0, message: str = "", issue: str = "extra",
               check: Callable[[Path], None] | None = None) -> None:
    def build(f: Path, ctx: Ctx) -> list[str]:
        folder_dataset(f / "ds", meta=meta)
        return ["check-data", str(f / "ds")]

    CASES.append(Case(name, what, build, exit, message, issue, unchanged=("ds",), check=check))


def _index(f: Path):
    from robustseg.data.index import load_index

    return load_index("folder", f / "ds")


def _patients_are(expected: dict[str, str]) -> Callable[[Path], None]:
    def check(f: Path) -> None:
        got = dict(zip(_index(f)["image_id"], _index(f)["patient_id"], strict=True))
        assert {k: got[k] for k in expected} == expected, got
    return check


N = NAMES
_meta_case("meta-utf8-bom", "meta.csv saved by Excel as 'CSV UTF-8' (byte-order mark)",
           ("\ufeffimage_id,patient_id\n" + "".join(f"{n},P{i}\n" for i, n in enumerate(N[:4]))).encode(),
           issue="D8", check=_patients_are({N[0]: "P0", N[3]: "P3"}))
_meta_case("meta-excel-trailing-rows", "meta.csv from Excel with ';;;;' rows and trailing separators",
           ("image_id;patient_id;sonographer;;\r\n" + "".join(f"{n};P{i};A;;\r\n" for i, n in enumerate(N[:4]))
            + ";;;;\r\n;;;;\r\n").encode("utf-8"), issue="D10", check=_patients_are({N[1]: "P1"}))
_meta_case("meta-numeric-patient-with-blank", "numeric patient ids with one blank cell (pandas made them '7.0')",
           ("image_id,patient_id,ga_weeks\n" + f"{N[0]},7,21\n{N[1]},7,\n{N[2]},,22\n{N[3]},0012,23\n").encode(),
           issue="D11", check=_patients_are({N[0]: "7", N[1]: "7", N[2]: "Patient00168", N[3]: "0012"}))
_meta_case("meta-utf16-tabs", "meta.csv saved as Excel 'Unicode text' (UTF-16 with mark, tab-separated)",
           ("image_id\tpatient_id\n" + "".join(f"{n}\tP{i}\n" for i, n in enumerate(N[:4]))).encode("utf-16"),
           check=_patients_are({N[2]: "P2"}))
_meta_case("meta-cp1252", "meta.csv from Excel 'CSV (comma delimited)' on Western Windows (cp1252, accents)",
           ("image_id;patient_id;centre\r\n" + "".join(f"{n};P{i};Hôpital Necker–Enfants\r\n"
                                                   for i, n in enumerate(N[:4]))).encode("cp1252"),
           check=_patients_are({N[0]: "P0"}))
_meta_case("meta-mac-cr", "meta.csv saved as 'CSV (Macintosh)' (old CR line ends)",
           ("image_id,patient_id\r" + "".join(f"{n},P{i}\r" for i, n in enumerate(N[:4]))).encode(),
           check=_patients_are({N[3]: "P3"}))
_meta_case("meta-xlsx-renamed", "an .xlsx workbook saved under the name meta.csv", b"PK\x03\x04" + bytes(200), 2,
           r"meta\.csv: is an Excel workbook")
_meta_case("meta-duplicate-ids-case", "meta.csv lists one image twice, differing only in case",
           f"image_id,patient_id\n{N[0]},A\n{N[0].lower()},B\n".encode(), 2, r"differ only in case")
_meta_case("meta-id-case-mismatch", "meta.csv names a file with other case (a Windows share does not care)",
           f"image_id,patient_id\n{N[0].upper()},A\n".encode(), 0, check=_patients_are({N[0]: "A"}))
_meta_case("meta-row-without-id", "meta.csv row with values but an empty image_id (a note typed in the sheet)",
           f"image_id,patient_id\n{N[0]},A\n,see note\n".encode(), 2, r"line 3 has values but no image_id")
_meta_case("meta-excel-sep-line", "meta.csv with Excel's 'sep=;' first line",
           ("sep=;\r\nimage_id;patient_id\r\n" + "".join(f"{n};P{i}\r\n" for i, n in enumerate(N[:4]))).encode(),
           check=_patients_are({N[0]: "P0"}))
_meta_case("meta-header-only", "meta.csv with a header and no rows", b"image_id,patient_id\r\n", 0)
_meta_case("meta-patient-case", "patient ids typed as 'P07' and 'p07 ' (one patient)",
           f"image_id,patient_id\n{N[0]},P07\n{N[1]},p07 \n".encode(), 0, r"merged",
           check=_patients_are({N[0]: "P07", N[1]: "P07"}))


def _pixel_case(name: str, what: str, csv: bytes, exit: int = 0, message: str = "",
                sizes: dict[str, float] | None = None) -> None:
    def build(f: Path, ctx: Ctx) -> list[str]:
        root = data(f, extras=False)
        (root / PLANE / "Trans-Thalamic-Pixel-Size.csv").write_bytes(csv)
        return ["check-data", str(root)]

    def check(f: Path) -> None:
        from robustseg.data.index import load_index

        idx = load_index("fetal_head", f / "fhb").set_index("image_id")["pixel_mm"]
        for k, v in (sizes or {}).items():
            assert abs(idx[k] - v) < 1e-9, (k, idx[k])

    CASES.append(Case(name, what, build, exit, message, unchanged=("fhb",), check=check if sizes else None))


_pixel_case("pixel-excel-german", "pixel-size CSV from German Excel: BOM, ';', decimal commas, CRLF, ';;' rows",
            pixel_csv_excel(NAMES), sizes={NAMES[0]: 0.120, NAMES[5]: 0.125})
_pixel_case("pixel-utf16", "pixel-size CSV as Excel 'Unicode text' (UTF-16, tabs)",
            ("Label\tPixel in mm\r\n" + "".join(f"{n}.png\t0.{200 + i}\r\n" for i, n in enumerate(NAMES)))
            .encode("utf-16"), sizes={NAMES[1]: 0.201})
_pixel_case("pixel-no-label", "pixel-size CSV row with a value but no label", b"Label,Pixel in mm\n,0.1\n", 2,
            r"line 2 has a pixel size but no label")


@case("meta-leading-zeros-lost", "numeric image ids whose leading zeros a spreadsheet removed", 2,
      r"'12' matches a file name but for leading zeros")
def _(f: Path, ctx: Ctx) -> list[str]:
    folder_dataset(f / "ds", names=("0007", "0012"), meta=b"image_id,patient_id\n7,A\n12,B\n")
    return ["check-data", str(f / "ds")]


# --- study files ---------------------------------------------------------------------------------------------

BAD_LR = 'name = "piped"\n[train]\nlr = 0\n'


@case("study-bom", "study TOML saved with a byte-order mark (Notepad 'UTF-8 with BOM')", 2,
      r"key 'train\.lr' = 0", issue="D9")
def _(f: Path, ctx: Ctx) -> list[str]:
    (f / "s.toml").write_bytes(b"\xef\xbb\xbf" + BAD_LR.encode())
    return ["study", str(f / "s.toml")]


@case("study-utf16-crlf", "study TOML saved as UTF-16 with CRLF line ends (Notepad 'Unicode')", 2,
      r"key 'train\.lr' = 0")
def _(f: Path, ctx: Ctx) -> list[str]:
    (f / "s.toml").write_bytes(BAD_LR.replace("\n", "\r\n").encode("utf-16"))
    return ["study", str(f / "s.toml")]


@case("study-stdin-dash", "robustseg study - < s.toml", 2, r"<stdin>: key 'train\.lr' = 0", issue="D19",
      stdin="s.toml")
def _(f: Path, ctx: Ctx) -> list[str]:
    (f / "s.toml").write_text(BAD_LR)
    return ["study", "-"]


@case("study-dev-stdin", "robustseg study /dev/stdin < s.toml", 2, r"<stdin>: key 'train\.lr' = 0", issue="D20",
      stdin="s.toml")
def _(f: Path, ctx: Ctx) -> list[str]:
    (f / "s.toml").write_text(BAD_LR)
    return ["study", "/dev/stdin"]


@case("study-folder", "robustseg study FOLDER (a folder of study files)", 2, r"is a folder .*s\.toml.*expected a study file",
      issue="D21")
def _(f: Path, ctx: Ctx) -> list[str]:
    (f / "studies").mkdir()
    (f / "studies" / "s.toml").write_text(BAD_LR)
    return ["study", str(f / "studies")]


@case("study-missing", "robustseg study with a mistyped file name", 2, r"study file not found")
def _(f: Path, ctx: Ctx) -> list[str]:
    return ["study", str(f / "sutdy.toml")]


@case("study-empty-file", "an empty study file (saved before typing)", 2, r"is empty")
def _(f: Path, ctx: Ctx) -> list[str]:
    (f / "s.toml").write_bytes(b"")
    return ["study", str(f / "s.toml")]


@case("study-tilde-paths", "~ in data.path (study file), --set data.path and runs_dir: expanded, no literal ./~",
      2, r"LV appears in none of the 6 masks", issue="D12")
def _(f: Path, ctx: Ctx) -> list[str]:
    data(f, lv=False)
    text = small_study("tiny", "~/runs", "~/reports").replace(
        'source = "phantom"', 'source = "fetal_head"\npath = "~/fhb"')
    return ["study", str(study_file(f, text=text))]


@case("study-tilde-set", "--set data.path=~/fhb --set execution.runs_dir=~/r", 2, r"LV appears in none",
      issue="D13")
def _(f: Path, ctx: Ctx) -> list[str]:
    data(f, lv=False)
    return ["study", str(study_file(f)), "--set", "data.source=fetal_head", "--set", "data.path=~/fhb",
            "--set", "execution.runs_dir=~/r"]


def _tilde_outputs(f: Path) -> None:
    assert (f / "r" / "tiny" / "study.json").is_file() and not (f / "~").exists()


@case("train-tilde-runs-dir", "train with runs_dir = '~/r' and reports_dir = '~/rep' (no literal ./~ folder)", 0,
      issue="D14", slow=True, check=_tilde_outputs)
def _(f: Path, ctx: Ctx) -> list[str]:
    return ["train", str(study_file(f, runs="~/r", reports="~/rep"))]


@case("study-bad-style-writes-nothing", "study with an unknown data.phantom_style", 2, r"data\.phantom_style")
def _(f: Path, ctx: Ctx) -> list[str]:
    return ["study", str(study_file(f)), "--set", "data.phantom_style=tiny-thin"]


@case("tune-zero-trials", "tune --trials 0", 2, r"--trials 0: expected an integer >= 1", issue="D22")
def _(f: Path, ctx: Ctx) -> list[str]:
    return ["tune", str(study_file(f, extra="[tune]\ntrials = 1\n")), "--trials", "0"]


# --- data sets where a structure never appears ---------------------------------------------------------------


@case("check-lv-absent", "check-data on a data set where LV appears in no mask", 0,
      r"warning: LV appears in none of the 6 masks", issue="D23")
def _(f: Path, ctx: Ctx) -> list[str]:
    return ["check-data", str(data(f, lv=False))]


@case("check-all-empty", "check-data on a data set whose masks are all background", 0,
      r"warning: every mask is empty", issue="D23")
def _(f: Path, ctx: Ctx) -> list[str]:
    root = data(f)
    for p in masks_of(root).glob("*.png"):
        palette_png(np.zeros((48, 64), np.uint8)).save(p)
    return ["check-data", str(root)]


@case("study-lv-absent", "study on a data set where LV appears in no mask", 2,
      r"LV appears in none .*data\.allow_absent_classes", issue="D23")
def _(f: Path, ctx: Ctx) -> list[str]:
    return ["study", str(study_file(f)), "--set", "data.source=fetal_head", "--set", f"data.path={data(f, lv=False)}"]


# --- images: EXIF, frames, formats, bit depth, damage ---------------------------------------------------------


def _folder_with(f: Path, write_image: Callable[[Path, np.ndarray], str], n: int = 2) -> Path:
    root = f / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for i in range(n):
        img, lab = arrays(i, h=48, w=64)
        name = write_image(root / "images" / f"case{i}", img[..., 0])
        palette_png(lab).save(root / "masks" / f"{name}.png")
    return root


@case("exif-rotated-jpeg", "a JPEG stored sideways with EXIF orientation 6; the mask drawn on the displayed image",
      0, issue="D15", unchanged=("ds",))
def _(f: Path, ctx: Ctx) -> list[str]:
    def write(stem: Path, grey: np.ndarray) -> str:
        exif_jpeg(stem.with_suffix(".jpg"), np.repeat(grey[..., None], 3, axis=2), 6)
        return stem.name
    return ["check-data", str(_folder_with(f, write))]


def _square_check(f: Path) -> None:
    from robustseg.data.io import read_image

    shown = np.asarray(Image.open(f / "shown.png").convert("L"), dtype=np.int16)
    got = read_image(f / "ds" / "images" / "case0.jpg").astype(np.int16)
    assert np.abs(got - shown).mean() < 3, "the pixels are not those a viewer shows"


@case("exif-square-jpeg", "a square JPEG with EXIF orientation 3 (180 degrees): read as displayed, not misaligned",
      0, issue="D16", unchanged=("ds",), check=_square_check)
def _(f: Path, ctx: Ctx) -> list[str]:
    def write(stem: Path, grey: np.ndarray) -> str:
        sq = grey[:48, :48]
        Image.fromarray(sq).save(f / "shown.png")
        exif_jpeg(stem.with_suffix(".jpg"), np.repeat(sq[..., None], 3, axis=2), 3)
        return stem.name
    root = f / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    write(root / "images" / "case0", arrays(0)[0][..., 0])
    lab = arrays(0)[1][:48, :48]
    palette_png(lab).save(root / "masks" / "case0.png")
    return ["check-data", str(root)]


@case("multiframe-tiff", "a multi-page TIFF image (a cine exported page by page)", 2,
      r"case0\.tif: image has 3 frames .*data\.frame", issue="D17")
def _(f: Path, ctx: Ctx) -> list[str]:
    def write(stem: Path, grey: np.ndarray) -> str:
        multipage_tiff(stem.with_suffix(".tif"), [grey, 255 - grey, grey // 2])
        return stem.name
    return ["check-data", str(_folder_with(f, write))]


@case("multiframe-tiff-chosen", "the same multi-page TIFF with --frame 2", 0, unchanged=("ds",))
def _(f: Path, ctx: Ctx) -> list[str]:
    def write(stem: Path, grey: np.ndarray) -> str:
        multipage_tiff(stem.with_suffix(".tif"), [grey, 255 - grey, grey // 2])
        return stem.name
    return ["check-data", str(_folder_with(f, write)), "--frame", "2"]


@case("gif-image", "an image saved as GIF", 2, r"case1\.gif: GIF images are not supported", issue="D18")
def _(f: Path, ctx: Ctx) -> list[str]:
    def write(stem: Path, grey: np.ndarray) -> str:
        ext = ".gif" if stem.name == "case1" else ".png"
        Image.fromarray(grey).save(stem.with_suffix(ext))
        return stem.name
    return ["check-data", str(_folder_with(f, write))]


@case("gif-named-png", "a GIF renamed to .png", 2, r"case0\.png: GIF images are not supported \(named \.png\)")
def _(f: Path, ctx: Ctx) -> list[str]:
    def write(stem: Path, grey: np.ndarray) -> str:
        Image.fromarray(grey).save(stem.with_suffix(".png"), format="GIF")
        return stem.name
    return ["check-data", str(_folder_with(f, write))]


@case("webp-in-perturb", "perturb on a folder holding a WebP", 2, r"\.webp: WebP images are not supported")
def _(f: Path, ctx: Ctx) -> list[str]:
    (f / "img").mkdir()
    Image.fromarray(arrays(0)[0]).save(f / "img" / "a.png")
    Image.fromarray(arrays(1)[0]).save(f / "img" / "b.webp")
    return ["perturb", str(f / "img"), str(f / "out"), "--suite", "gaussian_noise", "--severity", "1"]


@case("jpeg-mask", "a mask saved as JPEG", 2, r"a JPEG mask cannot hold exact labels")
def _(f: Path, ctx: Ctx) -> list[str]:
    root = data(f, extras=False)
    mask = next(masks_of(root).glob("*.png"))
    Image.open(mask).convert("RGB").save(mask.with_suffix(".jpg"))
    mask.unlink()
    return ["check-data", str(root)]


@case("image-16bit-12bits", "16-bit PNG images holding 12-bit scanner values", 0, unchanged=("ds",))
def _(f: Path, ctx: Ctx) -> list[str]:
    def write(stem: Path, grey: np.ndarray) -> str:
        Image.fromarray(grey.astype(np.uint16) * 16).save(stem.with_suffix(".png"))
        return stem.name
    return ["check-data", str(_folder_with(f, write))]


@case("truncated-png", "an image still being copied (truncated PNG)", 2, r"case1\.png: unreadable or truncated")
def _(f: Path, ctx: Ctx) -> list[str]:
    root = _folder_with(f, lambda stem, g: (Image.fromarray(g).save(stem.with_suffix(".png")), stem.name)[1])
    p = root / "images" / "case1.png"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return ["check-data", str(root)]


@case("appledouble-and-litter", "macOS '._' copies, .DS_Store and Thumbs.db in the image folder (shared drive)", 0,
      unchanged=("ds",))
def _(f: Path, ctx: Ctx) -> list[str]:
    root = _folder_with(f, lambda stem, g: (Image.fromarray(g).save(stem.with_suffix(".png")), stem.name)[1])
    (root / "images" / "._case0.png").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    (root / "images" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "images" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    return ["check-data", str(root)]


@case("image-names-differ-in-case", "two image files whose names differ only in case", 2, r"differ only in case")
def _(f: Path, ctx: Ctx) -> list[str]:
    root = _folder_with(f, lambda stem, g: (Image.fromarray(g).save(stem.with_suffix(".png")), stem.name)[1])
    Image.open(root / "images" / "case0.png").save(root / "images" / "CASE0.png")
    Image.open(root / "masks" / "case0.png").save(root / "masks" / "CASE0.png")
    return ["check-data", str(root)]


@case("share-path-spaces-unicode", "a data set on a share path with spaces and accents", 0,
      unchanged=("Research Share",))
def _(f: Path, ctx: Ctx) -> list[str]:
    root = real_looking_dataset(f / "Research Share" / "Études fœtales (2021)" / "fhb")
    return ["check-data", str(root)]


@case("phantom-share-path", "phantom into a new folder on a path with spaces and accents", 0,
      check=lambda f: None)
def _(f: Path, ctx: Ctx) -> list[str]:
    return ["phantom", str(f / "Mes données" / "fantôme 1"), "--n", "2", "--style", "small-thin"]


@case("qc-output-is-folder", "qc RUN IMAGES -o FOLDER", 2, r"is a folder; expected a file name", issue="D4",
      needs=("qc_study",))
def _(f: Path, ctx: Ctx) -> list[str]:
    root = data(f)
    (f / "out").mkdir()
    return ["qc", str(ctx.qc_study), str(images_of(root)), "-o", str(f / "out")]


@case("qc-output-under-file", "qc RUN IMAGES -o FILE/qc.csv", 2, r"notes\.txt: exists and is not a folder", issue="D5",
      needs=("qc_study",))
def _(f: Path, ctx: Ctx) -> list[str]:
    root = data(f)
    (f / "notes.txt").write_text("x")
    return ["qc", str(ctx.qc_study), str(images_of(root)), "-o", str(f / "notes.txt" / "qc.csv")]


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
