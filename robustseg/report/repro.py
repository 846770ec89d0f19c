"""The reproducibility block: package versions, git commit, study hash, seeds, hardware, wall time per run."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd

from robustseg.report import markdown as md

PACKAGES = ("robustseg", "torch", "numpy", "pandas", "scipy", "scikit-image", "albumentations",
            "matplotlib")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(where: Path | None = None) -> str:
    """``git rev-parse HEAD`` of the source tree (``unknown`` outside a git checkout or without git)."""
    where = where or Path(__file__).resolve().parent
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def _switches(d: dict) -> str:
    on = lambda v: "on" if v else "off"  # noqa: E731
    return (f"deterministic algorithms {on(d.get('deterministic_algorithms'))}"
            + (" (warn only)" if d.get("deterministic_algorithms") and d.get("warn_only") else "")
            + f", cudnn.benchmark {on(d.get('cudnn_benchmark'))}, cudnn.deterministic {on(d.get('cudnn_deterministic'))}"
            + f", float32 matmul precision {d.get('float32_matmul_precision', '?')}")


def environment_line(env: dict) -> str:
    """One sentence for a run's ``environment`` record (``robustseg.nn.environment.environment_record``)."""
    flags = ", ".join(env.get("cpu_flags") or []) or "none of AVX2 / AVX-512 / AMX"
    gpu = env.get("gpu") or "no GPU"
    cuda = (f"CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')} ({gpu})" if env.get("cuda") else f"no CUDA ({gpu})")
    threads = env.get("thread_env") or {}
    tenv = (" (" + ", ".join(f"{k}={v}" for k, v in sorted(threads.items())) + ")") if threads else ""
    return (f"CPU {env.get('cpu_model', '?')} ({env.get('cpu_count', '?')} logical cores, {env.get('cpu_affinity', '?')} "
            f"usable; {env.get('machine', '?')}), flags {flags}; torch {env.get('torch', '?')} with CPU kernels "
            f"{env.get('torch_cpu_capability', '?')}, oneDNN {env.get('onednn') or 'absent'}"
            f"{'' if env.get('mkldnn_enabled') else ' (disabled)'}, MKL {env.get('mkl') or 'absent'}; {cuda}; "
            f"threads {env.get('torch_threads', '?')} intra-op / {env.get('torch_interop_threads', '?')} inter-op{tenv}; "
            f"training: {_switches(env.get('determinism_training') or {})}; "
            f"evaluation: {_switches(env.get('determinism_evaluation') or {})}")


def machine_kind(env: dict, device: str = "cpu") -> str:
    """A short name of the machine kind a run ran on: what must match for a bit-identical rerun."""
    cpu = (f"{env.get('cpu_model', '?')} CPU ({env.get('cpu_count', '?')} logical cores, "
           f"{env.get('torch_cpu_capability', '?')} kernels)")
    gpu = (f"GPU {env.get('gpu') or '?'} (CUDA {env.get('cuda', '?')}) with " if str(device).startswith("cuda")
           else "")
    threads = env.get("torch_threads", "?")
    return (f"{gpu}{cpu}{'' if gpu else ', no GPU used'}, torch {env.get('torch', '?')}, {threads} "
            f"thread{'' if threads == 1 else 's'} per run")


def nondeterminism(env: dict, device: str = "cpu") -> str:
    """Why a run's kernels may not be deterministic ("" when its recorded settings are)."""
    train, ev = env.get("determinism_training") or {}, env.get("determinism_evaluation") or {}
    gpu = str(device).startswith("cuda")
    why = []
    if train and not train.get("deterministic_algorithms"):
        why.append("deterministic algorithms off in training")
    elif gpu and train.get("warn_only"):
        why.append("deterministic algorithms only warn on the GPU")
    if gpu and (train.get("cudnn_benchmark") or ev.get("cudnn_benchmark")):
        why.append("cudnn.benchmark on")
    return "; ".join(why)


def environment_table(completes: dict[str, dict]) -> pd.DataFrame:
    """One row per completed run with a machine record: device, CPU, GPU, library versions, threads, the
    determinism switches, ``machine_kind`` (:func:`machine_kind`) and ``nondeterministic`` (:func:`nondeterminism`)."""
    rows = []
    for run_id, done in sorted(completes.items()):
        env = done.get("environment")
        if not isinstance(env, dict):
            continue
        device = str(done.get("device", "cpu"))
        train = env.get("determinism_training") or {}
        rows.append({"run_id": run_id, "arm": done.get("arm"), "fold": done.get("fold"), "seed": done.get("seed"),
                     "device": device, "cpu_model": env.get("cpu_model"), "cpu_count": env.get("cpu_count"),
                     "cpu_kernels": env.get("torch_cpu_capability"), "gpu": env.get("gpu"), "cuda": env.get("cuda"),
                     "torch": env.get("torch"), "torch_threads": env.get("torch_threads"),
                     "deterministic_training": train.get("deterministic_algorithms"),
                     "warn_only_training": train.get("warn_only"),
                     "cudnn_benchmark": bool(train.get("cudnn_benchmark")
                                             or (env.get("determinism_evaluation") or {}).get("cudnn_benchmark")),
                     "machine_kind": machine_kind(env, device), "nondeterministic": nondeterminism(env, device)})
    return pd.DataFrame(rows)


