"""Find an embedded setting where a small SimCLR model leaks membership.

Plain-torch SimCLR on scikit-learn's ``load_digits`` (1 797 images, 8x8, ships with sklearn),
trained on (nearly) full batches with batched tensor augmentations (``lightly_unlearn.demo.data``),
and the SPEC §4 alignment-score audit (K seeded views, eval mode, mean pairwise cosine) read on the
projection-head output and on the backbone. Prints, for the pretrained model ("original") and for
Retrain (same recipe on the retain set), the members-vs-holdout AUC (members = retain samples) and
the forget-vs-holdout AUC with wall times; then (unless ``--no-methods``) fine-tune, gradient
ascent, NegGrad and AC (SPEC §3) from the pretrained weights, and a mean ± std table over seeds.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/membership_signal.py --quick  # ~16 s
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/membership_signal.py          # 3 seeds
    ... --setting medium --ac-betas 0 0.25 0.5 --method-epochs 30                       # 400 / 40
    ... --per-sample --no-methods   # train through a DataLoader + per-sample view transform

Chosen recipe ("small", the defaults; demo setting)
---------------------------------------------------
* data: ``load_digits`` pixels / 16, seeded permutation: 200 train (20 forgotten, 10 %), next 800
  holdout (non-members); the remaining 797 digits are free for a test split.
* model: backbone flatten -> Linear(64, 256) -> ReLU -> Linear(256, 256) -> ReLU; head lightly
  ``SimCLRProjectionHead(256, 256, 128)``; NT-Xent τ = 0.2; Adam lr 2e-3, no weight decay;
  batch 180 with ``drop_last`` (so pretraining on 200 and Retrain on 180 both take exactly one
  step per epoch with the same batch size), 300 epochs = 300 steps.
* augmentation (weak on purpose: strong crops hide membership): crop area U(0.8, 1), translation
  up to 5 % beyond the crop range, intensity x U(0.9, 1.1), Gaussian noise σ = 0.02, no flips.
* audit: alignment score on projection-head outputs, K = 10 views (K = 5 loses ~0.02 AUC,
  K = 20 gains ~0.03).

Measured (2 shared CPU cores, 1 thread, seeds 0-2; wall times vary ~x1.5 with the other load)
* original: members-vs-holdout 0.910 ± 0.006, forget-vs-holdout 0.916 ± 0.030; pretrain 2.7-5 s
  batched; 7.3-7.6 s through a DataLoader calling ``DigitsViewTransform`` per sample (same figures:
  0.90-0.92 / 0.86-0.97, Retrain 0.42-0.53).
* retrain: forget-vs-holdout 0.483 ± 0.052 (0.41, 0.52, 0.52), same time as pretraining.
* backbone features in this recipe leak little (members AUC 0.58-0.60): the signal lives in the
  head. ``--epochs 1200`` (or ``--width 512 --epochs 600``) reaches backbone 0.66-0.70 members /
  0.65-0.74 forget, Retrain 0.44-0.53, at 4x the cost (12-13 s batched).
* "medium" (400 / 40, batch 360, 600 epochs): original 0.896 / 0.882 ± 0.008, Retrain
  0.504 ± 0.016, pretrain 12-22 s: the same signal with ~3x less seed noise on the forget AUC.

Methods from the pretrained weights (forget-vs-holdout AUC, mean ± std over 3 seeds; "small")

=========================  ================  ================
method                     15 epochs (5 %)   30 epochs (10 %)
=========================  ================  ================
fine-tune                  0.874 ± 0.061     0.872 ± 0.078
gradient ascent (½ epochs) 0.422 ± 0.039     0.402 ± 0.023   (members AUC -> 0.50: collapse)
NegGrad λ = 1              0.425 ± 0.082     0.271 ± 0.101   (overshoot)
AC α = 1, β = 0            0.760 ± 0.059     0.677 ± 0.099
AC α = 1, β = 0.1          0.479 ± 0.095     0.395 ± 0.030
AC α = 1, β = 0.25         0.486 ± 0.137     0.354 ± 0.107
AC α = 1, β = 0.5          0.459 ± 0.071     0.361 ± 0.058
AC α = 1, β = 1            0.482 ± 0.104     0.255 ± 0.079
=========================  ================  ================

"medium", 30 epochs (5 %): fine-tune 0.850, GA 0.469 (collapsed), NegGrad 0.454 ± 0.022,
AC β = 0 0.642, β = 0.25 0.499 ± 0.042 (alignment gap +0.0013 vs Retrain +0.0012),
β = 0.5 0.425 ± 0.016; Retrain 0.504. Each method costs 0.2-1 s (≤ 10 % of Retrain).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lightly_unlearn.demo.data import (  # noqa: E402
    BatchedDigitsAugment,
    DigitsViewTransform,
    load_digits_dataset,
)


# ------------------------------------------------------------------------------------------
# model and loss
# ------------------------------------------------------------------------------------------
class MLPSimCLR(nn.Module):
    """Backbone: flatten -> Linear(d, W) -> ReLU -> Linear(W, W) -> ReLU; head: lightly's
    ``SimCLRProjectionHead(W, W, out)`` (Linear-BN-ReLU-Linear)."""

    def __init__(self, in_dim: int = 64, width: int = 1024, out_dim: int = 128, depth: int = 2):
        super().__init__()
        from lightly.models.modules import SimCLRProjectionHead

        layers: list[nn.Module] = [nn.Flatten()]
        d = in_dim
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        self.backbone = nn.Sequential(*layers)
        self.projection_head = SimCLRProjectionHead(width, width, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection_head(self.backbone(x))


def ntxent_rows(z0: torch.Tensor, z1: torch.Tensor, tau: float) -> torch.Tensor:
    """Per-row NT-Xent (SPEC §2): 2N rows, row i (view 0) has positive z1[i], row N+i has z0[i]."""
    z = F.normalize(torch.cat([z0, z1]), dim=1)
    n = z0.shape[0]
    sim = z @ z.T / tau
    sim.fill_diagonal_(float("-inf"))
    pos = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, pos, reduction="none")


def ac_rows(z0, z1_partner, tau, forget_rows_mask, alpha, gamma):
    """AC row losses: rows are plain NT-Xent where z1_partner already holds the swapped partner
    view for forget samples; forget rows are split into alignment (α) and uniformity (γ) parts."""
    z = F.normalize(torch.cat([z0, z1_partner]), dim=1)
    n = z0.shape[0]
    sim = z @ z.T / tau
    pos = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    align = sim[torch.arange(2 * n), pos]
    sim = sim.clone()
    sim.fill_diagonal_(float("-inf"))
    lse = torch.logsumexp(sim, dim=1)
    m = torch.cat([forget_rows_mask, forget_rows_mask]).float()
    rows = (1 - m) * (lse - align) + m * (alpha * (-align) + gamma * lse)
    denom = (1 - m).sum() + alpha * m.sum()
    return rows.sum() / denom


# ------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------
def make_opt(model, args, lr=None):
    lr = args.lr if lr is None else lr
    if args.opt == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=args.wd)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=args.wd)


def batches(n, bs, g):
    perm = torch.randperm(n, generator=g)
    nb = max(1, n // bs)
    return [perm[i * bs : (i + 1) * bs] for i in range(nb)]


def train_simclr(model, x, args, epochs, g, lr=None, sign=1.0):
    """Plain SimCLR on tensor ``x`` (N,1,H,W) with batched augmentation; ``sign=-1`` is gradient
    ascent. Returns the number of optimizer steps."""
    aug = BatchedDigitsAugment(**args.aug)
    opt = make_opt(model, args, lr)
    model.train()
    steps = 0
    for _ in range(epochs):
        for idx in batches(len(x), args.batch, g):
            xb = x[idx]
            loss = ntxent_rows(model(aug(xb, g)), model(aug(xb, g)), args.tau).mean()
            opt.zero_grad(set_to_none=True)
            (sign * loss).backward()
            opt.step()
            steps += 1
    return steps


def train_simclr_per_sample(model, dataset, indices, args, epochs, g):
    """Same recipe through a DataLoader calling the per-sample multi-view transform."""
    from torch.utils.data import DataLoader

    transform = DigitsViewTransform(**args.aug)

    class Views(torch.utils.data.Dataset):
        def __len__(self):
            return len(indices)

        def __getitem__(self, i):
            image, target = dataset[indices[i]]
            return transform(image), target, indices[i]

    loader = DataLoader(
        Views(), batch_size=args.batch, shuffle=True, drop_last=True, generator=g, num_workers=0
    )
    if len(loader) == 0:
        raise ValueError(f"batch {args.batch} > {len(indices)} samples with drop_last: no step")
    opt = make_opt(model, args)
    model.train()
    steps = 0
    for _ in range(epochs):
        for (x0, x1), _, _ in loader:
            loss = ntxent_rows(model(x0), model(x1), args.tau).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
    return steps


def neggrad(model, x, is_forget, args, epochs, g, lam=1.0):
    aug = BatchedDigitsAugment(**args.aug)
    opt = make_opt(model, args)
    model.train()
    for _ in range(epochs):
        for idx in batches(len(x), args.batch, g):
            rows = ntxent_rows(model(aug(x[idx], g)), model(aug(x[idx], g)), args.tau)
            m = torch.cat([is_forget[idx], is_forget[idx]]).float()
            loss = ((1 - m) * rows - lam * m * rows).sum() / rows.numel()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def alignment_calibration(model, x, is_forget, args, epochs, g, alpha=1.0, beta=0.0):
    """AC (SPEC §3): a forget sample's second view is a view of another random forget sample
    (π redrawn every step, π(i) != i); β' = β |forget|/|train| times mean cos(f(t1 x), f(t3 x))."""
    aug = BatchedDigitsAugment(**args.aug)
    opt = make_opt(model, args)
    model.train()
    forget_pos = torch.nonzero(is_forget).flatten()
    nf = len(forget_pos)
    beta_s = beta * nf / len(x)
    for _ in range(epochs):
        for idx in batches(len(x), args.batch, g):
            fmask = is_forget[idx]
            partner_src = idx.clone()
            fi = torch.nonzero(fmask).flatten()
            if len(fi):
                # random derangement over all forget samples: partner = another forget sample
                pi = (torch.arange(nf) + torch.randint(1, nf, (nf,), generator=g)) % nf
                where = {int(p): k for k, p in enumerate(forget_pos)}
                partner_src[fi] = forget_pos[pi[[where[int(idx[j])] for j in fi]]]
            x0 = aug(x[idx], g)
            x1 = aug(x[partner_src], g)
            z0 = model(x0)
            loss = ac_rows(z0, model(x1), args.tau, fmask, alpha, alpha)
            if beta > 0 and len(fi):
                z3 = model(aug(x[idx[fi]], g))
                loss = loss + beta_s * F.cosine_similarity(z0[fi], z3).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


