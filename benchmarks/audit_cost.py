"""What the audits cost, measured side by side in one run.

1. The full audit (EMIA + linear probe + CMIA + alignment matrix: one clean pass and ``K``
   augmented passes per sample, then the four audits) against ONE plain forward pass (load,
   deterministic transform, backbone) over the same samples, and against one forward pass with
   a random training augmentation (what a training loader produces per view). Goal: <= K + 2
   pass equivalents. The K augmentations are also timed without the model: on CPU with a small
   model, lightly's PIL augmentations, not the network, dominate.
2. The exact EMIA threshold (sort + cumulative sum) on 20 000 scores against a Python loop
   over a 501-threshold grid, with per-threshold counting both vectorised (NumPy) and in pure
   Python. Goal: >= 100x faster.
3. What ``AuditCallback`` adds to an unlearning run: one audit (its defaults: every retain and
   forget sample and the holdout, K = 10) against ONE epoch of ``UnlearnCallback(method="ac")``
   on lightly's SimCLR example (ResNet-18, SGD lr 0.06) over ``--unlearn-images`` training
   images (default 800, 10 % forgotten) plus a quarter as many holdout images. Goal: <= 1.0.
   ``--unlearn-images 0`` skips it.

Run (CPU, small by default; ~1-2 min):
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/audit_cost.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torchvision
from lightly.models.modules import SimCLRProjectionHead
from lightly.transforms import SimCLRTransform
from PIL import Image
from sklearn.datasets import load_digits
from torch import nn

from lightly_unlearn.adapters import backbone_embed_fn
from lightly_unlearn.audits import best_threshold, compute_inputs, resolve_audits, run_audits
from lightly_unlearn.audits.emia import attack_accuracy
from lightly_unlearn.audits.features import preserved_rng, seeded_call
from lightly_unlearn.audits.runner import needs_of, sample_keys
from lightly_unlearn.data.datamodule import default_eval_transform


class SimCLR(nn.Module):
    """lightly's SimCLR example: ResNet-18 backbone (fc removed) + SimCLR projection head."""

    def __init__(self) -> None:
        super().__init__()
        resnet = torchvision.models.resnet18()
        self.backbone = nn.Sequential(*list(resnet.children())[:-1])
        self.projection_head = SimCLRProjectionHead(512, 512, 128)


def digits_rgb(start: int, stop: int, size: int) -> list[tuple[Image.Image, int]]:
    x, y = load_digits(return_X_y=True)
    images = (x[start:stop] / 16 * 255).astype(np.uint8).reshape(-1, 8, 8)
    return [
        (Image.fromarray(im).convert("RGB").resize((size, size), Image.BILINEAR), int(t))
        for im, t in zip(images, y[start:stop], strict=True)
    ]


def timed(fn, repeats: int = 1):
    """(median CPU seconds of this process, last result).

    CPU time, not wall time: on a shared machine other processes' load would otherwise distort
    the ratios; with OMP_NUM_THREADS=1 the two agree on an idle machine.
    """
    times, out = [], None
    for _ in range(repeats):
        start = time.process_time()
        out = fn()
        times.append(time.process_time() - start)
    return statistics.median(times), out


def plain_pass(embed, datasets, eval_t, batch_size):
    """One forward pass as a user would write it: load, eval transform, backbone."""
    with torch.no_grad():
        for data, keys in datasets:
            for start in range(0, len(keys), batch_size):
                chunk = keys[start : start + batch_size].tolist()
                embed(torch.stack([eval_t(data[k][0]) for k in chunk]))


def augment_only(datasets, view_t, num_views, seed=0):
    """The K seeded augmentations of every sample, without the model."""
    from lightly_unlearn.audits.features import view_seed

    with preserved_rng():
        for split, (data, keys) in zip(("retain", "forget", "holdout"), datasets, strict=True):
            for k in keys.tolist():
                image = data[k][0]
                for v in range(num_views):
                    seeded_call(view_t, image, view_seed(seed, split, k, v))


def grid_numpy(members, nonmembers, bins=501):
    best = (-1.0, 0.0)
    lo, hi = min(members.min(), nonmembers.min()), max(members.max(), nonmembers.max())
    for t in np.linspace(lo, hi, bins):
        acc = ((members >= t).sum() + (nonmembers < t).sum()) / (len(members) + len(nonmembers))
        best = max(best, (acc, t))
    return best


