"""CPU seconds of one study run, split into training and evaluation, and the quickstart's wall time estimated from them.

Run: ``python benchmarks/bench_run.py [STUDY.toml] [--fold 0] [--seed 0] [--out DIR] [--set KEY=VALUE ...]``
(default: the packaged quickstart, fold 0, seed 0, in a temporary folder).

The run executes in this process as a study worker does (``execution.threads``, one by default), with the
clock of the process's CPU time (``time.process_time``: user + system of every thread), so a busy machine does
not change the numbers much. Training is the call of ``train_run``; evaluation is everything after it in the
run (validation scoring for the post-processing decision, test predictions clean and under every perturbation,
native-resolution scoring, QC scores, files; the perturbed test set, which a worker process makes once and reuses
for every run it executes, is printed as its share when the run records it). The code under test need not record CPU times itself: the
split comes from timing ``train_run`` from outside, so the script measures older versions of the package too.

It also times the study's preparation (phantom generation, data loading, reference masks) and, with
``--report``, the report built from the finished run. The quickstart estimate assumes what the quickstart does
on an idle 2-core machine: preparation, then 6 runs on 2 single-threaded workers (3 rounds), then the report;
its wall time is about ``prepare + perturbed set + 3 x (run - perturbed set) + report`` CPU seconds when each
worker has a core of its own.
The per-image table is written to ``--out`` for comparisons between versions.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def cpu_line() -> str:
    """CPU model, cores, the instruction-set flags torch and oneDNN dispatch on, and torch's chosen capability."""
    import os

    import torch

    from robustseg.nn.environment import cpu_info

    info = cpu_info()
    flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in info["cpu_flags"]]
    return (f"{info['cpu_model']}, {os.cpu_count()} cores, flags: {' '.join(flags)}; "
            f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", nargs="?", default=None, help="study file (default: the packaged quickstart)")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="folder for the runs and the report (default: temporary)")
    ap.add_argument("--report", action="store_true", help="also build and time the report of the finished run")
    ap.add_argument("--set", action="append", default=[], help="study override KEY=VALUE (repeatable)")
    args = ap.parse_args()

    import robustseg.nn.train as train_mod
    from robustseg.config import load_study
    from robustseg.pipeline import study as study_mod
    from robustseg.pipeline.runner import execute_run

    out = Path(args.out or tempfile.mkdtemp(prefix="bench-run-"))
    overrides = [*args.set, f"execution.runs_dir={json.dumps(str(out / 'runs'))}",
                 f"execution.reports_dir={json.dumps(str(out / 'reports'))}"]
    study = load_study(args.study, overrides) if args.study else load_study(None, overrides)

    c = time.process_time()
    prep = study_mod.prepare(study)
    prepare_cpu = time.process_time() - c
    spec = next(r for r in prep.runs if r.fold == args.fold and r.seed == args.seed)

    timing: dict[str, float] = {}
    real = train_mod.train_run

    def timed(*a, **kw):
        c0 = time.process_time()
        try:
            return real(*a, **kw)
        finally:
            timing["train"] = time.process_time() - c0

    train_mod.train_run = timed
    c = time.process_time()
    result = execute_run(spec, prep.runs_dir, threads=study.execution.threads)
    run_cpu = time.process_time() - c
    train_mod.train_run = real
    if not result.ok:
        raise SystemExit(f"run failed: {result.error}")
    evaluation = run_cpu - timing["train"]
    report_cpu = 0.0
    if args.report:
        c = time.process_time()
        study_mod.collect_tables(prep.runs_dir)
        study_mod.write_report(prep.runs_dir, study)
        report_cpu = time.process_time() - c

    print(f"CPU: {cpu_line()}")
    print(f"run {spec.run_id} (threads {study.execution.threads}), CPU seconds:")
    print(f"  preparation {prepare_cpu:7.1f}")
    print(f"  training    {timing['train']:7.1f}")
    print(f"  evaluation  {evaluation:7.1f}")
    done = json.loads((prep.runs_dir / spec.run_id / "complete.json").read_text())
    once = float(done.get("perturb_cpu_seconds", 0.0))  # the perturbed test set: once per worker process
    if once:
        print(f"    of which the perturbed test set {once:7.1f} (once per worker process)")
    print(f"  run         {run_cpu:7.1f}")
    if args.report:
        print(f"  report (1 run) {report_cpu:7.1f}")
        workers = study.execution.workers
        n = len(prep.runs)
        rounds = -(-n // max(workers, 1))
        print(f"quickstart estimate: {prepare_cpu:.0f} + {once:.0f} + {rounds} x {run_cpu - once:.0f} + report "
              f"= {prepare_cpu + once + rounds * (run_cpu - once) + report_cpu:.0f} s + the report's growth with {n} "
              f"runs ({n} runs on {workers} workers)")
    print(f"per-image table: {prep.runs_dir / spec.run_id / 'per_image.csv.gz'}")


if __name__ == "__main__":
    main()
