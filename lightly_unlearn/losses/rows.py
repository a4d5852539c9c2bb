"""Per-row contrastive losses and row masks (InfoNCE rows as in SimCLR, arXiv:2002.05709).

Unlearning methods weigh retain and forget rows apart, so they need the contrastive loss per row,
split into its alignment part (the positive logit ``s(z_u, z_pos)/τ``) and its uniformity part
(``log Σ_k exp(s(z_u, z_k)/τ)``). Rather than re-deriving lightly's ``NTXentLoss`` (memory bank,
``gather_distributed``, diagonal masks), :func:`ntxent_row_terms` runs the criterion's own forward
and captures the logits it hands to ``cross_entropy``: the rows are exactly lightly's.

Row layout: without a memory bank a batch of ``N`` samples has ``2N`` rows — rows ``0..N-1`` are
view-0 anchors, rows ``N..2N-1`` view-1 anchors — so a per-sample mask ``m`` becomes
``concat([m, m])`` (:func:`row_mask`), never the element-wise repeat ``[m0, m0, m1, m1, ...]``.
With a memory bank (MoCo) there is one row per sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn


@dataclass
class RowTerms:
    """The two parts of each row's cross-entropy; ``loss = logsumexp - positive``.

    Attributes:
        positive: ``(R,)`` positive logits ``s(z_u, z_pos)/τ``.
        logsumexp: ``(R,)`` ``log Σ_k exp(logit_uk)`` over the row's positive and negatives.
        rows_per_sample: 2 for in-batch NT-Xent and CLIP, 1 with a memory bank.
    """

    positive: Tensor
    logsumexp: Tensor
    rows_per_sample: int

    @property
    def loss(self) -> Tensor:
        """``(R,)`` per-row cross-entropy; its mean is the criterion's usual loss."""
        return self.logsumexp - self.positive


def row_mask(sample_mask: Tensor, rows_per_sample: int) -> Tensor:
    """Per-sample mask ``(N,)`` -> per-row mask ``(rows_per_sample * N,)``: ``concat([m, m])``."""
    return torch.cat([sample_mask] * rows_per_sample)


def row_terms_from_logits(logits: Tensor, labels: Tensor, rows_per_sample: int) -> RowTerms:
    positive = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    return RowTerms(positive, torch.logsumexp(logits, dim=1), rows_per_sample)


class _CaptureCrossEntropy(nn.Module):
    """Stands in for a criterion's ``cross_entropy`` and records the logits it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.logits: Tensor | None = None
        self.labels: Tensor | None = None

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        self.logits, self.labels = logits, labels
        return nn.functional.cross_entropy(logits, labels, reduction="none")


def ntxent_row_terms(
    criterion: nn.Module,
    out0: Tensor,
    out1: Tensor,
    forward: Callable[..., Tensor] | None = None,
) -> RowTerms:
    """Per-row terms of a lightly ``NTXentLoss`` (with or without memory bank, gather-aware).

    Runs ``forward`` (default: the criterion class's own ``forward``, bypassing any instance
    patch) with the criterion's ``cross_entropy`` swapped for a capturing stand-in, so memory-bank
    updates and distributed gathering happen exactly as in the user's criterion.
    """
    if not hasattr(criterion, "cross_entropy"):
        raise TypeError(
            f"{type(criterion).__name__} has no `cross_entropy` attribute; per-row losses are "
            "supported for lightly's NTXentLoss (and subclasses) and open_clip's ClipLoss."
        )
    forward = forward or type(criterion).forward
    original = criterion.cross_entropy
    capture = _CaptureCrossEntropy()
    criterion.cross_entropy = capture
    try:
        forward(criterion, out0, out1)
    finally:
        criterion.cross_entropy = original
    if capture.logits is None:
        raise RuntimeError(
            f"{type(criterion).__name__}.forward never called `self.cross_entropy`; cannot "
            "recover per-row losses from it."
        )
    rows_per_sample = capture.logits.shape[0] // out0.shape[0]
    return row_terms_from_logits(capture.logits, capture.labels, rows_per_sample)


def global_sum(value: Tensor) -> Tensor:
    """Sum of a (detached) scalar over all ranks; the value itself outside distributed runs.

    Objectives normalise by *global* row counts so that a masked loss gives the same gradient
    whatever the number of devices (DDP averages gradients over ranks).
    """
    value = value.detach().clone()
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.all_reduce(value)
    return value


def world_size() -> int:
    if torch_dist.is_available() and torch_dist.is_initialized():
        return torch_dist.get_world_size()
    return 1


def normalise(total: Tensor, denominator: Tensor) -> Tensor:
    """``total / denominator`` with the denominator summed over ranks (see :func:`global_sum`).

    Returns the per-rank share such that DDP's gradient average equals the single-process
    gradient of ``Σ_all total / Σ_all denominator``. A zero denominator gives zero.
    """
    denominator = global_sum(denominator.to(total.dtype)) / world_size()
    # nothing to weigh (e.g. alpha = 0 on an all-forget batch) gives zero, without a host sync
    safe = denominator.clamp_min(torch.finfo(total.dtype).tiny)
    return torch.where(denominator > 0, total / safe, total * 0.0)