def grid_python(members, nonmembers, bins=501):
    members, nonmembers = members.tolist(), nonmembers.tolist()
    lo, hi = min(members + nonmembers), max(members + nonmembers)
    best = (-1.0, 0.0)
    for i in range(bins):
        t = lo + (hi - lo) * i / (bins - 1)
        correct = sum(1 for s in members if s >= t) + sum(1 for s in nonmembers if s < t)
        best = max(best, (correct / (len(members) + len(nonmembers)), t))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--retain", type=int, default=256, help="retain sample (members)")
    parser.add_argument("--forget", type=int, default=64)
    parser.add_argument("--holdout", type=int, default=256)
    parser.add_argument("--num-views", type=int, default=10)
    parser.add_argument("--size", type=int, default=32, help="image size (CIFAR-like 32)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--scores", type=int, default=20_000, help="scores for the threshold test")
    parser.add_argument("--unlearn-images", type=int, default=800,
                        help="training images for audit vs one unlearning epoch (0: skip)")  # fmt: skip
    args = parser.parse_args()
    torch.manual_seed(0)
    k = args.num_views

    n_train = args.retain + args.forget
    train = digits_rgb(0, n_train, args.size)
    retain, forget = train[: args.retain], train[args.retain :]
    holdout = digits_rgb(1000, 1000 + args.holdout, args.size)
    view_t = SimCLRTransform(input_size=args.size).transforms[0]
    eval_t = default_eval_transform(view_t)
    model = SimCLR().eval()
    embed = backbone_embed_fn(model)
    datasets = [
        (d, sample_keys(len(d), 10**9, 0, s))
        for d, s in ((retain, "retain"), (forget, "forget"), (holdout, "holdout"))
    ]
    n = sum(len(keys) for _, keys in datasets)
    audits = resolve_audits(["emia", "linear_probe", "cmia", "alignment_matrix"])

    plain_pass(embed, datasets[:1], eval_t, args.batch_size)  # warm-up
    t_plain, _ = timed(lambda: plain_pass(embed, datasets, eval_t, args.batch_size), repeats=3)
    # one pass with a random training augmentation, as a training data loader produces a view
    t_aug_pass, _ = timed(lambda: plain_pass(embed, datasets, view_t, args.batch_size), repeats=3)

    def features():
        return compute_inputs(
            embed, needs_of(audits), forget=forget, retain=retain, holdout=holdout,
            eval_transform=eval_t, view_transform=view_t, num_views=k,
            batch_size=args.batch_size, module=model,
        )  # fmt: skip

    t_features, inputs = timed(features)
    t_audits, results = timed(lambda: run_audits(audits, inputs))
    t_augment, _ = timed(lambda: augment_only(datasets, view_t, k))
    t_full = t_features + t_audits

    print(f"== Audit cost (CPU seconds): {n} samples ({args.retain} retain, {args.forget} forget, "
          f"{args.holdout} holdout), K = {k}, ResNet-18 backbone at {args.size}x{args.size}, "
          f"{torch.get_num_threads()} thread(s)")  # fmt: skip
    print(f"one plain forward pass (load + eval transform + backbone): {t_plain:8.2f} s")
    print(f"one augmented forward pass (load + 1 augmentation + backbone): {t_aug_pass:4.2f} s")
    print(f"audit features (1 clean + K augmented passes):             {t_features:8.2f} s")
    print(f"  of which K augmentations alone (no model):               {t_augment:8.2f} s")
    print(f"audits on cached features (threshold, probe, SVC, matrix): {t_audits:8.2f} s")
    print(f"full audit:                                                {t_full:8.2f} s")
    print(f"full audit / plain pass     = {t_full / t_plain:6.2f} (goal <= K + 2 = {k + 2})")
    print(f"full audit / augmented pass = {t_full / t_aug_pass:6.2f} (goal <= K + 2 = {k + 2})")
    print(f"(full audit - augmentation time) / plain pass = {(t_full - t_augment) / t_plain:6.2f}")
    summary = {key: round(v, 3) for r in results.values() for key, v in r.metrics.items()}
    print(f"metrics (random-init model, sanity only): {summary}")

    rng = np.random.default_rng(0)
    half = args.scores // 2
    members, nonmembers = rng.normal(0.55, 0.1, half), rng.normal(0.5, 0.1, half)
    t_exact, (thr, acc) = timed(lambda: best_threshold(members, nonmembers), repeats=7)
    t_grid_np, (acc_np, _) = timed(lambda: grid_numpy(members, nonmembers), repeats=3)
    t_grid_py, (acc_py, _) = timed(lambda: grid_python(members, nonmembers), repeats=1)
    assert acc >= acc_np - 1e-12 and acc == attack_accuracy(members, nonmembers, thr)
    print(f"\n== EMIA threshold on {args.scores} scores")
    print(f"exact optimum (sort + cumsum):               {t_exact * 1e3:9.2f} ms  acc {acc:.4f}")
    print(f"501-threshold Python loop, NumPy counting:   {t_grid_np * 1e3:9.2f} ms  acc {acc_np:.4f}"
          f"  -> exact is {t_grid_np / t_exact:6.1f}x faster")  # fmt: skip
    print(f"501-threshold Python loop, Python counting:  {t_grid_py * 1e3:9.2f} ms  acc {acc_py:.4f}"
          f"  -> exact is {t_grid_py / t_exact:6.1f}x faster (goal >= 100x)")  # fmt: skip
    if args.unlearn_images:
        audit_vs_epoch(args.unlearn_images, args.size, k)


