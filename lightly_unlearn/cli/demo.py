"""``lightly-unlearn demo``: the main job on embedded real data (scikit-learn digits).

Pretrains a SimCLR model that leaks membership, retrains it without the forget set (the gold
standard), runs every unlearning method from the pretrained weights, audits them all with the
same seeds, prints the comparison table and writes ``report.md``, ``results.json``, one gap heat
map per method and ``comparison.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

DEFAULT_OUT = "unlearn_demo_out"
#: The relearning test's retain-only epochs, as a fraction of the pretraining epochs.
RELEARN_FRACTION = 0.1


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def _forget_spec(text: str) -> dict[str, Any]:
    """``random``, ``random:<fraction in (0, 1)>`` or ``class:<digit 0-9>`` as Setting fields."""
    kind, _, value = text.partition(":")
    try:
        if kind == "random":
            fraction = float(value) if value else 0.1
            if 0 < fraction < 1:
                return {"forget": "random", "forget_fraction": fraction}
        elif kind == "class" and int(value) in range(10):
            return {"forget": f"class:{int(value)}"}
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"{text!r}: use 'random', 'random:<fraction between 0 and 1>' or 'class:<digit 0-9>'"
    )


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="pretrain, retrain and unlearn on embedded digits; audit and report",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument("--seeds", type=_positive, default=3, help="independent repetitions (mean ± std; default 3)")
    p.add_argument("--model", choices=["simclr", "moco"], default="simclr",
                   help="the contrastive model to pretrain and unlearn (default simclr)")
    p.add_argument("--forget", type=_forget_spec, default="random",
                   help="'random' (10 %%), 'random:<fraction>' or 'class:<digit 0-9>'")
    p.add_argument("--quick", action="store_true", help="1 seed, shorter pretraining: a smoke run")


def pin_threads() -> None:
    """One thread for torch and for the BLAS under scikit-learn's probes.

    The thread count changes the order of floating-point sums, and over hundreds of training
    steps that changes the table: `make demo` (OMP_NUM_THREADS=1) and a bare `lightly-unlearn
    demo` must print the same numbers on the same seeds."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(limits=1)


def _run_seed(setting: Any, relearn_epochs: int) -> tuple[list[Any], float]:
    """Pretrain, retrain and unlearn with every demo method on one seed's setting; returns the
    runs and the relearning test's learning rate."""
    from lightly_unlearn.demo.experiment import CALIBRATED_METHODS, DEFAULT_METHODS, Experiment

    exp = Experiment(setting, progress=lambda line: print("  " + line, flush=True),
                     relearn_epochs=relearn_epochs)
    runs = [exp.pretrain(), exp.unlearn("retrain")]
    for method, (hp, fraction) in DEFAULT_METHODS.items():
        runs.append(exp.unlearn(method, hp, max(1, round(fraction * setting.pretrain_epochs))))
    for method, (hp, fraction) in CALIBRATED_METHODS.items():
        epochs = max(1, round(fraction * setting.pretrain_epochs))
        runs.append(exp.unlearn(method, hp, epochs, calibrated=True))
    return runs, exp.relearn_lr


def _notes(seeds: int, relearn_epochs: int, pretrain_epochs: int) -> list[str]:
    """How to read the demo's table (printed under it and written into report.md)."""
    from lightly_unlearn.demo.experiment import CALIBRATED_METHODS, DEFAULT_METHODS

    return [
        f"{seeds} seed(s), mean ± std. Efficacy (EMIA, CMIA) and accuracies are compared to Retrain's, "
        "never to 100; Avg.Gap = mean |Δ| to Retrain over RA, TA, UA, EMIA, CMIA; "
        "Indist.Gap = |AUC − AUC(Retrain)|·100 of the forget-vs-holdout AUC, which catches overshoot.",
        "EMIA = % of forget samples a membership attack judges non-members: higher means more "
        "forgotten, but only up to Retrain's value; far above it is overshoot (AUC below 0.5). "
        "TPR@1%FPR = % of forget samples flagged by an attack that may wrongly flag 1 % of never-seen "
        "ones (lower = more forgotten; TPR at 0.1 % needs ≥ 1000 holdout samples, more than here).",
        f"Relearned AUC: the forget-vs-holdout AUC after a copy of each model trained {relearn_epochs} "
        "more epochs on the retain set only (the forget samples never shown; same lr for every row); "
        "Relearn.Gap = |relearned AUC − Retrain's relearned AUC|·100. A low Indist.Gap with a high "
        "Relearn.Gap means membership was hidden, not removed.",
        "Membership is read from projection-head alignment scores (K = 10 views); the probe and CMIA "
        "from backbone features (logistic regression on cached features).",
        "Method hyper-parameters and epochs: " + "; ".join(
            f"{m} {hp or ''} {round(f * pretrain_epochs)} epochs" for m, (hp, f) in DEFAULT_METHODS.items())
        + "; " + "; ".join(
            f"{m}+stop {hp} at most {round(f * pretrain_epochs)} epochs, stopped by "
            "HoldoutAlignmentStopping" for m, (hp, f) in CALIBRATED_METHODS.items()),
    ]


def run(args: argparse.Namespace) -> int:
    from pytorch_lightning import LightningModule  # the demo's models are lightly-style

    from lightly_unlearn.demo.experiment import Setting, setting_dict, summarise
    from lightly_unlearn.demo.report import aggregate, table, write_outputs
    from lightly_unlearn.errors import OutputPathError
    from lightly_unlearn.paths import check_output_path
    from lightly_unlearn.reproducibility import make_reproducible

    try:  # before the minutes of training, not when the report is written
        out = check_output_path(args.out, kind="dir", what="--out")
    except OutputPathError as err:
        print(f"lightly-unlearn demo: error: {err}", file=sys.stderr)
        return 2
    pin_threads()
    seeds = 1 if args.quick else max(1, args.seeds)
    start = time.perf_counter()
    per_seed, gap_matrices = [], {}
    for seed in range(seeds):
        setting = Setting(model=args.model, seed=seed, **args.forget,
                          pretrain_epochs=100 if args.quick else Setting.pretrain_epochs)
        print(f"[seed {seed + 1}/{seeds}] {setting.model}, {setting.n_train} training digits, "
              f"forget {setting.forget}", flush=True)
        make_reproducible(seed, like=LightningModule)  # every generator, deterministic kernels
        relearn_epochs = max(1, round(RELEARN_FRACTION * setting.pretrain_epochs))
        runs, relearn_lr = _run_seed(setting, relearn_epochs)
        per_seed.append(summarise(runs))
        if seed == 0:
            gap_matrices = {r.name: r.gap_matrix for r in runs if r.gap_matrix is not None}
    rows = aggregate(per_seed)
    notes = _notes(seeds, relearn_epochs, setting.pretrain_epochs)
    print()
    print(table(rows))
    print()
    for note in notes:
        print("* " + note)
    write_outputs(out, setting_dict(setting) | {"seeds": seeds, "relearn_epochs": relearn_epochs,
                                                "relearn_lr": relearn_lr},
                  rows, per_seed, gap_matrices, notes)
    print(f"\nWrote report.md, results.json, comparison.png and {len(gap_matrices)} gap heat maps to "
          f"{out.resolve()}  ({time.perf_counter() - start:.0f} s)")
    return 0
