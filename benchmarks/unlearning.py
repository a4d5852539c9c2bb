"""The full unlearning benchmark: every method against Retrain, tuned alike, over seeds.

Two settings (``--setting``):

* ``mlp`` — the demo's embedded setting: 200 8x8 digits, MLP, Adam, one full batch per epoch;
  forget sets {10 % random, 50 % random, one class}. Unlearning uses the pretraining optimizer.
* ``cnn`` — where users train: the digits at 16 px RGB through lightly's ``SimCLRTransform`` /
  ``MoCoV2Transform``, a BatchNorm CNN with lightly's projection heads, SGD lr 0.06, batch 50
  (3-4 steps per epoch), 300 epochs; 10 % random forget. Unlearning uses the same SGD at 10x
  lower lr (0.006), the regime recommended to users.

Protocol, per (setting, model, forget set):

1. *Tuning* seeds: pretrain, Retrain, and run each method's grid from the pretrained weights.
   Every method gets the same number of configurations, all within 10 % of the pretraining
   epochs. The configuration with the smallest mean ``Avg.Gap + Indist.Gap`` to Retrain wins,
   plus ``Relearn.Gap`` when the relearning test runs (the default): a configuration whose
   forgetting does not survive retain-only training is not close to Retrain. ``--chosen-from``
   takes the configurations of a finished run instead (the same choice under a second attack
   strength).
2. *Evaluation* seeds (disjoint from the tuning seeds): pretrain, Retrain, each method's chosen
   configuration, and the calibrated mode of every method (or of ``--calibrated`` ones;
   ``<method>+stop``: the chosen
   hyper-parameters for at most 10 % of the pretraining epochs, stopped by
   ``HoldoutAlignmentStopping``). Reports mean ± std of every column, the cost relative to Retrain,
   and the headline paired comparison: per evaluation seed, AC's gap minus the best baseline's
   (the non-AC row with the smallest mean gap), with a 95 % t-interval over seeds. "AC leads" /
   "AC trails" is said only when the interval excludes zero.

Every evaluated row (the original, Retrain, each method and its ``+stop`` mode) also gets the
**relearning test** (``lightly_unlearn.relearn``): a copy trains ``--relearn-epochs`` epochs
(default 10 % of the pretraining epochs) on the retain set only, at ``--relearn-lr`` (the
unlearning lr by default, or the pretraining lr: the stronger attack), and its forget-vs-holdout
AUC is measured again. Columns: the relearned AUC, ``Relearn.Gap`` = ``|relearned AUC -
Retrain's relearned AUC| * 100``, the share of seeds where membership came back beyond the
test's own interval *and* beyond Retrain's relearned level (paired bootstrap on the same
samples), and per method the relearned AUC minus Retrain's with a 95 % t-interval over seeds.
Beside every forget-vs-holdout AUC: TPR at 1 % FPR (Retrain's value is the reference; 0.1 %
needs 1000 holdout samples, more than either setting has).

Pretrained models and Retrain rows (with Retrain's weights, for the relearning test) can be
cached (``--cache``) so methods can be added later against the very same references, and runs
merged: ``--combine`` for runs of the same seeds that ran different methods, ``--merge-seeds`` for
runs that evaluated different seeds with the same configurations (e.g. the candidate methods on
more seeds than the rest); every row and comparison then says over how many seeds it was taken.

    python benchmarks/unlearning.py --setting mlp             # MLP: 3 forget sets, 3 + 5 seeds
    python benchmarks/unlearning.py --setting cnn --models simclr --out results.json
    python benchmarks/unlearning.py --quick                    # smoke run, seconds
    python benchmarks/unlearning.py --setting cnn --quick      # the CNN setting's smoke run
    python benchmarks/unlearning.py --setting cnn --relearn-lr pretrain \
        --chosen-from benchmarks/results/relearn_cnn_simclr.json   # the stronger attack, same choice
    python benchmarks/unlearning.py --combine a.json b.json --out merged.json
    python benchmarks/unlearning.py --merge-seeds seeds12.json seeds345.json --out merged.json
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lightly_unlearn.demo.experiment import (
    Experiment,
    Setting,
    cnn_setting,
    setting_dict,
    summarise,
)
from lightly_unlearn.demo.report import aggregate, table
from lightly_unlearn.io import atomic_write_json

#: Six configurations per method, all ≤ 30 epochs (10 % of the 300 pretraining epochs).
GRIDS: dict[str, list[tuple[dict[str, Any], int]]] = {
    "finetune": [({}, e) for e in (6, 9, 15, 20, 25, 30)],
    "gradient_ascent": [({}, e) for e in (1, 2, 3, 4, 6, 9)],
    "neggrad": [({"lam": lam}, e) for lam, e in itertools.product((0.5, 1.0), (6, 9, 15))],
    "l1_sparse": [({"lam": lam}, e) for lam, e in itertools.product((5e-5, 5e-4), (6, 9, 15))],
    "ac": [({"alpha": 1.0, "beta": b}, e) for b, e in itertools.product((1.0, 4.0, 16.0), (9, 15))],
    # stages=2 is the whole MLP backbone: a retrain on 10 % of Retrain's budget
    "partial_reinit": [({"stages": k}, e) for k, e in itertools.product((0, 1, 2), (15, 30))],
    "weight_distortion": [({"std": s}, e) for s, e in itertools.product((0.05, 0.1, 0.2), (15, 30))],
    "weight_distance": [({"alpha": a}, e) for a, e in itertools.product((1e2, 1e3, 1e4), (15, 30))],
}

#: The CNN setting: three configurations per method, all ≤ 30 epochs (10 % of 300) at the
#: unlearning lr. Retain-data methods take 3 steps per epoch, gradient ascent one (20 forget samples).
CNN_GRIDS: dict[str, list[tuple[dict[str, Any], int]]] = {
    "finetune": [({}, e) for e in (10, 20, 30)],
    "gradient_ascent": [({}, e) for e in (3, 10, 20)],
    "neggrad": [({"lam": 1.0}, 5), ({"lam": 1.0}, 15), ({"lam": 0.5}, 15)],
    "l1_sparse": [({"lam": 5e-5}, 10), ({"lam": 5e-5}, 30), ({"lam": 5e-4}, 30)],
    "ac": [({"alpha": 1.0, "beta": b}, 10) for b in (0.0, 1.0, 4.0)],
    # stages=4 is the whole backbone: a retrain on 10 % of Retrain's budget, at the unlearning lr
    "partial_reinit": [({"stages": k}, 30) for k in (1, 2, 4)],
    "weight_distortion": [({"std": s}, 30) for s in (0.05, 0.1, 0.2)],
    "weight_distance": [({"alpha": a}, 30) for a in (1e3, 1e4, 1e5)],
}

#: Per setting: the base Setting, grids, forget sets, tuning and evaluation seeds.
SETTINGS: dict[str, dict[str, Any]] = {
    "mlp": {"base": Setting, "grids": GRIDS, "forgets": ["random:0.1", "random:0.5", "class:3"],
            "tune_seeds": [0, 1, 2], "eval_seeds": [3, 4, 5, 6, 7]},
    "cnn": {"base": cnn_setting, "grids": CNN_GRIDS, "forgets": ["random:0.1"],
            "tune_seeds": [0], "eval_seeds": [1, 2, 3, 4, 5], "check_every": 3},
}

#: Rows that are references, not unlearning methods.
REFERENCES = ("original", "retrain")

#: Variants of a method run on the evaluation seeds for the method's chosen epochs with its
#: chosen hyper-parameters updated by these (e.g. the default beta against the tuned one),
#: compared paired per seed with the plain method, its ``+stop`` mode and the best baseline.
#: (AC's ``calibration='matched'`` was measured this way, for 10 % of the pretraining epochs, at
#: commit f68e858 before it was dropped: ``benchmarks/results/variants/matched_*.json``.)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    **{f"ac:beta{b:g}": ("ac", {"beta": float(b)}) for b in (0, 1, 4, 8, 16)},
    # which encoder embeds positive calibration's extra own view (MoCo: query or momentum)
    **{f"ac:{e}": ("ac", {"extra_encoder": e}) for e in ("online", "momentum")},
    **{f"ac:{e}:beta{b:g}": ("ac", {"extra_encoder": e, "beta": float(b)})
       for e in ("online", "momentum") for b in (1, 4, 8, 16)},
}


def metric_value(row: dict, metric: str) -> float:
    """A row's metric; ``"score"`` is the tuning score (:func:`score`)."""
    return score(row) if metric == "score" else float(row[metric])