# ------------------------------------------------------------------------------------------
# audit
# ------------------------------------------------------------------------------------------
@torch.no_grad()
def alignment_scores(model, x, args, feats: str, seed: int = 1234) -> np.ndarray:
    """SPEC §4 alignment score: K seeded training augmentations, eval mode, mean pairwise cos."""
    g = torch.Generator().manual_seed(seed)
    aug = BatchedDigitsAugment(**args.aug)
    model.eval()
    k = args.k
    views = torch.cat([aug(x, g) for _ in range(k)])
    e = model.backbone(views)
    if feats == "head":
        e = model.projection_head(e)
    e = F.normalize(e, dim=1).reshape(k, len(x), -1).transpose(0, 1)  # N,K,D
    gram = e @ e.transpose(1, 2)
    iu = torch.triu_indices(k, k, 1)
    return gram[:, iu[0], iu[1]].mean(1).numpy()


def audit(model, x_train, is_forget, x_hold, args):
    out = {}
    for feats in args.feats:
        s_tr = alignment_scores(model, x_train, args, feats)
        s_ho = alignment_scores(model, x_hold, args, feats)
        s_re, s_fo = s_tr[~is_forget.numpy()], s_tr[is_forget.numpy()]
        auc_mem = roc_auc_score(np.r_[np.ones(len(s_re)), np.zeros(len(s_ho))], np.r_[s_re, s_ho])
        auc_f = roc_auc_score(np.r_[np.ones(len(s_fo)), np.zeros(len(s_ho))], np.r_[s_fo, s_ho])
        out[feats] = dict(
            mem=round(auc_mem, 3),
            forget=round(auc_f, 3),
            gap=round(float(s_fo.mean() - s_ho.mean()), 4),
        )
    return out


