"""Per-example evidence in the U-LiRA style (Hayes et al., arXiv 2403.01218), MLP setting.

The benchmark's forget-vs-holdout AUC is a population score: one threshold for every sample. LiRA
(Carlini et al., arXiv 2112.03570) calibrates per example — an example that is simply easy to
align scores high as a non-member too — and judges a test by its true-positive rate at a low
false-positive rate. U-LiRA applies it to unlearning: is *this* example's score under the
unlearned model more like its score under models that were trained on it and then unlearned it,
or under models retrained without it?

Shadow pairs, all in the demo's MLP setting (200 training digits, 20 forgotten, 300 epochs; the
benchmark's chosen configuration of every method, read from ``--chosen-from``):

* a fixed pool of ``T`` (40) target digits and a pool of 400 other digits;
* shadow run ``s``: ``F_s`` = a random half of the targets, ``D_s`` = 180 random digits of the
  other pool ∪ ``F_s``. Pretrain on ``D_s``; Retrain on ``D_s \\ F_s``; each method unlearns
  ``F_s`` from the pretrained weights. No target outside ``F_s`` is ever trained on.
* score of a target under a model: the SPEC §4 alignment score (K = 10 seeded views, the same
  views in every run, projection-head outputs as the benchmark's audits read in this setting).

Observations per target ``x``: IN (method M) = its score under M's model in the runs where
``x ∈ F_s`` (about half of them); OUT = its score under Retrain in every run (Retrain never sees
a target). Trials, leave-one-run-out: in run ``s``, positives are M's scores of ``F_s`` and
negatives are Retrain's scores of all targets; each is scored with statistics fitted on the other
runs only:

* ``online`` (U-LiRA): ``log N(score; μ_in(x), σ_in²) − log N(score; μ_out(x), σ_out²)`` with
  per-example means and pooled (global) variances — LiRA's fixed-variance variant for few
  shadow models;
* ``offline``: ``(score − μ_out(x)) / σ_out`` (Retrain shadows only, no unlearning shadow);
* ``population``: the raw score, one threshold for all (what the benchmark's AUC measures).

Each test also runs on *relative* scores (``…/relative``): a model's target scores minus its mean
score on the targets its run never trained on. The raw tests can separate an unlearned model from
Retrain through a shift of every sample's alignment (the model is simply different, e.g. trained
longer); the relative ones only through the forgotten targets standing out from never-seen ones.

Reported per method: AUC and TPR at 1 % / 5 % FPR (percent; a cluster bootstrap over runs gives
the 95 % interval of TPR at 1 % FPR). A method indistinguishable from Retrain sits at
TPR ≈ FPR. TPR at 0.1 % FPR needs at least 1 000 negative trials; with fewer it is not
resolvable and is reported as ``null``.

    OMP_NUM_THREADS=1 python benchmarks/ulira.py --runs 12 --out benchmarks/results/ulira_mlp.json
    python benchmarks/ulira.py --quick      # smoke run
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from lightly_unlearn.adapters import head_embed_fn
from lightly_unlearn.audits.alignment import alignment_scores
from lightly_unlearn.audits.features import extract_features
from lightly_unlearn.audits.membership import roc_auc, tpr_at_fpr
from lightly_unlearn.demo.data import load_digits_dataset
from lightly_unlearn.demo.experiment import Experiment, Setting, setting_dict

_spec = importlib.util.spec_from_file_location("bench_unlearning", Path(__file__).with_name("unlearning.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

#: The tests compared (see the module docstring).
KINDS = ("online", "offline", "population")
#: Low false-positive rates reported (percent).
FPRS = (1.0, 5.0, 0.1)


class ShadowExperiment(Experiment):
    """The benchmark's pretrain / unlearn protocol on a given training set, without the audits:
    the trained model is kept for scoring instead."""

    def __init__(self, setting: Setting, data: Any, train: list[int], forget: list[int]) -> None:
        super().__init__(setting, progress=lambda _: None)
        self.train = Subset(data, train)
        self.forget = forget  # positions in ``train``
        self.holdout = Subset(data, train[:2])  # unused by fixed-epoch runs
        self.n_retain = len(train) - len(forget)
        self.last_model: torch.nn.Module | None = None

    def audit(self, model: torch.nn.Module) -> dict:
        self.last_model = model
        return {}


def target_scores(model: torch.nn.Module, exp: Experiment, data: Any, targets: list[int],
                  num_views: int) -> np.ndarray:
    """Alignment score of every target, from the same seeded views in every run."""
    feats = extract_features(head_embed_fn(model), data, keys=targets, view_transform=exp.datamodule().view_transform,
                             num_views=num_views, seed=0, split="target", module=model)
    return alignment_scores(feats.views).numpy()


def shadow_run(s: int, data: Any, targets: list[int], others: list[int], methods: dict, base: Setting,
               log) -> dict[str, Any]:
    """One shadow run: which targets were forgotten, and every model's target scores."""
    rng = np.random.default_rng(10_000 + s)
    n_forget = round(base.forget_fraction * base.n_train)
    forgotten = sorted(rng.choice(len(targets), n_forget, replace=False).tolist())
    base_ids = rng.choice(others, base.n_train - n_forget, replace=False).tolist()
    train = base_ids + [targets[i] for i in forgotten]
    exp = ShadowExperiment(Setting(**{**base.__dict__, "seed": s}), data, train,
                           list(range(len(base_ids), len(train))))
    t0 = time.perf_counter()
    scores = {}
    exp.pretrain()
    scores["original"] = target_scores(exp.last_model, exp, data, targets, base.num_views)
    for name, (method, hp, epochs) in {"retrain": ("retrain", {}, None), **methods}.items():
        exp.unlearn(method, hp, epochs)
        scores[name] = target_scores(exp.last_model, exp, data, targets, base.num_views)
    log(f"    shadow run {s}: {time.perf_counter() - t0:.0f} s")
    return {"forgotten": forgotten, "scores": {k: v.tolist() for k, v in scores.items()},
            "seconds": time.perf_counter() - t0}


