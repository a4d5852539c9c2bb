"""Row-terms adapter for lightly's ``NTXentLoss`` (SimCLR, MoCo with a memory bank).

SimCLR: Chen et al., arXiv:2002.05709; MoCo: He et al., arXiv:1911.05722; Alignment Calibration:
Wang et al., "Alignment Calibration: Machine Unlearning for Contrastive Learning under
Auditing", arXiv:2406.03603.
"""

from __future__ import annotations

from typing import Any

from lightly.loss import NTXentLoss
from torch import nn

from lightly_unlearn.losses.adapter import RowTermsAdapter
from lightly_unlearn.losses.rows import RowTerms, ntxent_row_terms


class NTXentAdapter(RowTermsAdapter):
    """``NTXentLoss`` (and subclasses such as ``AlignmentCalibrationLoss``), called as
    ``criterion(z0, z1)`` (SimCLR) or ``criterion(query, key)`` (MoCo).

    Per row ``u`` (anchor ``z_u``, positive ``z_u⁺``, cosine similarity ``s``, temperature ``τ``)::

        ℓ_u = −s(z_u, z_u⁺)/τ + log Σ_k exp(s(z_u, z_k)/τ)       (positive, logsumexp)

    over ``2N`` rows (view-0 anchors, then view-1 anchors) without a memory bank, ``N`` rows with
    one (the bank's keys are extra negatives). The rows are the logits lightly itself hands to
    ``cross_entropy``, so their mean is ``NTXentLoss``'s value, gather and memory bank included.

    Alignment Calibration (arXiv:2406.03603), forget sample ``u`` with partner ``π(u)``::

        negative calibration:  α·(−s(z_u, z_π(u))/τ) + γ·log Σ_k exp(s(z_u, z_k)/τ)
        positive calibration:  β·|D_f|/|D_train| · mean_u cos(z_u, f(t3(x_u)))

    where ``z_π(u)`` embeds another forget sample's view and ``t3`` is an extra own view.
    """

    name = "ntxent"
    losses = "lightly NTXentLoss: SimCLR, MoCo (memory bank)"
    criterion_types = (NTXentLoss,)
    gamma = "weight of the forget rows' uniformity part log Σ_k exp(s(z_u, z_k)/τ) (None: tied to alpha)"
    calibration = (
        "forget row: α·(−s(z_u, z_π(u))/τ) + γ·lse_u; positive: β·|D_f|/|D_train|·cos(z_u, f(t3 x_u))"
    )

    def row_terms(self, criterion: nn.Module, *args: Any, **kwargs: Any) -> RowTerms:
        out0, out1 = self.arguments(criterion, args, kwargs)[:2]
        return ntxent_row_terms(criterion, out0, out1)
