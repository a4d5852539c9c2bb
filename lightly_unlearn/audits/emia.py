"""Encoder membership inference (EMIA) on alignment scores, and forget-vs-holdout AUC.

Threshold attack after EncoderMI (Liu et al., arXiv:2108.11023), as used to audit contrastive
unlearning by Alignment Calibration (arXiv:2405.07317): a sample is called a *member* when its
alignment score is at least the threshold ``t``. ``t`` is the exact accuracy-optimal cut over all distinct scores,
found by one sort and a cumulative sum (O(n log n)), not a grid.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from lightly_unlearn.audits.alignment import alignment_scores, cross_sample_cosine
from lightly_unlearn.audits.base import Audit, AuditResult, MetricInfo, require_inputs
from lightly_unlearn.audits.features import AuditInputs


def best_threshold(members: np.ndarray, nonmembers: np.ndarray) -> tuple[float, float]:
    """The threshold ``t`` maximising accuracy of "member iff score >= t"; returns ``(t, acc)``.

    Every cut between two consecutive distinct sorted scores is tried, plus "all members" and
    "all non-members"; ``t`` is the lowest score on the member side of the cut (``-inf``/``+inf``
    at the ends), never a midpoint: the midpoint of two adjacent floats rounds to one of them, and
    the reported accuracy would not be achievable. All comparisons are in float64, so
    ``attack_accuracy(members, nonmembers, t)`` reproduces the returned accuracy exactly. Ties in
    accuracy go to the lowest threshold. Accuracy is a fraction over all ``len(members) +
    len(nonmembers)`` samples.
    """
    members = np.asarray(members, dtype=np.float64).ravel()
    nonmembers = np.asarray(nonmembers, dtype=np.float64).ravel()
    if len(members) == 0 or len(nonmembers) == 0:
        raise ValueError("best_threshold needs at least one member and one non-member score.")
    scores = np.concatenate([members, nonmembers])
    if not np.isfinite(scores).all():
        raise ValueError("Alignment scores contain NaN or infinite values.")
    is_member = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    order = np.argsort(scores, kind="stable")
    s, m = scores[order], is_member[order]
    n = len(s)
    # cut i: indices [0, i) predicted non-member, [i, n) member; i = 0..n
    nonmembers_below = np.concatenate([[0.0], np.cumsum(1.0 - m)])
    members_at_or_above = m.sum() - np.concatenate([[0.0], np.cumsum(m)])
    correct = nonmembers_below + members_at_or_above
    valid = np.ones(n + 1, dtype=bool)
    valid[1:n] = s[1:] > s[:-1]  # a cut inside a run of equal scores is not realisable
    correct[~valid] = -1.0
    i = int(np.argmax(correct))
    if i == 0:
        t = -np.inf
    elif i == n:
        t = np.inf
    else:
        t = s[i]  # realisable: s[i - 1] < t = s[i], so the cut is exactly [0, i) vs [i, n)
    return float(t), float(correct[i] / n)


def attack_accuracy(members: np.ndarray, nonmembers: np.ndarray, threshold: float) -> float:
    """Accuracy of "member iff score >= threshold" in float64 (reference implementation)."""
    members = np.asarray(members, dtype=np.float64)
    nonmembers = np.asarray(nonmembers, dtype=np.float64)
    threshold = np.float64(threshold)
    correct = (members >= threshold).sum() + (nonmembers < threshold).sum()
    return float(correct / (len(members) + len(nonmembers)))


def emia_metrics(
    member_scores: np.ndarray, nonmember_scores: np.ndarray, forget_scores: np.ndarray
) -> dict[str, float]:
    """EMIA efficacy and companions from alignment scores.

    Returns:
        ``emia``: % of forget samples below the threshold (judged non-members; compare to
        Retrain, not to 100); ``emia_threshold``, ``emia_attack_accuracy`` (%), ``emia_auc``
        (member vs non-member AUC in [0, 1]); ``forget_holdout_auc``: two-sided AUC of forget
        (positive class) vs holdout scores, about 0.5 when forget samples look never-seen, above
        0.5 when still recognisably aligned, below 0.5 on overshoot; ``alignment_level_gap``:
        ``mean(forget) - mean(holdout)`` in cosine units; the mean score of each split; and
        ``forget_holdout_auc_se``, the AUC's standard error (Hanley-McNeil), with the split sizes
        ``forget_samples`` and ``holdout_samples``.
    """
    members = np.asarray(member_scores, dtype=np.float64).ravel()
    nonmembers = np.asarray(nonmember_scores, dtype=np.float64).ravel()
    forget = np.asarray(forget_scores, dtype=np.float64).ravel()
    t, acc = best_threshold(members, nonmembers)
    return {
        "emia": 100.0 * float(np.mean(forget < t)),
        "emia_threshold": t,
        "emia_attack_accuracy": 100.0 * acc,
        "emia_auc": roc_auc(members, nonmembers),
        **forget_holdout_metrics(forget, nonmembers),
        "alignment_retain": float(members.mean()),
    }


def forget_holdout_metrics(
    forget_scores: np.ndarray, holdout_scores: np.ndarray
) -> dict[str, float]:
    """How distinguishable forget samples are from never-seen ones, by alignment score.

    Returns ``forget_holdout_auc`` (two-sided AUC, forget as the positive class: about 0.5 when
    forget samples look never seen, above when still recognisably aligned, below on overshoot),
    its standard error ``forget_holdout_auc_se`` (:func:`auc_standard_error`), the split sizes
    ``forget_samples`` / ``holdout_samples``, ``alignment_level_gap`` (``mean(forget) -
    mean(holdout)``, cosine units) and the two means ``alignment_forget`` / ``alignment_holdout``.
    Needs no member sample, so a data owner with only their images and some never-seen ones can
    compute it (``lightly-unlearn audit``).
    """
    forget = np.asarray(forget_scores, dtype=np.float64).ravel()
    holdout = np.asarray(holdout_scores, dtype=np.float64).ravel()
    auc = roc_auc(forget, holdout)
    return {
        "forget_holdout_auc": auc,
        "forget_holdout_auc_se": auc_standard_error(auc, len(forget), len(holdout)),
        "forget_samples": float(len(forget)),
        "holdout_samples": float(len(holdout)),
        "alignment_level_gap": float(forget.mean() - holdout.mean()),
        "alignment_forget": float(forget.mean()),
        "alignment_holdout": float(holdout.mean()),
    }


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


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve of scores, ``positive`` as the positive class (in ``[0, 1]``)."""
    labels = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    return float(roc_auc_score(labels, np.concatenate([positive, negative])))