def check_references(old: list[dict], new: list[dict], what: str) -> None:
    """Runs merged into one table must share their references (the same ``--cache``)."""
    before = {r["method"]: r for r in old if r["method"] in REFERENCES}
    after = {r["method"]: r for r in new if r["method"] in REFERENCES}
    for name in REFERENCES:
        if abs(before[name]["forget_holdout_auc"] - after[name]["forget_holdout_auc"]) > 1e-9:
            raise SystemExit(f"{what}: the {name} rows differ; the runs must share --cache.")


def family(name: str) -> str:
    """``ac:beta4+stop`` -> ``ac``: the method a row belongs to."""
    return name.split("+")[0].split(":")[0]


def score(row: dict[str, Any]) -> float:
    """What tuning minimises: the headline gap plus the overshoot-catching gap, plus the relearned
    gap where the relearning test ran (membership that comes back is not forgetting)."""
    return float(row["avg_gap"] + row["indist_gap"] + row.get("relearn_gap", 0.0))


def parse_forget(spec: str) -> dict[str, Any]:
    if spec.startswith("random:"):
        return {"forget": "random", "forget_fraction": float(spec.split(":", 1)[1])}
    if spec.startswith("class:"):
        return {"forget": spec}
    raise SystemExit(f"--forgets takes 'random:<fraction>' or 'class:<digit>'; got {spec!r}")


def relearn_options(base: Setting, relearn: dict[str, Any] | None) -> dict[str, Any]:
    """``Experiment`` keywords of the relearning test: epochs (``None``: 10 % of the pretraining
    epochs; 0: no test) and lr (``"unlearn"``: the unlearning lr, ``"pretrain"``: the
    pretraining lr, or a number)."""
    if not relearn:
        return {}
    epochs = relearn.get("epochs")
    epochs = max(1, round(0.1 * base.pretrain_epochs)) if epochs is None else int(epochs)
    lr = relearn.get("lr", "unlearn")
    lr = {"unlearn": base.unlearn_lr or base.lr, "pretrain": base.lr}.get(lr, lr)
    return {"relearn_epochs": epochs, "relearn_lr": float(lr)}


def _experiment(base: Setting, seed: int, cache: str | None, relearn: dict[str, Any] | None = None) -> Experiment:
    return Experiment(Setting(**{**base.__dict__, "seed": seed}), progress=lambda _: None, cache_dir=cache,
                      **relearn_options(base, relearn))


def tune(base: Setting, seeds: list[int], grids: dict, log, cache: str | None = None,
         relearn: dict | None = None) -> dict[str, tuple[dict, int, float]]:
    """Best configuration per method over the tuning seeds: ``{method: (hp, epochs, score)}``.

    Every configuration gets the relearning test ``relearn`` (if any), so its gap counts in the
    score. A one-configuration grid is taken as is (nothing to tune, nothing run)."""
    best = {m: (g[0][0], g[0][1], math.nan) for m, g in grids.items() if len(g) == 1}
    to_tune = {m: g for m, g in grids.items() if len(g) > 1}
    if not to_tune:
        return best
    scores: dict[tuple[str, int], list[float]] = {}
    for seed in seeds:
        exp = _experiment(base, seed, cache, relearn)
        retrain_runs = [exp.pretrain(), exp.unlearn("retrain")]
        for method, grid in to_tune.items():
            for i, (hp, epochs) in enumerate(grid):
                rows = summarise([*retrain_runs, exp.unlearn(method, hp, epochs)])
                scores.setdefault((method, i), []).append(score(rows[-1]))
        log(f"    tuned on seed {seed}")
    for method, grid in to_tune.items():
        means = [np.mean(scores[(method, i)]) for i in range(len(grid))]
        i = int(np.argmin(means))
        best[method] = (grid[i][0], grid[i][1], float(means[i]))
        log(f"    {method:<16} best {grid[i][0]} {grid[i][1]} epochs (score {means[i]:.1f}; "
            f"grid {', '.join(f'{m:.1f}' for m in means)})")
    return {m: best[m] for m in grids}


