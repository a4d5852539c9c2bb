"""Alignment score, alignment matrix, alignment gap matrix and forgetting score.

All functions are pure tensor maths on cached view embeddings ``views`` of shape ``(n, K, d)``:
``views[i, a]`` is the embedding of augmentation ``t_a`` of sample ``x_i``. The alignment
matrix and its gap ``G = A_before - A_after`` follow the black-box audit of Alignment
Calibration (Wang et al., arXiv:2406.03603); docs/audits.md gives the definitions.
:func:`forgetting_score` is the one implementation of ``FS = mean(diag G) - mean(offdiag G)``
used by every audit, figure and report.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lightly_unlearn.audits.base import (
    Audit,
    AuditResult,
    Labeler,
    MetricInfo,
    require_inputs,
)
from lightly_unlearn.audits.features import AuditInputs
from lightly_unlearn.audits.figures import result_gap_figure
from lightly_unlearn.errors import AuditInputError


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
    """``A_ij = mean_{a,b} cos(e(t_a x_i), e(t_b x_j))`` over all ``K x K`` view pairs.

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


def cross_sample_cosine(features: Tensor) -> float:
    """Mean cosine similarity between the embeddings of *different* samples (in ``[-1, 1]``).

    ``features`` is ``(n, d)`` or views ``(n, K, d)``; views are reduced to the mean of the
    sample's unit view embeddings first. Close to 1 means every input maps to (almost) the same
    direction: a collapsed encoder. Computed in O(n d) as ``(||sum u||^2 - sum ||u||^2) /
    (n (n - 1))`` on unit vectors ``u`` (a zero embedding counts as cosine 0).
    """
    x = torch.as_tensor(features).double()
    if x.dim() == 3:
        x = F.normalize(x, dim=-1).mean(dim=1)
    if x.dim() != 2 or x.shape[0] < 2:
        return float("nan")
    u = F.normalize(x, dim=-1)
    n = u.shape[0]
    total = u.sum(dim=0).pow(2).sum() - u.pow(2).sum()
    return float(total / (n * (n - 1)))


def bootstrap_forgetting_score(
    gap: np.ndarray, num_boot: int = 1000, seed: int = 0
) -> np.ndarray:
    """``num_boot`` bootstrap replicates of :func:`forgetting_score` over samples.

    Each replicate draws ``n`` samples with replacement and recomputes FS on the resampled rows
    *and* columns; pairs of a sample with a copy of itself are left out of the off-diagonal
    mean (they are diagonal entries). Replicates where every draw is the same sample are
    ``nan``. Deterministic for a given ``seed``.
    """
    g = np.asarray(gap, dtype=np.float64)
    n = g.shape[0]
    rng = np.random.default_rng(seed)
    out = np.full(int(num_boot), np.nan)
    for b in range(int(num_boot)):
        idx = rng.integers(0, n, size=n)
        sub = g[np.ix_(idx, idx)]
        off = idx[:, None] != idx[None, :]
        if off.any():
            out[b] = float(np.diagonal(sub).mean() - sub[off].mean())
    return out


