"""The full unlearning benchmark (SPEC §5): every method against Retrain, tuned alike, over seeds.

Protocol, per setting (model ∈ {SimCLR, MoCo} × forget set ∈ {10 % random, 50 % random, one class}):

1. *Tuning* seeds: pretrain, Retrain, and run each method's grid from the pretrained weights.
   Every method gets the same budget: six configurations, all within 10 % of the pretraining
   epochs. The configuration with the smallest mean ``Avg.Gap + Indist.Gap`` to Retrain wins.
   The calibrated mode (``ac+stop``: AC stopped by ``HoldoutAlignmentStopping``) is not tuned.
2. *Evaluation* seeds (disjoint from the tuning seeds, so the winner is not graded on the data it
   was chosen on): pretrain, Retrain, the chosen configuration of each method; report
   mean ± std of every column and the cost relative to Retrain.

The setting and audits are those of ``lightly-unlearn demo`` (``lightly_unlearn.demo.experiment``).

    python benchmarks/unlearning.py                 # all 6 settings, 3 + 3 seeds (~20 min, 2 cores)
    python benchmarks/unlearning.py --quick         # 1 setting, 1 + 1 seed, 2 configs each (~1 min)
    python benchmarks/unlearning.py --models simclr --forgets random:0.1 --out results.json
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lightly_unlearn.demo.experiment import Experiment, Setting, setting_dict, summarise
from lightly_unlearn.demo.report import aggregate, table
from lightly_unlearn.io import atomic_write_json

#: Six configurations per method, all ≤ 30 epochs (10 % of the 300 pretraining epochs).
GRIDS: dict[str, list[tuple[dict[str, Any], int]]] = {
    "finetune": [({}, e) for e in (6, 9, 15, 20, 25, 30)],
    "gradient_ascent": [({}, e) for e in (1, 2, 3, 4, 6, 9)],
    "neggrad": [({"lam": lam}, e) for lam, e in itertools.product((0.5, 1.0), (6, 9, 15))],
    "l1_sparse": [({"lam": lam}, e) for lam, e in itertools.product((5e-5, 5e-4), (6, 9, 15))],
    "ac": [({"alpha": 1.0, "beta": b}, e) for b, e in itertools.product((1.0, 4.0, 16.0), (9, 15))],
}

#: The calibrated mode is not tuned: AC with β = 4 for at most 30 epochs, stopped by
#: HoldoutAlignmentStopping when the forget samples align like never-seen ones.
CALIBRATED = {"ac": ({"alpha": 1.0, "beta": 4.0}, 30)}


def score(row: dict[str, Any]) -> float:
    """What tuning minimises: the headline gap plus the overshoot-catching gap."""
    return float(row["avg_gap"] + row["indist_gap"])


def parse_forget(spec: str) -> dict[str, Any]:
    if spec.startswith("random:"):
        return {"forget": "random", "forget_fraction": float(spec.split(":", 1)[1])}
    if spec.startswith("class:"):
        return {"forget": spec}
    raise SystemExit(f"--forgets takes 'random:<fraction>' or 'class:<digit>'; got {spec!r}")


def tune(base: Setting, seeds: list[int], grids: dict, log) -> dict[str, tuple[dict, int, float]]:
    """Best configuration per method over the tuning seeds: ``{method: (hp, epochs, score)}``."""
    scores: dict[tuple[str, int], list[float]] = {}
    for seed in seeds:
        exp = Experiment(Setting(**{**base.__dict__, "seed": seed}), progress=lambda _: None)
        runs = [exp.pretrain(), exp.unlearn("retrain")]
        retrain_runs = runs[:]
        for method, grid in grids.items():
            for i, (hp, epochs) in enumerate(grid):
                rows = summarise([*retrain_runs, exp.unlearn(method, hp, epochs)])
                scores.setdefault((method, i), []).append(score(rows[-1]))
        log(f"    tuned on seed {seed}")
    best = {}
    for method, grid in grids.items():
        means = [np.mean(scores[(method, i)]) for i in range(len(grid))]
        i = int(np.argmin(means))
        best[method] = (grid[i][0], grid[i][1], float(means[i]))
        log(f"    {method:<16} best {grid[i][0]} {grid[i][1]} epochs (score {means[i]:.1f}; "
            f"grid {', '.join(f'{m:.1f}' for m in means)})")
    return best


def evaluate(base: Setting, seeds: list[int], best: dict, log) -> tuple[list[dict], list[list[dict]]]:
    per_seed = []
    for seed in seeds:
        exp = Experiment(Setting(**{**base.__dict__, "seed": seed}), progress=lambda _: None)
        runs = [exp.pretrain(), exp.unlearn("retrain")]
        runs += [exp.unlearn(m, hp, epochs) for m, (hp, epochs, _) in best.items()]
        runs += [exp.unlearn(m, hp, epochs, calibrated=True) for m, (hp, epochs) in CALIBRATED.items()]
        per_seed.append(summarise(runs))
        log(f"    evaluated seed {seed}")
    return aggregate(per_seed), per_seed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["simclr", "moco"], choices=["simclr", "moco"])
    p.add_argument("--forgets", nargs="+", default=["random:0.1", "random:0.5", "class:3"])
    p.add_argument("--tune-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--eval-seeds", type=int, nargs="+", default=[3, 4, 5])
    p.add_argument("--pretrain-epochs", type=int, default=Setting.pretrain_epochs)
    p.add_argument("--quick", action="store_true", help="1 setting, 1+1 seeds, 2 configs each, short pretraining")
    p.add_argument("--out", default="benchmarks/results/unlearning.json")
    args = p.parse_args(argv)
    grids = GRIDS
    if args.quick:
        args.models, args.forgets = args.models[:1], args.forgets[:1]
        args.tune_seeds, args.eval_seeds, args.pretrain_epochs = [0], [1], 60
        grids = {m: g[1:2] + g[-2:-1] for m, g in GRIDS.items()}

    def log(line: str) -> None:
        print(line, flush=True)

    results, start = [], time.perf_counter()
    for model, forget in itertools.product(args.models, args.forgets):
        base = Setting(model=model, pretrain_epochs=args.pretrain_epochs, **parse_forget(forget))
        log(f"== {model}, forget {forget}")
        t0 = time.perf_counter()
        best = tune(base, args.tune_seeds, grids, log)
        rows, per_seed = evaluate(base, args.eval_seeds, best, log)
        log(table(rows))
        results.append({"setting": setting_dict(base), "model": model, "forget": forget,
                        "chosen": {m: {"hyperparameters": hp, "epochs": e, "tuning_score": s}
                                   for m, (hp, e, s) in best.items()},
                        "summary": rows, "per_seed": per_seed, "seconds": time.perf_counter() - t0})
    payload = {"grids": {m: [[hp, e] for hp, e in g] for m, g in grids.items()},
               "tune_seeds": args.tune_seeds, "eval_seeds": args.eval_seeds, "results": results,
               "seconds": time.perf_counter() - start, "command": " ".join(sys.argv)}
    atomic_write_json(args.out, payload)
    log(f"\nWrote {Path(args.out).resolve()} ({payload['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())


