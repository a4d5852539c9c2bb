"""Whole-step cost of unlearning: every method against the plain step, side by side.

The timer is the first callback in the list and measures from one batch start to the next, so a
step's time covers everything Lightning does for it: the training step, backward, the optimizer
step and every callback hook (``UnlearnCallback``'s objective check and non-finite guard
included). Data loading is excluded: the loader serves one pre-collated batch per stream (10 %
forget samples) again and again.

Variants: ``plain`` (the unchanged module, no callback), every method of the registry at its
defaults (AC: β = 8, so its extra view of the whole batch is a third forward and backward pass),
``ac_beta0`` (AC without that view) and ``finetune_unguarded`` (``keep_finite_weights=False``).
Rounds interleave the variants so machine noise hits all alike; per variant the median step, as
a ratio to the plain step of the same run. The safety checks (non-finite guard, its roll-back
copy of the buffers, the objective check) cost less than the whole-step noise of a shared
machine, so their time is also clocked directly, per step ("checks ms").

Models: ``cnn`` (the benchmarks' small BatchNorm CNN, ``demo.model.ConvSimCLR``) and ``resnet18``
(lightly's SimCLR example: torchvision ResNet-18, ``SimCLRProjectionHead(512, 2048, 2048)``, SGD).

    python benchmarks/step_overhead.py [--models cnn resnet18] [--batch-size 32] [--image-size 32]
        [--steps 10] [--rounds 5] [--threads 1] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
import warnings

import pytorch_lightning as pl
import torch
import torchvision
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from lightly.transforms import SimCLRTransform
from torch import nn

from lightly_unlearn import ForgetRetainDataModule, UnlearnCallback, registry
from lightly_unlearn.callbacks.unlearning.finite_guard import NonFiniteGuard
from lightly_unlearn.callbacks.unlearning.objective_check import ObjectiveCheck
from lightly_unlearn.callbacks.unlearning.rollback import StepRollback
from lightly_unlearn.demo.model import ConvSimCLR

WARMUP = 2  # steps not timed at the start of each run


class ResNet18SimCLR(pl.LightningModule):
    """lightly's SimCLR example (``examples/pytorch_lightning/simclr.py``)."""

    def __init__(self):
        super().__init__()
        resnet = torchvision.models.resnet18()
        self.backbone = nn.Sequential(*list(resnet.children())[:-1])
        self.projection_head = SimCLRProjectionHead(512, 2048, 2048)
        self.criterion = NTXentLoss()

    def forward(self, x):
        return self.projection_head(self.backbone(x).flatten(start_dim=1))

    def training_step(self, batch, batch_index):
        (x0, x1) = batch[0]
        return self.criterion(self.forward(x0), self.forward(x1))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.06)


MODELS = {"cnn": ConvSimCLR, "resnet18": ResNet18SimCLR}


def variants() -> dict[str, dict | None]:
    """label -> UnlearnCallback arguments (``None``: the plain module without a callback)."""
    out: dict[str, dict | None] = {"plain": None}
    out.update({name: {"method": name} for name in registry.available("method")})
    out["ac_beta0"] = {"method": "ac", "beta": 0.0}
    out["finetune_unguarded"] = {"method": "finetune", "keep_finite_weights": False}
    return out


#: The per-step work of the safety checks: the non-finite guard, its roll-back copy of the
#: buffers and the objective check (timed directly: their cost is below the whole-step noise).
GUARDED = [
    (NonFiniteGuard, "check_objective"), (NonFiniteGuard, "before_step"),
    (NonFiniteGuard, "after_step"), (StepRollback, "begin_step"), (ObjectiveCheck, "verify"),
]


