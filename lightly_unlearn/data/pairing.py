"""Alignment Calibration's view construction for forget samples.

For a forget sample ``x_i`` the dataset yields the transform's views with the second one taken
from a partner, plus an extra own view last: ``[t1(x_i), t2(x_π(i)), t3(x_i), ..., tV(x_i),
t_extra(x_i)]`` (two views for SimCLR/MoCo, 2 global + N local crops for DINO's multi-crop):

* negative alignment calibration — the second view belongs to another forget sample ``x_π(i)``
  (``π(i) != i``, redrawn every time the sample is loaded), so the contrastive row of ``x_i``
  pulls it toward a different sample. A forget set of one sample has no other forget sample:
  its partner is then a random retain sample;
* positive alignment calibration — ``t_extra(x_i)`` (drawn like the second view) is an extra view
  of the sample itself, whose similarity to ``t1(x_i)`` the loss penalises.

Retain samples yield all their own views plus ``t_extra(x)``: the extra view of the *whole* batch is embedded
in one pass, so BatchNorm normalises it with the statistics of the same batch composition as the
anchor views (as the reference does). Embedding only the forget samples' extra views gives that
pass forget-only batch statistics, and a model can then lower ``cos(anchor, extra)`` for every
sample at once by telling the passes apart through BatchNorm — it collapsed lightly's ResNet-18
SimCLR example in one epoch. The extra view is the last entry of the view list: the callback
identifies it by position from the end, whatever the number of views.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lightly_unlearn.data.views import (
    as_keys,
    split_item,
    split_pair,
    tokenize_one,
    view_transforms,
)


def _occurrences(indices: range | np.ndarray, key: int) -> np.ndarray:
    """Where ``key`` occurs in ``indices``, each place minus the number of earlier places (the
    form a search for "the j-th other entry" needs)."""
    if isinstance(indices, range):
        places = np.array([indices.index(key)] if key in indices else [], dtype=np.int64)
    else:
        places = np.flatnonzero(indices == key)
    return places - np.arange(len(places))


class ForgetPairedViews(Dataset):
    """All samples (retain ∪ forget), forget ones with a partner's view and an extra own view."""

    def __init__(
        self,
        dataset: Dataset,
        indices: Sequence[int] | torch.Tensor,
        forget: Sequence[int] | torch.Tensor,
        transform: Callable,
        extra_view: bool = True,
    ) -> None:
        self.dataset = dataset
        self.indices = as_keys(indices)
        self.forget = as_keys(forget)
        if not len(self.forget):
            raise ValueError("Alignment Calibration needs at least one forget sample.")
        # place of each forget sample in ``forget``: a table of the forget set only (not of the
        # dataset), looked up once per item
        self._forget_pos = {k: p for p, k in enumerate(np.asarray(self.forget).tolist())}
        # a single forget sample is paired with retain samples (there is no other forget sample):
        # the entries of ``indices`` other than it, found through where it occurs
        self._single_partners = 0
        if len(self.forget) == 1:
            self._hits = _occurrences(self.indices, int(self.forget[0]))
            self._single_partners = len(self.indices) - len(self._hits)
            if not self._single_partners:
                raise ValueError("A single forget sample needs at least one retain sample as partner.")
        self.transform = transform
        self.per_view = view_transforms(transform)
        self.extra_view = extra_view

    def __len__(self) -> int:
        return len(self.indices)

    def _view(self, image: Any, v: int) -> Any:
        if self.per_view is not None:
            return self.per_view[v % len(self.per_view)](image)
        return self.transform(image)[v % 2]

    def _paired_views(self, image: Any, partner_image: Any) -> list[Any]:
        """All views of ``image``, the second one taken from ``partner_image`` instead."""
        if self.per_view is not None:
            return [t(partner_image if v == 1 else image) for v, t in enumerate(self.per_view)]
        views = list(self.transform(image))
        views[1] = self.transform(partner_image)[1]
        return views

    def forget_position(self, key: int) -> int | None:
        """The place of ``key`` in ``forget``, or ``None`` for a retain sample."""
        return self._forget_pos.get(key)

    def partner(self, key: int) -> int:
        """A uniformly random forget sample other than ``key`` (fresh draw on every call); with a
        single forget sample, a uniformly random retain sample."""
        if self._single_partners:
            j = int(torch.randint(self._single_partners, ()).item())
            # the j-th entry of ``indices`` that is not the forget sample
            return int(self.indices[j + int(np.searchsorted(self._hits, j, side="right"))])
        pos = self.forget_position(key)
        if pos is None:
            raise KeyError(f"{key} is not a forget sample.")
        j = int(torch.randint(len(self.forget) - 1, ()).item())
        return int(self.forget[j + (j >= pos)])

    def __getitem__(self, i: int) -> tuple[list[Any], Any, int]:
        key = int(self.indices[i])
        image, target = split_item(self.dataset[key])
        if self.forget_position(key) is None:
            views = list(self.transform(image))  # every view: multi-crop keeps its local crops
            if self.extra_view:
                views.append(self._view(image, 1))
            return views, target, key
        partner_image, _ = split_item(self.dataset[self.partner(key)])
        views = self._paired_views(image, partner_image)
        if self.extra_view:
            views.append(self._view(image, 1))
        return views, target, key


class ForgetPairedCaptions(ForgetPairedViews):
    """AC for image–caption pairs (CLIP): ``[image, tokens, extra tokens]`` per item.

    A forget pair ``i`` yields ``[t(image_i), tok(caption_π(i)), tok(caption_i)]``: in the
    contrastive loss image ``i`` is paired with the caption of another forget pair ``π(i)`` (and
    that caption with image ``i``; π redrawn on every load), and its own caption is carried as
    the extra view whose similarity to image ``i`` positive calibration penalises. Retain pairs
    yield ``[t(image), tok(caption), zeros]``; the callback drops the third entry before the
    module's step, which therefore sees ``(images, tokens)`` as usual.
    """

    def __init__(
        self,
        dataset: Dataset,
        indices: Sequence[int] | torch.Tensor,
        forget: Sequence[int] | torch.Tensor,
        image_transform: Callable,
        tokenizer: Callable,
        extra_view: bool = True,
    ) -> None:
        super().__init__(dataset, indices, forget, image_transform, extra_view)
        self.tokenizer = tokenizer

    def __getitem__(self, i: int) -> tuple[list[Any], Any, int]:
        key = int(self.indices[i])
        image, caption, target = split_pair(self.dataset[key])
        own = tokenize_one(self.tokenizer, caption)
        if self.forget_position(key) is None:
            pair = [self.transform(image), own]
            if self.extra_view:
                pair.append(torch.zeros_like(own))
            return pair, target, key
        _, partner_caption, _ = split_pair(self.dataset[self.partner(key)])
        pair = [self.transform(image), tokenize_one(self.tokenizer, partner_caption)]
        if self.extra_view:
            pair.append(own)
        return pair, target, key
