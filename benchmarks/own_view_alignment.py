"""Does AC's positive calibration single out the forget samples on MoCo? The own-view check.

Positive calibration penalises the cosine between two views of each forget sample. Whether it
acts *on the forget samples* shows in their own-view alignment (the SPEC §4 alignment score: mean
cosine over K seeded training augmentations, projection-head outputs, eval mode) compared with the
retain samples', before and after unlearning::

    relative drop = [score(forget, before) − score(forget, after)]
                  − [score(retain, before) − score(retain, after)]      (means over the samples)

Positive: the forget samples lost more own-view alignment than the retain samples. Fine-tune
(retain data only) is the control: it changes both groups by ordinary training alone.

Setting: a lightly-style MoCo — the demo's BatchNorm CNN with lightly's
``MoCoProjectionHead``, momentum encoder, ``NTXentLoss`` memory bank (256), SGD lr 0.06 (momentum
0.9, weight decay 5e-4), lightly's ``MoCoV2Transform`` at 16 px — on 320 scikit-learn digits of
which 32 are forgotten, pretrained ``--pretrain-epochs`` epochs (batch 64), then 3 epochs of
fine-tune and of AC (α = 1, β = 10) at the same lr, AC's extra view through the momentum encoder
(the reference) and through the online (query) encoder. Per seed, the relative drop of each;
AC − fine-tune and online − momentum paired over seeds with a 95 % Student-t interval.

    OMP_NUM_THREADS=1 python benchmarks/own_view_alignment.py --out benchmarks/results/ac_moco_own_view.json
    python benchmarks/own_view_alignment.py --quick     # smoke run
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import torch

from lightly_unlearn.adapters import backbone_embed_fn, head_embed_fn
from lightly_unlearn.audits.alignment import alignment_scores
from lightly_unlearn.audits.features import extract_features
from lightly_unlearn.callbacks.unlearn import UnlearnCallback
from lightly_unlearn.demo.experiment import Experiment, cnn_setting
from lightly_unlearn.io import atomic_write_json

_spec = importlib.util.spec_from_file_location("bench_unlearning", Path(__file__).with_name("unlearning.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)
t_interval = bench.t_interval  # mean and 95 % Student-t interval

#: (row name, method, hyper-parameters): the control and AC with either extra-view encoder.
CONFIGS: list[tuple[str, str, dict[str, Any]]] = [
    ("finetune", "finetune", {}),
    *[(f"ac:{e}", "ac", {"alpha": 1.0, "beta": 10.0, "extra_encoder": e}) for e in ("momentum", "online")],
]


#: Feature spaces the alignment score is read in.
SPACES = ("head", "backbone")


def own_view_scores(exp: Experiment, model: torch.nn.Module, num_views: int, seed: int
                    ) -> dict[str, tuple[float, float]]:
    """Per feature space (``head``, ``backbone``): mean own-view alignment score of the forget
    samples and of the retain samples (the same seeded views before and after)."""
    dm = exp.datamodule()
    out = {}
    for space, embed in (("head", head_embed_fn(model)), ("backbone", backbone_embed_fn(model))):
        means = []
        for split, keys in (("forget", dm.forget_indices), ("retain", dm.retain_indices)):
            feats = extract_features(embed, exp.train, keys=keys, view_transform=dm.view_transform,
                                     num_views=num_views, seed=seed, split=split, module=model)
            means.append(float(alignment_scores(feats.views).mean()))
        out[space] = (means[0], means[1])
    return out


def measure(seed: int, *, n_train: int = 320, n_forget: int = 32, pretrain_epochs: int = 30,
            epochs: int = 3, num_views: int = 10, configs: list = CONFIGS,
            progress=lambda line: None) -> dict[str, Any]:
    """One seed: pretrain, then each configuration from the same weights; relative drops."""
    setting = cnn_setting(model="moco", n_train=n_train, n_holdout=64, forget_fraction=n_forget / n_train,
                          batch_size=64, pretrain_epochs=pretrain_epochs, lr=0.06, unlearn_lr=0.06,
                          seed=seed)
    exp = Experiment(setting, progress=progress)
    if len(exp.forget) != n_forget:
        raise ValueError(f"expected {n_forget} forget samples, got {len(exp.forget)}")
    torch.manual_seed(seed)
    pretrained = exp.new_model()
    exp.fit(pretrained, exp.datamodule(), pretrain_epochs, [])
    before = own_view_scores(exp, pretrained, num_views, seed)
    rows = {}
    for name, method, hp in configs:
        model = copy.deepcopy(pretrained)
        torch.manual_seed(seed + 1000)
        _, seconds, _ = exp.fit(model, exp.datamodule(), epochs, [UnlearnCallback(method, **hp)])
        after = own_view_scores(exp, model, num_views, seed)
        rows[name] = {"hyperparameters": hp, "seconds": seconds}
        for space, ((forget0, retain0), (forget1, retain1)) in ((s, (before[s], after[s])) for s in before):
            drop = (forget0 - forget1) - (retain0 - retain1)
            rows[name][space] = {"forget_before": forget0, "forget_after": forget1, "retain_before": retain0,
                                 "retain_after": retain1, "relative_drop": drop}
            progress(f"seed {seed} {name:<12} {space:<8} relative drop {drop:+.4f} (forget {forget0:.4f} -> "
                     f"{forget1:.4f}, retain {retain0:.4f} -> {retain1:.4f})")
    return rows


def paired(per_seed: list[dict[str, Any]], a: str, b: str, space: str) -> dict[str, Any]:
    """``a − b`` relative drops, paired per seed (positive: ``a`` singles out the forget set more)."""
    diffs = [rows[a][space]["relative_drop"] - rows[b][space]["relative_drop"] for rows in per_seed]
    mean, low, high = t_interval(diffs)
    return {"space": space, "a": a, "b": b, "differences": diffs, "mean_difference": mean, "ci95": [low, high]}


def markdown(payload: dict[str, Any]) -> str:
    """Per forget-set size: each row's mean relative drop, and the paired differences."""
    out = []
    for res in payload["results"]:
        seeds = len(res["per_seed"])
        out += [f"**{res['n_forget']} forgotten of {payload['n_train']}, {seeds} seeds** (relative drop: "
                "the forget samples' loss of own-view alignment minus the retain samples'; positive: "
                "the forget samples lost more)", "",
                "| features | row | mean | 95 % t-interval |", "|---|---|---|---|"]
        out += [f"| {key.split('/', 1)[0]} | {key.split('/', 1)[1]} | {v['mean']:+.4f} | "
                f"[{v['ci95'][0]:+.4f}, {v['ci95'][1]:+.4f}] |" for key, v in res["summary"].items()]
        out += ["", "| features | paired | mean | 95 % t-interval |", "|---|---|---|---|"]
        out += [f"| {c['space']} | {c['a']} − {c['b']} | {c['mean_difference']:+.4f} | "
                f"[{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}] |" for c in res["paired"]]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--forget-sizes", type=int, nargs="+", default=[32])
    p.add_argument("--pretrain-epochs", type=int, default=30)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--configs", nargs="+", default=None, choices=[c[0] for c in CONFIGS],
                   help="rows to run (default: all; finetune always)")
    p.add_argument("--quick", action="store_true", help="2 seeds, 2 pretraining epochs, 1 epoch")
    p.add_argument("--out", default="benchmarks/results/ac_moco_own_view.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.seeds, args.pretrain_epochs, args.epochs = args.seeds[:2], 2, 1

    def log(line: str) -> None:
        print(line, flush=True)

    configs = [c for c in CONFIGS if c[0] == "finetune" or args.configs is None or c[0] in args.configs]
    start, results = time.perf_counter(), []
    for n_forget in args.forget_sizes:
        per_seed = [measure(s, n_forget=n_forget, pretrain_epochs=args.pretrain_epochs, epochs=args.epochs,
                            configs=configs, progress=log) for s in args.seeds]
        summary, comparisons = {}, []
        log(f"== {n_forget} forgotten of 320, {len(args.seeds)} seeds: relative drop, mean [95 % t-interval]")
        for space in SPACES:
            names = [c[0] for c in configs]
            for name in names:
                mean, low, high = t_interval([rows[name][space]["relative_drop"] for rows in per_seed])
                summary[f"{space}/{name}"] = {"mean": mean, "ci95": [low, high]}
                log(f"  {space:<8} {name:<18} {mean:+.4f} [{low:+.4f}, {high:+.4f}]")
            pairs = [(n, "finetune") for n in names[1:]]
            pairs += [(n, n.replace("online", "momentum")) for n in names if "online" in n
                      and n.replace("online", "momentum") in names]
            for a, b in pairs:
                c = paired(per_seed, a, b, space)
                comparisons.append(c)
                log(f"  {space:<8} {a} − {b}: {c['mean_difference']:+.4f} [{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}]")
        results.append({"n_forget": n_forget, "per_seed": per_seed, "summary": summary, "paired": comparisons})
    payload = {"results": results, "seeds": args.seeds, "pretrain_epochs": args.pretrain_epochs,
               "epochs": args.epochs, "n_train": 320, "num_views": 10,
               "seconds": time.perf_counter() - start, "command": " ".join(sys.argv)}
    atomic_write_json(args.out, payload)
    log(f"Wrote {args.out} ({payload['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
