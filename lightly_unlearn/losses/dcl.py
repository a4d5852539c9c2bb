"""Row-terms adapter for lightly's ``DCLLoss`` and ``DCLWLoss`` (Decoupled Contrastive Learning,
Yeh et al., arXiv:2110.06848; Alignment Calibration: Wang et al., arXiv:2406.03603)."""

from __future__ import annotations

from typing import Any

import torch
from lightly.loss import DCLLoss
from lightly.utils import dist
from torch import Tensor, nn

from lightly_unlearn.losses.adapter import RowTermsAdapter
from lightly_unlearn.losses.rows import RowTerms


def _rows(
    criterion: nn.Module, out0: Tensor, out1: Tensor, out0_all: Tensor, out1_all: Tensor
) -> tuple[Tensor, Tensor]:
    """``(positive, logsumexp)`` of the rows anchored at ``out0``, as lightly's ``DCLLoss._loss``."""
    n = out0.shape[0]
    if criterion.gather_distributed and dist.world_size() > 1:
        diag = dist.eye_rank(n, device=out0.device)
    else:
        diag = torch.eye(n, device=out0.device, dtype=torch.bool)
    sim_00 = torch.einsum("nc,mc->nm", out0, out0_all) / criterion.temperature
    sim_01 = torch.einsum("nc,mc->nm", out0, out1_all) / criterion.temperature
    positive = sim_01[diag]
    if criterion.weight_fn:
        positive = positive * criterion.weight_fn(out0, out1)
    negatives = torch.cat([sim_00[~diag].view(n, -1), sim_01[~diag].view(n, -1)], dim=1)
    return positive, torch.logsumexp(negatives, dim=1)


def dcl_row_terms(criterion: nn.Module, out0: Tensor, out1: Tensor) -> RowTerms:
    """``2N`` per-row terms of a lightly ``DCLLoss`` / ``DCLWLoss``: rows ``0..N-1`` anchored at
    view 0, ``N..2N-1`` at view 1; their mean is the criterion's value (gather-aware)."""
    out0 = nn.functional.normalize(out0, dim=1)
    out1 = nn.functional.normalize(out1, dim=1)
    if criterion.gather_distributed and dist.world_size() > 1:
        out0_all, out1_all = torch.cat(dist.gather(out0), 0), torch.cat(dist.gather(out1), 0)
    else:
        out0_all, out1_all = out0, out1
    pos0, lse0 = _rows(criterion, out0, out1, out0_all, out1_all)
    pos1, lse1 = _rows(criterion, out1, out0, out1_all, out0_all)
    return RowTerms(torch.cat([pos0, pos1]), torch.cat([lse0, lse1]), rows_per_sample=2)


class DCLAdapter(RowTermsAdapter):
    """``DCLLoss`` / ``DCLWLoss``, called as ``criterion(z0, z1)`` (as in lightly's DCL example).

    DCL removes the positive pair from InfoNCE's denominator. Per row ``u`` (cosine ``s``,
    temperature ``τ``, weight ``w_u`` = 1 for DCL, the negative von Mises–Fisher weight
    ``2 − N·softmax_u(s(z_u, z_u⁺)/σ)`` for DCLW)::

        ℓ_u = −w_u·s(z_u, z_u⁺)/τ + log Σ_{k ∉ {u, u⁺}} exp(s(z_u, z_k)/τ)   (positive, logsumexp)

    over ``2N`` rows (view-0 anchors, then view-1 anchors); their mean is lightly's value.

    Alignment Calibration (arXiv:2406.03603), forget sample ``u`` with partner ``π(u)``::

        negative calibration:  α·(−w_u·s(z_u, z_π(u))/τ) + γ·log Σ_{k ∉ {u, π(u)}} exp(s(z_u, z_k)/τ)
        positive calibration:  β·|D_f|/|D_train| · mean_u cos(z_u, f(t3(x_u)))

    γ weighs the decoupled uniformity part, which (unlike InfoNCE's) excludes the positive.
    """

    name = "dcl"
    losses = "lightly DCLLoss, DCLWLoss: DCL, DCLW"
    criterion_types = (DCLLoss,)
    gamma = (
        "weight of the forget rows' decoupled uniformity part log Σ_{k≠u,u⁺} exp(s(z_u, z_k)/τ), "
        "positive excluded (None: tied to alpha)"
    )
    calibration = (
        "forget row: α·(−w_u·s(z_u, z_π(u))/τ) + γ·lse_neg(u); positive: "
        "β·|D_f|/|D_train|·cos(z_u, f(t3 x_u))"
    )

    def row_terms(self, criterion: nn.Module, *args: Any, **kwargs: Any) -> RowTerms:
        out0, out1 = self.arguments(criterion, args, kwargs)[:2]
        return dcl_row_terms(criterion, out0, out1)
