"""Time per optimizer step: the unchanged lightly SimCLR module alone vs with each method.

Side by side in one process, on the same pre-collated batch (10 % forget samples), so data
loading is excluded and only the callback's work shows: per-row terms, masks, the ℓ1 norm, and
AC's extra view. With β > 0 AC embeds the extra view of the *whole* batch (forward and backward),
so that BatchNorm normalises it like the anchor views: that costs about one more view per step,
and is reported as measured (``ac``, default β) beside AC without the extra view (``ac_beta0``). Rounds interleave the variants so machine noise hits all alike;
the figure per variant is the median step time, reported as a ratio to the plain step.

    python benchmarks/step_overhead.py [--batch-size 128] [--steps 15] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import pytorch_lightning as pl
import torch
import torchvision
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from lightly.transforms import SimCLRTransform
from torch import nn

from lightly_unlearn import ForgetRetainDataModule, UnlearnCallback

#: label -> (method, hyper-parameters); "plain" is the unchanged module without a callback
VARIANTS = {
    "plain": None,
    "finetune": ("finetune", {}),
    "l1_sparse": ("l1_sparse", {}),
    "gradient_ascent": ("gradient_ascent", {}),
    "neggrad": ("neggrad", {}),
    "ac": ("ac", {}),
    "ac_beta0": ("ac", {"beta": 0.0}),
    "retrain": ("retrain", {}),
}


class SimCLR(pl.LightningModule):  # lightly's example with resnet18 as the backbone
    def __init__(self):
        super().__init__()
        resnet = torchvision.models.resnet18()
        self.backbone = nn.Sequential(*list(resnet.children())[:-1])
        self.projection_head = SimCLRProjectionHead(512, 512, 128)
        self.criterion = NTXentLoss()

    def forward(self, x):
        return self.projection_head(self.backbone(x).flatten(start_dim=1))

    def training_step(self, batch, batch_index):
        (x0, x1) = batch[0]
        return self.criterion(self.forward(x0), self.forward(x1))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.06)


class TimedUnlearnCallback(UnlearnCallback):
    """The timing serves one pre-collated batch again and again, which cannot cover every forget
    sample; the per-epoch coverage check (cheap: one ``isin`` per batch stays) is skipped."""

    def _check_coverage(self, trainer, pl_module):
        return None


class StepTimer(pl.Callback):
    """Wall time from batch start to the end of the optimizer step, for steps after warm-up."""

    def __init__(self, warmup: int = 2) -> None:
        self.warmup, self.times, self._t = warmup, [], 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx >= self.warmup:
            self.times.append(time.perf_counter() - self._t)


class FixedBatchDataModule(ForgetRetainDataModule):
    """Serves one pre-collated batch over and over (timing excludes data loading)."""

    def __init__(self, *args, steps: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps, self._cache = steps, {}

    def train_dataloader(self):
        key = (self.mode, self.extra_view, self.pair_forget)
        if key not in self._cache:
            torch.manual_seed(0)
            self._cache[key] = next(iter(super().train_dataloader()))
        return _Repeat(self._cache[key], self.steps)


class _Repeat:
    """An iterable of ``steps`` copies of one batch (a list would read as several loaders)."""

    def __init__(self, batch, steps):
        self.batch, self.steps = batch, steps

    def __len__(self):
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            yield [list(self.batch[0]), self.batch[1], self.batch[2]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    n = args.batch_size * 10  # forget 10 %: every tenth sample
    data = torchvision.datasets.FakeData(size=n, image_size=(3, args.image_size, args.image_size))
    transform = SimCLRTransform(input_size=args.image_size, gaussian_blur=0.0)
    dm = FixedBatchDataModule(data, list(range(0, n, 10)), transform, batch_size=args.batch_size,
                              steps=args.steps + 2)
    dm.configure("forget")  # validates only; the callback configures per method
    dm.configure("all")
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            torch.manual_seed(0)
            timer = StepTimer()
            spec = VARIANTS[variant]
            callbacks = [timer] if spec is None else [timer, TimedUnlearnCallback(spec[0], **spec[1])]
            trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                                 enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
            if variant == "plain":
                dm.configure("all")
            trainer.fit(SimCLR(), datamodule=dm)
            times[variant].extend(timer.times)
    plain = statistics.median(times["plain"])
    print(f"\nresnet18 SimCLR, batch {args.batch_size} x 2 views of {args.image_size}px, 10 % forget, "
          f"{args.threads} thread(s), median of {len(times['plain'])} steps per variant")
    print(f"{'variant':<16} {'ms/step':>8} {'ratio':>6}")
    for variant in VARIANTS:
        med = statistics.median(times[variant])
        print(f"{variant:<16} {med * 1000:8.1f} {med / plain:6.3f}")


if __name__ == "__main__":
    main()
