"""Per-row CLIP terms (CLIP: Radford et al., arXiv:2103.00020): image rows are cross-entropy over texts, text rows over images.

For ``N`` image–text pairs open_clip's ``ClipLoss`` computes ``logits = scale · I Tᵀ`` (plus an
optional ``logit_bias``) and returns ``(CE(logits_per_image) + CE(logits_per_text)) / 2``. Here
the same logits (from the criterion's own ``get_logits`` and ``get_ground_truth``, so
``local_loss`` / ``gather_with_grad`` / ``rank`` / ``world_size`` keep open_clip's meaning) are
split into ``2N`` rows: rows ``0..N-1`` are image rows (image ``i`` against all texts), rows
``N..2N-1`` text rows (text ``i`` against all images). A per-pair mask ``m`` is therefore the row
mask ``concat([m, m])`` (:func:`lightly_unlearn.losses.rows.row_mask`), and the mean of the
``2N`` row losses equals ``ClipLoss`` exactly.

Distributed: with ``local_loss=True`` the logits already are local rows × global columns. With
``local_loss=False`` and ``world_size > 1`` every rank computes all ``N·W`` rows; this rank's
``N`` rows (positions ``rank·N …``) are kept, which is the same local-rows × global-columns loss,
so forget masks stay per local pair on every rank.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lightly_unlearn.losses.adapter import RowTermsAdapter
from lightly_unlearn.losses.rows import RowTerms, row_terms_from_logits


def is_clip_criterion(criterion: nn.Module) -> bool:
    """Whether ``criterion`` is open_clip-like (``ClipLoss`` and subclasses: has ``get_logits``)."""
    return callable(getattr(criterion, "get_logits", None)) and callable(
        getattr(criterion, "get_ground_truth", None)
    )


def clip_row_terms(
    criterion: nn.Module,
    image_features: Tensor,
    text_features: Tensor,
    logit_scale: Tensor | float,
    logit_bias: Tensor | None = None,
) -> RowTerms:
    """``2N`` per-row terms of an open_clip ``ClipLoss`` for ``N`` local pairs.

    Args:
        criterion: an ``open_clip.ClipLoss`` (its rank / world size / local_loss are used).
        image_features: ``(N, D)`` L2-normalised image features (``model(images, texts)``).
        text_features: ``(N, D)`` L2-normalised text features.
        logit_scale: the *exponentiated* scale, as ``model(...)`` returns it.
        logit_bias: optional additive bias (models with ``init_logit_bias``).

    Returns:
        :class:`RowTerms` with ``rows_per_sample = 2``; ``positive[u]`` is the matched pair's logit
        ``scale · cos(image_i, text_i) (+ bias)``.
    """
    if not is_clip_criterion(criterion):
        raise TypeError(
            f"{type(criterion).__name__} has no get_logits/get_ground_truth; clip_row_terms needs "
            "an open_clip ClipLoss."
        )
    if image_features.shape[0] != text_features.shape[0]:
        raise ValueError(
            f"{image_features.shape[0]} image features but {text_features.shape[0]} text features; "
            "CLIP rows need one text per image."
        )
    if logit_bias is None:
        logits_image, logits_text = criterion.get_logits(image_features, text_features, logit_scale)
    else:
        logits_image, logits_text = criterion.get_logits(
            image_features, text_features, logit_scale, logit_bias=logit_bias
        )
    labels = criterion.get_ground_truth(image_features.device, logits_image.shape[0])
    n = image_features.shape[0]
    if logits_image.shape[0] != n:  # world_size > 1 without local_loss: global rows
        start = int(getattr(criterion, "rank", 0)) * n
        logits_image = logits_image[start : start + n]
        logits_text = logits_text[start : start + n]
        labels = labels[start : start + n]
    logits = torch.cat([logits_image, logits_text])
    return row_terms_from_logits(logits, torch.cat([labels, labels]), rows_per_sample=2)


class ClipLossAdapter(RowTermsAdapter):
    """open_clip's ``ClipLoss`` (and subclasses: anything with ``get_logits`` and
    ``get_ground_truth``), called as ``criterion(image_features, text_features, logit_scale[,
    logit_bias])`` (CLIP: Radford et al., arXiv:2103.00020).

    Per row: image row ``i`` is ``CE`` of image ``i`` over all captions, text row ``i`` of
    caption ``i`` over all images (``2N`` rows); their mean is ``ClipLoss``'s value.

    Alignment Calibration (arXiv:2406.03603) for a forget pair ``u`` whose caption is swapped
    with another forget pair's caption ``π(u)``, with logits ``ℓ = scale·cos(·,·) (+ bias)``::

        negative calibration:  α·(−ℓ(I_u, T_π(u))) + γ·log Σ_k exp ℓ(I_u, T_k)   (and text rows)
        positive calibration:  β·|D_f|/|D_train| · mean_u [cos(I_u, T_u) − mean_k cos(I_u, T_k)]

    The positive term is relative to the batch's other captions ``T_k`` (``second``), so a
    shift that lowers every image–caption similarity at once cannot pay for it.
    """

    name = "clip"
    losses = "open_clip ClipLoss: CLIP image–text pairs"
    image_text = True
    gamma = "weight of the forget rows' uniformity part log Σ_k exp(scale·cos(I_u, T_k)) (None: tied to alpha)"
    calibration = (
        "forget row: α·(−ℓ(I_u, T_π(u))) + γ·lse_u; positive: "
        "β·|D_f|/|D_train|·[cos(I_u, T_u) − mean_k cos(I_u, T_k)]"
    )

    def matches(self, criterion: nn.Module) -> bool:
        return is_clip_criterion(criterion)

    def specificity(self, criterion: nn.Module) -> int:
        return len(type(criterion).__mro__) - 1  # duck-typed: any typed adapter wins

    def row_terms(self, criterion: nn.Module, *args: Any, **kwargs: Any) -> RowTerms:
        image, text, scale, *rest = self.arguments(criterion, args, kwargs)
        return clip_row_terms(criterion, image, text, scale, rest[0] if rest else None)