def evaluate(base: Setting, seeds: list[int], best: dict, log, cache: str | None = None,
             calibrated: bool | list[str] = True, on_seed=None, check_every: int = 1,
             relearn: dict | None = None) -> tuple[list[dict], list[list[dict]]]:
    """Pretrain, Retrain, each chosen configuration and (``calibrated``: all, or these methods)
    its ``+stop`` mode, per seed.

    The calibrated mode runs the chosen hyper-parameters for at most 10 % of the pretraining
    epochs, stopped by ``HoldoutAlignmentStopping`` (checked every ``check_every`` epochs: each check
    embeds 2 x 128 samples x 4 views, which costs as much as an epoch in the CNN setting)."""
    per_seed = []
    max_epochs = max(1, round(0.1 * base.pretrain_epochs))
    for seed in seeds:
        exp = _experiment(base, seed, cache, relearn)
        runs = [exp.pretrain(), exp.unlearn("retrain")]
        runs += [exp.unlearn(m, hp, epochs) for m, (hp, epochs, _) in best.items()]
        if calibrated:
            runs += [exp.unlearn(m, hp, max_epochs, calibrated=True, check_every=check_every)
                     for m, (hp, _, _) in best.items() if calibrated is True or m in calibrated]
        per_seed.append(summarise(runs))
        log(f"    evaluated seed {seed}")
        if on_seed is not None:
            on_seed(per_seed)
    return aggregate(per_seed), per_seed


def chosen_configurations(path: str, setting: dict, model: str, forget: str, grids: dict
                          ) -> dict[str, tuple[dict, int, float]]:
    """The configurations a finished run chose for this setting, model and forget set (methods
    of ``grids`` only): ``{method: (hp, epochs, tuning score)}``."""
    import json

    payload = json.loads(Path(path).read_text())
    for res in payload["results"]:
        if res["setting"] == json.loads(json.dumps(setting)) and (res["model"], res["forget"]) == (model, forget):
            return {m: (c["hyperparameters"], c["epochs"], c["tuning_score"])
                    for m, c in res["chosen"].items() if m in grids}
    raise SystemExit(f"--chosen-from: {path} has no result for {model}, forget {forget} with this "
                     "setting; pass the run of the same --setting (and --pretrain-epochs).")


def save_run(payload: dict[str, Any], out: str, start: float, log) -> int:
    """Add the wall time since ``start`` and the command line to a benchmark's ``payload``, write
    it atomically to ``out`` and say so; the exit status."""
    payload.update(seconds=time.perf_counter() - start, command=" ".join(sys.argv))
    atomic_write_json(out, payload)
    log(f"Wrote {out} ({payload['seconds']:.0f} s)")
    return 0


def t_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t interval of the mean (NaN bounds with fewer than 2 values)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def verdict(low: float, high: float) -> str:
    """Lower gaps are better: the interval of AC − baseline must exclude zero to say who leads."""
    if high < 0:
        return "AC leads"
    if low > 0:
        return "AC trails"
    return "no significant difference"


def _by_seed(per_seed: list[list[dict]]) -> list[dict[str, dict]]:
    """Each seed's rows by method name."""
    return [{r["method"]: r for r in rows} for rows in per_seed]


def _names(by_seed: list[dict[str, dict]]) -> list[str]:
    """Every row name, in the order rows first appear (merged runs may lack a row on some seeds)."""
    return list(dict.fromkeys(n for rows in by_seed for n in rows))


def _shared(by_seed: list[dict[str, dict]], *names: str) -> list[dict[str, dict]]:
    """The seeds that have all of ``names``: comparisons are paired on these only."""
    return [rows for rows in by_seed if all(n in rows for n in names)]


def _difference(by_seed: list[dict[str, dict]], a: str, b: str, metric: str) -> dict[str, Any]:
    """``a − b`` per shared seed, with its mean and 95 % t-interval."""
    diffs = [metric_value(rows[a], metric) - metric_value(rows[b], metric) for rows in _shared(by_seed, a, b)]
    mean, low, high = t_interval(diffs)
    return {"differences": diffs, "mean_difference": mean, "ci95": [low, high], "seeds": len(diffs)}


