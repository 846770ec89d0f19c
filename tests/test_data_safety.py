"""Never harm the user's data: output folders robustseg did not make are refused, outputs never go into input
folders, an existing file that robustseg did not write is never replaced without --force."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from corpus.build import half_written, real_looking_dataset, snapshot

from robustseg._outdir import MARKER
from robustseg.cli.main import main


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return lines[0]


# --- phantom ------------------------------------------------------------------------------------------------


def test_phantom_refuses_a_real_looking_data_set(tmp_path: Path, capsys) -> None:
    root = real_looking_dataset(tmp_path / "fhb")
    before = snapshot(root)
    assert main(["phantom", str(root), "--n", "3", "--style", "small-thin"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "not empty" in line and "--force" in line and str(root) in line
    assert snapshot(root) == before


def test_phantom_refuses_a_folder_of_other_files(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "Desktop"
    folder.mkdir()
    (folder / "thesis draft.docx").write_bytes(b"PK\x03\x04 not really")
    before = snapshot(folder)
    assert main(["phantom", str(folder), "--n", "2", "--style", "small-thin"]) == 2
    assert "thesis draft.docx" in _one_error_line(capsys.readouterr().err)
    assert snapshot(folder) == before


def test_phantom_rerun_replaces_only_its_own_files(tmp_path: Path) -> None:
    out = tmp_path / "ph"
    assert main(["phantom", str(out), "--n", "6", "--style", "small-thin"]) == 0
    marker = json.loads((out / MARKER).read_text())
    assert marker["made_by"] == "robustseg phantom" and marker["version"]
    assert main(["phantom", str(out), "--n", "3", "--style", "small-thin", "--seed", "1"]) == 0
    images = sorted((out / "Trans-thalamic" / "Trans-thalamic").glob("*.png"))
    assert len(images) == 3  # the 6 of the first run are gone, not mixed in
    csv = pd.read_csv(out / "Trans-thalamic" / "Trans-Thalamic-Pixel-Size.csv")
    assert sorted(csv["Label"]) == [p.name for p in images]
    assert main(["check-data", str(out)]) == 0


def test_phantom_force_writes_beside_user_files_and_deletes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    assert main(["phantom", str(folder), "--n", "2", "--style", "small-thin", "--force"]) == 0
    assert (folder / "notes.txt").read_text() == "keep me"
    assert len(list((folder / "Trans-thalamic" / "Trans-thalamic").glob("*.png"))) == 2
    assert not (folder / MARKER).exists()  # not ours: the next run needs --force again


def test_phantom_into_a_folder_holding_only_os_litter(tmp_path: Path) -> None:
    folder = tmp_path / "new"
    folder.mkdir()
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf")
    assert main(["phantom", str(folder), "--n", "2", "--style", "small-thin"]) == 0


@pytest.mark.parametrize("fault, code", [(OSError(28, "No space left on device"), 1), (KeyboardInterrupt(), 130)])
def test_phantom_failure_leaves_no_folder(tmp_path: Path, monkeypatch, fault, code) -> None:
    import robustseg.data.phantom as ph

    def boom(*a, **k):
        raise fault

    monkeypatch.setattr(ph, "write_mask", boom)
    out = tmp_path / "ph"
    assert main(["phantom", str(out), "--n", "2", "--style", "small-thin"]) == code
    assert not out.exists()


# --- qc -o ---------------------------------------------------------------------------------------------------


@pytest.fixture
def qc_images(qc_study: Path, tmp_path: Path) -> Path:
    data = next((qc_study / "data").iterdir()) / "Trans-thalamic" / "Trans-thalamic"
    folder = tmp_path / "to score"
    folder.mkdir()
    for f in sorted(data.glob("*.png"))[:3]:
        shutil.copy(f, folder)
    return folder


@pytest.fixture
def no_inference(monkeypatch):
    import robustseg.pipeline.qc_folder as qf

    def fail(*a, **k):
        raise AssertionError("inference ran before the output was checked")

    monkeypatch.setattr(qf, "_predict_all", fail)


@pytest.mark.slow
def test_qc_output_that_is_a_folder_is_refused_before_inference(qc_study, qc_images, tmp_path, capsys,
                                                                no_inference) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    assert main(["qc", str(qc_study), str(qc_images), "-o", str(folder)]) == 2
    assert "is a folder" in _one_error_line(capsys.readouterr().err)


@pytest.mark.slow
def test_qc_output_under_a_file_is_refused_before_inference(qc_study, qc_images, tmp_path, capsys,
                                                            no_inference) -> None:
    (tmp_path / "report.txt").write_text("x")
    assert main(["qc", str(qc_study), str(qc_images), "-o", str(tmp_path / "report.txt" / "qc.csv")]) == 2
    assert "report.txt" in _one_error_line(capsys.readouterr().err)


@pytest.mark.slow
def test_qc_output_inside_the_image_folder_is_refused(qc_study, qc_images, capsys, no_inference) -> None:
    before = snapshot(qc_images)
    assert main(["qc", str(qc_study), str(qc_images), "-o", str(qc_images / "qc.csv")]) == 2
    assert "inside the input folder" in _one_error_line(capsys.readouterr().err)
    assert snapshot(qc_images) == before


@pytest.mark.slow
def test_qc_never_replaces_a_user_file_without_force(qc_study, qc_images, tmp_path, capsys) -> None:
    mine = tmp_path / "qc.csv"  # the default output: IMAGE_DIR/../qc.csv
    mine.write_bytes(b"patient;comment\r\n7;re-scan\r\n")
    assert main(["qc", str(qc_study), str(qc_images)]) == 2
    assert "--force" in _one_error_line(capsys.readouterr().err)
    assert mine.read_bytes() == b"patient;comment\r\n7;re-scan\r\n"
    assert main(["qc", str(qc_study), str(qc_images), "--force"]) == 0
    first = mine.read_bytes()
    assert main(["qc", str(qc_study), str(qc_images)]) == 0  # its own earlier table: replaced without --force
    assert mine.read_bytes() == first and half_written(tmp_path) == []


# --- by construction: every write goes through robustseg._io ---------------------------------------------------

WRITERS = {"to_csv", "savefig", "save", "savez", "savez_compressed", "write_text", "write_bytes", "imwrite", "to_json",
           "to_parquet", "dump"}
TEMPORARY = {"tmp", "buf", "fh", "buffer"}
"""Names the writers of robustseg._io hand to a write callback (a temporary file, an in-memory buffer)."""


def _direct_writes(source: str) -> list[str]:
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in WRITERS:
            if func.attr in ("write_text", "write_bytes"):
                target = func.value
            elif ast.unparse(func) == "torch.save":
                target = node.args[1] if len(node.args) > 1 else None
            else:
                target = node.args[0] if node.args else None
            if target is not None and not (isinstance(target, ast.Name) and target.id in TEMPORARY):
                found.append(f"line {node.lineno}: {ast.unparse(node)[:90]}")
        elif isinstance(func, ast.Name) and func.id == "open" and len(node.args) > 1:
            mode = node.args[1].value if isinstance(node.args[1], ast.Constant) else ""
            target = node.args[0]
            if "w" in str(mode) and not (isinstance(target, ast.Name) and target.id in TEMPORARY):
                found.append(f"line {node.lineno}: {ast.unparse(node)[:90]}")
    return found


def test_every_file_is_written_through_io() -> None:
    """No module writes a file directly (``df.to_csv(path)``, ``fig.savefig(path)``, ``img.save(path)``,
    ``path.write_text``, ``open(path, 'w')``): each goes through ``robustseg._io`` (temporary file, fsync, rename;
    a full disk leaves no partial file). Appending to logs and lock files is allowed."""
    import robustseg

    package = Path(robustseg.__file__).parent
    offenders = {str(p.relative_to(package)): hits for p in sorted(package.rglob("*.py")) if p.name != "_io.py"
                 for hits in [_direct_writes(p.read_text(encoding="utf-8"))] if hits}
    assert offenders == {}, offenders


# --- folders written before output markers existed ----------------------------------------------------------


def test_a_phantom_of_an_earlier_version_is_recognised(tmp_path: Path) -> None:
    out = tmp_path / "ph"
    assert main(["phantom", str(out), "--n", "4", "--style", "small-thin"]) == 0
    (out / MARKER).unlink()  # as an earlier version left it
    assert main(["phantom", str(out), "--n", "2", "--style", "small-thin"]) == 0
    assert len(list((out / "Trans-thalamic" / "Trans-thalamic").glob("*.png"))) == 2


def test_a_perturb_output_of_an_earlier_version_is_recognised(tmp_path: Path) -> None:
    from corpus.build import arrays

    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    for i in range(2):
        Image.fromarray(arrays(i)[0]).save(images / f"im{i}.png")
    out = tmp_path / "out"
    argv = ["perturb", str(images), str(out), "--suite", "gaussian_noise", "--severity", "1"]
    assert main(argv) == 0
    (out / MARKER).unlink()
    (images / "im1.png").unlink()
    assert main(argv) == 0  # recognised; the image no longer there leaves no stale copy
    assert sorted(p.name for p in (out / "gaussian_noise" / "s1").iterdir()) == ["im0.png"]
    (out / "mine.txt").write_text("x")
    (out / MARKER).unlink()
    assert main(argv) == 2  # anything else in it: not recognised


def test_default_outputs_of_a_relative_dot_land_beside_the_folder(tmp_path: Path, monkeypatch, capsys) -> None:
    """``evaluate-folder . GT`` run inside the prediction folder writes ../evaluation, not ./evaluation."""
    from corpus.build import masks_dir, real_looking_dataset

    gt = masks_dir(real_looking_dataset(tmp_path / "fhb", extras=False))
    pred = tmp_path / "pred"
    shutil.copytree(gt, pred)
    monkeypatch.chdir(pred)
    assert main(["evaluate-folder", ".", str(gt), "--no-boundary"]) == 0
    assert (tmp_path / "evaluation" / "per_image.csv").is_file() and not (pred / "evaluation").exists()


# --- read-only folders (as root, permissions do not stop writes: the immutable flag does) -----------------------


@pytest.fixture
def read_only(tmp_path: Path):
    """Make folders immutable (``chattr +i``, which stops root too) for the test; undone afterwards."""
    import subprocess

    made: list[Path] = []

    def make(folder: Path) -> Path:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here")
        made.append(folder)
        return folder

    yield make
    for folder in reversed(made):
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)


def test_read_only_data_is_read_and_outputs_into_read_only_folders_are_refused(tmp_path: Path, read_only,
                                                                              capsys) -> None:
    root = real_looking_dataset(tmp_path / "fhb")
    for folder in [p for p in root.rglob("*") if p.is_dir()] + [root]:
        read_only(folder)
    before = snapshot(root)
    assert main(["check-data", str(root)]) == 0  # a read-only share is fine to read
    shared = read_only(_mkdir(tmp_path / "shared"))
    assert main(["phantom", str(shared / "ph"), "--n", "2", "--style", "small-thin"]) == 2
    assert "cannot write" in _one_error_line(capsys.readouterr().err)
    masks = root / "Trans-thalamic" / "Trans-thalamic-PASCAL" / "SegmentationClass"
    assert main(["evaluate-folder", str(masks), str(masks), "-o", str(shared / "eval"), "--no-boundary"]) == 2
    assert "cannot write" in _one_error_line(capsys.readouterr().err)
    assert snapshot(root) == before


def _mkdir(folder: Path) -> Path:
    folder.mkdir()
    return folder


# --- a structure no mask holds: refused at study time unless data.allow_absent_classes --------------------------


@pytest.mark.parametrize(("lv", "csp", "expected"), [
    (0, 5, r"LV appears in none of the 2 masks"),
    (0, 0, r"every mask is empty \(background only\)"),
])
def test_absent_classes_refused_unless_allowed(lv: int, csp: int, expected: str) -> None:
    from robustseg.config.study import load_study
    from robustseg.errors import InputError
    from robustseg.pipeline.study import _check_classes_present

    index = pd.DataFrame({"image_id": ["a", "b"], "px_background": [90, 90], "px_brain": [10 * (csp > 0)] * 2,
                          "px_csp": [csp, 0], "px_lv": [lv, 0]})
    with pytest.raises(InputError, match=expected + r".*data\.allow_absent_classes = true"):
        _check_classes_present(load_study(None), index)
    _check_classes_present(load_study(None, ["data.allow_absent_classes=true"]), index)  # allowed: no error
    _check_classes_present(load_study(None), index.assign(px_lv=[3, 0], px_csp=[5, 0], px_brain=[10, 10]))
