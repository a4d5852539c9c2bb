"""Alignment score, alignment matrix, alignment gap matrix and forgetting score (SPEC §4).

All functions are pure tensor maths on cached view embeddings ``views`` of shape ``(n, K, d)``:
``views[i, a]`` is the embedding of augmentation ``t_a`` of sample ``x_i``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lightly_unlearn.audits.base import Audit, AuditInputError, AuditResult, require_inputs
from lightly_unlearn.audits.features import AuditInputs


def _check_views(views: Tensor) -> Tensor:
    if views.dim() != 3 or views.shape[1] < 2:
        raise ValueError(
            f"views must have shape (n, K, d) with K >= 2 augmentations; got {tuple(views.shape)}."
        )
    return F.normalize(views.double(), dim=-1)


def alignment_scores(views: Tensor) -> Tensor:
    """Per-sample alignment: mean cosine similarity over all ``K(K-1)/2`` pairs of its views.

    Uses ``sum_{a != b} <v_a, v_b> = ||sum_a v_a||^2 - sum_a ||v_a||^2`` on unit vectors: O(n K d).
    A zero embedding counts as cosine 0 with everything.
    """
    unit = _check_views(views)
    k = unit.shape[1]
    total = unit.sum(dim=1).pow(2).sum(dim=-1)
    self_terms = unit.pow(2).sum(dim=(1, 2))
    return ((total - self_terms) / (k * (k - 1))).float()


def alignment_matrix(views: Tensor, other: Tensor | None = None) -> Tensor:
    """``A_ij = mean_{a,b} cos(e(t_a x_i), e(t_b x_j))`` over all ``K x K`` view pairs (SPEC §4).

    Equals ``<m_i, m_j>`` with ``m_i`` the mean of sample ``i``'s unit view embeddings. On the
    diagonal the ``K`` pairs ``a = b`` (cosine 1) are included, as the definition says, so
    ``A_ii = 1/K + (K-1)/K * alignment_score_i``; the ``1/K`` cancels in gap matrices.
    """
    mean_i = _check_views(views).mean(dim=1)
    mean_j = mean_i if other is None else _check_views(other).mean(dim=1)
    return (mean_i @ mean_j.T).float()


def gap_matrix(before: Tensor, after: Tensor) -> Tensor:
    """``G = A_before - A_after`` (same samples, same seeded augmentations)."""
    if before.shape != after.shape:
        raise ValueError(
            f"Alignment matrices differ in shape ({tuple(before.shape)} vs {tuple(after.shape)}): "
            "compute both on the same samples."
        )
    return before - after


def diag_offdiag_means(matrix: Tensor) -> tuple[float, float]:
    """Mean of the diagonal and mean of the off-diagonal entries of a square matrix (n >= 2)."""
    matrix = torch.as_tensor(matrix, dtype=torch.float64)
    n = matrix.shape[0]
    if matrix.dim() != 2 or matrix.shape[1] != n or n < 2:
        raise ValueError(f"Need a square matrix with n >= 2 samples; got {tuple(matrix.shape)}.")
    diag = torch.diagonal(matrix)
    off = (matrix.sum() - diag.sum()) / (n * (n - 1))
    return float(diag.mean()), float(off)


def separation(matrix: Tensor) -> float:
    """``mean(diag) - mean(offdiag)``: how much more a sample aligns with itself than with others."""
    diag, off = diag_offdiag_means(matrix)
    return diag - off


def forgetting_score(gap: Tensor) -> float:
    """``FS = mean(diag G) - mean(offdiag G)`` (SPEC §4). Positive: own-view alignment fell more
    than cross-sample alignment, i.e. the samples were forgotten. Equals
    ``separation(A_before) - separation(A_after)``."""
    return separation(gap)


class AlignmentMatrix(Audit):
    """Black-box alignment matrix of forget samples; after unlearning, gap matrix and FS.

    Reads the cached view embeddings of the first ``num_samples`` forget samples (no extra
    passes). Metrics: ``diag_alignment``, ``offdiag_alignment``; given the ``before`` result also
    ``forgetting_score`` (FS of ``G = A_before - A_after``) and, when the holdout split is there,
    ``forgetting_score_vs_holdout = separation(A_after(holdout)) - separation(A_after(forget))``:
    the same quantity with the never-seen holdout as the reference instead of the before-model
    (about 0 for Retrain, negative while forget samples are still over-aligned, positive on
    overshoot), and ``holdout_drift_score`` (FS of the holdout's own gap matrix: how much the
    model changed on data it never saw).
    """

    name = "alignment_matrix"
    needs = frozenset({"views"})

    def __init__(self, num_samples: int = 64) -> None:
        self.num_samples = int(num_samples)

    def __call__(self, inputs: AuditInputs, before: AuditResult | None = None) -> AuditResult:
        require_inputs(self, inputs)
        forget = inputs.forget.subset(slice(0, self.num_samples))
        if len(forget) < 2:
            raise AuditInputError("The alignment matrix needs at least 2 forget samples.")
        a = alignment_matrix(forget.views)
        diag, off = diag_offdiag_means(a)
        result = AuditResult(
            metrics={"diag_alignment": diag, "offdiag_alignment": off},
            arrays={"matrix": a.numpy(), "keys": forget.keys.numpy()},
        )
        holdout = inputs.holdout
        if holdout is not None and holdout.views is not None and len(holdout) >= 2:
            h = alignment_matrix(holdout.subset(slice(0, self.num_samples)).views)
            result.arrays["holdout_matrix"] = h.numpy()
            result.metrics["forgetting_score_vs_holdout"] = separation(h) - separation(a)
        if before is not None:
            if not np.array_equal(np.asarray(before.arrays["keys"]), forget.keys.numpy()):
                raise AuditInputError(
                    "The before and after alignment matrices were computed on different forget "
                    "samples; audit both models on the same samples (same seed)."
                )
            g = gap_matrix(torch.as_tensor(before.arrays["matrix"], dtype=torch.float32), a)
            result.arrays["gap_matrix"] = g.numpy()
            result.metrics["forgetting_score"] = forgetting_score(g)
            if "holdout_matrix" in before.arrays and "holdout_matrix" in result.arrays:
                hb = torch.as_tensor(before.arrays["holdout_matrix"], dtype=torch.float32)
                ha = torch.as_tensor(result.arrays["holdout_matrix"])
                if hb.shape == ha.shape:
                    result.metrics["holdout_drift_score"] = forgetting_score(hb - ha)
        return result
