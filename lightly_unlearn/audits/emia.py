"""Encoder membership inference (EMIA) on alignment scores.

Threshold attack after EncoderMI (Liu et al., arXiv:2108.11023), as used to audit contrastive
unlearning by Alignment Calibration (Wang et al., arXiv:2406.03603): a sample is called a
*member* when its alignment score is at least the threshold ``t``. ``t`` is the exact
accuracy-optimal cut over all distinct scores, found by one sort and a cumulative sum
(O(n log n)), not a grid. The EMIA audit also reports the forget-vs-holdout numbers of
:mod:`lightly_unlearn.audits.membership` on the same scores.
"""

from __future__ import annotations

import numpy as np

from lightly_unlearn.audits.alignment import alignment_scores, cross_sample_cosine
from lightly_unlearn.audits.base import Audit, AuditResult, MetricInfo, require_inputs
from lightly_unlearn.audits.features import AuditInputs
from lightly_unlearn.audits.membership import (
    LOW_FPRS,
    forget_holdout_metrics,
    low_fpr_key,
    min_holdout_for,
    roc_auc,
)


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
        (member vs non-member AUC in [0, 1]); ``alignment_retain``, the members' mean score; and
        :func:`~lightly_unlearn.audits.membership.forget_holdout_metrics` of the forget scores
        against the same non-member scores (AUC, its standard error, TPR at 1 % / 0.1 % FPR,
        the alignment level gap).
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


#: What :func:`emia_metrics` and the EMIA audit report.
EMIA_METRICS = {
    "emia": MetricInfo(
        "EMIA efficacy: % of forget samples the attack judges non-members (aligned less than "
        "its threshold). Higher = more forgotten, judged against Retrain's value (a model that "
        "never saw them), not 100; far above Retrain's is overshoot (see forget_holdout_auc)"
    ),
    "emia_threshold": MetricInfo("alignment-score threshold of the attack (member iff >=)"),
    "emia_attack_accuracy": MetricInfo("attack accuracy (%), retain sample vs holdout"),
    "emia_auc": MetricInfo("EMIA attack AUC, retain sample vs holdout"),
    "forget_holdout_auc": MetricInfo(
        "forget vs holdout AUC of alignment scores (0.5 = indistinguishable, above = still "
        "recognisable, below = overshoot)"
    ),
    **{
        low_fpr_key(fpr): MetricInfo(
            f"% of forget samples an attack flags when it may wrongly flag only {fpr:g} % of "
            f"never-seen samples (TPR at {fpr:g} % FPR; needs ≥ {min_holdout_for(fpr)} holdout "
            "samples; compare to Retrain)"
        )
        for fpr in LOW_FPRS.values()
    },
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
    note = (
        "EMIA: a membership attack learns, from retain (member) and holdout (never-seen) images, "
        "the alignment score above which an image counts as a member; `emia` is the % of your "
        "forget images it judges non-members. Higher means more forgotten, judged against "
        "Retrain's value (a model that never saw them), never against 100: a value far above "
        "Retrain's is overshoot, which `forget_holdout_auc` below 0.5 shows. "
        "`forget_holdout_tpr_at_*_fpr` is the % of forget images flagged by an attack allowed to "
        "wrongly flag only 1 % (0.1 %) of never-seen images; lower means more forgotten."
    )

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
