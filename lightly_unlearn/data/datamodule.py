"""``ForgetRetainDataModule``: the forget/retain split and the loader each method asks for."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any, Literal

import lightning.pytorch as L
import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lightly_unlearn.data.pairing import ForgetPairedCaptions, ForgetPairedViews
from lightly_unlearn.data.sampling import (
    BatchLayout,
    ForgetCoveringSampler,
    ForgetOnlySampler,
    ShuffledSampler,
    stream_layout,
)
from lightly_unlearn.data.validation import (
    check_resumed_forget_set,
    check_training_dataset,
    validate_forget_indices,
    views_of_first_item,
)
from lightly_unlearn.data.views import (
    KeyedPairs,
    KeyedViews,
    RawSubset,
    view_transforms,
)
from lightly_unlearn.namespaces import LIGHTNING as _LIGHTNING  # noqa: F401  (installs the namespace hints)

DataMode = Literal["all", "retain", "forget", "mixed"]


def forget_set_sha256(forget_indices: torch.Tensor) -> str:
    """SHA-256 of the sorted forget positions, written as ``"3,17,42"`` (ASCII)."""
    positions = np.sort(forget_indices.detach().cpu().numpy().reshape(-1)).tolist()
    return hashlib.sha256(",".join(map(str, positions)).encode("ascii")).hexdigest()


def default_eval_transform(view_transform: Callable) -> Callable:
    """A deterministic transform matching a lightly view transform's size and normalisation.

    Takes the output size of its ``RandomResizedCrop`` (if any) and its ``Normalize`` (if any),
    so clean features are computed at the resolution and scale the model was trained on.
    """
    from torchvision.transforms import v2

    size, normalize = None, None
    stack = [view_transform]
    while stack:
        t = stack.pop()
        if isinstance(t, (v2.RandomResizedCrop,)) or type(t).__name__ == "RandomResizedCrop":
            size = getattr(t, "size", size)
        if type(t).__name__ == "Normalize":
            normalize = t
        stack.extend(getattr(t, "transforms", []) or [])
        inner = getattr(t, "transform", None)
        if callable(inner):
            stack.append(inner)
    steps: list[Callable] = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if size is not None:
        steps.append(v2.Resize(size, antialias=True))
    if normalize is not None:
        steps.append(normalize)
    return v2.Compose(steps)


class ForgetRetainDataModule(L.LightningDataModule, pl.LightningDataModule):
    """Serves a training set split into ``retain`` and ``forget`` samples, lightly-style.

    Batches are ``(views, targets, keys)`` like ``lightly.data.LightlyDataset`` batches: ``views``
    is the list of augmented views — all of them, however many the transform makes (multi-crop
    transforms such as ``DINOTransform`` keep their local crops) —, ``keys`` the samples'
    positions in ``dataset``. The loader
    depends on the unlearning method (set by ``UnlearnCallback`` through :meth:`configure`):
    everything (default, e.g. pretraining), retain only, forget only, or retain and forget mixed
    (with Alignment Calibration's partner and extra views for forget samples).

    The class derives from both ``lightning.pytorch`` and ``pytorch_lightning`` data modules, so
    it works with either ``Trainer`` (lightly's modules use ``pytorch_lightning``).

    Args:
        dataset: Any map-style dataset whose items are ``(image, target, ...)``: a torchvision
            dataset without a transform of its own, a ``Subset``, a ``lightly.data.LightlyDataset``.
        forget_indices: Positions in ``dataset`` to forget, or a boolean mask of length
            ``len(dataset)``. Validated here, before anything trains.
        transform: A lightly multi-view transform (``SimCLRTransform``, ``MoCoV2Transform``, ...).
        batch_size: Samples per batch per device. Streams without forget samples drop the last
            incomplete batch and use ``min(batch_size, samples per device)``; streams with forget
            samples cover every forget sample in every epoch (see :meth:`layout`).
        num_workers: DataLoader workers.
        holdout: Samples the model never saw (a test split), used by audits as non-members and
            for test accuracy. Optional.
        seed: Seeds the loaders' shuffling and the sub-sampling done by audits.
        eval_transform: Deterministic single-view transform for clean features; by default
            derived from ``transform`` (same size and normalisation, no augmentation). For CLIP
            pass the model's ``preprocess_val``.
        tokenizer: Image–text (CLIP) mode. Items are ``(image, caption[, target])``; the caption
            is tokenised here (``tokenizer([caption])[0]``) so the default collate works, and
            ``transform`` is then the model's **single-view** image transform (open_clip's
            ``preprocess_train``), applied once per item. Batches are
            ``[[images, tokens], targets, keys]``; with AC forget images are paired with the
            caption of another forget pair and their own caption travels as the extra view.
        forget_batch_size: Batch size of the forget-only stream (gradient ascent). ``None``:
            ``min(batch_size, forget samples per device)``; batches a small forget set cannot fill
            get retain samples as negatives, whose own rows the method does not count.

    Example:
        >>> dm = ForgetRetainDataModule(cifar10, forget_indices=range(500),
        ...                             transform=SimCLRTransform(input_size=32), batch_size=256)
        >>> trainer.fit(model, datamodule=dm)   # with UnlearnCallback(method="ac") in callbacks
    """

    def __init__(
        self,
        dataset: Dataset,
        forget_indices: Any,
        transform: Callable,
        batch_size: int = 256,
        num_workers: int = 0,
        holdout: Dataset | None = None,
        seed: int = 0,
        *,
        eval_transform: Callable | None = None,
        tokenizer: Callable | None = None,
        forget_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        self.num_samples = check_training_dataset(dataset, holdout)  # reads items: refused now
        self.dataset = dataset
        self._forget_indices = validate_forget_indices(forget_indices, self.num_samples)
        is_retain = torch.ones(self.num_samples, dtype=torch.bool)
        is_retain[self._forget_indices] = False
        self._retain_indices = torch.nonzero(is_retain).flatten()
        #: Views per sample in a batch (image and caption tokens for CLIP), before any extra view.
        self.num_views = views_of_first_item(dataset, transform, tokenizer)
        self.transform = transform
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        if forget_batch_size is not None and int(forget_batch_size) < 2:
            raise ValueError(
                f"forget_batch_size={forget_batch_size}: contrastive losses need at least 2 samples "
                "per batch (a single forget sample is completed with a retain sample). Pass None "
                "to size forget batches from the forget set."
            )
        self.forget_batch_size = None if forget_batch_size is None else int(forget_batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.holdout_dataset = holdout
        per_view = view_transforms(transform) if tokenizer is None else None
        self.view_transform: Callable = (
            per_view[0]
            if per_view is not None
            else transform
            if tokenizer is not None
            else (lambda image: transform(image)[0])
        )
        self.eval_transform = eval_transform or default_eval_transform(self.view_transform)
        self.mode: DataMode = "all"
        self.extra_view = False
        self.pair_forget = False

    # -- the splits the audits read -----------------------------------------------------------
    @property
    def forget_indices(self) -> torch.Tensor:
        """Positions of the forget samples in ``dataset``: a sorted ``int64`` tensor without
        repeats (ready for ``torch.searchsorted``). Fixed for the datamodule's life."""
        return self._forget_indices

    @property
    def retain_indices(self) -> torch.Tensor:
        """Positions of the retain samples in ``dataset``: a sorted ``int64`` tensor."""
        return self._retain_indices

    @functools.cached_property
    def retain(self) -> RawSubset:
        """Retain samples, items exactly as ``dataset`` returns them."""
        return RawSubset(self.dataset, self._retain_indices)

    @functools.cached_property
    def forget(self) -> RawSubset:
        """Forget samples, items exactly as ``dataset`` returns them."""
        return RawSubset(self.dataset, self._forget_indices)

    @property
    def holdout(self) -> Dataset | None:
        """Never-seen samples (non-members for audits), or ``None``."""
        return self.holdout_dataset

    @property
    def forget_fraction(self) -> float:
        """``|D_forget| / |D_train|``, used to scale AC's β (as the AC reference does)."""
        return len(self.forget_indices) / self.num_samples

    @functools.cached_property
    def forget_sha256(self) -> str:
        """SHA-256 of the forget set (:func:`forget_set_sha256`), recorded in checkpoints and
        receipts."""
        return forget_set_sha256(self._forget_indices)

    # -- what the unlearning method asks for ---------------------------------------------------
    def configure(
        self,
        mode: DataMode,
        extra_view: bool = False,
        pair_forget: bool | None = None,
        *,
        validate: bool = True,
    ) -> None:
        """Choose the training stream; called by ``UnlearnCallback`` before loaders are built.

        ``mode="mixed"`` with ``pair_forget=True`` serves Alignment Calibration's partner views
        for forget samples, plus their extra own view with ``extra_view=True`` (β > 0).
        ``pair_forget`` defaults to ``extra_view``. Raises before any training if the chosen
        stream cannot fill a batch.
        """
        if mode not in ("all", "retain", "forget", "mixed"):
            raise ValueError(f"Unknown data mode {mode!r}.")
        self.mode, self.extra_view = mode, bool(extra_view)
        self.pair_forget = self.extra_view if pair_forget is None else bool(pair_forget)
        if validate:
            self._train_set()  # validates now rather than when the first epoch starts

    def _train_set(self) -> Dataset:
        """The dataset the loader samples from; with forget samples in the stream its positions
        are the keys (``range(len(dataset))``), so the sampler can choose forget and filler
        samples."""
        self.layout()  # validates the stream before any training
        keys = self._retain_indices if self.mode == "retain" else range(self.num_samples)
        forget = self._forget_indices
        if self.tokenizer is not None:
            if self.mode == "mixed" and self.pair_forget:
                return ForgetPairedCaptions(
                    self.dataset, keys, forget, self.transform, self.tokenizer,
                    extra_view=self.extra_view,
                )
            return KeyedPairs(self.dataset, keys, self.transform, self.tokenizer)
        if self.mode == "mixed" and self.pair_forget:
            return ForgetPairedViews(
                self.dataset, keys, forget, self.transform, extra_view=self.extra_view
            )
        return KeyedViews(self.dataset, keys, self.transform)

    @staticmethod
    def _world() -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size(), torch.distributed.get_rank()
        return 1, 0

    def layout(self, world_size: int | None = None) -> BatchLayout:
        """Batches per device per epoch and their size, for the configured stream
        (:func:`~lightly_unlearn.data.sampling.stream_layout`): every forget sample in every
        epoch for streams with forget samples, ``min(batch_size, samples per device)`` otherwise.
        """
        return stream_layout(
            self.mode, self.num_samples, len(self.forget_indices), self.batch_size,
            self.forget_batch_size, world_size or self._world()[0],
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled, equal-size batches through a ``DistributedSampler`` on every device count.

        The order depends only on ``(seed, epoch)`` (Lightning calls ``set_epoch``), so a run
        resumed from a checkpoint sees the same batches as an uninterrupted one. Streams with
        forget samples use :class:`~lightly_unlearn.data.sampling.ForgetCoveringSampler`: every
        forget sample is served in exactly one batch per epoch, on one device, and only retain
        samples are left out. The others use ``drop_last=True`` (no sample counted twice; at
        most a batch's worth of retain samples per epoch left out). Lightning keeps a
        ``DistributedSampler`` it is given.
        """
        dataset = self._train_set()
        world, rank = self._world()
        layout = self.layout(world)
        sampler: DistributedSampler
        if self.mode in ("mixed", "forget"):
            covering = ForgetCoveringSampler if self.mode == "mixed" else ForgetOnlySampler
            sampler = covering(
                dataset, self._forget_indices, self._retain_indices, layout,
                num_replicas=world, rank=rank, seed=self.seed,
            )
        else:
            sampler = ShuffledSampler(dataset, num_replicas=world, rank=rank, seed=self.seed)
        return DataLoader(
            dataset,
            batch_size=layout.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    # The class has both Lightning namespaces as bases, and Lightning decides whether a hook is
    # user-defined by comparing its code with the *Trainer's* namespace default; the default
    # loaders of the two namespaces differ, so each Trainer would call the other's and fail.
    # Unlearning has no validation stream of its own: None reads as "not defined" in both.
    # (The batch-transfer hooks compare equal across namespaces; a test guards that the user's
    # module hooks still run.)
    val_dataloader = None  # type: ignore[assignment]
    test_dataloader = None  # type: ignore[assignment]
    predict_dataloader = None  # type: ignore[assignment]

    # -- checkpoint state: the forget set travels with a resumed run -----------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "num_samples": self.num_samples,
            "num_forget": len(self.forget_indices),
            "forget_sha256": self.forget_sha256,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        check_resumed_forget_set(
            state_dict.get("forget_sha256"), state_dict.get("num_forget"),
            self.forget_sha256, len(self.forget_indices),
        )
