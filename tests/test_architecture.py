"""Layout guards: the pure layers never import torch, and no module imports itself through a cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PKG = Path(__file__).resolve().parent.parent / "robustseg"
TORCH_FREE = ["robustseg", "robustseg.config", "robustseg.data", "robustseg.metrics", "robustseg.metrics.folder",
              "robustseg.perturb", "robustseg.qc", "robustseg.qc.anomaly", "robustseg.qc.robustness",
              "robustseg.stats", "robustseg.labels", "robustseg.errors", "robustseg._io", "robustseg._registry"]


def _modules_loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=PKG.parent)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", TORCH_FREE)
def test_pure_layers_do_not_import_torch(module: str) -> None:
    loaded = _modules_loaded_after(f"import {module}")
    assert "torch" not in loaded, f"importing {module} pulled in torch"


def test_evaluate_folder_runs_without_torch(tmp_path: Path) -> None:
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        lab = rng.integers(0, 4, size=(16, 16), dtype=np.uint8)
        img = Image.fromarray(lab, mode="P")
        img.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (256 * 3 - 12))
        img.save(pred / f"c{i}.png")
        img.save(gt / f"c{i}.png")
    code = ("from robustseg.cli import main\n"
            f"assert main(['evaluate-folder', {str(pred)!r}, {str(gt)!r}, '-o', {str(tmp_path / 'out')!r}]) == 0")
    loaded = _modules_loaded_after(code)
    assert "torch" not in loaded
    assert (tmp_path / "out" / "per_image.csv").is_file()


OPTIONAL = ("timm", "torchvision", "mlflow", "tensorboard", "distributed", "dask", "dask_jobqueue", "pydicom",
            "highdicom", "pingouin", "sklearn", "statsmodels", "monai")
"""Packages of the extras (and test oracles) that no robustseg module may import at module load."""


def test_no_module_imports_an_optional_package_at_load() -> None:
    """Importing every module of the package (torch layers included) loads none of the extras' packages:
    they are imported only when a study asks for them (``robustseg._extras.require``)."""
    modules = sorted(_module_name(p) for p in PKG.rglob("*.py") if p.name != "__main__.py")
    loaded = _modules_loaded_after("\n".join(f"import {m}" for m in modules))
    offenders = sorted(m for m in loaded if m.split(".")[0] in OPTIONAL)
    assert not offenders, f"importing robustseg's modules pulled in optional packages: {offenders[:10]}"


def test_extras_error_names_the_extra_and_exits_2(tmp_path: Path) -> None:
    """Asked for without its extra, an optional feature is one line naming the extra, exit code 2, before any
    work: timm_unet without timm, a Dask scheduler without distributed."""
    from tests._tiny import tiny_study

    plain, timm = tmp_path / "plain.toml", tmp_path / "timm.toml"
    plain.write_text(tiny_study("extras"))
    timm.write_text(tiny_study("extras").replace('name = "attention_unet"\nbase = 4\ndepth = 3',
                                                 'name = "timm_unet"\nencoder = "resnet18"'))
    cases = {
        "timm": (["study", str(timm)], 'model \'timm_unet\' needs timm, which is not installed: '
                                       'pip install "robustseg[timm]"'),
        "distributed": (["study", str(plain), "--scheduler", "tcp://127.0.0.1:1"],
                        'needs distributed, which is not installed: pip install "robustseg[dask]"'),
        "mlflow": (["study", str(plain), "--set", "execution.tracking=mlflow"],
                   "execution.tracking = 'mlflow' needs mlflow, which is not installed: pip install \"robustseg[mlflow]\""),
        "tensorboard": (["study", str(plain), "--set", "execution.tracking=tensorboard"],
                        'needs tensorboard, which is not installed: pip install "robustseg[tensorboard]"'),
        "dask_jobqueue": (["study", str(plain), "--cluster", "slurm"],
                          '--cluster slurm needs dask_jobqueue, which is not installed: pip install "robustseg[slurm]"'),
    }
    for blocked, (argv, message) in cases.items():
        code = (f"import sys; sys.modules[{blocked!r}] = None\n"
                "from robustseg.cli import main\n"
                f"sys.exit(main({argv!r}))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                             env={**__import__("os").environ, "COLUMNS": "300"})
        assert out.returncode == 2, out.stderr
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0], out.stderr
        assert not (tmp_path / "runs" / "extras").exists() or not any((tmp_path / "runs" / "extras").iterdir())


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                if t in modules and t != name and not name.startswith(t + "."):
                    graph[name].add(t)  # a submodule importing its own package __init__ is not followed
    return graph


def test_no_import_cycles() -> None:
    graph = _import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_only_nn_and_its_users_import_torch() -> None:
    allowed = ("robustseg.nn", "robustseg.pipeline", "robustseg.tune", "robustseg.cli", "robustseg.report",
               "robustseg.track")
    offenders = []
    for path in PKG.rglob("*.py"):
        name = _module_name(path)
        tree = ast.parse(path.read_text())
        uses_torch = any(
            (isinstance(n, ast.Import) and any(a.name.split(".")[0] == "torch" for a in n.names))
            or (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "torch")
            for n in ast.walk(tree)
        )
        if uses_torch and not name.startswith(allowed):
            offenders.append(name)
    assert not offenders, f"torch imported outside robustseg.nn and its callers: {offenders}"