class GuardClock:
    """Adds up the wall time spent in the ``GUARDED`` methods."""

    def __init__(self) -> None:
        self.total = 0.0
        for cls, name in GUARDED:
            setattr(cls, name, self._timed(getattr(cls, name)))

    def _timed(self, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.total += time.perf_counter() - start

        return timed


class StepTimer(pl.Callback):
    """Placed first: the time between consecutive batch starts, after the warm-up steps."""

    def __init__(self, clock: GuardClock) -> None:
        self.times: list[float] = []
        self.guard: list[float] = []  # time in the safety checks, per timed step
        self.clock = clock
        self._last: float | None = None
        self._guard_last = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        now, guard = time.perf_counter(), self.clock.total
        if self._last is not None and batch_idx > WARMUP:
            self.times.append(now - self._last)
            self.guard.append(guard - self._guard_last)
        self._last, self._guard_last = now, guard


class FixedBatchDataModule(ForgetRetainDataModule):
    """Serves one pre-collated batch per configured stream, over and over."""

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
    """``steps`` copies of one batch (fresh lists: the callback pops AC's extra view)."""

    def __init__(self, batch, steps):
        self.batch, self.steps = batch, steps

    def __len__(self):
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            yield [list(self.batch[0]), self.batch[1], self.batch[2]]


def _run(model_cls, dm, spec, steps: int, clock: GuardClock) -> StepTimer:
    torch.manual_seed(0)
    timer = StepTimer(clock)
    callbacks = [timer]
    if spec is None:
        dm.configure("all")
    else:
        callbacks.append(UnlearnCallback(**spec))
    trainer = pl.Trainer(
        max_epochs=1, limit_train_batches=steps + WARMUP + 1, accelerator="cpu", devices=1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=callbacks,
    )
    trainer.fit(model_cls(), datamodule=dm)
    return timer


def measure(model: str, args: argparse.Namespace) -> dict:
    n = args.batch_size * 10  # forget 10 %: every tenth sample
    data = torchvision.datasets.FakeData(size=n, image_size=(3, args.image_size, args.image_size))
    transform = SimCLRTransform(input_size=args.image_size, gaussian_blur=0.0)
    dm = FixedBatchDataModule(data, list(range(0, n, 10)), transform, batch_size=args.batch_size,
                              steps=args.steps + WARMUP + 1)
    specs, clock = variants(), GuardClock()
    times: dict[str, list[float]] = {v: [] for v in specs}
    guard: dict[str, list[float]] = {v: [] for v in specs}
    for spec in specs.values():  # a warm-up round, not timed (allocator, first calls)
        _run(MODELS[model], dm, spec, 1, clock)
    for _ in range(args.rounds):
        for label, spec in specs.items():
            timer = _run(MODELS[model], dm, spec, args.steps, clock)
            times[label].extend(timer.times)
            guard[label].extend(timer.guard)
    plain = statistics.median(times["plain"])
    rows = {
        label: {
            "ms": statistics.median(t) * 1000,
            "ratio": statistics.median(t) / plain,
            "checks_ms": statistics.median(guard[label]) * 1000,
            "steps": len(t),
        }
        for label, t in times.items()
    }
    return {"model": model, "rows": rows, "checks_fraction": rows["finetune"]["checks_ms"] / (plain * 1000)}


def _machine(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {threads} thread(s), torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["cnn", "resnet18"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved runs per variant")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # coverage of a repeated batch, Lightning's hints
    for name in ("lightning.pytorch", "pytorch_lightning", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    machine = _machine(args.threads)
    results = []
    for model in args.models:
        result = measure(model, args)
        results.append(result)
        print(f"\n{model} SimCLR, batch {args.batch_size} x 2 views of {args.image_size} px, 10 % "
              f"forget; {machine}; median of {result['rows']['plain']['steps']} steps per variant")
        print(f"{'variant':<20} {'ms/step':>8} {'ratio':>6} {'checks ms':>9}")
        for label, row in result["rows"].items():
            print(f"{label:<20} {row['ms']:8.1f} {row['ratio']:6.3f} {row['checks_ms']:9.2f}")
        print(f"safety checks (guard, roll-back, objective check) in a fine-tune step: "
              f"{100 * result['checks_fraction']:.2f} % of the plain step")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
