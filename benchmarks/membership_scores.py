"""Which membership score separates a contrastive encoder's training samples best? EMIA vs PartCrop.

On the *pretrained* model of the benchmark's CNN setting (200 digits at 16 px, BatchNorm CNN,
lightly's heads, 300 epochs; 400 never-seen holdout digits), members (all 200 training digits)
against never-seen digits (the 400 holdout digits), per score: AUC and TPR at 1 % FPR (percent;
the rate of members above the threshold that lets through 1 % of the never-seen digits).

Scores:

* ``alignment/head``, ``alignment/backbone``: EMIA's alignment score (SPEC §4: mean pairwise
  cosine of K = 10 seeded training augmentations, eval mode) on projection-head outputs (what the
  benchmark's audits read) and on backbone features.
* ``partcrop/...``: PartCrop (Zhu, Zha, Li, Wang, arXiv 2404.02462; the authors' code,
  github.com/JiePKU/PartCrop): ``m`` = 128 part crops of the whole image
  (``RandomResizedCrop`` to half the image size, scale (0.08, 0.2), random horizontal flip) are
  embedded by the backbone (pooled); each part's dot products with the whole image's spatial
  feature map (the backbone before pooling, ``L`` = 4 x 4 positions here) are turned into a
  distribution over positions (softmax); the part's features are the KL divergences of that
  distribution from the uniform one and from a bell-shaped one (drawn as in the authors' code),
  each sorted over the parts: ``2m`` features. An attacker is trained on labelled members and
  non-members, here cross-fitted (2 folds, each sample scored by the model fitted on the other
  fold): ``partcrop/mlp`` is the authors' attacker (MLP 1024-512-64, Adam lr 1e-3, weight decay
  5e-4 on standardised features), ``partcrop/logistic`` a logistic regression.
* ``part_whole_cosine``: a threshold score without training: the mean cosine between the part
  crops' embeddings and the whole image's embedding (backbone, pooled) — "alignment of part
  crops with the whole image" in its simplest form.

    OMP_NUM_THREADS=1 python benchmarks/membership_scores.py --cache /tmp/bench/cache \\
        --out benchmarks/results/membership_scores_cnn.json
    python benchmarks/membership_scores.py --quick
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import Tensor, nn
from torchvision.transforms import v2

from lightly_unlearn.adapters import backbone_embed_fn, head_embed_fn
from lightly_unlearn.audits.alignment import alignment_scores
from lightly_unlearn.audits.features import extract_features
from lightly_unlearn.audits.membership import roc_auc, tpr_at_fpr
from lightly_unlearn.demo.experiment import Experiment, cnn_setting

_spec = importlib.util.spec_from_file_location("bench_unlearning", Path(__file__).with_name("unlearning.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def bell_distributions(n: int, length: int, generator: torch.Generator) -> Tensor:
    """``(n, length)`` bell-shaped distributions over positions, drawn as in the authors' code:
    sorted standard-normal draws, each row's normal density at its draws, normalised."""
    noise = torch.randn(n, length, generator=generator).sort(dim=1).values
    mean, std = noise.mean(1, keepdim=True), noise.std(1, keepdim=True)
    density = torch.exp(-((noise - mean) ** 2) / (2 * std**2)) / (math.sqrt(2 * math.pi) * std)
    return density / density.sum(1, keepdim=True)