def environment_lines(completes: dict[str, dict]) -> list[str]:
    """Markdown bullets: each distinct environment record of the runs, with how many runs it covers."""
    groups: dict[str, int] = {}
    for done in completes.values():
        env = done.get("environment")
        if isinstance(env, dict):
            line = environment_line(env)
            groups[line] = groups.get(line, 0) + 1
    if not groups:
        return []
    n = sum(groups.values())
    out = [f"- Machine record of the runs ({len(groups)} distinct among {n} runs; bit-for-bit reproduction needs the "
           "same CPU instruction set, thread counts and library builds, since oneDNN / MKL choose kernels by "
           "instruction set and the order of floating-point sums follows the threads):"]
    out += [f"  - {k} run{'s' if k != 1 else ''}: {line}" for line, k in groups.items()]
    return out


def shown_path(path: str, cwd: Path | None = None) -> str:
    """A path as a report shows it: relative to ``cwd`` when inside it, else the file name (no user folders)."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.relative_to(cwd or Path.cwd()).as_posix()
    except ValueError:
        return p.name


def warnings_line(logged: pd.DataFrame | None) -> str:
    """One bullet on the Python warnings the runs logged (``warnings.log`` of the run folder)."""
    if logged is None or logged.empty:
        return "- Python warnings during the runs: none logged"
    n = int(logged["count"].sum()) if "count" in logged.columns else len(logged)
    top = logged.sort_values("count", ascending=False, kind="stable").iloc[0] if "count" in logged.columns else None
    most = f"; most frequent: {top['category']}: {top['message']}" if top is not None else ""
    return (f"- Python warnings during the runs: {n} ({len(logged)} distinct per run), in `warnings.log` of the run "
            f"folder and `tables/warnings.csv`{most}")


def block(heading: str, study: dict, study_hash: str, study_file: str | None, runs: pd.DataFrame,
          completes: dict[str, dict] | None = None, logged: pd.DataFrame | None = None) -> str:
    versions = package_versions()
    lines = [heading.rstrip("\n"), "",
             f"- Study hash: `{study_hash}`" + (f" (file `{shown_path(study_file)}`)" if study_file else ""),
             f"- Seeds: {study.get('seeds', [])}; split seed {study.get('split', {}).get('seed', '?')}; "
             f"perturbation seed {study.get('perturb', {}).get('seed', '?')}",
             f"- Source commit when the report was built: `{git_commit()}`",
             "- Packages when the report was built: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
             ""]
    done = runs[runs["status"] == "complete"] if "status" in runs.columns else runs
    if not done.empty:
        hw = []
        for col in ("host", "device", "torch_threads"):
            if col in done.columns:
                hw.append(f"{col} " + ", ".join(sorted(str(v) for v in done[col].dropna().unique())))
        lines.append("- Hardware of the runs: " + "; ".join(hw))
        sw = [f"{col.removesuffix('_version')} " + ", ".join(sorted(str(v) for v in done[col].dropna().unique()))
              for col in ("python_version", "robustseg_version", "torch_version", "numpy_version")
              if col in done.columns]
        if sw:
            lines.append("- Packages when the runs ran: " + "; ".join(sw))
        lines += environment_lines(completes or {})
        lines.append(warnings_line(logged))
        if "seconds" in done.columns:
            lines.append(f"- Wall time of all runs: {done['seconds'].sum():.1f} s (sum over runs)")
        lines.append("")
        cols = {"run_id": "Run", "arm": "Arm", "fold": ("Fold", md.integer), "seed": ("Seed", md.integer)}
        for col, head in (("seconds", "Wall s"), ("train_seconds", "Train s"), ("eval_seconds", "Eval s"),
                          ("epochs_run", "Epochs"), ("best_epoch", "Best epoch"), ("device", "Device"),
                          ("diverged", "Diverged")):
            if col in done.columns:
                cols[col] = (head, md.fixed(1)) if col.endswith("seconds") else (head, str)
        lines.append(md.table(runs, cols | {"status": "Status"}))
    return "\n".join(lines) + "\n"
