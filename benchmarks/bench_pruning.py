"""How much wall time does pruning save for the same tuning budget? (a benchmark, not a test)

Runs the same Optuna tuning job twice on the phantom, same seeded TPE sampler and number of trials:
once with the median pruner (robustseg's default) and once without pruning, alternating one trial of
each so that other load on the machine falls on both alike, then prints the wall time spent in trials,
the epochs trained, the trial states and the best validation Dice (mean of CSP and LV) of each, and the
saving. Pruned and unpruned runs sample different points after the first pruned trial (TPE sees a
different history), so the best values are compared, not the trials.

    python benchmarks/bench_pruning.py                  # phantom 120, 64 px, 12 trials x 8 epochs
    python benchmarks/bench_pruning.py --trials 8 --epochs 6 --size 48    # quicker
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd

from robustseg.config import build_study
from robustseg.pipeline.study import prepare
from robustseg.tune import run_tuning


def make_study(args: argparse.Namespace, root: Path, data: Path, pruner: str) -> object:
    user = {
        "name": f"bench-{pruner}",
        "seeds": [0],
        "data": {"source": "phantom", "path": str(data), "size": args.size, "phantom_n": args.n},
        "split": {"test_fraction": 0.25, "k_folds": 2, "seed": 0},
        "model": {"name": "attention_unet", "base": args.base, "depth": 3},
        "loss": {"name": "hybrid", "a": 0.4, "b": 0.2, "gamma": 2.0},
        "train": {"batch_size": 8, "max_epochs": args.epochs, "lr": 3e-3, "early_stopping_patience": 0,
                  "device": args.device, "augment": False},
        "perturb": {"suite": "none"},
        "execution": {"runs_dir": str(root / "runs"), "reports_dir": str(root / "reports"),
                      "threads": args.threads},
        "tune": {"pruner": pruner, "seed": args.seed, "startup_trials": args.startup,
                 "pruner_startup_trials": args.pruner_startup, "pruner_warmup_epochs": args.warmup},
    }
    return build_study(user, where="bench_pruning", path=root / f"bench-{pruner}.toml")  # tuned file beside it


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n", type=int, default=120, help="phantom images")
    p.add_argument("--base", type=int, default=8, help="model base width")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--startup", type=int, default=5, help="TPE random start-up trials")
    p.add_argument("--pruner-startup", type=int, default=5, help="trials before the median pruner acts")
    p.add_argument("--warmup", type=int, default=0, help="epochs before a trial can be pruned (0: max_epochs // 2)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--out", help="keep the runs/reports here (default: a temporary folder)")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args()

    from robustseg.data.phantom import generate_phantom

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        data = root / f"phantom-n{args.n}"
        if not data.exists():
            generate_phantom(data, n=args.n, seed=0)
        studies = {pruner: make_study(args, root, data, pruner) for pruner in ("median", "none")}
        urls = {pruner: f"sqlite:///{root / f'{pruner}-{time.time_ns()}.db'}" for pruner in studies}
        for study in studies.values():
            prepare(study)  # data loading and splits outside the timed part (cached per process)
        # The two conditions alternate one trial at a time (ABBA order), so that load from other processes
        # on a shared machine falls on both alike; the wall time of a condition is the sum of its trials'.
        results = {}
        for i in range(args.trials):
            order = ("median", "none") if i % 2 == 0 else ("none", "median")
            for pruner in order:
                results[pruner] = run_tuning(studies[pruner], trials=1, storage=urls[pruner], timeout=None)
        rows = {}
        for pruner, result in results.items():
            table = pd.read_csv(result.report.parent / "tables" / "trials.csv")
            rows[pruner] = {"seconds": float(table["seconds"].sum()), "best_value": result.best_value,
                            "best_params": result.best_params, "complete": result.n_complete,
                            "pruned": result.n_pruned, "failed": result.n_failed,
                            "epochs": int(table["epochs"].fillna(0).sum())}
            r = rows[pruner]
            print(f"{pruner:>7}: {r['seconds']:7.1f} s in trials  epochs {r['epochs']:4d}  complete {r['complete']} "
                  f"pruned {r['pruned']} failed {r['failed']}  best Dice(CSP,LV) {r['best_value']:.4f}  "
                  f"{r['best_params']}", flush=True)
        with_p, without = rows["median"], rows["none"]
        saving = 1.0 - with_p["seconds"] / without["seconds"]
        print(f"\n{args.trials} trials x {args.epochs} epochs, phantom n={args.n}, {args.size} px, base {args.base}")
        print(f"wall time in trials: {with_p['seconds']:.1f} s with median pruning vs {without['seconds']:.1f} s "
              f"without -> {100 * saving:.0f}% saved ({with_p['epochs']} vs {without['epochs']} epochs, "
              f"{100 * (1 - with_p['epochs'] / without['epochs']):.0f}% fewer)")
        print(f"best validation Dice (CSP, LV): {with_p['best_value']:.4f} with pruning vs "
              f"{without['best_value']:.4f} without (difference {with_p['best_value'] - without['best_value']:+.4f})")
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "runs": rows, "saving": saving}, indent=2))


if __name__ == "__main__":
    main()