def paired(per_seed: list[list[dict]], metrics: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """AC (fixed and ``+stop``) against the best baseline, paired per seed, per metric.

    The best baseline is the non-AC method row (calibrated or not) with the smallest mean of the
    metric over the evaluation seeds it shares with the AC row; the difference AC − baseline is
    taken seed by seed on those seeds (``seeds`` says how many), and its 95 % Student-t interval
    decides the verdict. Metrics: the gaps to Retrain and the tuning score, and the relearned gap
    where the relearning test ran."""
    by_seed = _by_seed(per_seed)
    metrics = metrics or headline_metrics(per_seed)
    names = _names(by_seed)
    acs = [n for n in names if family(n) == "ac"]
    baselines = [n for n in names if n not in REFERENCES and family(n) != "ac"]
    out = []
    for metric, ac in itertools.product(metrics, acs):
        shared = [n for n in baselines if _shared(by_seed, ac, n)]
        if not shared:
            break
        best = min(shared, key=lambda n: np.mean([metric_value(rows[n], metric) for rows in _shared(by_seed, ac, n)]))
        c = _difference(by_seed, ac, best, metric)
        out.append({"metric": metric, "ac": ac, "baseline": best, **c, "verdict": verdict(*c["ci95"])})
    # a variant against the plain method and its calibrated mode: does the option earn its place?
    for metric, variant in itertools.product(metrics, [n for n in acs if ":" in n]):
        for parent in (family(variant), family(variant) + "+stop"):
            if parent not in names or not _shared(by_seed, variant, parent):
                continue
            c = _difference(by_seed, variant, parent, metric)
            out.append({"metric": metric, "ac": variant, "baseline": parent, **c,
                        "verdict": verdict(*c["ci95"]).replace("AC", variant)})
    return out


def pair_rows(per_seed: list[list[dict]], a: str, b: str,
              metrics: tuple[str, ...] = ("avg_gap", "indist_gap", "score")) -> list[dict[str, Any]]:
    """Row ``a`` against row ``b`` (e.g. two variants), paired per seed, per metric: ``a − b``
    with its 95 % t-interval; lower gaps are better."""
    by_seed = _by_seed(per_seed)
    out = []
    for metric in metrics:
        c = _difference(by_seed, a, b, metric)
        out.append({"metric": metric, "ac": a, "baseline": b, **c, "verdict": verdict(*c["ci95"]).replace("AC", a)})
    return out


def headline_metrics(per_seed: list[list[dict]]) -> tuple[str, ...]:
    """The gaps compared between methods: Avg.Gap, Indist.Gap and the tuning score, plus the
    relearned gap when every row of every seed has one."""
    relearned = all("relearn_gap" in r for rows in per_seed for r in rows)
    return ("avg_gap", "indist_gap", "score", *(("relearn_gap",) if relearned else ()))


def versus_retrain(per_seed: list[list[dict]], metric: str = "relearn_forget_holdout_auc") -> list[dict[str, Any]]:
    """Every row's ``metric`` minus Retrain's, paired per seed (the seeds that have both rows;
    ``seeds`` says how many), with a 95 % t-interval over seeds: for the relearned AUC, whether
    membership came back beyond what Retrain shows under the same test ("above Retrain") or not.
    Empty when the metric was not measured."""
    by_seed = [{n: r for n, r in rows.items() if metric in r} for rows in _by_seed(per_seed)]
    out = []
    for name in [n for n in _names(by_seed) if n != "retrain"]:
        shared = _shared(by_seed, name, "retrain")
        if not shared:
            continue
        c = _difference(shared, name, "retrain", metric)
        low, high = c["ci95"]
        word = "above Retrain" if low > 0 else "below Retrain" if high < 0 else "within noise of Retrain"
        if c["seeds"] < MIN_SEEDS_TO_JUDGE:
            word = f"not judged ({c['seeds']} seeds)"
        out.append({"metric": metric, "method": name, **c, "verdict": word,
                    "relearned_seeds": sum(rows[name].get("relearned_beyond_retrain", 0.0) for rows in shared)})
    return out


def configurations(per_seed: list[list[dict]], family_name: str = "ac",
                   metrics: tuple[str, ...] = ("avg_gap", "indist_gap", "score")) -> list[dict[str, Any]]:
    """Every fixed-epoch configuration of one method (its chosen row and its ``<name>:<variant>``
    rows, not ``+stop``) against the best of them, per metric, paired per seed: is a given
    configuration (e.g. the default beta) the best or within noise of the best in this setting?"""
    by_seed = _by_seed(per_seed)
    names, seen = [], []
    for n in _names(by_seed):  # a variant equal to the chosen configuration is the same configuration
        if family(n) == family_name and "+" not in n:
            hp = next(rows[n] for rows in by_seed if n in rows)["hyperparameters"]
            if hp not in seen:
                names.append(n)
                seen.append(hp)
    out = []
    for metric in metrics if len(names) > 1 else ():
        best = min(names, key=lambda n: np.mean([metric_value(rows[n], metric) for rows in by_seed if n in rows]))
        for name in names:
            c = _difference(by_seed, name, best, metric)
            low = c["ci95"][0]
            out.append({"metric": metric, "configuration": name,
                        "hyperparameters": next(rows[name] for rows in by_seed if name in rows)["hyperparameters"],
                        "best": best, "seeds": c["seeds"],
                        "mean": float(np.mean([metric_value(rows[name], metric) for rows in by_seed if name in rows])),
                        "mean_difference": c["mean_difference"], "ci95": c["ci95"],
                        "verdict": "best" if name == best else
                        ("within noise of the best" if not low > 0 else "worse than the best")})
    return out


def paired_text(comparisons: list[dict[str, Any]]) -> str:
    lines = []
    for c in comparisons:
        low, high = c["ci95"]
        lines.append(f"  {c['metric']:<10} {c['ac']:<10} − {c['baseline']:<22} {c['mean_difference']:+6.1f} "
                     f"[{low:+.1f}, {high:+.1f}] over {c['seeds']} seeds: {c['verdict']}")
    return "\n".join(lines)


def finish(result: dict[str, Any]) -> dict[str, Any]:
    """Summary rows and paired comparisons from a result's per-seed rows."""
    result["summary"] = aggregate(result["per_seed"])
    result["paired"] = paired(result["per_seed"])
    result["configurations"] = configurations(result["per_seed"])
    result["relearn_vs_retrain"] = versus_retrain(result["per_seed"])
    return result


def combine(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge runs of the same settings and seeds that ran different methods (sharing a cache).

    Per (setting, model, forget) and seed, rows of methods not yet present are appended; the
    references (original, Retrain) must agree, which holds when the runs shared ``--cache``."""
    merged = {**payloads[0], "results": [dict(r) for r in payloads[0]["results"]]}
    index = {(r["setting"]["arch"], r["model"], r["forget"]): r for r in merged["results"]}
    for payload in payloads[1:]:
        if payload["eval_seeds"] != merged["eval_seeds"]:
            raise SystemExit("--combine: the runs used different evaluation seeds; rerun with the same seeds.")
        for res in payload["results"]:
            key = (res["setting"]["arch"], res["model"], res["forget"])
            if key not in index:
                merged["results"].append(dict(res))
                index[key] = merged["results"][-1]
                continue
            into = index[key]
            into["chosen"] = {**into["chosen"], **res["chosen"]}
            seeds = []
            for old, new in zip(into["per_seed"], res["per_seed"]):
                check_references(old, new, "--combine")
                have = {r["method"] for r in old}
                seeds.append(old + [r for r in new if r["method"] not in have])
            into["per_seed"] = seeds
            into["seconds"] = into.get("seconds", 0.0) + res.get("seconds", 0.0)
    for res in merged["results"]:
        finish(res)
    merged["seconds"] = sum(p["seconds"] for p in payloads)
    merged["command"] = " ; ".join(p["command"] for p in payloads)
    return merged


def _result_key(res: dict[str, Any]) -> tuple[str, str, str]:
    import json

    return json.dumps(res["setting"], sort_keys=True), res["model"], res["forget"]


def merge_seeds(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge runs that evaluated different seeds of the same setting, model and forget set with
    the same configurations (e.g. a run continued on more seeds for some methods only).

    Per (setting, model, forget), the per-seed rows of every run are pooled by seed; the summary,
    the paired comparisons and the relearned-AUC intervals against Retrain are recomputed from
    the pooled rows, each over the seeds that have it (``seeds`` in every summary row and
    comparison). Refused: runs with another relearning test, a method whose configuration differs
    between runs, and a seed that two runs evaluated with references or rows that differ (the
    same seed twice is allowed only with identical rows, e.g. when the runs shared ``--cache``).
    Partial runs (``"partial": true``) may be merged; the result is then partial too."""
    first = payloads[0]
    for payload in payloads[1:]:
        if payload.get("relearn") != first.get("relearn"):
            raise SystemExit(f"--merge-seeds: the runs used different relearning tests ({first.get('relearn')} "
                             f"vs {payload.get('relearn')}); merge only runs of the same attack.")
    merged: dict[tuple, dict[str, Any]] = {}
    seeds_of: dict[tuple, dict[int, dict[str, dict]]] = {}
    for payload in payloads:
        for res in payload["results"]:
            key = _result_key(res)
            into = merged.setdefault(key, {"setting": res["setting"], "model": res["model"],
                                           "forget": res["forget"], "chosen": {}, "seconds": 0.0})
            for method, choice in res["chosen"].items():
                known = into["chosen"].get(method)
                if known is not None and (known["hyperparameters"], known["epochs"]) != (
                        choice["hyperparameters"], choice["epochs"]):
                    raise SystemExit(f"--merge-seeds: {method} ran with different configurations "
                                     f"({known} vs {choice}); rerun with --chosen-from the same file.")
                into["chosen"].setdefault(method, choice)
            into["seconds"] += res.get("seconds", 0.0)
            pooled = seeds_of.setdefault(key, {})
            for seed, rows in zip(res.get("eval_seeds", payload["eval_seeds"]), res["per_seed"]):
                have = pooled.setdefault(seed, {})
                if have:
                    check_references(list(have.values()), rows, f"--merge-seeds (seed {seed})")
                for row in rows:
                    if row["method"] in have and row["method"] not in REFERENCES and row != have[row["method"]]:
                        raise SystemExit(f"--merge-seeds: seed {seed} of {row['method']} is in two runs with "
                                         "different rows; merge runs of disjoint seeds.")
                    have.setdefault(row["method"], row)
    results = []
    for key, res in merged.items():
        seeds = sorted(seeds_of[key])
        res["eval_seeds"] = seeds
        res["per_seed"] = [list(seeds_of[key][seed].values()) for seed in seeds]
        results.append(finish(res))
    tune_seeds = sorted({s for p in payloads for s in p.get("tune_seeds", [])})
    eval_seeds = sorted({s for res in results for s in res["eval_seeds"]})
    if set(tune_seeds) & set(eval_seeds):
        raise SystemExit(f"--merge-seeds: seeds {sorted(set(tune_seeds) & set(eval_seeds))} were tuned on in "
                         "one run and evaluated in another; the winner must be graded on unseen seeds.")
    grids = {m: g for p in payloads for m, g in p.get("grids", {}).items()}
    return {"grids": grids, "tune_seeds": tune_seeds, "eval_seeds": eval_seeds, "results": results,
            "relearn": first.get("relearn"), "seconds": sum(p.get("seconds", 0.0) for p in payloads),
            "command": " ; ".join(p["command"] for p in payloads),
            "partial": any(p.get("partial", False) for p in payloads),
            "merged_from": [{"command": p["command"], "partial": p.get("partial", False),
                             "eval_seeds": sorted({s for res in p["results"] for s, _ in
                                                   zip(res.get("eval_seeds", p["eval_seeds"]), res["per_seed"])})}
                            for p in payloads]}


def add_variants(payload: dict[str, Any], names: list[str], log, cache: str | None,
                 relearn: dict | None = None) -> dict[str, Any]:
    """Run ``names`` (keys of :data:`VARIANTS`) on a finished run's evaluation seeds, against its
    very references (``--cache``) and its chosen hyper-parameters, and add their rows. The
    setting is the run's own (``--setting`` is not read)."""
    for res in payload["results"]:
        base = Setting(**{k: v for k, v in res["setting"].items() if k != "augmentation"})
        t0 = time.perf_counter()
        for seed, rows in zip(res.get("eval_seeds", payload["eval_seeds"]), res["per_seed"]):
            exp = _experiment(base, seed, cache, relearn)
            runs = [exp.pretrain(), exp.unlearn("retrain")]
            check_references(rows, summarise(runs), "--add-variants")
            for name in names:
                method, extra = VARIANTS[name]
                chosen = res["chosen"][method]
                hp = {**chosen["hyperparameters"], **extra}
                runs.append(exp.unlearn(method, hp, chosen["epochs"], label=name))
            new = {r["method"]: r for r in summarise(runs)}
            rows[:] = [r for r in rows if r["method"] not in names] + [new[n] for n in names]
            log(f"    {res['model']} {res['forget']}: variants on seed {seed}")
        res["seconds"] = res.get("seconds", 0.0) + time.perf_counter() - t0
        finish(res)
    return payload


def relearn_text(comparisons: list[dict[str, Any]]) -> str:
    lines = ["relearned AUC − Retrain's relearned AUC (paired per seed, 95 % t-interval; seeds where "
             "membership came back beyond the test's interval and beyond Retrain's level):"]
    for c in comparisons:
        low, high = c["ci95"]
        lines.append(f"  {c['method']:<22} {c['mean_difference']:+.3f} [{low:+.3f}, {high:+.3f}] "
                     f"{c['verdict']:<24} relearned in {c['relearned_seeds']:.0f}/{c['seeds']} seeds")
    return "\n".join(lines)


def report(payload: dict[str, Any]) -> str:
    parts = []
    for res in payload["results"]:
        parts += [f"== {res['setting']['arch']} {res['model']}, forget {res['forget']}", table(res["summary"]),
                  "paired (AC − best baseline, 95 % t-interval over seeds; lower gap is better):",
                  paired_text(res["paired"])]
        if res.get("pairs"):
            parts += ["requested pairs (A − B, 95 % t-interval over seeds):", paired_text(res["pairs"])]
        if res.get("relearn_vs_retrain"):
            parts.append(relearn_text(res["relearn_vs_retrain"]))
        if res.get("configurations"):
            parts += ["AC configurations against the best of them (paired, 95 % t-interval):"]
            parts += [f"  {c['metric']:<10} {hp_text(c['hyperparameters']):<32} {c['mean']:6.1f}  "
                      f"{c['mean_difference']:+6.1f} [{c['ci95'][0]:+.1f}, {c['ci95'][1]:+.1f}]  {c['verdict']}"
                      for c in res["configurations"]]
    return "\n".join(parts)


def hp_text(hp: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in hp.items())


def _fmt(row: dict[str, Any], key: str, spec: str, std: bool = False) -> str:
    """``row[key]`` formatted (with ``± std``), or "–" when it was not measured."""
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = format(value, spec)
    return text + (f" ± {format(row.get(f'{key}_std', 0.0), spec)}" if std else "")


def _reference_line(res: dict[str, Any], rows: dict[str, dict]) -> str:
    """The references of one table: Retrain's (and the original's) AUC, TPR at 1 % FPR and
    relearned AUC, and which low FPR the holdout cannot resolve."""
    arch = res["setting"].get("arch", "mlp")  # files written before the CNN setting existed
    head = f"{arch} {res['model']}, forget {res['forget']} ({rows['retrain']['seeds']} seeds)"
    rt, orig = rows["retrain"], rows["original"]
    line = (f"**{head}**: Retrain forget-vs-holdout AUC {rt['forget_holdout_auc']:.2f}, "
            f"original {orig['forget_holdout_auc']:.2f}")
    if "forget_holdout_tpr_at_1pct_fpr" in rt:
        line += (f"; TPR at 1 % FPR: Retrain {rt['forget_holdout_tpr_at_1pct_fpr']:.1f} %, original "
                 f"{_fmt(orig, 'forget_holdout_tpr_at_1pct_fpr', '.1f')} %")
    if "relearn_forget_holdout_auc" in rt:
        line += (f"; relearned AUC ({rt['relearn_epochs']:.0f} retain-only epochs at lr {rt['relearn_lr']:g}): "
                 f"Retrain {rt['relearn_forget_holdout_auc']:.2f}, original {_fmt(orig, 'relearn_forget_holdout_auc', '.2f')}")
    held = rt.get("holdout_samples", 0.0)
    unresolved = [f"{x:g} %" for x, need in ((1.0, 100), (0.1, 1000)) if held < need]
    if unresolved:
        line += (f". TPR at {' and '.join(unresolved)} FPR not shown: this comparison has {held:.0f} "
                 "holdout samples (1 % needs ≥ 100, 0.1 % ≥ 1000)")
    return line


def _seed_note(all_seeds: int, count: int) -> str:
    """Merged runs: a row or comparison over other seeds than the references says over how many."""
    return f" ({count} seeds)" if count != all_seeds else ""


def markdown(payload: dict[str, Any]) -> str:
    """Markdown tables (the docs pages, benchmarks/render_docs.py): per method the gaps to Retrain (mean ± std), RA/TA, the forget-vs-holdout AUC
    and TPR at 1 % FPR, the relearned AUC and its gap, cost relative to Retrain; the paired AC −
    best-baseline comparisons; each row's relearned AUC against Retrain's."""
    out = []
    for res in payload["results"]:
        rows = {r["method"]: r for r in res["summary"]}
        names = [n for n in rows if n not in REFERENCES]
        out += [_reference_line(res, rows), "",
                "| method | Avg.Gap | Indist.Gap | RA | TA | F-vs-H AUC | TPR@1%FPR | Relearned AUC | Relearn.Gap "
                "| relearned (seeds) | epochs (mean) | time/RT |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        epochs = {n: np.mean([r["epochs"] for seed in res["per_seed"] for r in seed if r["method"] == n])
                  for n in names}
        came_back = {c["method"]: f"{c['relearned_seeds']:.0f}/{c['seeds']}" for c in res.get("relearn_vs_retrain", [])}
        fewer = functools.partial(_seed_note, rows["retrain"]["seeds"])
        for n in names:
            r = rows[n]
            out.append(f"| {n} {hp_text(r['hyperparameters'])}{fewer(r['seeds'])} | {_fmt(r, 'avg_gap', '.1f', True)} | "
                       f"{_fmt(r, 'indist_gap', '.1f', True)} | {r['ra']:.1f} | {r['ta']:.1f} | "
                       f"{r['forget_holdout_auc']:.2f} | {_fmt(r, 'forget_holdout_tpr_at_1pct_fpr', '.1f')} | "
                       f"{_fmt(r, 'relearn_forget_holdout_auc', '.2f')} | {_fmt(r, 'relearn_gap', '.1f', True)} | "
                       f"{came_back.get(n, '–')} | {epochs[n]:.3g} | {100 * r['time_vs_retrain']:.1f} % |")
        if res.get("paired"):  # files written before paired comparisons existed have none
            out += ["", "| paired (AC − best baseline) | metric | mean | 95 % t-interval | verdict |",
                    "|---|---|---|---|---|"]
        for c in res.get("paired", []):
            out.append(f"| {c['ac']} − {c['baseline']}{fewer(c['seeds'])} | {c['metric']} | {c['mean_difference']:+.1f} | "
                       f"[{c['ci95'][0]:+.1f}, {c['ci95'][1]:+.1f}] | {c['verdict']} |")
        if res.get("pairs"):  # --pairs: rows compared as asked
            out += ["", "| paired (A − B, as asked) | metric | mean | 95 % t-interval | verdict |",
                    "|---|---|---|---|---|"]
            out += [f"| {c['ac']} − {c['baseline']} | {c['metric']} | {c['mean_difference']:+.1f} | "
                    f"[{c['ci95'][0]:+.1f}, {c['ci95'][1]:+.1f}] | {c['verdict']} |" for c in res["pairs"]]
        if res.get("relearn_vs_retrain"):
            out += ["", "| relearned AUC − Retrain's | mean | 95 % t-interval | verdict |", "|---|---|---|---|"]
            out += [f"| {c['method']}{fewer(c['seeds'])} | {c['mean_difference']:+.3f} | [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}] "
                    f"| {c['verdict']} |" for c in res["relearn_vs_retrain"]]
        if res.get("configurations"):
            out += ["", "| AC configuration | metric | mean | − best | 95 % t-interval | verdict |",
                    "|---|---|---|---|---|---|"]
            out += [f"| {hp_text(c['hyperparameters'])} | {c['metric']} | {c['mean']:.1f} | "
                    f"{c['mean_difference']:+.1f} | [{c['ci95'][0]:+.1f}, {c['ci95'][1]:+.1f}] | {c['verdict']} |"
                    for c in res["configurations"]]
        out.append("")
    return "\n".join(out)


#: The bar for "holds up under relearning": the relearned AUC's paired 95 % interval against
#: Retrain's contains 0 or lies within this distance of it, at no more than MAX_COST of Retrain.
RELEARN_MARGIN, MAX_COST = 0.05, 0.25


def holds_up(c: dict[str, Any], row: dict[str, Any]) -> bool:
    """Whether a row's relearned-AUC comparison ``c`` with Retrain meets the bar above, by wall
    time and by optimizer steps relative to Retrain (both: wall time on a shared machine is noisy)."""
    low, high = c["ci95"]
    close = (low <= 0 <= high) or (abs(low) <= RELEARN_MARGIN and abs(high) <= RELEARN_MARGIN)
    cheap = row["time_vs_retrain"] <= MAX_COST and row.get("steps_vs_retrain", 0.0) <= MAX_COST
    return bool(close and cheap)


#: Fewer seeds give a t-interval too wide to judge (two seeds: one degree of freedom, t = 12.7).
MIN_SEEDS_TO_JUDGE = 3


def _holds_up_cell(c: dict[str, Any], row: dict[str, Any]) -> str:
    if c["method"] in REFERENCES:
        return "reference"
    if c["seeds"] < MIN_SEEDS_TO_JUDGE:
        return f"– ({c['seeds']} seeds: not judged)"
    return "yes" if holds_up(c, row) else "no"


def relearn_summary(payload: dict[str, Any]) -> str:
    """Markdown: per method, the relearned AUC minus Retrain's (paired per seed, 95 % t-interval),
    the gaps to Retrain before and after relearning, the cost, and whether the row holds up
    (:func:`holds_up`)."""
    out = []
    for res in payload["results"]:
        rows = {r["method"]: r for r in res["summary"]}
        fewer = functools.partial(_seed_note, rows["retrain"]["seeds"])
        rt = rows["retrain"]
        out += [f"**{res['setting'].get('arch', 'mlp')} {res['model']}, forget {res['forget']}**: Retrain's "
                f"relearned AUC {rt['relearn_forget_holdout_auc']:.3f} ({rt['relearn_epochs']:.0f} retain-only "
                f"epochs at lr {rt['relearn_lr']:g}, {rt['seeds']} seeds).", "",
                "| method | relearned AUC − Retrain's | 95 % t-interval | Relearn.Gap | Indist.Gap | Avg.Gap "
                "| time/RT | steps/RT | holds up |", "|---|---|---|---|---|---|---|---|---|"]
        for c in res.get("relearn_vs_retrain", []):
            r = rows[c["method"]]
            out.append(f"| {c['method']}{fewer(c['seeds'])} | {c['mean_difference']:+.3f} | "
                       f"[{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}] | {_fmt(r, 'relearn_gap', '.1f')} | "
                       f"{_fmt(r, 'indist_gap', '.1f')} | {_fmt(r, 'avg_gap', '.1f')} | "
                       f"{100 * r['time_vs_retrain']:.1f} % | {_fmt(r, 'steps_vs_retrain', '.3f')} | "
                       f"{_holds_up_cell(c, r)} |")
        out.append("")
    return "\n".join(out)


def write(payload: dict[str, Any], out: str, with_markdown: bool, log) -> int:
    """Print a finished payload's report (and Markdown tables), write it atomically to ``out``."""
    log(report(payload))
    if with_markdown:
        log(markdown(payload))
    atomic_write_json(out, payload)
    log(f"\nWrote {Path(out).resolve()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setting", choices=sorted(SETTINGS), default="mlp")
    p.add_argument("--models", nargs="+", default=["simclr", "moco"], choices=["simclr", "moco"])
    p.add_argument("--forgets", nargs="+", default=None, help="default: the setting's forget sets")
    p.add_argument("--methods", nargs="+", default=None, help="default: every method of the grid")
    p.add_argument("--tune-seeds", type=int, nargs="+", default=None)
    p.add_argument("--eval-seeds", type=int, nargs="+", default=None)
    p.add_argument("--pretrain-epochs", type=int, default=None)
    p.add_argument("--no-calibrated", action="store_true", help="skip the <method>+stop rows")
    p.add_argument("--calibrated", nargs="+", default=None, metavar="METHOD",
                   help="<method>+stop rows for these methods only (default: every method)")
    p.add_argument("--chosen-from", default=None, metavar="JSON",
                   help="skip tuning: evaluate the configurations this finished run chose (same "
                   "setting, model and forget set), e.g. to re-measure them under changed code")
    p.add_argument("--cache", default=None, help="folder for pretrained models and Retrain rows")
    p.add_argument("--relearn-epochs", type=int, default=None,
                   help="relearning test of every evaluated row: retain-only epochs (default: 10 %% of "
                        "the pretraining epochs; 0: no test)")
    p.add_argument("--relearn-lr", default="unlearn",
                   help="lr of the relearning test: 'unlearn' (default: the unlearning lr), 'pretrain' "
                        "(the pretraining lr, a stronger attack) or a number")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 model, 1 forget set, no tuning, 2 evaluation seeds, short pretraining")
    p.add_argument("--combine", nargs="+", default=None, metavar="JSON", help="merge these runs into --out")
    p.add_argument("--merge-seeds", nargs="+", default=None, metavar="JSON",
                   help="merge runs that evaluated different seeds with the same configurations into "
                   "--out (summaries and intervals recomputed over the pooled seeds)")
    p.add_argument("--markdown", action="store_true",
                   help="with --combine / --merge-seeds: also print the Markdown tables of the docs pages")
    p.add_argument("--add-variants", nargs="+", default=None, choices=sorted(VARIANTS),
                   help="run these method options on the evaluation seeds of --to and add their rows")
    p.add_argument("--to", default=None, metavar="JSON", help="with --add-variants: a finished run")
    p.add_argument("--pairs", nargs="+", default=[], metavar="A,B", type=lambda t: tuple(t.split(",", 1)),
                   help="with --add-variants: also compare these rows, paired per seed (A − B)")
    p.add_argument("--out", default="benchmarks/results/unlearning.json")
    args = p.parse_args(argv)
    if args.relearn_lr not in ("unlearn", "pretrain"):
        try:
            args.relearn_lr = float(args.relearn_lr)
        except ValueError:
            raise SystemExit(f"--relearn-lr: 'unlearn', 'pretrain' or a number; got {args.relearn_lr!r}.") from None
    relearn = None if args.relearn_epochs == 0 else {"epochs": args.relearn_epochs, "lr": args.relearn_lr}

    def log(line: str) -> None:
        print(line, flush=True)

    if args.combine:
        import json

        payload = combine([json.loads(Path(f).read_text()) for f in args.combine])
        return write(payload, args.out, args.markdown, log)
    if args.merge_seeds:
        import json

        if str(Path(args.out).resolve()) in {str(Path(f).resolve()) for f in args.merge_seeds}:
            raise SystemExit("--merge-seeds: --out is one of the inputs; write the merge to a new file.")
        payload = merge_seeds([json.loads(Path(f).read_text()) for f in args.merge_seeds])
        return write(payload, args.out, args.markdown, log)

    if args.add_variants:
        import json

        if not args.to:
            raise SystemExit("--add-variants needs --to <a finished run's JSON>.")
        payload = json.loads(Path(args.to).read_text())
        start = time.perf_counter()
        add_variants(payload, args.add_variants, log, args.cache, payload.get("relearn"))
        for res in payload["results"]:
            res["pairs"] = [c for pair in args.pairs for c in pair_rows(res["per_seed"], *pair)]
        payload["seconds"] = payload["seconds"] + time.perf_counter() - start
        payload["command"] += " ; " + " ".join(sys.argv)
        return write(payload, args.out, args.markdown, log)

    spec = SETTINGS[args.setting]
    grids = {m: g for m, g in spec["grids"].items() if args.methods is None or m in args.methods}
    if args.methods and set(args.methods) - set(spec["grids"]):
        raise SystemExit(f"--methods: choose from {sorted(spec['grids'])}; got {args.methods}.")
    forgets = args.forgets or spec["forgets"]
    tune_seeds = args.tune_seeds if args.tune_seeds is not None else spec["tune_seeds"]
    eval_seeds = args.eval_seeds if args.eval_seeds is not None else spec["eval_seeds"]
    overrides: dict[str, Any] = {}
    if args.pretrain_epochs:
        overrides["pretrain_epochs"] = args.pretrain_epochs
    if args.quick:
        args.models, forgets, tune_seeds, eval_seeds = args.models[:1], forgets[:1], [], [1, 2]
        # enough never-seen samples (108 against the 108 retain ones) to resolve a TPR at 1 % FPR
        overrides.update(pretrain_epochs=args.pretrain_epochs or 20, num_views=4, n_train=120, n_holdout=110)
        # No tuning: the shortest configuration of each method, so the run takes seconds.
        grids = {m: [min(g, key=lambda c: c[1])] for m, g in grids.items()}
    if args.chosen_from:
        tune_seeds = []  # nothing tuned here: the configurations come from that run
    if set(tune_seeds) & set(eval_seeds):
        raise SystemExit("--tune-seeds and --eval-seeds must be disjoint (the winner is graded on unseen seeds).")

    results, start = [], time.perf_counter()

    def payload_of(results: list[dict], partial: bool) -> dict[str, Any]:
        return {"grids": {m: [[hp, e] for hp, e in g] for m, g in grids.items()},
                "tune_seeds": tune_seeds, "eval_seeds": eval_seeds, "results": results, "relearn": relearn,
                "seconds": time.perf_counter() - start, "command": " ".join(sys.argv), "partial": partial}

    for model, forget in itertools.product(args.models, forgets):
        base = spec["base"](model=model, **parse_forget(forget), **overrides)
        log(f"== {args.setting} {model}, forget {forget}")
        t0 = time.perf_counter()
        if args.chosen_from:
            best = chosen_configurations(args.chosen_from, setting_dict(base), model, forget, grids)
        else:
            best = tune(base, tune_seeds, grids, log, args.cache, relearn)
        chosen = {m: {"hyperparameters": hp, "epochs": e, "tuning_score": s} for m, (hp, e, s) in best.items()}

        def result(per_seed: list, chosen=chosen, base=base, model=model, forget=forget, t0=t0) -> dict:
            return finish({"setting": setting_dict(base), "model": model, "forget": forget, "chosen": chosen,
                           "per_seed": per_seed, "seconds": time.perf_counter() - t0})

        def checkpoint(per_seed: list, result=result) -> None:
            """Long runs keep what they measured: the evaluated seeds so far, marked partial."""
            atomic_write_json(args.out, payload_of([*results, result(per_seed)], partial=True))

        calibrated = False if args.no_calibrated else (args.calibrated or True)
        _, per_seed = evaluate(base, eval_seeds, best, log, args.cache, calibrated=calibrated,
                               on_seed=checkpoint, check_every=spec.get("check_every", 1), relearn=relearn)
        res = result(per_seed)
        log(table(res["summary"]))
        log(paired_text(res["paired"]))
        if res["relearn_vs_retrain"]:
            log(relearn_text(res["relearn_vs_retrain"]))
        results.append(res)
    payload = payload_of(results, partial=False)
    atomic_write_json(args.out, payload)
    log(f"\nWrote {Path(args.out).resolve()} ({payload['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
