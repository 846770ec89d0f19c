"""A full disk (simulated with RLIMIT_FSIZE in a subprocess: every write past the limit fails with EFBIG): each
writing command exits 1 or 2 with one error line and leaves nothing half-written (no truncated file, no
temporary file); what was there before is unchanged.

The CLI itself ignores SIGXFSZ (the signal that would otherwise kill the process at the limit); the tests set
only the limit, so they prove that.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _tiny import tiny_study
from corpus.build import half_written, snapshot

from robustseg.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def run_limited(argv: list[str], limit: int, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """``robustseg ARGV`` in a subprocess whose files may not grow beyond ``limit`` bytes."""

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "robustseg.cli", *argv], cwd=cwd, env=env, preexec_fn=limit_files,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_failure(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode in (1, 2), (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def test_phantom_on_a_full_disk_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "ph"
    proc = run_limited(["phantom", str(out), "--n", "4", "--style", "small-thin"], 20_000, tmp_path)
    assert_one_line_failure(proc, "File too large")
    assert not out.exists()


def test_phantom_rerun_on_a_full_disk_keeps_the_earlier_phantom(tmp_path: Path) -> None:
    out = tmp_path / "ph"
    assert main(["phantom", str(out), "--n", "2", "--style", "small-thin"]) == 0  # in-process: no limit
    before = snapshot(out)
    proc = run_limited(["phantom", str(out), "--n", "4", "--style", "small-thin", "--seed", "3"], 20_000, tmp_path)
    assert_one_line_failure(proc, "File too large")
    assert snapshot(out) == before


@pytest.mark.slow
def test_qc_on_a_full_disk_leaves_no_truncated_csv(qc_study: Path, tmp_path: Path) -> None:
    data = next((qc_study / "data").iterdir()) / "Trans-thalamic" / "Trans-thalamic"
    images = tmp_path / "images"
    images.mkdir()
    for f in sorted(data.glob("*.png"))[:6]:
        shutil.copy(f, images)
    out = tmp_path / "qc.csv"
    proc = run_limited(["qc", str(qc_study), str(images), "-o", str(out)], 1024, tmp_path)
    assert_one_line_failure(proc, "qc.csv", "File too large")
    assert not out.exists() and half_written(tmp_path) == []
    assert main(["qc", str(qc_study), str(images), "-o", str(out)]) == 0  # in-process: no limit
    before = out.read_bytes()
    proc = run_limited(["qc", str(qc_study), str(images), "-o", str(out), "--review", "0.3"], 1024, tmp_path)
    assert_one_line_failure(proc, "qc.csv")
    assert out.read_bytes() == before and half_written(tmp_path) == []


def _images(folder: Path, n: int = 3) -> Path:
    from corpus.build import arrays
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(arrays(i)[0]).save(folder / f"img{i}.png")
    return folder


def test_perturb_on_a_full_disk_leaves_nothing(tmp_path: Path) -> None:
    images = _images(tmp_path / "images")
    out = tmp_path / "out"
    argv = ["perturb", str(images), str(out), "--suite", "gaussian_noise", "--severity", "2"]
    assert_one_line_failure(run_limited(argv, 2000, tmp_path), "File too large")
    assert not out.exists() and half_written(tmp_path) == []
    assert main(argv) == 0  # in-process: no limit
    before = snapshot(out)
    assert_one_line_failure(run_limited([*argv, "--seed", "4"], 2000, tmp_path), "File too large")
    assert snapshot(out) == before  # the earlier output, whole


def test_evaluate_folder_on_a_full_disk_leaves_nothing(tmp_path: Path) -> None:
    from corpus.build import masks_dir, real_looking_dataset

    masks = masks_dir(real_looking_dataset(tmp_path / "fhb", extras=False))
    out = tmp_path / "eval"
    argv = ["evaluate-folder", str(masks), str(masks), "-o", str(out), "--no-boundary"]
    assert_one_line_failure(run_limited(argv, 1500, tmp_path), "File too large")
    assert not out.exists() and half_written(tmp_path) == []
    assert main(argv) == 0  # in-process: no limit
    before = snapshot(out)
    assert_one_line_failure(run_limited([*argv, "--empty-policy", "one"], 1500, tmp_path), "File too large")
    assert snapshot(out) == before


def test_study_on_a_full_disk_is_one_line_and_leaves_whole_files(tmp_path: Path) -> None:
    from robustseg.data.phantom import generate_phantom

    data = generate_phantom(tmp_path / "data", n=12, seed=0, style="small-thin")
    study = tmp_path / "s.toml"
    study.write_text(tiny_study("full", seeds="[0]", phantom_n=12, max_epochs=1, bootstrap=None, suite='"none"',
                                data=f'path = "{data}"') + f'runs_dir = "{tmp_path / "runs"}"\n'
                     f'reports_dir = "{tmp_path / "reports"}"\n')
    before = snapshot(data)
    assert_one_line_failure(run_limited(["study", str(study)], 2048, tmp_path), "File too large")
    assert half_written(tmp_path) == [] and snapshot(data) == before
    assert not (tmp_path / "reports" / "full" / "report.md").exists()


@pytest.mark.slow
def test_report_on_a_full_disk_keeps_the_earlier_report(qc_study: Path, tmp_path: Path) -> None:
    from corpus.cases import Ctx, copy_run

    runs = copy_run(Ctx(qc_study), tmp_path, **{"execution.reports_dir": str(tmp_path / "reports")})
    assert main(["report", str(runs)]) == 0  # in-process: no limit
    reports = tmp_path / "reports" / "tiny-qc"
    before = snapshot(reports)
    assert_one_line_failure(run_limited(["report", str(runs)], 8192, tmp_path), "File too large")
    assert snapshot(reports) == before and half_written(tmp_path) == []