@torch.no_grad()
def partcrop_features(model: nn.Module, images: Tensor, num_parts: int, seed: int) -> tuple[Tensor, Tensor]:
    """PartCrop's ``2m`` sorted KL features per image and the part-whole cosine (see the module
    docstring). ``images``: ``(n, C, H, W)`` clean, normalised."""
    model.eval()
    size = images.shape[-1]
    crop = v2.Compose([v2.RandomResizedCrop(size // 2, scale=(0.08, 0.2), antialias=True),
                       v2.RandomHorizontalFlip()])
    trunk, pool = model.backbone[:-2], model.backbone[-2:]  # the demo CNN: ..., AvgPool, Flatten
    gen = torch.Generator().manual_seed(seed)
    feats, cosines = [], []
    for i, image in enumerate(images):
        torch.manual_seed(seed * 100_003 + i)  # torchvision draws crops from the global RNG
        parts = torch.stack([crop(image) for _ in range(num_parts)])
        fmap = trunk(image[None])  # (1, D, h, w)
        whole = pool(fmap)  # (1, D)
        positions = fmap.flatten(2).transpose(1, 2)[0]  # (L, D)
        part = model.backbone(parts)  # (m, D)
        logits = torch.log_softmax(part @ positions.T, dim=1)  # (m, L)
        uniform = torch.full_like(logits, 1 / logits.shape[1])
        bell = bell_distributions(*logits.shape, gen)
        kl_uniform = (uniform * ((uniform + 1e-6).log() - logits)).sum(1)
        kl_bell = (bell * ((bell + 1e-6).log() - logits)).sum(1)
        feats.append(torch.cat([kl_uniform.sort(descending=True).values, kl_bell.sort(descending=True).values]))
        cosines.append(nn.functional.cosine_similarity(part, whole).mean())
    return torch.stack(feats), torch.stack(cosines)


def cross_fitted(features: np.ndarray, labels: np.ndarray, make, seed: int) -> np.ndarray:
    """Each sample's attacker score from a model fitted on the other fold (2 folds, stratified)."""
    scores = np.zeros(len(labels))
    for train, test in StratifiedKFold(2, shuffle=True, random_state=seed).split(features, labels):
        clf = make().fit(features[train], labels[train])
        scores[test] = clf.predict_proba(features[test])[:, 1]
    return scores


def measure(model_name: str, seed: int, cache: str | None, num_parts: int, overrides: dict, log) -> dict:
    exp = Experiment(cnn_setting(model=model_name, seed=seed, **overrides), progress=log, cache_dir=cache)
    exp.pretrain()
    model = exp.new_model()
    model.load_state_dict(exp._pretrained_state)
    dm = exp.datamodule()
    members, nonmembers = exp.train, exp.holdout
    t0 = time.perf_counter()
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for space, embed in (("head", head_embed_fn(model)), ("backbone", backbone_embed_fn(model))):
        pair = []
        for split, data in (("members", members), ("nonmembers", nonmembers)):
            feats = extract_features(embed, data, view_transform=dm.view_transform, num_views=10,
                                     seed=seed, split=split, module=model)
            pair.append(alignment_scores(feats.views).numpy())
        scores[f"alignment/{space}"] = (pair[0], pair[1])
    t_align = time.perf_counter() - t0
    t0 = time.perf_counter()
    clean = [torch.stack([dm.eval_transform(data[i][0]) for i in range(len(data))]) for data in (members, nonmembers)]
    (fm, cm), (fn, cn) = (partcrop_features(model, x, num_parts, seed + k) for k, x in enumerate(clean))
    scores["part_whole_cosine"] = (cm.numpy(), cn.numpy())
    X = torch.cat([fm, fn]).numpy()
    y = np.r_[np.ones(len(fm)), np.zeros(len(fn))]
    attackers = {
        "partcrop/mlp": lambda: make_pipeline(StandardScaler(), MLPClassifier(
            (1024, 512, 64), alpha=5e-4, learning_rate_init=1e-3, max_iter=300, random_state=seed)),
        "partcrop/logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
    }
    for name, make in attackers.items():
        s = cross_fitted(X, y, make, seed)
        scores[name] = (s[y == 1], s[y == 0])
    t_part = time.perf_counter() - t0
    row = {"model": model_name, "seed": seed, "members": len(members), "nonmembers": len(nonmembers),
           "seconds_alignment": t_align, "seconds_partcrop": t_part, "scores": {}}
    for name, (m, n) in scores.items():
        auc = roc_auc(m, n)
        row["scores"][name] = {"auc": auc, "tpr_at_1pct_fpr": tpr_at_fpr(m, n, 1.0)}
        tpr = row["scores"][name]["tpr_at_1pct_fpr"]
        log(f"  {model_name} seed {seed} {name:<20} AUC {auc:.3f}  TPR@1%FPR {'-' if tpr is None else f'{tpr:.1f}'}")
    return row


def markdown(payload: dict[str, Any]) -> str:
    """Mean ± std over seeds per model and score, then every seed."""
    out = ["| model / score | AUC | TPR @ 1 % FPR |", "|---|---|---|"]
    for key, v in payload["summary"].items():
        tpr = "–" if v["tpr_at_1pct_fpr"] is None else f"{v['tpr_at_1pct_fpr']:.1f}"
        out.append(f"| {key} | {v['auc']:.3f} ± {v['auc_std']:.3f} | {tpr} |")
    out += ["", "| model | seed | score | AUC | TPR @ 1 % FPR |", "|---|---|---|---|---|"]
    for row in payload["rows"]:
        for name, v in row["scores"].items():
            tpr = "–" if v["tpr_at_1pct_fpr"] is None else f"{v['tpr_at_1pct_fpr']:.1f}"
            out.append(f"| {row['model']} | {row['seed']} | {name} | {v['auc']:.3f} | {tpr} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["simclr", "moco"], choices=["simclr", "moco"])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--parts", type=int, default=128, help="part crops per image (the authors' 128)")
    p.add_argument("--cache", default=None, help="the benchmark's --cache of pretrained models")
    p.add_argument("--quick", action="store_true", help="1 seed, 20 pretraining epochs, 100 / 100 digits")
    p.add_argument("--out", default="benchmarks/results/membership_scores_cnn.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    overrides: dict[str, Any] = {}
    if args.quick:
        args.seeds, args.parts = args.seeds[:1], 16
        overrides = {"pretrain_epochs": 20, "n_train": 100, "n_holdout": 100}

    def log(line: str) -> None:
        print(line, flush=True)

    start = time.perf_counter()
    rows = [measure(m, s, args.cache, args.parts, overrides, log) for m in args.models for s in args.seeds]
    summary = {}
    for m in args.models:
        for name in rows[0]["scores"]:
            vals = [r["scores"][name] for r in rows if r["model"] == m]
            tprs = [v["tpr_at_1pct_fpr"] for v in vals if v["tpr_at_1pct_fpr"] is not None]
            summary[f"{m}/{name}"] = {"auc": float(np.mean([v["auc"] for v in vals])),
                                      "auc_std": float(np.std([v["auc"] for v in vals])),
                                      "tpr_at_1pct_fpr": float(np.mean(tprs)) if tprs else None}
            log(f"{m:<7} {name:<20} AUC {summary[f'{m}/{name}']['auc']:.3f} ± "
                f"{summary[f'{m}/{name}']['auc_std']:.3f}  TPR@1%FPR "
                f"{'-' if not tprs else f'{np.mean(tprs):.1f}'}")
    return bench.save_run({"rows": rows, "summary": summary, "parts": args.parts}, args.out, start, log)


if __name__ == "__main__":
    sys.exit(main())
