"""How much wall time does pruning save for the same tuning budget? (a benchmark, not a test)

Runs the same Optuna tuning job twice on the phantom, same seeded TPE sampler and number of trials:
once with the median pruner (robustseg's default) and once without pruning, alternating one trial of
each so that other load on the machine falls on both alike, then prints the wall time spent in trials,
the epochs trained, the trial states and the best validation Dice (mean of CSP and LV) of each, and the
saving. Pruned and unpruned runs sample different points after the first pruned trial (TPE sees a
different history), so the best values are compared, not the trials.

Pruning honesty: a search value is one seed, so the benchmark also runs the confirmation stage on both
studies (``--confirm-top-k`` trials and the current settings, ``--confirm-seeds`` fresh seeds each) and
prints the confirmed result next to the search's best. And it replays the median pruner (Optuna's own,
in an in-memory study, for each ``--replay-warmups`` value) on the *unpruned* run's full learning
curves: which trials it would have stopped, the epochs saved, and whether it would have dropped the
eventual winner (the unpruned run's confirmed winner, or its best search trial when none was confirmed).
Replaying costs no training, and it is the only way to see what a pruned trial would have become.

    python benchmarks/bench_pruning.py                  # phantom 120, 64 px, 12 trials x 8 epochs
    python benchmarks/bench_pruning.py --trials 8 --epochs 6 --size 48    # quicker
    python benchmarks/bench_pruning.py --confirm-top-k 0                  # no confirmation
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import optuna
import pandas as pd

from robustseg.config import build_study
from robustseg.pipeline.study import prepare
from robustseg.tune import run_tuning


def make_study(args: argparse.Namespace, root: Path, data: Path, pruner: str, confirm: bool = False) -> object:
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
                 "pruner_startup_trials": args.pruner_startup, "pruner_warmup_epochs": args.warmup,
                 "confirm_top_k": args.confirm_top_k if confirm else 0, "confirm_seeds": args.confirm_seeds},
    }
    return build_study(user, where="bench_pruning", path=root / f"bench-{pruner}.toml")  # tuned file beside it


def replay_median_pruner(trials: list[optuna.trial.FrozenTrial], *, startup: int, warmup: int) -> dict[int, int]:
    """Trial number -> step at which Optuna's MedianPruner would have stopped it, given full learning curves.

    The trials are replayed in order into an in-memory study; a trial the replay prunes does not count as
    complete for the later ones (as in a real pruned run).
    """
    replay = optuna.create_study(direction="maximize",
                                 pruner=optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup))
    pruned: dict[int, int] = {}
    for t in trials:
        if t.state != optuna.trial.TrialState.COMPLETE:
            continue
        live = replay.ask()
        for step in sorted(t.intermediate_values):
            live.report(t.intermediate_values[step], step)
            if live.should_prune():
                pruned[t.number] = step
                replay.tell(live, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            replay.tell(live, t.value)
    return pruned


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
    p.add_argument("--confirm-top-k", type=int, default=3, help="trials confirmed after the search (0: none)")
    p.add_argument("--confirm-seeds", type=int, default=5, help="fresh seeds per confirmed setting")
    p.add_argument("--replay-warmups", default="1,2,0",
                   help="warm-ups (epochs; 0: max_epochs // 2) for which the median pruner is replayed")
    p.add_argument("--out", help="keep the runs/reports here (default: a temporary folder)")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

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
            if args.confirm_top_k:  # the confirmation stage, once, after the whole search
                result = run_tuning(make_study(args, root, data, pruner, confirm=True), trials=0, storage=urls[pruner],
                                    timeout=None)
                results[pruner] = result
            table = pd.read_csv(result.report.parent / "tables" / "trials.csv")
            rows[pruner] = {"seconds": float(table["seconds"].sum()), "best_value": result.best_value,
                            "best_trial": result.best_trial, "best_params": result.best_params,
                            "complete": result.n_complete, "pruned": result.n_pruned, "failed": result.n_failed,
                            "epochs": int(table["epochs"].fillna(0).sum()), "decision": result.decision,
                            "adopted_trial": result.adopted_trial}
            if result.confirmation is not None:
                conf = result.confirmation.set_index("setting")
                best = conf.iloc[1:]["mean"].idxmax() if len(conf) > 1 else None
                rows[pruner].update(
                    confirmed_baseline=[float(conf["mean"].iloc[0]), float(conf["sd"].iloc[0])],
                    confirmed_best=best,
                    confirmed_best_mean_sd=[float(conf.loc[best, "mean"]), float(conf.loc[best, "sd"])] if best else None,
                    confirmation=result.confirmation.drop(columns=["seeds"]).to_dict(orient="records"))
            r = rows[pruner]
            print(f"{pruner:>7}: {r['seconds']:7.1f} s in trials  epochs {r['epochs']:4d}  complete {r['complete']} "
                  f"pruned {r['pruned']} failed {r['failed']}  best search Dice(CSP,LV) {r['best_value']:.4f} "
                  f"(trial {r['best_trial']})  {r['best_params']}", flush=True)
            if "confirmed_best" in r:
                base_m, base_sd = r["confirmed_baseline"]
                best_txt = (f"{r['confirmed_best']} {r['confirmed_best_mean_sd'][0]:.4f} ± "
                            f"{r['confirmed_best_mean_sd'][1]:.4f}") if r["confirmed_best"] else "none"
                print(f"         confirmed ({args.confirm_seeds} fresh seeds): current settings {base_m:.4f} ± "
                      f"{base_sd:.4f}; best confirmed {best_txt}; adopted: "
                      f"{'trial ' + str(r['adopted_trial']) if r['adopted_trial'] is not None else 'nothing'}")
        with_p, without = rows["median"], rows["none"]
        saving = 1.0 - with_p["seconds"] / without["seconds"]
        print(f"\n{args.trials} trials x {args.epochs} epochs, phantom n={args.n}, {args.size} px, base {args.base}")
        print(f"wall time in trials: {with_p['seconds']:.1f} s with median pruning vs {without['seconds']:.1f} s "
              f"without -> {100 * saving:.0f}% saved ({with_p['epochs']} vs {without['epochs']} epochs, "
              f"{100 * (1 - with_p['epochs'] / without['epochs']):.0f}% fewer)")
        print(f"best search validation Dice (CSP, LV): {with_p['best_value']:.4f} with pruning vs "
              f"{without['best_value']:.4f} without (difference {with_p['best_value'] - without['best_value']:+.4f})")
        if "confirmed_best" in with_p and "confirmed_best" in without:
            print(f"confirmed: with pruning {with_p['decision']}\n           without {without['decision']}")

        # Replay the median pruner on the unpruned run's full curves: would it have dropped the eventual winner?
        unpruned = optuna.load_study(study_name=studies["none"].name, storage=urls["none"]).get_trials(deepcopy=False)
        watched = {"search best": without["best_trial"]}
        if without.get("confirmed_best"):
            watched["best confirmed mean"] = int(without["confirmed_best"].split()[-1])
        if without["adopted_trial"] is not None:
            watched["confirmed winner"] = without["adopted_trial"]
        complete_epochs = {t.number: len(t.intermediate_values) for t in unpruned
                           if t.state == optuna.trial.TrialState.COMPLETE}
        replays = []
        print(f"\nmedian pruner replayed on the unpruned run's full curves ({len(complete_epochs)} complete trials; "
              + ", ".join(f"{k}: trial {v}" for k, v in watched.items()) + ")")
        print("| warm-up (epochs) | trials pruned | epochs saved | " + " | ".join(f"{k} kept" for k in watched) + " |")
        print("|---|---|---|" + "---|" * len(watched))
        for w in [int(v) for v in args.replay_warmups.split(",") if v.strip()]:
            warm = w or max(1, args.epochs // 2)
            stopped = replay_median_pruner(unpruned, startup=args.pruner_startup, warmup=warm)
            saved = sum(complete_epochs[n] - step for n, step in stopped.items())
            kept = ["yes" if n not in stopped else f"NO (pruned at epoch {stopped[n]})" for n in watched.values()]
            replays.append({"warmup": warm, "pruned": sorted(stopped), "epochs_saved": saved,
                            "watched": watched, "pruned_at": {k: stopped.get(n) for k, n in watched.items()}})
            print(f"| {warm} | {len(stopped)} | {saved} of {sum(complete_epochs.values())} | " + " | ".join(kept) + " |")
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "runs": rows, "saving": saving,
                                                   "replay": replays}, indent=2, default=str))


if __name__ == "__main__":
    main()
