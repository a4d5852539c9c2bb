"""Row-terms adapter for lightly's ``NegativeCosineSimilarity`` (BYOL: Grill et al.,
arXiv:2006.07733; SimSiam: Chen & He, arXiv:2011.10566; Alignment Calibration: Wang et al.,
arXiv:2406.03603)."""

from __future__ import annotations

from typing import Any

import torch
from lightly.loss import NegativeCosineSimilarity
from torch import Tensor, nn

from lightly_unlearn.losses.adapter import RowTermsAdapter
from lightly_unlearn.losses.rows import RowTerms


def negative_cosine_row_terms(criterion: nn.Module, x0: Tensor, x1: Tensor) -> RowTerms:
    """``N`` per-sample terms of ``NegativeCosineSimilarity``: ``positive_i = cos(x0_i, x1_i)``,
    no uniformity part; ``terms.loss.mean()`` is the criterion's value."""
    dim = getattr(criterion, "dim", 1)
    if dim in (0, -x0.dim()):
        raise ValueError(
            "NegativeCosineSimilarity(dim=0) compares samples, not views: per-sample terms need "
            "the similarity along a feature dimension (dim=1, lightly's default)."
        )
    cos = nn.functional.cosine_similarity(x0, x1, dim, getattr(criterion, "eps", 1e-8))
    positive = cos.reshape(x0.shape[0], -1).mean(1)  # equal counts: the mean of means is the mean
    return RowTerms(positive, torch.zeros_like(positive), rows_per_sample=1)


class NegativeCosineAdapter(RowTermsAdapter):
    """``NegativeCosineSimilarity`` as BYOL and SimSiam use it: called twice per step,
    symmetrised, ``loss = 0.5 · (criterion(a0, b1) + criterion(a1, b0))`` — BYOL
    ``(p0, z1), (p1, z0)`` with momentum targets ``z``, SimSiam ``(z0, p1), (z1, p0)`` with
    stop-gradient targets ``z``.

    Per call, one row per sample, no uniformity part::

        ℓ_u = −cos(a_u, b_u)        (positive = cos(a_u, b_u), logsumexp = 0)

    so the mean over rows is lightly's value. Each call's objective is the method's objective on
    that call's rows; both calls have the same forget/retain rows, so the user's
    ``0.5 · (call 1 + call 2)`` is the method's objective over the rows of both calls.

    Alignment Calibration (arXiv:2406.03603), forget sample ``u`` whose second view is another
    forget sample's view ``x_π(u)`` (negative calibration happens in the data, so both calls
    pair ``u``'s own view with ``π(u)``'s)::

        negative calibration:  α·(−cos(p(t1 x_u), z(t2 x_π(u))))        (γ unused: no uniformity)
        positive calibration:  β·|D_f|/|D_train| · mean_u cos(e_u, z(t3(x_u)))

    ``e_u`` is the call's embedding of ``u``'s *own* first view: the first argument in odd calls
    (``p0`` / ``z0``), the second in even calls (``z0`` / ``p0``), following the symmetrised
    form above. ``z(t3 x_u)`` is the target embedding of an extra own view (BYOL: the momentum
    encoder's ``forward_momentum``; SimSiam: the detached ``z`` of ``forward``'s ``(z, p)``). As in
    the method itself, targets carry no gradient, so only the call whose own-view argument is
    the online prediction ``p0`` moves the weights: the gradient of the positive calibration is
    that of ``β/2 · cos(p(t1 x_u), z(t3 x_u))`` under the user's ``0.5·(…)``.
    """

    name = "negative_cosine_similarity"
    target_extra_view = True
    losses = "lightly NegativeCosineSimilarity: BYOL, SimSiam (called twice, symmetrised)"
    criterion_types = (NegativeCosineSimilarity,)
    gamma = "unused: negative cosine similarity has no uniformity term (only alpha and beta act)"
    calibration = (
        "forget row: α·(−cos(p_u, z_π(u))); positive: β·|D_f|/|D_train|·cos(e_u, z(t3 x_u)), "
        "e_u the own first view's embedding"
    )

    def row_terms(self, criterion: nn.Module, *args: Any, **kwargs: Any) -> RowTerms:
        x0, x1 = self.arguments(criterion, args, kwargs)[:2]
        return negative_cosine_row_terms(criterion, x0, x1)

    def anchor(self, criterion: nn.Module, *args: Any, call: int = 1, **kwargs: Any) -> Tensor:
        x0, x1 = self.arguments(criterion, args, kwargs)[:2]
        return x0 if call % 2 == 1 else x1

    def second(self, criterion: nn.Module, *args: Any, call: int = 1, **kwargs: Any) -> Tensor | None:
        x0, x1 = self.arguments(criterion, args, kwargs)[:2]
        return x1 if call % 2 == 1 else x0

    def extra_embedding(self, output: Any) -> Tensor:
        """The target side: SimSiam's ``forward`` returns ``(z.detach(), p)``; pick the element
        without gradient (the stop-gradient target), else the first."""
        if isinstance(output, (tuple, list)):
            for item in output:
                if isinstance(item, Tensor) and not item.requires_grad:
                    return item
            return output[0]
        return output
