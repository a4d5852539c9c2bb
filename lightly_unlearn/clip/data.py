"""Image–caption datasets and forget sets by class or concept.

``ForgetRetainDataModule(..., tokenizer=...)`` reads items ``(image, caption[, target])``.
:class:`CaptionDataset` turns a labelled image dataset ``(image, target)`` into such items with
captions written from prompt templates ("a photo of the digit seven", "handwritten 7", ...).
:func:`forget_by_class` and :func:`forget_by_concept` return forget positions for
``forget_indices=``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from lightly_unlearn.data.views import dataset_targets as _targets

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

#: ``{name}`` is the class name ("seven"), ``{label}`` the class index ("7").
DIGIT_TEMPLATES = (
    "a photo of the digit {name}",
    "handwritten {label}",
    "a blurry picture of the number {name}",
    "the numeral {label}, written by hand",
    "a small scan of a {name}",
)


class CaptionDataset(Dataset):
    """``(image, target)`` items -> ``(image, caption, target)`` with template captions.

    Item ``i`` gets template ``templates[i % len(templates)]`` (deterministic, so each pair is a
    fixed image–text pair that audits can look up), formatted with ``name=classnames[target]``
    and ``label=target``.
    """

    def __init__(
        self,
        dataset: Sequence[Any],
        classnames: Sequence[str],
        templates: Sequence[str] = ("a photo of a {name}",),
    ) -> None:
        if not templates:
            raise ValueError("templates must not be empty.")
        self.dataset = dataset
        self.classnames = list(classnames)
        self.templates = list(templates)

    def __len__(self) -> int:
        return len(self.dataset)

    def caption(self, i: int, target: int) -> str:
        template = self.templates[i % len(self.templates)]
        return template.format(name=self.classnames[int(target)], label=int(target))

    def __getitem__(self, i: int) -> tuple[Any, str, int]:
        image, target = self.dataset[i][0], int(self.dataset[i][1])
        return image, self.caption(i, target), target


def forget_by_class(dataset: Any, classes: int | Iterable[int]) -> torch.Tensor:
    """Positions of every item whose target is in ``classes`` (a whole class to forget).

    Reads ``dataset.targets`` when present, else the items (``(image, target)`` or
    ``(image, caption, target)``).
    """
    wanted = {int(classes)} if isinstance(classes, int) else {int(c) for c in classes}
    targets = _targets(dataset)
    if all(t is None for t in targets):
        raise ValueError("The dataset's items carry no integer target; use forget_by_concept.")
    hits = [i for i, t in enumerate(targets) if t in wanted]
    if not hits:
        raise ValueError(f"No item has a target in {sorted(wanted)}.")
    return torch.as_tensor(hits, dtype=torch.long)


def forget_by_concept(
    dataset: Any,
    concept: str | Iterable[str] | Callable[[str], bool],
    *,
    caption_of: Callable[[Any], str] | None = None,
) -> torch.Tensor:
    """Positions of every pair whose caption mentions ``concept`` (whole words, case-insensitive).

    ``concept`` may be a word or phrase, several of them (any matches), or a predicate on the
    caption. ``caption_of`` extracts the caption from an item (default: ``item[1]``).
    """
    if callable(concept):
        match = concept
    else:
        words = [concept] if isinstance(concept, str) else list(concept)
        pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
        match = lambda text: pattern.search(text) is not None  # noqa: E731
    caption_of = caption_of or (lambda item: item[1])
    hits = []
    for i in range(len(dataset)):
        caption = caption_of(dataset[i])
        if not isinstance(caption, str):
            raise TypeError(
                f"Item {i} has no caption string at position 1 (got {type(caption).__name__}); "
                "pass caption_of=."
            )
        if match(caption):
            hits.append(i)
    if not hits:
        raise ValueError(f"No caption matches {concept!r}.")
    return torch.as_tensor(hits, dtype=torch.long)


def tiny_clip_kwargs(
    embed_dim: int = 32,
    width: int = 32,
    layers: int = 1,
    image_size: int = 16,
    patch_size: int = 4,
    context_length: int = 16,
    heads: int = 2,
) -> dict[str, Any]:
    """Config overrides for a tiny open_clip ViT (``create_model("ViT-B-32", **kwargs)``) for CPU tests.

    Try CLIP unlearning offline, without weights or downloads (random initialisation, 16 px
    images, about 0.2 M parameters): ``CLIPModule(model_name="ViT-B-32",
    model_kwargs=tiny_clip_kwargs())`` (``PLCLIPModule`` for ``pytorch_lightning``).

    ``vocab_size`` stays 49408: open_clip's ``SimpleTokenizer`` emits ids up to 49407.
    """
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {
            "image_size": image_size,
            "layers": layers,
            "width": width,
            "head_width": width // heads,
            "patch_size": patch_size,
        },
        "text_cfg": {
            "context_length": context_length,
            "vocab_size": 49408,
            "width": width,
            "heads": heads,
            "layers": layers,
        },
    }
