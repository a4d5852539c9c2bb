"""What a set of audits reads, embedded once from a ``ForgetRetainDataModule``'s splits.

Image audits read clean and augmented features (:func:`~lightly_unlearn.audits.runner.
compute_inputs`), CLIP audits image-caption embeddings (:func:`~lightly_unlearn.audits.
clip_features.compute_clip_inputs`); both kinds land in one :class:`AuditInputs`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lightly_unlearn.audits.base import Audit
from lightly_unlearn.audits.clip_features import compute_clip_inputs
from lightly_unlearn.audits.features import AuditInputs, EmbedFn
from lightly_unlearn.audits.runner import compute_inputs, needs_of


def require_datamodule(audits: Sequence[Audit], datamodule: Any) -> Any:
    """``datamodule`` if it has the splits ``audits`` read; a clear error saying what to pass."""
    missing = [a for a in ("retain", "forget", "view_transform", "eval_transform")
               if not hasattr(datamodule, a)]  # fmt: skip
    if datamodule is None or missing:
        raise TypeError(
            "AuditCallback reads the forget, retain and holdout splits from a "
            "ForgetRetainDataModule: call `trainer.fit(model, datamodule="
            "ForgetRetainDataModule(dataset, forget_indices, transform, holdout=test_set))`."
        )
    if "holdout" in needs_of(audits) and getattr(datamodule, "holdout", None) is None:
        names = [a.name for a in audits if "holdout" in a.needs]
        raise ValueError(
            f"The audits {names} need non-member samples, but the datamodule has no holdout. "
            "Pass `holdout=` (e.g. the test split) to ForgetRetainDataModule, or choose "
            "audits=('linear_probe', 'alignment_matrix')."
        )
    return datamodule


def images_to_embed(audits: Sequence[Audit], datamodule: Any, num_views: int, num_samples: int,
                    world_size: int = 1) -> int:  # fmt: skip
    """Image passes one device makes for the image audits (a progress bar's total)."""
    needs = needs_of(audits)
    passes = ("clean" in needs) + ("views" in needs) * num_views
    splits = [datamodule.forget, getattr(datamodule, "holdout", None)]
    if {"retain", "labels"} & needs:
        splits.append(datamodule.retain)
    per_device = sum(-(-min(len(d), num_samples) // world_size) for d in splits if d is not None)
    return per_device * max(passes, 1)


def datamodule_inputs(
    audits: Sequence[Audit],
    datamodule: Any,
    module: nn.Module,
    embed_fn: EmbedFn,
    *,
    num_views: int,
    num_samples: int,
    batch_size: int,
    device: torch.device | str | None = None,
    rank: int = 0,
    world_size: int = 1,
    all_gather: Callable[[Tensor], Tensor] | None = None,
    progress: Callable[[int], Any] | None = None,
    classnames: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
) -> AuditInputs:
    """Embed the datamodule's forget, retain and holdout splits once for all ``audits``.

    Image features, and the CLIP audits' image-caption embeddings (``needs`` ``"clip"``), are
    sharded across ranks and gathered (``rank``, ``world_size``, ``all_gather``); images are
    read in the datamodule's ``num_workers``.
    """
    dm, needs = datamodule, needs_of(audits)
    seed = int(getattr(dm, "seed", 0))
    image_needs = needs - {"clip"}

    def clip_inputs() -> AuditInputs:
        return compute_clip_inputs(
            module, forget=dm.forget, retain=dm.retain, holdout=getattr(dm, "holdout", None),
            image_transform=dm.eval_transform, tokenizer=getattr(dm, "tokenizer", None),
            classnames=classnames, templates=templates, num_samples=num_samples, seed=seed,
            batch_size=batch_size, device=device, rank=rank, world_size=world_size,
            all_gather=all_gather,
        )  # fmt: skip

    if not {"clean", "views"} & image_needs:  # only CLIP audits: pairs are all they read
        return clip_inputs()
    inputs = compute_inputs(
        embed_fn, image_needs, forget=dm.forget, retain=dm.retain,
        holdout=getattr(dm, "holdout", None), eval_transform=dm.eval_transform,
        view_transform=dm.view_transform, num_views=num_views, num_samples=num_samples,
        seed=seed, batch_size=batch_size, module=module, device=device, rank=rank,
        world_size=world_size, all_gather=all_gather, progress=progress,
        num_workers=int(getattr(dm, "num_workers", 0) or 0),
    )  # fmt: skip
    if "clip" in needs:
        inputs.cache.update(clip_inputs().cache)
    return inputs
