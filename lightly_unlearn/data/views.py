"""Map-style datasets that turn ``(image, target, ...)`` items into lightly-shaped samples.

A sample is ``(views, target, key)`` exactly like ``lightly.data.LightlyDataset`` yields, so an
unchanged ``training_step`` that does ``(x0, x1) = batch[0]`` or ``(x0, x1), _, _ = batch`` works.
The key is the sample's position in the user's dataset (an ``int``; a ``LongTensor`` after
collation): it identifies forget samples on every device, whatever the sampler does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

#: Positions in the user's dataset as a subset stores them: a ``range`` or an ``int64`` array.
Keys = range | np.ndarray


def as_keys(indices: Sequence[int] | torch.Tensor | np.ndarray) -> Keys:
    """``indices`` as a ``range`` (kept as is) or a read-only ``int64`` array (a CPU tensor's
    memory is shared, not copied): cheap to index one at a time, and no Python list per sample."""
    if isinstance(indices, range):
        return indices
    if isinstance(indices, torch.Tensor):
        arr = indices.detach().cpu().to(torch.long).reshape(-1).numpy()
    else:
        arr = np.asarray(indices, dtype=np.int64).reshape(-1)
    arr = arr.view()
    arr.flags.writeable = False
    return arr


def split_item(item: Any) -> tuple[Any, Any]:
    """``(image, target, ...)`` -> ``(image, target)``; a bare image gets target ``-1``.

    Image–caption items ``(image, caption: str[, target])`` give ``(image, target)`` too (target
    ``-1`` without one), so image-side audits read the class label, not the caption.
    """
    if isinstance(item, (tuple, list)):
        if len(item) >= 2 and isinstance(item[1], str):
            return item[0], (item[2] if len(item) >= 3 else -1)
        if len(item) >= 2:
            return item[0], item[1]
        return item[0], -1
    return item, -1


def split_pair(item: Any) -> tuple[Any, str, Any]:
    """``(image, caption[, target, ...])`` -> ``(image, caption, target)`` (target ``-1`` if absent)."""
    if not isinstance(item, (tuple, list)) or len(item) < 2 or not isinstance(item[1], str):
        raise TypeError(
            "With a tokenizer, ForgetRetainDataModule expects items (image, caption[, target]) "
            f"with a str caption; got {type(item).__name__}"
            + (f" whose second element is {type(item[1]).__name__}" if isinstance(item, (tuple, list)) and len(item) > 1 else "")
            + "."
        )
    return item[0], item[1], (item[2] if len(item) >= 3 else -1)


def item_target(item: Any) -> int | None:
    """The integer class label of an item ``(image, target)`` / ``(image, caption, target)``, else ``None``."""
    if isinstance(item, (tuple, list)):
        if len(item) >= 3 and isinstance(item[1], str):
            return _as_label(item[2])
        if len(item) >= 2 and not isinstance(item[1], str):
            return _as_label(item[1])
    return None


def _as_label(value: Any) -> int | None:
    try:
        return int(value)  # ints, numpy / 0-d tensor labels
    except (TypeError, ValueError, RuntimeError):
        return None  # a bare image, a caption, a multi-label vector: no class label


def dataset_targets(dataset: Any, keys: Sequence[int] | None = None) -> list[int | None]:
    """Class labels of ``dataset[k]`` for ``k`` in ``keys`` (default: every position).

    Reads ``dataset.targets`` / ``dataset.labels`` when present (torchvision style), looks
    through ``torch.utils.data.Subset`` to its dataset's labels, else reads the items
    (:func:`item_target`; ``None`` where an item carries no integer label).
    """
    keys = range(len(dataset)) if keys is None else [int(k) for k in keys]
    for attr in ("targets", "labels"):
        values = getattr(dataset, attr, None)
        if values is not None and len(values) == len(dataset):
            return [_as_label(values[k]) for k in keys]
    inner, positions = getattr(dataset, "dataset", None), getattr(dataset, "indices", None)
    if isinstance(dataset, torch.utils.data.Subset) and inner is not None and positions is not None:
        return dataset_targets(inner, [int(positions[k]) for k in keys])
    return [item_target(dataset[k]) for k in keys]


def tokenize_one(tokenizer: Callable, caption: str) -> torch.Tensor:
    """One caption -> ``LongTensor (context_length,)`` (open_clip tokenizers take lists)."""
    return tokenizer([caption])[0]


def view_transforms(transform: Callable) -> Sequence[Callable] | None:
    """The per-view transforms of a lightly ``MultiViewTransform``, else ``None``."""
    transforms = getattr(transform, "transforms", None)
    if isinstance(transforms, (list, tuple)) and len(transforms) >= 2 and all(
        callable(t) for t in transforms
    ):
        return transforms
    return None


class KeyedViews(Dataset):
    """``dataset[indices[i]]`` -> ``(transform(image), target, indices[i])``."""

    def __init__(self, dataset: Dataset, indices: Sequence[int] | torch.Tensor, transform: Callable) -> None:
        self.dataset = dataset
        self.indices = as_keys(indices)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, Any, int]:
        key = int(self.indices[i])
        image, target = split_item(self.dataset[key])
        return self.transform(image), target, key


class KeyedPairs(Dataset):
    """Image–caption pairs: ``dataset[indices[i]]`` -> ``([image_transform(image), tokens], target, key)``.

    Collated, a batch is ``[[images, tokens], targets, keys]``: ``images, texts = batch[0]`` in
    ``CLIPModule.training_step``, as ``x0, x1 = batch[0]`` for SimCLR.
    """

    def __init__(
        self, dataset: Dataset, indices: Sequence[int] | torch.Tensor, image_transform: Callable, tokenizer: Callable
    ) -> None:
        self.dataset = dataset
        self.indices = as_keys(indices)
        self.image_transform = image_transform
        self.tokenizer = tokenizer

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[list[Any], Any, int]:
        key = int(self.indices[i])
        image, caption, target = split_pair(self.dataset[key])
        return [self.image_transform(image), tokenize_one(self.tokenizer, caption)], target, key


class RawSubset(Dataset):
    """A subset that returns the user's items unchanged (for audits), with their keys."""

    def __init__(self, dataset: Dataset, indices: Sequence[int] | torch.Tensor) -> None:
        self.dataset = dataset
        self.indices = as_keys(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[int(self.indices[i])]

    def keys(self) -> torch.Tensor:
        """The positions in ``dataset`` (a copy)."""
        return torch.tensor(np.asarray(self.indices), dtype=torch.long)