# ------------------------------------------------------------------------------------------
def run_seed(seed, args, dataset, x_all, me):
    """Pretrain, audit, Retrain and (unless --no-methods) the methods for one seed."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(dataset), generator=g)
    tr = perm[: args.n_train]
    ho = perm[args.n_train : args.n_train + args.n_holdout]
    x_train, x_hold = x_all[tr], x_all[ho]
    is_forget = torch.zeros(args.n_train, dtype=torch.bool)
    is_forget[torch.randperm(args.n_train, generator=g)[: args.n_forget]] = True
    row = {"seed": seed}

    def fresh():
        torch.manual_seed(seed)
        return MLPSimCLR(x_all[0].numel(), args.width, args.out_dim, args.depth)

    t = time.perf_counter()
    model = fresh()
    if args.per_sample:
        steps = train_simclr_per_sample(model, dataset, tr.tolist(), args, args.epochs, g)
    else:
        steps = train_simclr(model, x_train, args, args.epochs, g)
    row["pretrain_s"] = round(time.perf_counter() - t, 1)
    row["steps"] = steps
    t = time.perf_counter()
    row["original"] = audit(model, x_train, is_forget, x_hold, args)
    row["audit_s"] = round(time.perf_counter() - t, 2)
    print(
        f"seed {seed} Original {row['original']}  pretrain {row['pretrain_s']}s "
        f"({steps} steps) audit {row['audit_s']}s",
        flush=True,
    )
    original_state = {k: v.clone() for k, v in model.state_dict().items()}

    if not args.no_retrain:
        t = time.perf_counter()
        rmodel = fresh()
        if args.per_sample:
            train_simclr_per_sample(rmodel, dataset, tr[~is_forget].tolist(), args, args.epochs, g)
        else:
            train_simclr(rmodel, x_train[~is_forget], args, args.epochs, g)
        row["retrain_s"] = round(time.perf_counter() - t, 1)
        row["retrain"] = audit(rmodel, x_train, is_forget, x_hold, args)
        print(f"seed {seed} Retrain  {row['retrain']}  {row['retrain_s']}s", flush=True)

    if not args.no_methods:

        def run(name, fn):
            m = fresh()
            m.load_state_dict(original_state)
            t0 = time.perf_counter()
            fn(m)
            dt = time.perf_counter() - t0
            row[name] = audit(m, x_train, is_forget, x_hold, args)
            row[name + "_s"] = round(dt, 2)
            print(f"seed {seed} {name:10s} {row[name]}  {dt:.1f}s", flush=True)

        run("finetune", lambda m: train_simclr(m, x_train[~is_forget], args, me, g))
        run(
            "grad_asc",
            lambda m: train_simclr(m, x_train[is_forget], args, max(1, me // 2), g, sign=-1.0),
        )
        run("neggrad", lambda m: neggrad(m, x_train, is_forget, args, me, g))
        for alpha in args.ac_alphas:
            for beta in args.ac_betas:
                run(
                    f"ac_a{alpha}_b{beta}",
                    lambda m, a=alpha, b=beta: alignment_calibration(
                        m, x_train, is_forget, args, me, g, alpha=a, beta=b
                    ),
                )
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the chosen recipe, one seed")
    p.add_argument(
        "--setting",
        choices=["small", "medium"],
        default=None,
        help="small: 200 train / 20 forget, batch 180, 300 epochs (demo default); "
        "medium: 400 / 40, batch 360, 600 epochs (lower-noise benchmark)",
    )
    p.add_argument("--n-train", type=int, default=200)
    p.add_argument("--n-forget", type=int, default=20)
    p.add_argument("--n-holdout", type=int, default=800)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--out-dim", type=int, default=128)
    p.add_argument("--tau", type=float, default=0.2)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--wd", type=float, default=0.0)
    p.add_argument("--opt", choices=["adam", "sgd"], default="adam")
    p.add_argument("--batch", type=int, default=180)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--feats", nargs="+", default=["head", "backbone"])
    p.add_argument("--scale", type=float, nargs=2, default=[0.8, 1.0])
    p.add_argument("--shift", type=float, default=0.05)
    p.add_argument("--noise", type=float, default=0.02)
    p.add_argument("--jitter", type=float, default=0.1)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--no-retrain", action="store_true")
    p.add_argument("--no-methods", action="store_true")
    p.add_argument("--per-sample", action="store_true")
    p.add_argument("--method-epochs", type=int, default=None, help="default: 10%% of --epochs")
    p.add_argument("--ac-alphas", type=float, nargs="+", default=[1.0])
    p.add_argument("--ac-betas", type=float, nargs="+", default=[0.0, 0.1, 0.25, 0.5, 1.0])
    p.add_argument("--json", type=str, default=None)
    args = p.parse_args(argv)
    if args.setting == "small":
        args.n_train, args.n_forget, args.batch, args.epochs = 200, 20, 180, 300
    elif args.setting == "medium":
        args.n_train, args.n_forget, args.batch, args.epochs = 400, 40, 360, 600
    if args.quick:
        args.seeds = args.seeds[:1]
    torch.set_num_threads(1)
    args.aug = dict(scale=tuple(args.scale), shift=args.shift, noise=args.noise, jitter=args.jitter)
    me = args.method_epochs or max(1, args.epochs // 10)

    dataset = load_digits_dataset()
    x_all = torch.stack([dataset[i][0] for i in range(len(dataset))])
    results = []
    for seed in args.seeds:
        results.append(run_seed(seed, args, dataset, x_all, me))
    summarize(results, args.feats)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


def summarize(results, feats):
    """Mean ± std over seeds of each model's AUCs, alignment gap and wall time."""
    names = [k for k, v in results[0].items() if isinstance(v, dict)]
    time_key = {"original": "pretrain_s", "retrain": "retrain_s"}
    print(f"\n{len(results)} seed(s); AUCs of alignment scores (members = retain samples)")
    for f in feats:
        print(f"features: {f}")
        print(
            f"  {'model':16s} {'forget-vs-holdout':>18s} {'members-vs-holdout':>19s} "
            f"{'gap':>8s} {'wall s':>7s}"
        )
        for n in names:
            fa = np.array([r[n][f]["forget"] for r in results])
            ma = np.array([r[n][f]["mem"] for r in results])
            ga = np.array([r[n][f]["gap"] for r in results])
            ts = np.array([r.get(time_key.get(n, n + "_s"), np.nan) for r in results])
            print(
                f"  {n:16s} {fa.mean():>10.3f} ± {fa.std():.3f} {ma.mean():>11.3f} ± "
                f"{ma.std():.3f} {ga.mean():>+8.4f} {ts.mean():>7.1f}"
            )


if __name__ == "__main__":
    main()
