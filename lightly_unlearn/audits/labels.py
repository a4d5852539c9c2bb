"""Names of audited samples, for the heat maps' axes and ``audit.json``: file names or ids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _file_names(dataset: Any) -> Sequence[str] | None:
    """The dataset's per-item file names: a ``names`` sequence, or lightly's
    ``LightlyDataset.get_filenames()``; ``None`` when it has neither (or they do not fit)."""
    names = getattr(dataset, "names", None)
    if names is None and callable(getattr(dataset, "get_filenames", None)):
        names = dataset.get_filenames()
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        return None
    try:
        return names if len(names) == len(dataset) else None  # e.g. class names: not per item
    except TypeError:
        return None


def sample_labels(dataset: Any, keys: Any) -> list[str]:
    """Heat-map labels of the samples ``keys`` (positions in ``dataset``, an audited split).

    The data owner's file names where the dataset knows them, else ``#<id>``, the sample's
    position in the dataset given to the datamodule. A dataset knows its file names through a
    ``names`` sequence (one per item, in item order; :class:`~lightly_unlearn.image_folder.
    ImageFolder`, and so ``ImageFolderDataModule`` and ``lightly-unlearn unlearn``, has it) or
    lightly's ``LightlyDataset.get_filenames()``. Subsets (``.dataset`` and ``.indices``, such
    as the datamodule's ``forget`` split or a torch ``Subset``) are followed down to it.
    """
    positions = [int(k) for k in np.asarray(keys).reshape(-1).tolist()]
    base = dataset
    indices = getattr(base, "indices", None)
    if indices is not None and hasattr(base, "dataset"):  # ids: positions in the user's dataset
        positions = [int(indices[p]) for p in positions]
        base = base.dataset
    ids = [f"#{p}" for p in positions]
    while getattr(base, "indices", None) is not None and hasattr(base, "dataset"):
        positions = [int(base.indices[p]) for p in positions]
        base = base.dataset
    names = _file_names(base) if base is not None else None
    if names is None or any(p >= len(names) for p in positions):
        return ids
    return [str(names[p]) for p in positions]


def panel_labels(results: Mapping[str, Any], datamodule: Any) -> dict[str, list[str] | None]:
    """``image_names`` / ``holdout_names`` of ``audit.json``: the heat maps' axis labels
    (:func:`sample_labels` of the datamodule's ``forget`` / ``holdout`` split), in the order of
    the first alignment matrix's rows and columns (the image audit's, when it ran)."""
    panels = (("image_names", "forget", "keys"), ("holdout_names", "holdout", "holdout_keys"))
    for name in ("alignment_matrix", *results):
        arrays = results[name].arrays if name in results else {}
        if "keys" in arrays and "matrix" in arrays:
            return {
                field: None if arrays.get(key) is None
                else sample_labels(getattr(datamodule, split, None), arrays[key])
                for field, split, key in panels
            }  # fmt: skip
    return {"image_names": None, "holdout_names": None}
