"""Plugins: a model, loss or perturbation from another package, through the one Registry.

The end-to-end test builds a real distribution (``robustseg-tiny-plugin``) with entry points, installs it
with pip into a temporary folder (``--target``, so the shared environment is never modified), and runs
``robustseg study`` in a subprocess that has the folder on PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from robustseg.errors import InputError
from tests._tiny import tiny_study

ROOT = Path(__file__).resolve().parent.parent

PLUGIN_SOURCE = '''
"""A tiny plugin package for robustseg (built by the tests)."""
import numpy as np
import torch
from torch import nn


class TinyNet(nn.Module):
    """Two 3x3 convolutions (a plugin model: factory(in_channels, num_classes, **options))."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, num_classes, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def smooth_ce(label_smoothing: float = 0.0, class_weights: list[float] | None = None) -> nn.Module:
    """Cross-entropy with label smoothing (a plugin loss)."""
    weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)


def darken(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Darkens the image by 10 % per severity step (a plugin perturbation)."""
    return (image.astype(np.float32) * (1.0 - 0.1 * severity)).astype(np.uint8)
'''


def _build_plugin(root: Path, version: str) -> Path:
    """Write the plugin's source tree (pyproject with entry points) and pip-install it into ``root/site``."""
    src = root / f"src-{version}"
    (src / "tiny_plugin").mkdir(parents=True)
    (src / "tiny_plugin" / "__init__.py").write_text(PLUGIN_SOURCE)
    (src / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "robustseg-tiny-plugin"
        version = "{version}"

        [project.entry-points."robustseg.models"]
        tiny = "tiny_plugin:TinyNet"

        [project.entry-points."robustseg.perturbations"]
        darken = "tiny_plugin:darken"
        """))
    site = root / f"site-{version}"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(src)], check=True, capture_output=True, text=True)
    return site


def _robustseg(args: list[str], cwd: Path, site: Path, module: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m robustseg.cli ARGS`` (or ``python ARGS``) with the plugin's folder on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "COLUMNS": "300"}
    prefix = ["-m", "robustseg.cli"] if module else []
    return subprocess.run([sys.executable, *prefix, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def _plugin_study(name: str) -> str:
    text = tiny_study(name, seeds="[0]", phantom_n=24, max_epochs=1)
    text = text.replace('name = "attention_unet"\nbase = 4\ndepth = 3', 'name = "tiny"\nwidth = 3')
    text = text.replace('suite = ["gaussian_noise"]', 'suite = ["darken"]')
    return text + '\n[loss]\nname = "tiny_plugin:smooth_ce"\nlabel_smoothing = 0.05\n'


def test_a_plugin_package_runs_through_robustseg_study(tmp_path: Path) -> None:
    """Model and perturbation from entry points, loss by ``module:factory``: the study runs, the run spec
    records the distribution and its version, and a new version of the plugin gets a new run id."""
    site = _build_plugin(tmp_path, "0.3.1")
    study = tmp_path / "plug.toml"
    study.write_text(_plugin_study("plug"))

    # bad options are one line naming the key, exit 2, before any work (one interpreter for the three)
    bad = {"model.widht=3": "model 'tiny': unknown option(s) widht (valid: width)",
           'model.width="8"': "model 'tiny': option width = '8'; expected int",
           "loss.label_smoothing=true": "option label_smoothing = True; expected float"}
    code = ("import sys\nfrom robustseg.cli import main\n"
            f"for override in {list(bad)!r}:\n"
            f"    print(main(['study', {str(study)!r}, '--set', override]), file=sys.stderr)\n")
    out = _robustseg(["-c", code], tmp_path, site, module=False)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 2 * len(bad), out.stderr
    for (message, error, code_line) in zip(bad.values(), lines[::2], lines[1::2], strict=True):
        assert message in error and code_line == "2", out.stderr
    assert not (tmp_path / "runs" / "plug").exists() or not list((tmp_path / "runs" / "plug").glob("*-f0-s0-*"))

    out = _robustseg(["study", str(study)], tmp_path, site)
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = [d for d in (tmp_path / "runs" / "plug").iterdir() if (d / "complete.json").is_file()]
    spec = json.loads((run_dir / "spec.json").read_text())
    by_kind = {p["kind"]: p for p in spec["plugins"]}
    assert by_kind["model"] == {"kind": "model", "name": "tiny", "object": "tiny_plugin:TinyNet",
                                "entry_point": "robustseg.models", "distribution": "robustseg-tiny-plugin",
                                "version": "0.3.1"}
    assert by_kind["loss"]["object"] == "tiny_plugin:smooth_ce" and by_kind["loss"]["version"] == "0.3.1"
    assert by_kind["perturbation"]["name"] == "darken"
    import pandas as pd

    per_image = pd.read_csv(run_dir / "per_image.csv.gz")
    assert set(per_image["perturbation"]) == {"none", "darken"}
    assert (tmp_path / "reports" / "plug" / "report.md").is_file()

    # the same plugin, another version: the plan (and so the run id) changes
    site2 = _build_plugin(tmp_path, "0.3.2")
    code = ("from robustseg.config import load_study\nfrom robustseg.pipeline.study import prepare\n"
            f"print(prepare(load_study({str(study)!r})).runs[0].run_id)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site2), str(ROOT)])}
    new_id = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            check=True).stdout.strip()
    assert new_id.startswith("default-f0-s0-") and new_id != run_dir.name


# --- in-process checks of the Registry (a module on sys.path, not an installed distribution) ---------------


@pytest.fixture
def loose_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "loose_plugin.py").write_text(PLUGIN_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "loose_plugin"


def test_module_factory_plugins_are_validated_like_builtins(loose_module: str) -> None:
    from robustseg.nn import losses, models

    model = models.create(f"{loose_module}:TinyNet", in_channels=1, num_classes=4, width=2)
    assert model(__import__("torch").zeros(1, 1, 8, 8)).shape == (1, 4, 8, 8)
    assert models.options(f"{loose_module}:TinyNet") == ["width"]
    info = models.MODELS.plugin(f"{loose_module}:TinyNet")
    assert info["distribution"] is None and len(info["source_sha256"]) == 64  # not installed: the source identifies it
    assert models.MODELS.plugin("attention_unet") is None
    assert losses.uses_class_weights(f"{loose_module}:smooth_ce")
    with pytest.raises(InputError, match=r"unknown option\(s\) depth \(valid: width\)"):
        models.create(f"{loose_module}:TinyNet", depth=3)
    with pytest.raises(InputError, match="option width = 2.5; expected int"):
        models.create(f"{loose_module}:TinyNet", width=2.5)
    with pytest.raises(InputError, match=f"module '{loose_module}' has no attribute 'Nope'"):
        models.create(f"{loose_module}:Nope")
    with pytest.raises(InputError, match="cannot import module 'no_such_module_x'"):
        losses.create("no_such_module_x:loss")
    with pytest.raises(InputError, match=r"unknown; valid names: .*or 'package.module:factory'"):
        models.create("no_such_model")


def test_perturbation_plugin_is_seeded_and_applied(loose_module: str) -> None:
    from robustseg.perturb import perturb_batch, resolve_suite

    name = f"{loose_module}:darken"
    assert resolve_suite({name: [2, 4]}) == [(name, 2), (name, 4)]
    out = perturb_batch(np.full((2, 4, 4), 100, np.uint8), name, 4)
    assert (out == 60).all()
    with pytest.raises(InputError, match="severity 6"):
        resolve_suite({name: 6})