def audit_vs_epoch(n_images: int, size: int, k: int) -> None:
    """One AuditCallback audit vs one epoch of AC unlearning on lightly's SimCLR example."""
    import lightning.pytorch as L
    from lightly.loss import NTXentLoss

    from lightly_unlearn import ForgetRetainDataModule, UnlearnCallback
    from lightly_unlearn.callbacks.audit import AuditCallback

    class SimCLRModule(L.LightningModule):  # lightly's example, unchanged apart from the base
        def __init__(self) -> None:
            super().__init__()
            body = SimCLR()
            self.backbone, self.projection_head = body.backbone, body.projection_head
            self.criterion = NTXentLoss()

        def forward(self, x):
            return self.projection_head(self.backbone(x).flatten(start_dim=1))

        def training_step(self, batch, batch_index):
            (x0, x1) = batch[0]
            return self.criterion(self.forward(x0), self.forward(x1))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.06)

    train = digits_rgb(0, n_images, size)
    holdout = digits_rgb(1000, 1000 + n_images // 4, size)
    dm = ForgetRetainDataModule(train, range(0, n_images, 10), SimCLRTransform(input_size=size),
                                batch_size=256, holdout=holdout, seed=0)  # fmt: skip
    audit = AuditCallback(num_views=k, save_files=False, verbose=False, progress=False)
    times: dict[str, float] = {}

    class Clock(L.Callback):  # first in the list: its fit-start hook runs before the audit's
        def on_fit_start(self, trainer, pl_module):
            times["fit_start"] = time.process_time()

        def on_train_start(self, trainer, pl_module):
            times["audit"] = time.process_time() - times["fit_start"]  # the "before" audit

        def on_train_epoch_start(self, trainer, pl_module):
            times["epoch_start"] = time.process_time()

        def on_train_epoch_end(self, trainer, pl_module):
            times["epoch"] = time.process_time() - times["epoch_start"]

    torch.manual_seed(0)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False,
                        callbacks=[Clock(), UnlearnCallback(method="ac"), audit])  # fmt: skip
    trainer.fit(SimCLRModule(), datamodule=dm)
    t_audit = times["audit"]
    print(f"\n== AuditCallback vs one AC unlearning epoch: {n_images} training images "
          f"({n_images // 10} forgotten), {len(holdout)} holdout, ResNet-18 at {size}x{size}, K = {k}")
    print(f"one unlearning epoch (CPU s):          {times['epoch']:8.2f} s")
    print(f"one audit (CPU s, the 'before' audit): {t_audit:8.2f} s")
    print(f"audit / unlearning epoch = {t_audit / times['epoch']:6.2f} (goal <= 1.0)")


if __name__ == "__main__":
    main()
