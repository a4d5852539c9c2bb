"""Forgetting a whole class: AC's partners from other classes vs the default, against Retrain.

AC's negative calibration pairs a forget sample's second view (or, for CLIP, its caption) with
one of *another forget sample*. When the forget set is one whole class, that partner is of the
same class (for CLIP often the very same caption text), so the swap pulls the sample toward its
class instead of away from it. ``partners="other_class"`` draws the partner from the training
samples of other classes instead. This benchmark asks whether that earns its place, measured the
way ``benchmarks/unlearning.py`` measures: several evaluation seeds, per-seed paired differences,
a 95 % Student-t interval over seeds, and a verdict only when the interval excludes zero.

Settings:

* ``clip`` (primary) — the tiny open_clip ViT on scikit-learn's digits with template captions of
  ``examples/clip_unlearn.py`` (its data, trainer and audits), forget every pair of one digit
  class. Rows: Retrain (from scratch on the retain pairs, the pretraining recipe), Fine-tune, AC
  (default ``partners="forget"``) and AC ``partners="other_class"`` with the same other
  hyper-parameters (the example's alpha = 1, beta = 4, 5 epochs). Headline: the per-seed
  ``|ZS(forget pairs) − Retrain's|`` (zero-shot accuracy on the forgotten class's training pairs);
  also ZS on the forgotten class's test pairs, ZS on the other classes' test pairs (utility must
  not drop), retrieval R@1, and the pair-alignment MIA (efficacy and forget-vs-holdout AUC).
* ``mlp`` — the demo's SimCLR MLP (``lightly_unlearn.demo.experiment``, ``Setting(forget=
  "class:3")``) with the demo's Fine-tune and AC configurations: Avg.Gap, the EMIA gap and the
  forget-vs-holdout AUC gap to Retrain (Indist.Gap). UA is 0 for every row by construction here
  (the linear probe is trained on retain labels, which lack the forgotten class).

The CLIP rows reuse one pretraining per seed; every row of a seed starts from
``L.seed_everything(seed)``, so AC and AC other_class differ only in the partners. Wall time of
the full run on 2 shared CPU cores (``OMP_NUM_THREADS=1``) is recorded in the JSON (``seconds``).

    OMP_NUM_THREADS=1 python benchmarks/class_forgetting.py            # both settings, 5 seeds
    OMP_NUM_THREADS=1 python benchmarks/class_forgetting.py --quick    # smoke run, seconds
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load("bench_unlearning", ROOT / "benchmarks" / "unlearning.py")  # t_interval, verdict
t_interval = bench.t_interval

#: The compared rows: name -> (UnlearnCallback method, hyper-parameters); AC rows share alpha/beta.
AC_HP = {"alpha": 1.0, "beta": 4.0}
CLIP_PLANS = {
    "retrain": ("retrain", {}),
    "finetune": ("finetune", {}),
    "ac": ("ac", dict(AC_HP)),
    "ac_other": ("ac", {**AC_HP, "partners": "other_class"}),
}
CLIP_FULL = {"train": 1000, "test": 300, "epochs": 30, "unlearn_epochs": 5, "seeds": [1, 2, 3, 4, 5]}
CLIP_QUICK = {"train": 300, "test": 100, "epochs": 3, "unlearn_epochs": 1, "seeds": [1, 2]}

#: Per-row CLIP metrics kept (all from the example's audits).
CLIP_METRICS = (
    "zs_forget", "zs_test_forget_classes", "zs_test_other_classes", "zs_test", "zs_retain",
    "retrieval_forget_i2t_r1", "retrieval_test_i2t_r1", "clip_mia", "clip_forget_holdout_auc",
)


def gap_columns(row: dict[str, float], retrain: dict[str, float]) -> dict[str, float]:
    """Gaps to Retrain (percentage points; the AUC gap x 100 as in ``Indist.Gap``)."""
    return {
        "gap_zs_forget": abs(row["zs_forget"] - retrain["zs_forget"]),
        "gap_zs_test_forgot_cls": abs(row["zs_test_forget_classes"] - retrain["zs_test_forget_classes"]),
        "gap_auc": 100 * abs(row["clip_forget_holdout_auc"] - retrain["clip_forget_holdout_auc"]),
        "gap_mia": abs(row["clip_mia"] - retrain["clip_mia"]),
    }


def run_clip(seed: int, cfg: dict[str, Any], forget_class: int, log) -> list[dict[str, Any]]:
    """Pretrain on every pair, then each plan from the pretrained weights; audited alike."""
    import lightning.pytorch as L

    from lightly_unlearn import CLIPModule, ForgetRetainDataModule, UnlearnCallback
    from lightly_unlearn.clip import DIGIT_NAMES, DIGIT_TEMPLATES, CaptionDataset, forget_by_class
    from lightly_unlearn.clip.data import tiny_clip_kwargs

    ex = _load("clip_unlearn_example", ROOT / "examples" / "clip_unlearn.py")
    train_items, test_items = ex.digits(cfg["train"])
    train = CaptionDataset(train_items, DIGIT_NAMES, DIGIT_TEMPLATES)
    test = CaptionDataset(test_items[: cfg["test"]], DIGIT_NAMES, DIGIT_TEMPLATES)
    forget = forget_by_class(train, forget_class)

    L.seed_everything(seed, verbose=False)
    kwargs = tiny_clip_kwargs(embed_dim=32, width=32, layers=1, heads=2)
    original = CLIPModule(model_name="ViT-B-32", model_kwargs=kwargs, lr=3e-3, weight_decay=0.05)
    dm = ForgetRetainDataModule(
        train, forget, original.preprocess_train, batch_size=32, holdout=test, seed=seed,
        tokenizer=original.tokenizer, eval_transform=original.preprocess_val,
    )
    t0 = time.perf_counter()
    ex.trainer(cfg["epochs"]).fit(original, datamodule=dm)  # mode "all": every pair
    seconds = {"original": time.perf_counter() - t0}
    flat, before = ex.audit(original, dm)
    rows = {"original": flat}
    for name, (method, hp) in CLIP_PLANS.items():
        epochs = cfg["epochs"] if method == "retrain" else cfg["unlearn_epochs"]
        L.seed_everything(seed, verbose=False)
        module = copy.deepcopy(original)
        t0 = time.perf_counter()
        ex.trainer(epochs, [UnlearnCallback(method, **hp)]).fit(module, datamodule=dm)
        seconds[name] = time.perf_counter() - t0
        rows[name], _ = ex.audit(module, dm, before=before)
        del module
    out = []
    for name, metrics in rows.items():
        row = {"method": name, **{k: float(metrics[k]) for k in CLIP_METRICS}, "seconds": seconds[name]}
        out.append(row)
    retrain = out[1]
    for row in out:
        row.update(gap_columns(row, retrain))
    log(f"    clip seed {seed}: " + ", ".join(
        f"{r['method']} ZS forget {r['zs_forget']:.1f}" for r in out))
    return out


def run_mlp(seed: int, quick: bool, forget_class: int, log) -> list[dict[str, Any]]:
    """The demo's SimCLR MLP: Retrain, Fine-tune and AC (both partner choices) from one pretraining."""
    from lightly_unlearn.demo.experiment import DEFAULT_METHODS, Experiment, Setting, summarise

    overrides = dict(pretrain_epochs=20, num_views=4, n_train=100, n_holdout=100) if quick else {}
    setting = Setting(forget=f"class:{forget_class}", seed=seed, **overrides)
    exp = Experiment(setting, progress=lambda _: None)
    runs = [exp.pretrain(), exp.unlearn("retrain")]
    for name in ("finetune", "ac"):
        hp, fraction = DEFAULT_METHODS[name]
        runs.append(exp.unlearn(name, hp, max(1, round(fraction * setting.pretrain_epochs))))
    hp, fraction = DEFAULT_METHODS["ac"]
    other = exp.unlearn("ac", {**hp, "partners": "other_class"}, max(1, round(fraction * setting.pretrain_epochs)))
    other.name = "ac_other"
    runs.append(other)
    keep = ("method", "epochs", "ra", "ta", "ua", "emia", "cmia", "forget_holdout_auc", "avg_gap",
            "indist_gap", "gap_emia", "gap_ta", "seconds")
    rows = [{k: r[k] for k in keep if k in r} for r in summarise(runs)]
    log(f"    mlp seed {seed}: " + ", ".join(
        f"{r['method']} UA {r['ua']:.1f} Indist.Gap {r['indist_gap']:.1f}" for r in rows))
    return rows


