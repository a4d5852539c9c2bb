"""Checks on user input that run before anything trains.

Every error says what was wrong and how to fix it. Duplicated forget ids are refused rather than
silently merged: a deletion request that lists a sample twice is more likely a bug upstream (an
off-by-one, a joined table) than an intent, and the forget-set hash in a receipt must be
unambiguous. Pass ``sorted(set(ids))`` to forget each sample once.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lightly_unlearn.errors import ForgetSetError, ResumeMismatchError


def _as_array(forget_indices: Any) -> np.ndarray:
    if isinstance(forget_indices, Tensor):
        if forget_indices.is_meta:
            raise ForgetSetError(
                "forget_indices is a tensor on the 'meta' device, which holds no values. Pass the "
                "real positions (e.g. create the tensor on 'cpu')."
            )
        return forget_indices.detach().cpu().numpy()
    if isinstance(forget_indices, (set, frozenset)):
        raise ForgetSetError(
            "forget_indices is a set, whose order is arbitrary; pass a sorted list instead "
            "(`sorted(ids)`)."
        )
    if isinstance(forget_indices, (str, bytes)) or not isinstance(
        forget_indices, (Sequence, np.ndarray, range)
    ):
        raise ForgetSetError(
            f"forget_indices must be a sequence of integer positions in the dataset or a boolean "
            f"mask of length len(dataset); got {type(forget_indices).__name__}."
        )
    if isinstance(forget_indices, np.ndarray):
        return forget_indices
    items = list(forget_indices)
    bools = [isinstance(item, (bool, np.bool_)) for item in items]
    if any(bools) and not all(bools):
        raise ForgetSetError(
            "forget_indices mixes booleans with integers (e.g. [True, 5, 9]); True would be read "
            "as position 1. Pass either integer positions or a boolean mask of length "
            "len(dataset), not both."
        )
    for item in items:
        if isinstance(item, (bool, np.bool_)):
            continue
        if not isinstance(item, (numbers.Integral, np.integer)):
            raise ForgetSetError(
                f"forget_indices must contain integers (positions in the dataset), found "
                f"{item!r} of type {type(item).__name__}. Convert ids with `int(...)`; if they "
                f"are file names, map them to positions first."
            )
    try:
        return np.asarray(items, dtype=np.bool_ if items and all(bools) else None)
    except OverflowError as error:
        raise ForgetSetError(
            f"forget_indices contains a value too large for a position ({error}); positions are "
            "0..len(dataset)-1."
        ) from None


def _looks_like_mask(arr: np.ndarray, num_samples: int) -> bool:
    """A 0/1 integer array of length ``len(dataset)`` is almost surely a mask, not positions."""
    return (
        arr.ndim == 1 and arr.shape[0] == num_samples and num_samples > 2
        and np.issubdtype(arr.dtype, np.integer) and bool(np.isin(arr, (0, 1)).all())
    )


def validate_forget_indices(forget_indices: Any, num_samples: int) -> Tensor:
    """Return the forget set as a sorted ``int64`` tensor of unique positions.

    Accepts integer positions (list, tuple, range, numpy array, tensor) or a boolean mask of
    length ``num_samples``.
    """
    arr = _as_array(forget_indices)
    if arr.dtype == np.bool_:
        if arr.shape != (num_samples,):
            raise ForgetSetError(
                f"A boolean forget mask must have length len(dataset)={num_samples}; got shape "
                f"{tuple(arr.shape)}."
            )
        arr = np.flatnonzero(arr)
    if arr.dtype == object:
        raise ForgetSetError(
            "forget_indices contains values that are not integers within int64 (positions are "
            "0..len(dataset)-1)."
        )
    if _looks_like_mask(arr, num_samples):
        raise ForgetSetError(
            f"forget_indices is a 0/1 integer array of length len(dataset)={num_samples}: this "
            "looks like a mask, not positions. Pass `mask.astype(bool)` (numpy) or "
            "`mask.bool()` (torch) to forget the samples marked 1."
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ForgetSetError(
            f"forget_indices must be integers (positions in the dataset); got dtype {arr.dtype}. "
            "Convert them with `int(...)`."
        )
    arr = arr.astype(np.int64).reshape(-1)
    if (arr < 0).any():
        bad = arr[arr < 0][:5].tolist()
        raise ForgetSetError(
            f"forget_indices contains negative positions {bad}; positions count from 0 and "
            "negative (from-the-end) indexing is not accepted, to avoid forgetting the wrong sample."
        )
    if (arr >= num_samples).any():
        bad = arr[arr >= num_samples][:5].tolist()
        raise ForgetSetError(
            f"forget_indices contains positions {bad} out of range for a dataset of "
            f"{num_samples} samples (valid: 0..{num_samples - 1})."
        )
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1][:5].tolist()
        raise ForgetSetError(
            f"forget_indices lists positions more than once: {dup}. Each sample must be named "
            "once; check where the ids come from (an off-by-one or a joined table repeats ids)."
        )
    return torch.as_tensor(uniq, dtype=torch.long)


def check_views(views: Any, where: str = "transform") -> int:
    """The multi-view transform must return a list/tuple of at least two views."""
    if not isinstance(views, (list, tuple)) or len(views) < 2:
        kind = f"a {type(views).__name__}" if not isinstance(views, (list, tuple)) else (
            f"{len(views)} view"
        )
        raise ValueError(
            f"The {where} returned {kind}; contrastive unlearning needs at least two views per "
            "image. Use a lightly multi-view transform such as `SimCLRTransform(input_size=...)` "
            "or `MoCoV2Transform(...)`, or wrap a single-view transform in "
            "`lightly.transforms.multi_view_transform.MultiViewTransform([t, t])`."
        )
    return len(views)


def check_batches(num_samples: int, batch_size: int, what: str) -> int:
    """With ``drop_last=True`` a loader over ``num_samples`` must fill at least one batch."""
    if batch_size < 2:
        raise ValueError(
            f"batch_size={batch_size}: contrastive losses need at least 2 samples per batch."
        )
    if num_samples < batch_size:
        raise ValueError(
            f"The {what} set has {num_samples} samples, fewer than batch_size={batch_size}; with "
            f"drop_last=True (needed for BatchNorm heads and distributed losses) it would yield no "
            f"batch. Lower batch_size to at most {num_samples}."
        )
    return num_samples // batch_size


def check_dataset(dataset: Any, what: str = "dataset") -> int:
    """Refuse, with what to do, datasets that would otherwise fail deep inside torch; return
    ``len(dataset)``.

    * an ``IterableDataset`` (or anything without ``__getitem__``/``__len__``): forget ids are
      positions, so the data must be addressable by position;
    * a ``__len__`` that over-counts (``dataset[len(dataset) - 1]`` raises ``IndexError``);
    * items that are dicts (Hugging Face style): items must be ``(image, target, ...)`` tuples,
      or ``(image, caption, ...)`` with a tokenizer.
    """
    from collections.abc import Mapping

    from torch.utils.data import IterableDataset

    if isinstance(dataset, IterableDataset) or not (
        hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")
    ):
        kind = "an IterableDataset" if isinstance(dataset, IterableDataset) else "not map-style"
        raise TypeError(
            f"{what} is {kind} ({type(dataset).__name__}); unlearning names samples by position, "
            "so it needs a map-style dataset (with __getitem__ and __len__). Materialise the "
            "samples into one, e.g. a list of (image, target) tuples, or use the dataset's "
            "map-style version."
        )
    num = len(dataset)
    if num == 0:
        return num
    for index in sorted({0, num - 1}):
        try:
            item = dataset[index]
        except (IndexError, KeyError, StopIteration) as err:
            raise ValueError(
                f"len({what}) is {num}, but {what}[{index}] raises {type(err).__name__}({err}): "
                f"its __len__ over-counts the samples. Make __len__ return how many items "
                "__getitem__ serves (positions 0..len-1)."
            ) from err
        if isinstance(item, Mapping):
            raise TypeError(
                f"{what} items are dicts (keys {sorted(map(str, item))[:6]}); ForgetRetainDataModule "
                "expects (image, target, ...) tuples as torchvision datasets return, or (image, "
                "caption, ...) with a tokenizer. Wrap it, e.g. a Dataset whose __getitem__(i) "
                "returns (d['image'], d['label']) for d = dataset[i]."
            )
    return num


def check_resumed_forget_set(
    saved_sha256: str | None,
    saved_num_forget: Any,
    sha256: str,
    num_forget: int,
    who: str = "The checkpoint",
) -> None:
    """Refuse to resume a run that was unlearning a different forget set.

    ``saved_*`` come from the checkpoint (``None``: it predates the hash, nothing to compare);
    ``sha256`` / ``num_forget`` describe the forget set of this run. The datamodule and
    ``UnlearnCallback`` both call this, so a resume is refused with one message.

    Raises:
        ResumeMismatchError: (a ``ValueError``) the two forget sets differ.
    """
    if saved_sha256 is None or saved_sha256 == sha256:
        return
    raise ResumeMismatchError(
        f"Refusing to resume: {who} was written while unlearning a different forget set "
        f"(sha256 {saved_sha256[:12]}…, {saved_num_forget} samples) than this datamodule's "
        f"({sha256[:12]}…, {num_forget} samples). Resume with the same forget_indices, or "
        "start a new run without ckpt_path."
    )


def check_training_dataset(dataset: Any, holdout: Any = None) -> int:
    """Refuse a training set (and holdout) the datamodule cannot split; returns ``len(dataset)``.

    Reads the first and last items (iterable datasets, a lying ``__len__``, dict items, a dataset
    with a transform of its own and an empty dataset are refused with how to fix it).
    """
    check_dataset(dataset)
    if holdout is not None:
        check_dataset(holdout, "holdout")
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise TypeError(
            f"dataset must be a map-style dataset (with __getitem__ and __len__); got "
            f"{type(dataset).__name__}. Iterable datasets cannot be split by position."
        )
    if getattr(dataset, "transform", None) is not None:
        raise ValueError(
            f"{type(dataset).__name__} already has a transform ({dataset.transform!r}). Pass "
            "the dataset without a transform and give the multi-view transform to "
            "ForgetRetainDataModule(transform=...): forget samples need views built here."
        )
    if len(dataset) == 0:
        raise ValueError("dataset is empty.")
    return len(dataset)


def views_of_first_item(dataset: Any, transform: Any, tokenizer: Any = None) -> int:
    """Run ``transform`` (and ``tokenizer``) on ``dataset[0]`` as the loaders will; returns the
    number of views per sample (image and caption tokens: 2 for CLIP; every crop of a multi-view
    transform otherwise). Refuses a non-callable transform, a tokenizer that does not return
    ``(n, context_length)`` tokens, and caption items without a tokenizer."""
    from lightly_unlearn.data.views import split_item, split_pair

    if not callable(transform):
        raise TypeError(f"transform must be callable; got {type(transform).__name__}.")
    if tokenizer is not None:
        image, caption, _ = split_pair(dataset[0])
        transform(image)
        tokens = tokenizer([caption])
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
            raise TypeError(
                "tokenizer(list_of_captions) must return a LongTensor (n, context_length), "
                f"as open_clip tokenizers do; got {type(tokens).__name__}."
            )
        return 2
    first = dataset[0]
    if isinstance(first, (tuple, list)) and len(first) >= 2 and isinstance(first[1], str):
        raise ValueError(
            "The dataset's items look like (image, caption, ...) pairs: pass the model's "
            "tokenizer (ForgetRetainDataModule(..., transform=preprocess_train, "
            "tokenizer=tokenizer)) for CLIP; without a tokenizer, items are "
            "(image, target, ...) and `transform` must be a multi-view transform."
        )
    # every view is carried (multi-crop: DINO's 2 global + N local crops)
    return check_views(transform(split_item(first)[0]))
