"""Forget-vs-holdout membership: how recognisable the forget set is among never-seen samples.

Every function reads two score arrays: the forget samples' (the positive class, "members") and
the holdout's (never seen, "non-members"), where a *higher* score means *more member-like*
(more aligned views). Three views of the same scores:

* the **AUC** (two-sided: 0.5 = indistinguishable, above = still recognisable, below =
  overshoot) with its Hanley-McNeil standard error;
* **TPR at a low FPR** (LiRA, Carlini et al., arXiv:2112.03570): the share of forget samples an
  attack flags when it may wrongly flag only ``x`` % of never-seen samples -- what a
  membership attack that must rarely be wrong achieves, which an average (the AUC) hides;
* a **paired bootstrap interval** of the difference of two AUCs measured on the same samples
  (the same model before and after relearning, or two models), with scipy's bootstrap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score

#: Low-FPR operating points: metric suffix -> FPR in percent.
LOW_FPRS = {"tpr_at_1pct_fpr": 1.0, "tpr_at_0_1pct_fpr": 0.1}


def low_fpr_key(fpr_percent: float, prefix: str = "forget_holdout_") -> str:
    """``forget_holdout_tpr_at_1pct_fpr`` for 1 %, ``..._0_1pct_fpr`` for 0.1 %."""
    text = f"{fpr_percent:g}".replace(".", "_")
    return f"{prefix}tpr_at_{text}pct_fpr"


def min_holdout_for(fpr_percent: float) -> int:
    """Holdout samples needed to resolve ``fpr_percent``: ``100 / x`` (100 for 1 %, 1000 for 0.1 %)."""
    return math.ceil(100 / Fraction(str(fpr_percent)))


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve of scores, ``positive`` as the positive class (in ``[0, 1]``)."""
    labels = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    return float(roc_auc_score(labels, np.concatenate([positive, negative])))


def auc_standard_error(auc: float, n_positive: int, n_negative: int) -> float:
    """Standard error of an AUC estimated from ``n_positive`` and ``n_negative`` samples.

    Hanley & McNeil (1982): ``SE^2 = (A(1-A) + (n1-1)(Q1-A^2) + (n2-1)(Q2-A^2)) / (n1 n2)``
    with ``Q1 = A/(2-A)`` and ``Q2 = 2A^2/(1+A)``. Chosen over a bootstrap because it is closed
    form (no resampling, deterministic) and accurate for the sample sizes audits use; at
    ``A = 0.5`` it is about ``sqrt((n1 + n2 + 1) / (12 n1 n2))``, e.g. 0.053 for 32 forget vs
    400 holdout samples.
    """
    n1, n2 = int(n_positive), int(n_negative)
    if n1 < 1 or n2 < 1:
        return float("nan")
    a = float(auc)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n2 - 1) * (q2 - a * a)) / (n1 * n2)
    return float(np.sqrt(max(var, 0.0)))


def tpr_at_fpr(positive: np.ndarray, negative: np.ndarray, fpr_percent: float) -> float | None:
    """% of ``positive`` scored strictly above the threshold that lets through ``x`` % of ``negative``.

    With ``n`` negative scores sorted ascending, the threshold is the ``(n - floor(x n))``-th
    smallest (1-based): the inverted-CDF ``(1 - x)`` quantile, numpy's
    ``quantile(..., method="inverted_cdf")``. At most ``floor(x n)`` negatives lie strictly above
    it (exactly that many without ties), so the attack's FPR is at most ``x``. Returns ``None``
    when ``n < 100 / x``: fewer negatives cannot resolve that FPR (``floor(x n)`` would be 0, and
    the number would describe the single highest never-seen score, not an FPR of ``x``).
    """
    positive = np.asarray(positive, dtype=np.float64).ravel()
    negative = np.sort(np.asarray(negative, dtype=np.float64).ravel())
    n = len(negative)
    if n < min_holdout_for(fpr_percent) or len(positive) == 0:
        return None
    allowed = math.floor(Fraction(str(fpr_percent)) / 100 * n)
    threshold = negative[n - 1 - allowed]
    return 100.0 * float(np.mean(positive > threshold))


def forget_holdout_metrics(
    forget_scores: np.ndarray, holdout_scores: np.ndarray
) -> dict[str, float]:
    """How distinguishable forget samples are from never-seen ones, by alignment score.

    Returns ``forget_holdout_auc`` (two-sided AUC, forget as the positive class), its standard
    error ``forget_holdout_auc_se`` (:func:`auc_standard_error`), ``forget_holdout_tpr_at_1pct_fpr``
    and ``forget_holdout_tpr_at_0_1pct_fpr`` (:func:`tpr_at_fpr`; absent when the holdout is too
    small to resolve them: 100 and 1000 samples), the split sizes ``forget_samples`` /
    ``holdout_samples``, ``alignment_level_gap`` (``mean(forget) - mean(holdout)``, cosine units)
    and the two means ``alignment_forget`` / ``alignment_holdout``. Needs no member sample, so a
    data owner with only their images and some never-seen ones can compute it.
    """
    forget = np.asarray(forget_scores, dtype=np.float64).ravel()
    holdout = np.asarray(holdout_scores, dtype=np.float64).ravel()
    auc = roc_auc(forget, holdout)
    out = {
        "forget_holdout_auc": auc,
        "forget_holdout_auc_se": auc_standard_error(auc, len(forget), len(holdout)),
    }
    for fpr in LOW_FPRS.values():
        tpr = tpr_at_fpr(forget, holdout, fpr)
        if tpr is not None:
            out[low_fpr_key(fpr)] = tpr
    out.update(
        forget_samples=float(len(forget)),
        holdout_samples=float(len(holdout)),
        alignment_level_gap=float(forget.mean() - holdout.mean()),
        alignment_forget=float(forget.mean()),
        alignment_holdout=float(holdout.mean()),
    )
    return out