def summary(per_seed: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Mean and std over seeds of every numeric column, per row."""
    out = []
    for i, first in enumerate(per_seed[0]):
        rows = [s[i] for s in per_seed]
        row: dict[str, Any] = {"method": first["method"], "seeds": len(rows)}
        for k, v in first.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                values = [float(r[k]) for r in rows]
                row[k], row[f"{k}_std"] = float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        out.append(row)
    return out


def verdict(low: float, high: float, lower_is_better: bool, a: str, b: str) -> str:
    """Who is better, only when the 95 % interval of ``a − b`` excludes zero (``unlearning.verdict``,
    with the sign flipped where higher is better)."""
    said = bench.verdict(low, high) if lower_is_better else bench.verdict(-high, -low)
    return {"AC leads": f"{a} better", "AC trails": f"{b} better"}.get(said, said)


def compare(per_seed: list[list[dict[str, Any]]], a: str, b: str, metric: str,
            lower_is_better: bool = True) -> dict[str, Any]:
    """Per-seed ``metric(a) − metric(b)``, its mean and 95 % t-interval, and the verdict."""
    by_seed = [{r["method"]: r for r in rows} for rows in per_seed]
    diffs = [float(rows[a][metric] - rows[b][metric]) for rows in by_seed]
    mean, low, high = t_interval(diffs)
    return {"a": a, "b": b, "metric": metric, "lower_is_better": lower_is_better, "differences": diffs,
            "mean_difference": mean, "ci95": [low, high], "seeds": len(diffs),
            "verdict": verdict(low, high, lower_is_better, a, b)}


def gap_interval(per_seed: list[list[dict[str, Any]]], method: str, metric: str) -> dict[str, Any]:
    """A gap to Retrain (already a per-seed difference to Retrain's row): mean and 95 % interval."""
    values = [float(next(r for r in rows if r["method"] == method)[metric]) for rows in per_seed]
    mean, low, high = t_interval(values)
    return {"method": method, "metric": metric, "values": values, "mean": mean, "ci95": [low, high]}


#: (metric, lower is better) compared between methods, per setting.
CLIP_COMPARISONS = (
    ("gap_zs_forget", True), ("gap_zs_test_forgot_cls", True), ("zs_forget", True),
    ("zs_test_other_classes", False), ("zs_test", False), ("retrieval_test_i2t_r1", False),
    ("gap_auc", True), ("gap_mia", True),
)
MLP_COMPARISONS = (("avg_gap", True), ("indist_gap", True), ("gap_emia", True), ("ta", False))


def comparisons(per_seed, metrics) -> dict[str, Any]:
    pairs = [("ac_other", "ac"), ("ac_other", "finetune"), ("ac", "finetune")]
    signed = [(m, "retrain") for m in ("finetune", "ac", "ac_other")]
    gap_metrics = [m for m, _ in metrics if m.startswith("gap_") or m in ("avg_gap", "indist_gap")]
    return {
        "paired": [compare(per_seed, a, b, m, low) for a, b in pairs for m, low in metrics],
        "versus_retrain": [compare(per_seed, a, b, m, low) for a, b in signed for m, low in metrics
                           if not (m.startswith("gap_") or m in ("avg_gap", "indist_gap"))],
        "gaps": [gap_interval(per_seed, m, g) for m in ("finetune", "ac", "ac_other") for g in gap_metrics],
    }


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    head = "| method | " + " | ".join(h for _, h, _ in columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 1)]
    for r in rows:
        cells = []
        for k, _, fmt in columns:
            cells.append(f"{fmt.format(r[k])} ± {fmt.format(r[k + '_std'])}" if k in r else "-")
        lines.append(f"| {r['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


CLIP_COLUMNS = [
    ("zs_forget", "ZS forget", "{:.1f}"), ("gap_zs_forget", "|ZS forget − RT|", "{:.1f}"),
    ("zs_test_forget_classes", "ZS test(forgot cls)", "{:.1f}"),
    ("zs_test_other_classes", "ZS test(other cls)", "{:.1f}"), ("zs_test", "ZS test", "{:.1f}"),
    ("retrieval_test_i2t_r1", "R@1 i2t test", "{:.1f}"), ("retrieval_forget_i2t_r1", "R@1 i2t forget", "{:.1f}"),
    ("clip_mia", "MIA eff.", "{:.1f}"), ("clip_forget_holdout_auc", "F-vs-H AUC", "{:.3f}"),
    ("gap_auc", "AUC gap", "{:.1f}"), ("seconds", "s", "{:.0f}"),
]
MLP_COLUMNS = [
    ("ra", "RA", "{:.1f}"), ("ta", "TA", "{:.1f}"), ("ua", "UA", "{:.1f}"), ("emia", "EMIA", "{:.1f}"),
    ("forget_holdout_auc", "F-vs-H AUC", "{:.3f}"), ("avg_gap", "Avg.Gap", "{:.1f}"),
    ("indist_gap", "Indist.Gap", "{:.1f}"), ("gap_emia", "EMIA gap", "{:.1f}"), ("seconds", "s", "{:.1f}"),
]


def comparisons_text(comp: dict[str, Any]) -> str:
    lines = ["paired differences (a − b per seed, 95 % t-interval):"]
    for c in comp["paired"] + comp["versus_retrain"]:
        low, high = c["ci95"]
        lines.append(f"  {c['a']:<9} − {c['b']:<9} {c['metric']:<24} {c['mean_difference']:+7.1f} "
                     f"[{low:+.1f}, {high:+.1f}]  {c['verdict']}")
    lines.append("gaps to Retrain (mean, 95 % t-interval):")
    for g in comp["gaps"]:
        lines.append(f"  {g['method']:<9} {g['metric']:<24} {g['mean']:7.1f} [{g['ci95'][0]:.1f}, {g['ci95'][1]:.1f}]")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", nargs="+", default=["clip", "mlp"], choices=["clip", "mlp"])
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="evaluation seeds (default 1-5)")
    p.add_argument("--clip-class", type=int, default=7, help="the digit class forgotten in the CLIP setting")
    p.add_argument("--mlp-class", type=int, default=3, help="the digit class forgotten in the MLP setting")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny data, few epochs, 2 seeds")
    p.add_argument("--out", default="benchmarks/results/class_forgetting.json")
    args = p.parse_args(argv)
    import logging
    import warnings

    import torch

    from lightly_unlearn.io import atomic_write_json

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cfg = dict(CLIP_QUICK if args.quick else CLIP_FULL)
    seeds = args.seeds or cfg["seeds"]
    start = time.perf_counter()

    def log(line: str) -> None:
        print(line, flush=True)

    payload: dict[str, Any] = {"command": " ".join(sys.argv), "quick": args.quick, "seeds": seeds,
                               "ac_hyperparameters": AC_HP, "results": {}}

    def save(partial: bool) -> None:
        payload.update(seconds=time.perf_counter() - start, partial=partial,
                       omp_num_threads=os.environ.get("OMP_NUM_THREADS"))
        atomic_write_json(args.out, payload)

    for setting in args.settings:
        t0 = time.perf_counter()
        log(f"== {setting}")
        per_seed = []
        for seed in seeds:
            if setting == "clip":
                per_seed.append(run_clip(seed, cfg, args.clip_class, log))
            else:
                per_seed.append(run_mlp(seed, args.quick, args.mlp_class, log))
            res = {"per_seed": per_seed, "summary": summary(per_seed), "seconds": time.perf_counter() - t0}
            if setting == "clip":
                res["config"] = {**cfg, "forget_class": args.clip_class, "plans": CLIP_PLANS}
            else:
                res["config"] = {"forget": f"class:{args.mlp_class}", "quick": args.quick}
            payload["results"][setting] = res
            save(partial=True)
        comp = comparisons(per_seed, CLIP_COMPARISONS if setting == "clip" else MLP_COMPARISONS)
        payload["results"][setting].update(comp)
        log(table(payload["results"][setting]["summary"], CLIP_COLUMNS if setting == "clip" else MLP_COLUMNS))
        log(comparisons_text(comp))
        log(f"   {setting}: {time.perf_counter() - t0:.0f} s")
    save(partial=False)
    log(f"\nWrote {Path(args.out).resolve()} ({payload['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
