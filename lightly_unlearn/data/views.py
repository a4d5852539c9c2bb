"""Map-style datasets that turn ``(image, target, ...)`` items into lightly-shaped samples.

A sample is ``(views, target, key)`` exactly like ``lightly.data.LightlyDataset`` yields, so an
unchanged ``training_step`` that does ``(x0, x1) = batch[0]`` or ``(x0, x1), _, _ = batch`` works.
The key is the sample's position in the user's dataset (an ``int``; a ``LongTensor`` after
collation): it identifies forget samples on every device, whatever the sampler does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset


def split_item(item: Any) -> tuple[Any, Any]:
    """``(image, target, ...)`` -> ``(image, target)``; a bare image gets target ``-1``."""
    if isinstance(item, (tuple, list)):
        if len(item) >= 2:
            return item[0], item[1]
        return item[0], -1
    return item, -1


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

    def __init__(self, dataset: Dataset, indices: Sequence[int], transform: Callable) -> None:
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, Any, int]:
        key = self.indices[i]
        image, target = split_item(self.dataset[key])
        return self.transform(image), target, key


class RawSubset(Dataset):
    """A subset that returns the user's items unchanged (for audits), with their keys."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.indices[i]]

    def keys(self) -> torch.Tensor:
        return torch.as_tensor(self.indices, dtype=torch.long)