def unresolved_low_fpr(metrics: Mapping[str, float]) -> dict[str, str]:
    """``{TPR metric: why it has no value}`` for every low-FPR metric whose AUC is in ``metrics``
    but which is not: "needs ≥ 1000 holdout samples (has 400)"."""
    out = {}
    for auc_key in [k for k in metrics if k.endswith("forget_holdout_auc")]:
        prefix = auc_key[: -len("auc")]
        root = auc_key[: -len("forget_holdout_auc")]  # "", "clip_", "relearn_before_", ...
        held = next((metrics[k] for k in (f"{root}holdout_samples", f"{root.split('_')[0]}_holdout_samples")
                     if k in metrics), None)  # fmt: skip
        for fpr in LOW_FPRS.values():
            key = low_fpr_key(fpr, prefix)
            if key not in metrics:
                has = f" (has {int(held)})" if held is not None and math.isfinite(held) else ""
                out[key] = f"needs ≥ {min_holdout_for(fpr)} holdout samples{has}"
    return out


@dataclass(frozen=True)
class AucComparison:
    """AUC of scoring ``a`` and its difference to scoring ``b`` on the same samples, with
    percentile intervals of a stratified paired bootstrap (see :func:`compare_aucs`)."""

    auc_a: float
    auc_b: float
    auc_a_ci: tuple[float, float]
    difference_ci: tuple[float, float]
    confidence: float

    @property
    def difference(self) -> float:
        return self.auc_a - self.auc_b


def _rank_auc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUC along the last axis by ranks (Mann-Whitney; ties count 1/2, as roc_auc_score)."""
    m, n = pos.shape[-1], neg.shape[-1]
    ranks = stats.rankdata(np.concatenate([pos, neg], axis=-1), axis=-1)
    return (ranks[..., :m].sum(axis=-1) - m * (m + 1) / 2) / (m * n)


def compare_aucs(
    positive_a: np.ndarray,
    negative_a: np.ndarray,
    positive_b: np.ndarray,
    negative_b: np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> AucComparison:
    """``AUC(a)`` and ``AUC(a) - AUC(b)`` for two scorings of the *same* samples, with intervals.

    ``positive_a[i]`` and ``positive_b[i]`` score the same forget sample (e.g. before and after
    relearning, or under two models), likewise the negatives. The interval is a percentile
    bootstrap (``scipy.stats.bootstrap``, ``n_resamples``, seeded): positives and negatives are
    resampled separately (stratified, as the AUC's two classes are fixed in size) and the *same*
    resampled samples are scored under ``a`` and ``b`` (paired), so what the two scorings share
    cancels. A single positive sample is kept fixed (there is nothing to resample) and the
    interval then covers the holdout's sampling only.
    """
    pa, na, pb, nb = (np.asarray(x, dtype=np.float64).ravel()
                      for x in (positive_a, negative_a, positive_b, negative_b))  # fmt: skip
    if len(pa) != len(pb) or len(na) != len(nb):
        raise ValueError("compare_aucs: scorings a and b must score the same samples.")
    if len(pa) < 1 or len(na) < 2:
        raise ValueError("compare_aucs needs at least 1 positive and 2 negative samples.")

    def both(p_idx: np.ndarray, n_idx: np.ndarray, axis: int = -1) -> np.ndarray:
        auc_a = _rank_auc(pa[p_idx], na[n_idx])
        return np.stack([auc_a, auc_a - _rank_auc(pb[p_idx], nb[n_idx])])

    p_all, n_all = np.arange(len(pa)), np.arange(len(na))
    if len(pa) == 1:
        data: tuple[np.ndarray, ...] = (n_all,)
        statistic = lambda n_idx, axis=-1: both(np.zeros(n_idx.shape[:-1] + (1,), int), n_idx)  # noqa: E731
    else:
        data, statistic = (p_all, n_all), both
    boot = stats.bootstrap(
        data, statistic, n_resamples=int(n_resamples), confidence_level=confidence,
        method="percentile", vectorized=True, random_state=np.random.default_rng(seed), batch=100,
    )  # fmt: skip
    low, high = boot.confidence_interval
    return AucComparison(
        auc_a=roc_auc(pa, na),
        auc_b=roc_auc(pb, nb),
        auc_a_ci=(float(low[0]), float(high[0])),
        difference_ci=(float(low[1]), float(high[1])),
        confidence=float(confidence),
    )
