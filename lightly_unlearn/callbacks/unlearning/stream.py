"""The unlearning method's data stream, from the trainer's ``ForgetRetainDataModule``.

Before training: the datamodule is there, can serve the method (forget samples for methods that
ascend on them, retain samples for those that train on them) and is configured for the method's
stream. Per batch: the batch has the datamodule's ``[views, targets, keys]`` form, and the extra
view Alignment Calibration asks for (the last view) is taken out before the user's step sees it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor

from lightly_unlearn.methods.base import UnlearningMethod

if TYPE_CHECKING:
    import lightning.pytorch as pl


class TrainingStream:
    """The datamodule side of ``UnlearnCallback`` for one ``fit``."""

    def __init__(self, method: UnlearningMethod) -> None:
        self.method = method
        self.datamodule: Any = None

    def check(self, trainer: pl.Trainer) -> Any:
        """The trainer's ``ForgetRetainDataModule``, refused when it cannot serve the method."""
        dm = getattr(trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "configure") or not hasattr(dm, "forget_indices"):
            raise TypeError(
                "UnlearnCallback needs its data from a ForgetRetainDataModule: call "
                "`trainer.fit(model, datamodule=ForgetRetainDataModule(dataset, forget_indices, "
                "transform))` instead of passing dataloaders."
            )
        n_forget, n_retain = len(dm.forget_indices), len(dm.retain_indices)
        name = self.method.name
        if self.method.needs_forget and n_forget == 0:
            raise ValueError(
                f"Method {name!r} trains on forget samples, but the forget set is "
                "empty. Pass the samples to remove as forget_indices."
            )
        if self.method.needs_retain and n_retain == 0:
            raise ValueError(
                f"Method {name!r} needs retain data, but the forget set is the whole "
                f"dataset ({n_forget} samples). Forgetting everything is a re-initialisation, "
                "not unlearning; keep some retain samples or use `gradient_ascent`."
            )
        self.datamodule = dm
        return dm

    def configure(self) -> None:
        """Ask the datamodule for the method's stream (validated now, before any training)."""
        self.datamodule.configure(
            self.method.data, extra_view=self.method.extra_view, pair_forget=self.method.pairs_forget
        )

    def release(self) -> None:
        """Give the datamodule back its plain stream."""
        if self.datamodule is not None:
            self.datamodule.configure("all", validate=False)
        self.datamodule = None

    def split(self, batch: Any) -> tuple[Any, Tensor | None]:
        """``(keys, extra views or None)`` of a batch; the extra view is removed from ``batch``."""
        if not isinstance(batch, list) or len(batch) < 3 or not isinstance(batch[0], list):
            raise TypeError(
                "UnlearnCallback expected a ForgetRetainDataModule batch `[views, targets, keys]`; "
                f"got {type(batch).__name__}. Pass the datamodule to trainer.fit and do not "
                "override its collate function."
            )
        if not self.method.extra_view:
            return batch[2], None
        views = batch[0]
        expected = getattr(self.datamodule, "num_views", None)
        if len(views) < 3 or (expected is not None and len(views) != expected + 1):
            raise RuntimeError(
                f"The batch carries {len(views)} views; this method needs the transform's "
                f"{expected or 'two or more'} views plus an extra one, last. Serve the data "
                "through ForgetRetainDataModule's own train_dataloader (configured by this "
                "callback) and do not override its collate function."
            )
        # the extra view is the last one, whatever the number of (multi-crop) views; the user's
        # step sees all the others
        return batch[2], views.pop()

    def describe(self, trainer: pl.Trainer | None, hyperparameters: str, roles: str) -> str:
        """One line: method, hyper-parameters, forget/retain counts, stream and batches."""
        dm = self.datamodule
        world = getattr(trainer, "world_size", 1) or 1
        layout = dm.layout(world)
        n_forget, n_retain = len(dm.forget_indices), len(dm.retain_indices)
        stream = self.method.data
        per_batch = 0.0 if stream == "retain" else n_forget / max(layout.num_batches * world, 1)
        return (
            f"UnlearnCallback: {self.method.name} ({hyperparameters}); forget {n_forget} / retain "
            f"{n_retain} samples; stream '{stream}': {layout.num_batches} batches of "
            f"{layout.batch_size} per device per epoch on {world} device(s), {per_batch:.1f} "
            f"forget samples per batch on average; {roles}."
        )