def statistic(kind: str, x: np.ndarray, mu_in: np.ndarray, sd_in: float, mu_out: np.ndarray,
              sd_out: float) -> np.ndarray:
    """The test statistic of scores ``x`` of targets with fitted ``mu_in`` / ``mu_out`` (higher:
    more like a model that trained on the target and unlearned it)."""
    if kind == "population":
        return x
    if kind == "offline":
        return (x - mu_out) / sd_out
    mu = np.where(np.isnan(mu_in), mu_out, mu_in)  # a target never seen IN elsewhere: no evidence
    return (-0.5 * ((x - mu) / sd_in) ** 2 - np.log(sd_in)) - (-0.5 * ((x - mu_out) / sd_out) ** 2 - np.log(sd_out))


def trials(runs: list[dict], method: str, kind: str, relative: bool = False
           ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per run: the statistics of its positive and negative trials, fitted leave-one-run-out.

    ``relative``: each model's scores minus its mean score on the targets its run never trained
    on (the same targets for the method's model and Retrain's), so a shift of every sample's
    alignment — the model, not the example — cannot separate the trials."""
    S = len(runs)
    n_targets = len(runs[0]["scores"]["retrain"])
    score = {m: np.array([r["scores"][m] for r in runs]) for m in (method, "retrain")}  # (S, T)
    member = np.zeros((S, n_targets), dtype=bool)
    for s, r in enumerate(runs):
        member[s, r["forgotten"]] = True
    if relative:
        for m in score:
            score[m] = score[m] - np.array([row[~mask].mean() for row, mask in zip(score[m], member)])[:, None]
    pos, neg = [], []
    for s in range(S):
        rest = np.arange(S) != s
        out = score["retrain"][rest]  # every other run, every target: never trained on
        mu_out = out.mean(0)
        sd_out = float((out - mu_out).std()) + 1e-12
        inn, inn_mask = score[method][rest], member[rest]
        counts = inn_mask.sum(0)
        mu_in = np.where(counts > 0, (inn * inn_mask).sum(0) / np.maximum(counts, 1), np.nan)
        sd_in = float((inn - mu_in)[inn_mask].std()) + 1e-12
        idx = np.flatnonzero(member[s])
        pos.append(statistic(kind, score[method][s][idx], mu_in[idx], sd_in, mu_out[idx], sd_out))
        neg.append(statistic(kind, score["retrain"][s], mu_in, sd_in, mu_out, sd_out))
    return pos, neg


def evaluate(runs: list[dict], method: str, kind: str, relative: bool = False, bootstrap: int = 1000
             ) -> dict[str, Any]:
    pos, neg = trials(runs, method, kind, relative)
    p, n = np.concatenate(pos), np.concatenate(neg)
    out: dict[str, Any] = {"auc": roc_auc(p, n), "positives": len(p), "negatives": len(n)}
    for fpr in FPRS:
        out[f"tpr_at_{fpr:g}pct_fpr".replace(".", "_")] = tpr_at_fpr(p, n, fpr)
    rng = np.random.default_rng(0)
    boot = []
    for _ in range(bootstrap):  # runs are the independent units: resample them
        idx = rng.integers(0, len(runs), len(runs))
        value = tpr_at_fpr(np.concatenate([pos[i] for i in idx]), np.concatenate([neg[i] for i in idx]), 1.0)
        if value is not None:
            boot.append(value)
    out["tpr_at_1pct_fpr_ci95"] = [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))] if boot else None
    return out


def markdown(payload: dict[str, Any]) -> str:
    """One row per model and test: AUC, TPR at 1 % FPR (95 % bootstrap interval over runs), 5 %."""
    first = next(iter(payload["results"].values()))
    trials = next(iter(first.values()))
    out = [f"{len(payload['runs'])} shadow runs, {len(payload['targets'])} targets: "
           f"{trials['positives']} positive and {trials['negatives']} negative trials per model; TPR "
           "in percent (0.1 % FPR needs 1 000 negatives: not resolvable here).", "",
           "| model | test | AUC | TPR @ 1 % FPR | 95 % interval | TPR @ 5 % FPR |", "|---|---|---|---|---|---|"]
    for name, kinds in payload["results"].items():
        for kind, r in kinds.items():
            ci = r["tpr_at_1pct_fpr_ci95"]
            ci_text = f"[{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "–"
            tpr = "–" if r["tpr_at_1pct_fpr"] is None else f"{r['tpr_at_1pct_fpr']:.1f}"
            out.append(f"| {name} | {kind} | {r['auc']:.3f} | {tpr} | {ci_text} | {r['tpr_at_5pct_fpr']:.1f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["simclr", "moco"], default="simclr")
    p.add_argument("--runs", type=int, default=12, help="shadow runs (pairs of pretraining and Retrain)")
    p.add_argument("--targets", type=int, default=40)
    p.add_argument("--chosen-from", default="benchmarks/results/unlearning_mlp.json",
                   help="the benchmark run whose chosen configuration of each method is run")
    p.add_argument("--quick", action="store_true", help="3 runs of 20 pretraining epochs")
    p.add_argument("--out", default="benchmarks/results/ulira_mlp.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    def log(line: str) -> None:
        print(line, flush=True)

    base = Setting(model=args.model, forget="random", forget_fraction=0.1)
    chosen = bench.chosen_configurations(args.chosen_from, setting_dict(base), args.model, "random:0.1", bench.GRIDS)
    methods = {m: (m, hp, epochs) for m, (hp, epochs, _) in chosen.items()}
    if args.quick:
        args.runs = 3
        base = Setting(**{**base.__dict__, "pretrain_epochs": 20})
    data = load_digits_dataset()
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(12345)).tolist()
    targets, others = order[: args.targets], order[args.targets : args.targets + 400]
    start = time.perf_counter()
    runs = [shadow_run(s, data, targets, others, methods, base, log) for s in range(args.runs)]
    names = ["original", *methods]
    results = {name: {f"{kind}{'/relative' if rel else ''}": evaluate(runs, name, kind, rel)
                      for rel in (False, True) for kind in KINDS} for name in names}
    log(f"{'method':<16} {'test':<20} {'AUC':>5} {'TPR@1%':>7} {'95 % CI':>15} {'TPR@5%':>7}")
    for name, kinds in results.items():
        for kind, r in kinds.items():
            ci = r["tpr_at_1pct_fpr_ci95"]
            ci_text = f"[{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "-"
            tpr1 = r["tpr_at_1pct_fpr"]
            log(f"{name:<16} {kind:<20} {r['auc']:5.3f} {'-' if tpr1 is None else f'{tpr1:.1f}':>7} "
                f"{ci_text:>15} {r['tpr_at_5pct_fpr']:7.1f}")
    payload = {"setting": setting_dict(base), "methods": {k: [m, hp, e] for k, (m, hp, e) in methods.items()},
               "targets": targets, "runs": runs, "results": results}
    return bench.save_run(payload, args.out, start, log)


if __name__ == "__main__":
    sys.exit(main())