def forgetting_beyond_drift(
    gap: np.ndarray, holdout_gap: np.ndarray, num_boot: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """``(FS(gap) - FS(holdout_gap), standard error)``: forgetting beyond general drift.

    ``FS(holdout_gap)`` is how much the model changed on never-seen images in the same way, so
    only the difference is evidence about the forget set. The standard error is the standard
    deviation of the difference over ``num_boot`` independent bootstrap resamplings of the
    forget and holdout samples (:func:`bootstrap_forgetting_score`): a bootstrap rather than a
    formula because the entries of an alignment matrix share samples and are not independent.
    """
    diff = forgetting_score(gap) - forgetting_score(holdout_gap)
    boot = bootstrap_forgetting_score(gap, num_boot, seed) - bootstrap_forgetting_score(
        holdout_gap, num_boot, seed + 1
    )
    boot = boot[np.isfinite(boot)]
    se = float(np.std(boot, ddof=1)) if len(boot) > 1 else float("nan")
    return float(diff), se


def forgetting_score(gap: Tensor | np.ndarray) -> float:
    """``FS = mean(diag G) - mean(offdiag G)`` of a gap matrix ``G = A_before - A_after``.

    Positive: own-view (or own-caption) alignment fell more than cross-sample alignment, i.e.
    the samples were forgotten. Equals ``separation(A_before) - separation(A_after)``. Accepts a
    tensor or an array (square, ``n >= 2``).
    """
    return separation(torch.as_tensor(np.asarray(gap, dtype=np.float64)))


class AlignmentMatrix(Audit):
    """Black-box alignment matrix of forget samples; after unlearning, gap matrix and FS.

    Reads the cached view embeddings of the first ``num_samples`` forget samples (no extra
    passes). Metrics: ``diag_alignment``, ``offdiag_alignment``, ``cross_cosine_forget``
    (:func:`cross_sample_cosine` of the forget samples); given the ``before`` result also
    ``forgetting_score`` (FS of ``G = A_before - A_after``) and, when the holdout split is there,
    ``forgetting_score_vs_holdout = separation(A_after(holdout)) - separation(A_after(forget))``:
    the same quantity with the never-seen holdout as the reference instead of the before-model
    (about 0 for Retrain, negative while forget samples are still over-aligned, positive on
    overshoot), ``holdout_drift_score`` (FS of the holdout's own gap matrix: how much the model
    changed on data it never saw; the before and after holdout matrices must hold the same
    samples), and ``forgetting_beyond_drift`` = FS - holdout drift with its bootstrap standard
    error ``forgetting_beyond_drift_se`` (:func:`forgetting_beyond_drift`).
    """

    name = "alignment_matrix"
    needs = frozenset({"views"})
    metric_info = {
        "diag_alignment": MetricInfo("mean own-view alignment of forget samples (diagonal of A)"),
        "offdiag_alignment": MetricInfo("mean alignment between different forget samples"),
        "cross_cosine_forget": MetricInfo(
            "mean cosine between different forget images (near 1: collapsed)"
        ),
        "forgetting_score": MetricInfo(
            "FS = mean(diag G) - mean(offdiag G), G = A_before - A_after (> 0: forgotten)", True
        ),
        "forgetting_score_vs_holdout": MetricInfo(
            "separation(A_after holdout) - separation(A_after forget) (about 0 = like never seen)"
        ),
        "holdout_drift_score": MetricInfo(
            "FS of the holdout's own gap matrix (change on never-seen data)"
        ),
        "forgetting_beyond_drift": MetricInfo(
            "forgetting_score - holdout_drift_score (> 0 beyond its error: forgotten)", True
        ),
        "forgetting_beyond_drift_se": MetricInfo(
            "bootstrap standard error of forgetting_beyond_drift", False
        ),
    }
    figures = ("gap_matrix",)

    def __init__(self, num_samples: int = 64, num_boot: int = 1000) -> None:
        self.num_samples = int(num_samples)
        self.num_boot = int(num_boot)

    def figure(
        self,
        name: str,
        result: AuditResult,
        *,
        title: str,
        labeler: Labeler | None = None,
        verdict: Any = None,
    ) -> Any:
        """The gap-matrix heat map (with the holdout's drift panel when it was computed)."""
        if name not in self.figures:
            return super().figure(name, result, title=title, labeler=labeler, verdict=verdict)
        return result_gap_figure(result, title, labeler, verdict, kind="image")

    def __call__(self, inputs: AuditInputs, before: AuditResult | None = None) -> AuditResult:
        require_inputs(self, inputs)
        forget = inputs.forget.subset(slice(0, self.num_samples))
        if len(forget) < 2:
            raise AuditInputError("The alignment matrix needs at least 2 forget samples.")
        a = alignment_matrix(forget.views)
        diag, off = diag_offdiag_means(a)
        result = AuditResult(
            metrics={
                "diag_alignment": diag,
                "offdiag_alignment": off,
                "cross_cosine_forget": cross_sample_cosine(forget.views),
            },
            arrays={"matrix": a.numpy(), "keys": forget.keys.numpy()},
        )
        holdout = inputs.holdout
        if holdout is not None and holdout.views is not None and len(holdout) >= 2:
            held = holdout.subset(slice(0, self.num_samples))
            h = alignment_matrix(held.views)
            result.arrays["holdout_matrix"] = h.numpy()
            result.arrays["holdout_keys"] = held.keys.numpy()
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
                if "holdout_keys" not in before.arrays:
                    result.warn(
                        "holdout_keys_unknown",
                        "The 'before' holdout matrix does not record which samples it holds "
                        "(written by an older version); holdout drift was not computed.",
                    )
                    return result
                if not np.array_equal(
                    np.asarray(before.arrays["holdout_keys"]), result.arrays["holdout_keys"]
                ):
                    raise AuditInputError(
                        "The before and after holdout alignment matrices were computed on "
                        "different holdout samples, so their difference is not a drift; audit "
                        "both models on the same holdout samples (same seed, same holdout)."
                    )
                hb = torch.as_tensor(before.arrays["holdout_matrix"], dtype=torch.float32)
                hg = gap_matrix(hb, torch.as_tensor(result.arrays["holdout_matrix"]))
                result.arrays["holdout_gap_matrix"] = hg.numpy()
                result.metrics["holdout_drift_score"] = forgetting_score(hg)
                diff, se = forgetting_beyond_drift(g.numpy(), hg.numpy(), self.num_boot)
                result.metrics["forgetting_beyond_drift"] = diff
                result.metrics["forgetting_beyond_drift_se"] = se
        return result

