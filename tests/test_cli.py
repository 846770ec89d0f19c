"""The CLI contract: verbs, exit codes (0 ok, 1 run failure, 2 bad input) and one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from robustseg.cli import build_parser, main


def test_every_verb_of_the_contract_exists() -> None:
    parser = build_parser()
    verbs = set(parser._subparsers._group_actions[0].choices)  # noqa: SLF001
    assert verbs == {"phantom", "check-data", "train", "evaluate-folder", "perturb", "study", "tune", "report",
                     "qc", "plan"}


def test_phantom_then_check_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["phantom", str(tmp_path / "ph"), "--n", "12", "--seed", "3"]) == 0
    assert main(["check-data", str(tmp_path / "ph")]) == 0
    out = capsys.readouterr().out
    assert "images with CSP" in out and "pixel_share" in out


def test_phantom_style_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["phantom", str(tmp_path / "ph"), "--n", "3", "--style", "small-thin"]) == 0
    assert "3 phantom images (small-thin: 300 x 230)" in capsys.readouterr().out
    assert len(list((tmp_path / "ph" / "Trans-thalamic" / "Trans-thalamic").glob("*.png"))) == 3
    assert main(["phantom", str(tmp_path / "bad"), "--style", "nope"]) == 2
    assert "valid styles" in capsys.readouterr().err


def test_check_data_bad_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["check-data", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and str(tmp_path / "empty") in err.replace("\n", "")


def test_evaluate_folder_missing_prediction_exits_2(phantom_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    gt = next(phantom_dir.glob("*/*-PASCAL/SegmentationClass"))
    pred = tmp_path / "pred"
    shutil.copytree(gt, pred)
    assert main(["evaluate-folder", str(pred), str(gt), "-o", str(tmp_path / "ok"), "--no-boundary"]) == 0
    assert (tmp_path / "ok" / "per_image.csv").is_file() and (tmp_path / "ok" / "summary.json").is_file()
    victim = sorted(pred.glob("*.png"))[0]
    victim.unlink()
    capsys.readouterr()
    assert main(["evaluate-folder", str(pred), str(gt), "-o", str(tmp_path / "bad")]) == 2
    assert victim.stem in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_perturb_unknown_suite_exits_2(phantom_dir: Path, tmp_path: Path) -> None:
    images = next(phantom_dir.glob("*/Trans-thalamic"))
    assert main(["perturb", str(images), str(tmp_path / "out"), "--suite", "nope"]) == 2


def test_report_on_a_folder_that_is_not_a_study_exits_2(tmp_path: Path) -> None:
    assert main(["report", str(tmp_path)]) == 2


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["study", "--no-such-flag"])
    assert info.value.code == 2