_auc = roc_auc  # the earlier private name

#: What :func:`emia_metrics` and the EMIA audit report.
EMIA_METRICS = {
    "emia": MetricInfo(
        "EMIA efficacy: % of forget samples judged non-members (compare to Retrain)"
    ),
    "emia_threshold": MetricInfo("alignment-score threshold of the attack (member iff >=)"),
    "emia_attack_accuracy": MetricInfo("attack accuracy (%), retain sample vs holdout"),
    "emia_auc": MetricInfo("EMIA attack AUC, retain sample vs holdout"),
    "forget_holdout_auc": MetricInfo(
        "forget vs holdout AUC of alignment scores (0.5 = indistinguishable)"
    ),
    "forget_holdout_auc_se": MetricInfo(
        "standard error of forget_holdout_auc (Hanley-McNeil)", False
    ),
    "forget_samples": MetricInfo("forget samples scored"),
    "holdout_samples": MetricInfo("holdout samples scored"),
    "alignment_level_gap": MetricInfo("mean alignment forget - mean alignment holdout"),
    "alignment_retain": MetricInfo("mean alignment score of the retain sample"),
    "alignment_forget": MetricInfo("mean alignment score of the forget samples"),
    "alignment_holdout": MetricInfo("mean alignment score of the holdout samples"),
    "cross_cosine_retain": MetricInfo(
        "mean cosine between different retain images (near 1: collapsed)"
    ),
    "cross_cosine_holdout": MetricInfo(
        "mean cosine between different holdout images (near 1: collapsed)"
    ),
}


class EMIA(Audit):
    """EMIA on backbone alignment scores: members = retain sample, non-members = holdout.

    Members and non-members are truncated to the same size (``min`` of the two, at most
    ``max_samples``); every forget sample given is scored. Also reports
    ``cross_cosine_retain`` / ``cross_cosine_holdout`` (:func:`cross_sample_cosine`), which the
    verdict reads to detect a collapsed encoder.
    """

    name = "emia"
    needs = frozenset({"retain", "views", "holdout"})
    metric_info = EMIA_METRICS

    def __init__(self, max_samples: int = 10_000) -> None:
        self.max_samples = int(max_samples)

    def __call__(self, inputs: AuditInputs, before: AuditResult | None = None) -> AuditResult:
        require_inputs(self, inputs)
        assert inputs.holdout is not None
        size = min(len(inputs.retain), len(inputs.holdout), self.max_samples)
        members = alignment_scores(inputs.retain.views[:size]).numpy()
        nonmembers = alignment_scores(inputs.holdout.views[:size]).numpy()
        forget = alignment_scores(inputs.forget.views).numpy()
        metrics = emia_metrics(members, nonmembers, forget)
        metrics["cross_cosine_retain"] = cross_sample_cosine(inputs.retain.views)
        metrics["cross_cosine_holdout"] = cross_sample_cosine(inputs.holdout.views)
        return AuditResult(metrics=metrics)
